"""The data sets of the catalog's families, loaded from local files (or downloaded) and checked.

A data directory (``--data-dir``, else ``$DATA_DIR``) holding a family's files always wins.
Without one, MNIST comes from ``keras.datasets.mnist.load_data()`` and Sign Language MNIST from
Kaggle through ``kagglehub`` (a public data set: no login), each cached where its library caches.

Every loader returns raw ``uint8`` pixels and integer class indices; turning pixels into the
model's input happens in :mod:`preprocessing`, the one place that served images go through too.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from catalog import Family, family

MNIST = family("mnist")
ASL = family("asl")
MNIST_FILE = MNIST.data_files[0]
ASL_TRAIN_FILE, ASL_TEST_FILE = ASL.data_files

# Sign Language MNIST labels letters by alphabet position: A = 0 ... Y = 24, without J (9).
ASL_LABELS = tuple(ord(letter) - ord("A") for letter in ASL.class_names)
CSV_HEADER = ["label"] + [f"pixel{i}" for i in range(1, 785)]


class DataError(Exception):
    """A data file is missing or malformed; the message names the file and the problem."""


@dataclass
class RawData:
    """Raw pixels (n, 28, 28) uint8 and class indices for the official train and test splits."""

    family: Family
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    sources: dict[str, str] = field(default_factory=dict)  # file name -> sha256


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path | None:
    """The data directory: the explicit one, else ``$DATA_DIR``, else None."""
    chosen = data_dir if data_dir is not None else os.environ.get("DATA_DIR") or None
    return Path(chosen).expanduser() if chosen is not None else None


def find_file(directory: Path | None, name: str) -> Path | None:
    """``name`` (plain) or ``name + '.gz'`` in ``directory``, whichever exists."""
    if directory is None:
        return None
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def data_files(fam: Family, data_dir: str | os.PathLike | None) -> list[Path]:
    """The family's data files in ``data_dir`` (each plain or gzipped); empty unless all are there."""
    directory = resolve_data_dir(data_dir)
    found = [find_file(directory, name) for name in fam.data_files]
    return [] if None in found else found


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load(route: str, data_dir: str | os.PathLike | None = None) -> RawData:
    """Load the data set of family ``route`` from ``data_dir`` (or ``$DATA_DIR``) with its catalog loader."""
    module, _, function = family(route).loader.partition(":")
    return getattr(importlib.import_module(module), function)(data_dir)


# --- MNIST -------------------------------------------------------------------------------------


def load_mnist(data_dir: str | os.PathLike | None = None) -> RawData:
    """MNIST from ``<data_dir>/mnist.npz`` when present, else ``keras.datasets.mnist.load_data()``."""
    directory = resolve_data_dir(data_dir)
    path = directory / MNIST_FILE if directory is not None else None
    if path is not None and path.is_file():
        return read_mnist_npz(path)
    import keras  # the download path; imported late because it is slow and rarely needed

    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    except Exception as exc:  # no network, proxy, corrupt cache...
        where = f"{path} does not exist and " if path is not None else ""
        raise DataError(
            f"MNIST not found: {where}the download through keras.datasets.mnist failed ({exc}). "
            f"Put {MNIST_FILE} (keras layout) in a directory and pass --data-dir or set DATA_DIR."
        ) from exc
    return _checked(MNIST, "keras.datasets.mnist", x_train, y_train, x_test, y_test, {})


