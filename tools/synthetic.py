"""Learnable synthetic stand-ins for the data sets, written in their real file layouts."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from catalog import family

ASL_KAGGLE_LABELS = [i for i in range(25) if i != 9]  # Sign Language MNIST's labels: no J (9), no Z (25)


def synthetic_images(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Learnable 28x28 uint8 images: a bright 6x6 block whose position encodes the label, on noise."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 40, size=(len(labels), 28, 28)).astype(np.uint8)
    for i, label in enumerate(labels):
        row, col = divmod(int(label), 5)
        images[i, 2 + row * 5 : 8 + row * 5, 2 + col * 5 : 8 + col * 5] = 230
    return images


def synthetic_pixels(route: str, n: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """``n`` synthetic images of family ``route`` and their class names."""
    classes = family(route).class_names
    indices = np.random.default_rng(seed).integers(0, len(classes), n)
    return synthetic_images(indices, seed), [classes[int(i)] for i in indices]


def write_mnist_npz(path: Path, n_train: int = 300, n_test: int = 100, seed: int = 0, **override) -> Path:
    """A small ``mnist.npz`` in the keras layout; ``override`` replaces (or, as None, drops) arrays."""
    rng = np.random.default_rng(seed)
    y_train = rng.integers(0, 10, n_train).astype(np.uint8)
    y_test = rng.integers(0, 10, n_test).astype(np.uint8)
    arrays = dict(x_train=synthetic_images(y_train, seed), y_train=y_train,
                  x_test=synthetic_images(y_test, seed + 1), y_test=y_test)
    arrays.update(override)
    np.savez_compressed(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def asl_csv_text(n: int = 120, seed: int = 0, header: str | None = None, rows: list[str] | None = None) -> str:
    """A Sign Language MNIST CSV (Kaggle layout) of ``n`` synthetic rows, or of the given ``rows``."""
    rng = np.random.default_rng(seed)
    labels = np.array(ASL_KAGGLE_LABELS)[rng.integers(0, 24, n)]
    pixels = synthetic_images(np.array([ASL_KAGGLE_LABELS.index(l) for l in labels]), seed).reshape(n, 784)
    head = header if header is not None else "label," + ",".join(f"pixel{i}" for i in range(1, 785))
    body = rows if rows is not None else [f"{label}," + ",".join(map(str, row)) for label, row in zip(labels, pixels)]
    return "\n".join([head, *body]) + "\n"


def write_asl_csvs(directory: Path, gz: bool = False, n_train: int = 240, n_test: int = 96) -> Path:
    """``sign_mnist_train.csv`` and ``sign_mnist_test.csv`` (plain or ``.gz``) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    train_file, test_file = family("asl").data_files
    for name, n, seed in ((train_file, n_train, 0), (test_file, n_test, 1)):
        text = asl_csv_text(n, seed)
        if gz:
            (directory / f"{name}.gz").write_bytes(gzip.compress(text.encode()))
        else:
            (directory / name).write_text(text)
    return directory


def write_data_dir(directory: Path, n_train: int = 600, n_test: int = 100) -> Path:
    """A data directory with every family's files, synthetic."""
    directory.mkdir(parents=True, exist_ok=True)
    write_mnist_npz(directory / family("mnist").data_files[0], n_train=n_train, n_test=n_test)
    write_asl_csvs(directory, n_train=n_train, n_test=n_test)
    return directory
