"""Shared fixtures. The BentoML store of the whole test session lives in a temporary folder."""

from __future__ import annotations

import gzip
import os
import tempfile
from pathlib import Path

# Before anything imports bentoml or keras: a private model store, quiet TensorFlow.
os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="bentoml_home_tests_")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def synthetic_images(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Learnable 28x28 uint8 images: a bright 6x6 block whose position encodes the label."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 40, size=(len(labels), 28, 28)).astype(np.uint8)
    for i, label in enumerate(labels):
        row, col = divmod(int(label), 5)
        images[i, 2 + row * 5 : 8 + row * 5, 2 + col * 5 : 8 + col * 5] = 230
    return images


def write_mnist_npz(path: Path, n_train: int = 300, n_test: int = 100, seed: int = 0, **override) -> Path:
    rng = np.random.default_rng(seed)
    y_train = rng.integers(0, 10, n_train).astype(np.uint8)
    y_test = rng.integers(0, 10, n_test).astype(np.uint8)
    arrays = dict(
        x_train=synthetic_images(y_train, seed),
        y_train=y_train,
        x_test=synthetic_images(y_test, seed + 1),
        y_test=y_test,
    )
    arrays.update(override)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez_compressed(path, **arrays)
    return path


ASL_KAGGLE_LABELS = [i for i in range(25) if i != 9]


def asl_csv_text(n: int = 120, seed: int = 0, header: str | None = None, rows: list[str] | None = None) -> str:
    rng = np.random.default_rng(seed)
    labels = np.array(ASL_KAGGLE_LABELS)[rng.integers(0, 24, n)]
    pixels = synthetic_images(np.array([ASL_KAGGLE_LABELS.index(l) for l in labels]), seed).reshape(n, 784)
    head = header if header is not None else "label," + ",".join(f"pixel{i}" for i in range(1, 785))
    body = rows if rows is not None else [
        f"{label}," + ",".join(map(str, row)) for label, row in zip(labels, pixels)
    ]
    return "\n".join([head, *body]) + "\n"


def write_asl_csvs(directory: Path, gz: bool = False, n_train: int = 240, n_test: int = 96) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, n, seed in (("sign_mnist_train.csv", n_train, 0), ("sign_mnist_test.csv", n_test, 1)):
        text = asl_csv_text(n, seed)
        if gz:
            (directory / f"{name}.gz").write_bytes(gzip.compress(text.encode()))
        else:
            (directory / name).write_text(text)
    return directory


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
    from training.train import TrainConfig, run

    real = os.environ.get("DATA_DIR")
    if real and (Path(real) / "mnist.npz").is_file():
        data_dir, limits = Path(real), {"mnist": 12000, "asl": 8000}
    else:
        data_dir = tmp_path_factory.mktemp("synthetic_data")
        write_mnist_npz(data_dir / "mnist.npz", n_train=600, n_test=100)
        write_asl_csvs(data_dir, n_train=600, n_test=100)
        limits = {"mnist": None, "asl": None}
    reports = tmp_path_factory.mktemp("reports")
    tags = {}
    for dataset in ("mnist", "asl"):
        config = TrainConfig.from_preset(dataset, data_dir=str(data_dir), epochs=3, limit=limits[dataset],
                                         augment="off", patience=0, reports_dir=str(reports), verbose=0)
        tags[dataset] = run(config).model_tag
    return tags


@pytest.fixture(scope="session")
def server(served_models, tmp_path_factory):
    """`bentoml serve` of the source tree with small limits, so the limit tests stay cheap."""
    from servers import Server

    env = {"MAX_BODY_BYTES": str(3 * 1024 * 1024), "MAX_IMAGE_PIXELS": str(4_000_000)}
    handle = Server(env=env, log=tmp_path_factory.mktemp("logs") / "serve.log").wait_ready()
    yield handle
    handle.stop()