def read_mnist_npz(path: str | os.PathLike) -> RawData:
    """Read and check an ``mnist.npz`` in the keras layout."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = {"x_train", "y_train", "x_test", "y_test"} - set(npz.files)
            if missing:
                raise DataError(
                    f"{path}: missing arrays {sorted(missing)}; expected the keras layout "
                    "x_train, y_train, x_test, y_test"
                )
            arrays = {k: npz[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from exc
    return _checked(MNIST, str(path), **arrays, sources={path.name: sha256_of(path)})


def _checked(fam, origin, x_train, y_train, x_test, y_test, sources) -> RawData:
    num_classes = len(fam.class_names)
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if x.ndim != 3 or x.shape[1:] != (28, 28):
            raise DataError(f"{origin}: x_{split} has shape {x.shape}; expected (n, 28, 28)")
        if len(x) == 0:
            raise DataError(f"{origin}: x_{split} is empty")
        if y.shape != (len(x),):
            raise DataError(f"{origin}: y_{split} has shape {y.shape}; expected ({len(x)},)")
        if x.dtype != np.uint8 and (x.min() < 0 or x.max() > 255):
            raise DataError(f"{origin}: x_{split} has pixels outside 0-255")
        if not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{origin}: y_{split} holds {y.dtype}, expected integer labels")
        bad = (y < 0) | (y >= num_classes)
        if bad.any():
            raise DataError(
                f"{origin}: y_{split} has unknown label {y[bad][0]} at index {int(np.argmax(bad))}; "
                f"expected 0-{num_classes - 1}"
            )
    return RawData(
        fam,
        x_train.astype(np.uint8),
        y_train.astype(np.int64),
        x_test.astype(np.uint8),
        y_test.astype(np.int64),
        sources,
    )


# --- Sign Language MNIST -----------------------------------------------------------------------


def load_asl(data_dir: str | os.PathLike | None = None) -> RawData:
    """Sign Language MNIST from the Kaggle CSVs (plain or .gz) in ``data_dir`` (or ``$DATA_DIR``);
    without them, from the Kaggle download (:func:`download_kaggle`, cached by kagglehub)."""
    directory = resolve_data_dir(data_dir)
    found = {stem: find_file(directory, stem) for stem in ASL.data_files}
    missing = [stem for stem, path in found.items() if path is None]
    if missing:
        where = (f"not in {directory.resolve()}" if directory is not None
                 else "no data directory given (--data-dir, DATA_DIR)")
        try:
            root = download_kaggle(ASL.kaggle_dataset)
        except Exception as exc:  # offline, refused, a login asked for, kagglehub missing...
            raise DataError(
                f"Sign Language MNIST: {', '.join(missing)} {where}, and the download of {ASL.kaggle_dataset} "
                f"from Kaggle failed ({_briefly(exc)}). Download the CSVs from {ASL.source} and set DATA_DIR "
                "(or --data-dir) to their folder; if Kaggle asks for a login, set KAGGLE_USERNAME and KAGGLE_KEY."
            ) from exc
        found = {stem: find_in_download(root, stem) for stem in ASL.data_files}
        absent = [stem for stem, path in found.items() if path is None]
        if absent:
            raise DataError(f"the Kaggle download of {ASL.kaggle_dataset} in {root} has no {', '.join(absent)}; "
                            f"download the CSVs from {ASL.source} and set DATA_DIR to their folder.")
    x_train, y_train = read_asl_csv(found[ASL_TRAIN_FILE])
    x_test, y_test = read_asl_csv(found[ASL_TEST_FILE])
    sources = {p.name: sha256_of(p) for p in found.values()}
    return RawData(ASL, x_train, y_train, x_test, y_test, sources)


def download_kaggle(handle: str) -> Path:
    """Download (or find in kagglehub's cache) the Kaggle data set ``handle``; returns its folder.

    kagglehub caches under ``$KAGGLEHUB_CACHE`` (default ``~/.cache/kagglehub``), in
    ``datasets/<owner>/<name>/versions/<n>/``, the data set's files as Kaggle lists them: for
    Sign Language MNIST ``sign_mnist_train/sign_mnist_train.csv``,
    ``sign_mnist_test/sign_mnist_test.csv`` and the ``amer_sign*.png`` charts at the top.
    """
    import kagglehub  # imported late: only a run without local files needs it

    print(f"downloading {handle} from Kaggle (kagglehub; cached after the first time) ...", flush=True)
    return Path(kagglehub.dataset_download(handle))


def find_in_download(root: Path, name: str) -> Path | None:
    """``name`` (or ``name.gz``) anywhere under ``root``, the shallowest first."""
    matches = [p for pattern in (name, f"{name}.gz") for p in root.rglob(pattern) if p.is_file()]
    return min(matches, key=lambda p: (len(p.relative_to(root).parts), str(p))) if matches else None


def _briefly(exc: Exception) -> str:
    """An exception as one short line: its type and the start of its first line."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = text if len(text) <= 160 else text[:157] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def read_asl_csv(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read one Sign Language MNIST CSV: pixels (n, 28, 28) uint8 and class indices 0-23."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
        text = raw.decode("ascii")
    except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the file ({exc})") from exc
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise DataError(f"{path}: the file is empty; expected a header and one row per image")
    header = [h.strip() for h in lines[0].split(",")]
    if header != CSV_HEADER:
        raise DataError(
            f"{path}: wrong header: expected 'label,pixel1,...,pixel784' (785 columns), "
            f"found {len(header)} columns starting {','.join(header[:3])!r}"
        )
    if len(lines) < 2:
        raise DataError(f"{path}: the file has a header but no rows")
    try:
        table = np.loadtxt(io.StringIO(text), delimiter=",", skiprows=1, dtype=np.int64, ndmin=2)
    except ValueError:
        raise DataError(f"{path}: {_first_bad_row(lines)}") from None
    labels, pixels = table[:, 0], table[:, 1:]
    bad_pixels = (pixels < 0) | (pixels > 255)
    if bad_pixels.any():
        row, col = np.argwhere(bad_pixels)[0]
        raise DataError(
            f"{path}: row {row + 1} has pixel{col + 1} = {pixels[row, col]}, outside 0-255"
        )
    lookup = np.full(256, -1, dtype=np.int64)
    lookup[list(ASL_LABELS)] = np.arange(len(ASL_LABELS))
    in_range = (labels >= 0) & (labels < 256)
    indices = np.where(in_range, lookup[np.clip(labels, 0, 255)], -1)
    if (indices < 0).any():
        row = int(np.argmax(indices < 0))
        raise DataError(
            f"{path}: row {row + 1} has unknown label {labels[row]}; expected 0-24 without 9 (J)"
        )
    return pixels.astype(np.uint8).reshape(-1, 28, 28), indices


def _first_bad_row(lines: list[str]) -> str:
    """Describe the first data row numpy could not parse (1-based data-row number)."""
    for number, line in enumerate(lines[1:], start=1):
        if not line.strip():
            continue
        cells = line.split(",")
        if len(cells) != 785:
            return f"row {number} has {len(cells)} columns; expected 785 (label + 784 pixels)"
        for column, cell in enumerate(cells):
            try:
                int(cell)
            except ValueError:
                name = CSV_HEADER[column]
                return f"row {number} has a value that is not an integer in column {name}: {cell!r}"
    return "the rows could not be read as integers"


# --- splits ------------------------------------------------------------------------------------


@dataclass
class Splits:
    """Model-ready arrays: flat 784-vectors in 0-1 and one-hot targets."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    val_groups: np.ndarray | None = None  # photograph of each validation row, with validation_groups


def near_duplicate_groups(images: np.ndarray, similarity: float = 0.98, chunk: int = 2000) -> np.ndarray:
    """Group labels (n,) for ``images`` (n, 28, 28): images whose 14x14 shrunken, mean-removed copies
    have a cosine similarity above ``similarity`` share a group, and so does whatever they chain to.

    Sign Language MNIST's training CSV holds some twenty augmented copies of each photograph (filters,
    brightness, a few degrees of rotation: cosine 0.998-0.99998 to their nearest neighbour), so a
    random hold-out is all but a copy of the training rows; its test split is 0.6-0.9 from its nearest
    training image. Whole groups held out look like new photographs."""
    n = len(images)
    small = images.reshape(n, 14, 2, 14, 2).astype(np.float32).mean(axis=(2, 4)).reshape(n, -1)
    small -= small.mean(axis=1, keepdims=True)
    small /= np.linalg.norm(small, axis=1, keepdims=True) + 1e-6
    first, second = [], []
    for start in range(0, n, chunk):
        rows, cols = np.nonzero(small[start:start + chunk] @ small.T > similarity)
        first.append(rows + start)
        second.append(cols)
    a, b = np.concatenate(first), np.concatenate(second)
    labels = np.arange(n)
    while True:  # every image takes the smallest label among its neighbours until nothing changes
        updated = labels.copy()
        np.minimum.at(updated, a, labels[b])
        updated = updated[updated]  # jump along chains
        if np.array_equal(updated, labels):
            return np.unique(labels, return_inverse=True)[1]
        labels = updated


def prepare(
    data: RawData,
    *,
    validation_split: float = 0.1,
    validation_from_test: bool = False,
    validation_groups: bool = False,
    limit: int | None = None,
    seed: int = 0,
) -> Splits:
    """Flatten, scale to 0-1, one-hot; hold out a stratified validation split from training data.

    ``validation_from_test`` reproduces the course, which validated on the test split.
    ``validation_groups`` holds out whole groups of near-duplicates (:func:`near_duplicate_groups`)
    instead of random rows: a validation split that looks like new photographs (``val_groups`` says
    which photograph each validation row is).
    ``limit`` keeps a random subset of that many training examples (quick runs, tests).
    """
    from preprocessing import pixels_to_model_input

    num_classes = len(data.family.class_names)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data.x_train))
    if limit is not None:
        order = order[:limit]
    if validation_from_test:
        train_idx, val_idx = order, None
    else:
        if not 0 < validation_split < 1:
            raise ValueError("validation_split must be between 0 and 1")
        val_mask = np.zeros(len(order), dtype=bool)
        labels = data.y_train[order]
        groups = near_duplicate_groups(data.x_train[order]) if validation_groups else np.arange(len(order))
        for cls in np.unique(labels):  # stratified: every class keeps its share in both parts
            members = np.flatnonzero(labels == cls)
            wanted = int(round(len(members) * validation_split))
            if not validation_groups:
                val_mask[members[:wanted]] = True
                continue
            for group in dict.fromkeys(groups[members]):  # the class' groups in random order
                if val_mask[members].sum() >= wanted:
                    break
                val_mask[groups == group] = True
        train_idx, val_idx = order[~val_mask], order[val_mask]
    x = pixels_to_model_input
    eye = np.eye(num_classes, dtype=np.float32)
    x_test, y_test = x(data.x_test), eye[data.y_test]
    if val_idx is None:
        x_val, y_val = x_test, y_test
    else:
        x_val, y_val = x(data.x_train[val_idx]), eye[data.y_train[val_idx]]
    val_groups = None
    if validation_groups and val_idx is not None:
        val_groups = np.unique(groups[val_mask], return_inverse=True)[1]
    return Splits(
        x(data.x_train[train_idx]), eye[data.y_train[train_idx]], x_val, y_val, x_test, y_test, val_groups
    )
