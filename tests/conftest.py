"""Shared fixtures. The BentoML store of the whole test session lives in a temporary folder."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Before anything imports bentoml or keras: a private model store, quiet TensorFlow.
os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="bentoml_home_tests_")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

import pytest  # noqa: E402

from tools.synthetic import write_asl_csvs, write_data_dir, write_mnist_npz  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def synthetic_data_dir(tmp_path: Path) -> Path:
    """A data directory with a small learnable mnist.npz and ASL CSVs."""
    write_mnist_npz(tmp_path / "mnist.npz")
    write_asl_csvs(tmp_path)
    return tmp_path


@pytest.fixture
def real_data_dir() -> Path:
    """The real data sets from $DATA_DIR; skipped with a visible reason when unset."""
    value = os.environ.get("DATA_DIR")
    if not value:
        pytest.skip("DATA_DIR is not set: point it at a folder with mnist.npz and sign_mnist_*.csv.gz")
    path = Path(value)
    if not (path / "mnist.npz").is_file():
        pytest.skip(f"DATA_DIR={value} has no mnist.npz")
    return path


@pytest.fixture(scope="session")
def served_models(tmp_path_factory) -> dict[str, str]:
    """mnist_dense and asl_dense in the session's store: quick real-data models when DATA_DIR is
    set, otherwise models of the synthetic data. Returns route -> model tag."""
    from training.config import TrainConfig
    from training.train import run

    real = os.environ.get("DATA_DIR")
    if real and (Path(real) / "mnist.npz").is_file():
        data_dir, limits = Path(real), {"mnist": 12000, "asl": 8000}
    else:
        data_dir = write_data_dir(tmp_path_factory.mktemp("synthetic_data"))
        limits = {"mnist": None, "asl": None}
    reports = tmp_path_factory.mktemp("reports")
    tags = {}
    for dataset in ("mnist", "asl"):
        # quick models: no weight averaging (its average over ~100 steps is mostly the initial
        # weights) and no outliers, at the batch size the quick runs always had
        config = TrainConfig.from_preset(dataset, data_dir=str(data_dir), epochs=3, limit=limits[dataset],
                                         augment="off", lighting=0.0, patience=0, teacher_epochs=1,
                                         weight_averaging=False, outliers=0.0, batch_size=128,
                                         reports_dir=str(reports), quiet=True, lit_eval=0)
        tags[dataset] = run(config).model_tag
    return tags


SMALL_LIMITS = {"MAX_BODY_BYTES": str(3 * 1024 * 1024), "MAX_IMAGE_PIXELS": str(4_000_000)}


@pytest.fixture(scope="session")
def server(served_models, tmp_path_factory):
    """`bentoml serve` of the source tree with small limits, so the limit tests stay cheap; on this
    CPU-only machine the forward passes run in the workers (PLACEMENT=auto)."""
    from tools.servers import Server

    handle = Server(env=SMALL_LIMITS, log=tmp_path_factory.mktemp("logs") / "serve.log").wait_ready()
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def executor_server(served_models, tmp_path_factory):
    """The same with the other placement: two HTTP workers and one model executor (on JAX's CPU
    backend here), as on a GPU machine; a smaller largest pass keeps its compilation short."""
    from tools.servers import Server

    env = {**SMALL_LIMITS, "PLACEMENT": "executor", "WORKERS": "2", "EXECUTOR_BATCH_SIZE": "4096"}
    handle = Server(env=env, log=tmp_path_factory.mktemp("logs") / "serve-executor.log").wait_ready()
    yield handle
    handle.stop()
