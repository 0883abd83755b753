"""Service settings: read once from the environment into one frozen object; the README lists them all."""

from __future__ import annotations

import dataclasses

import pytest

from service.settings import Settings
from tools.servers import REPO


def test_defaults_and_parsing():
    default = Settings.from_env({})
    assert default == Settings()
    assert (default.batching, default.workers, default.max_batch_size) == (True, "cpu_count", 128)
    tuned = Settings.from_env({"BATCHING": "off", "WORKERS": "3", "MAX_BATCH_SIZE": " 64 ", "ACCESS_LOG": "yes"})
    assert (tuned.batching, tuned.workers, tuned.max_batch_size, tuned.access_log) == (False, 3, 64, True)
    # compiled up to the largest request: a bulk one of MAX_INFER_ROWS, or a coalesced batch
    assert tuned.buckets == (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
    assert Settings(max_batch_size=100, max_infer_rows=64).buckets[-2:] == (64, 100)
    assert Settings().executor_buckets[-1] == 16384 and Settings(executor_batch_size=1000).executor_buckets[-1] == 4096
    assert Settings.from_env({"PLACEMENT": "executor"}).placement == "executor"
    with pytest.raises(ValueError, match="PLACEMENT='gpu': expected one of auto, worker, executor"):
        Settings.from_env({"PLACEMENT": "gpu"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        tuned.workers = 1


def test_every_limit_is_configurable():
    default = Settings()
    assert (default.max_batch_files, default.batch_decode_factor, default.light_decode_pixels,
            default.thread_decode_bytes) == (64, 4, 4_000_000, 512 * 1024)
    assert (default.min_body_bytes_per_s, default.max_header_bytes, default.max_target_bytes) == (
        16 * 1024, 16 * 1024, 8 * 1024)
    names = ("MAX_BATCH_FILES", "BATCH_DECODE_FACTOR", "LIGHT_DECODE_PIXELS", "THREAD_DECODE_BYTES",
             "MIN_BODY_BYTES_PER_S", "MAX_HEADER_BYTES", "MAX_TARGET_BYTES")
    tuned = Settings.from_env({name: str(i + 2) for i, name in enumerate(names)})
    assert (tuned.max_batch_files, tuned.batch_decode_factor, tuned.light_decode_pixels, tuned.thread_decode_bytes,
            tuned.min_body_bytes_per_s, tuned.max_header_bytes, tuned.max_target_bytes) == tuple(range(2, 9))


@pytest.mark.parametrize("name, value, message", [
    ("BATCHING", "maybe", "BATCHING='maybe': expected on or off"),
    ("MAX_BODY_BYTES", "10MB", "MAX_BODY_BYTES='10MB': expected a whole number"),
    ("WORKERS", "0", "WORKERS='0': expected a number of at least 1"),
])
def test_a_malformed_value_names_its_variable(name, value, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        Settings.from_env({name: value})


def test_bentoml_config_follows_the_switches():
    metrics_off = {"metrics": {"enabled": False}}  # by raw path; service/guards.py counts by route
    assert Settings().bentoml_config() == {**metrics_off, "logging": {"access": {"enabled": False}},
                                           "tracing": {"excluded_urls": [".*"]}}
    assert Settings(access_log=True, tracing=True).bentoml_config() == metrics_off


def test_the_readme_documents_every_setting():
    readme = (REPO / "README.md").read_text()
    section = readme.split("### Configuration", 1)[1].split("\n## ", 1)[0]
    first_cells = {line.split("|")[1] for line in section.splitlines() if line.startswith("| `")}
    for f in dataclasses.fields(Settings):
        if "env" in f.metadata:
            name = f"`{f.metadata['env']}`"
            assert any(name in cell for cell in first_cells), f"README's Configuration table lacks {name}"
