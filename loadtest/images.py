"""The uploads the load generator sends: real test-split images, or synthetic ones.

An :class:`ImageSet` holds, per route (``mnist``, ``asl``), a few hundred distinct uploads in
the formats users send: the plain 28x28 test image as PNG or JPEG, and a fraction "dressed as a
photographed upload" by :func:`tools.uploads.dress_as_upload` (a 150..600 px photo of
paper or of a hand, PNG or JPEG). Each upload carries its true class name, so the load test can
also count how many answers are right.

The source is pluggable (``LOADTEST_IMAGES`` or :func:`load_images`'s ``source``):

* ``data``: the test splits of every catalog family in ``$DATA_DIR``;
* ``synthetic``: learnable synthetic 28x28 arrays (no data needed: tests, CI);
* ``auto`` (default): ``data`` when ``$DATA_DIR`` has both files, else ``synthetic``;
* ``package.module:function``: any callable returning an :class:`ImageSet`.

Dressing an image takes ~50 ms, so a built set is cached (pickle, keyed by every parameter and
the data files' size and mtime) under ``$LOADTEST_CACHE`` (default: ``$TMPDIR/loadtest-images``).
"""

from __future__ import annotations

import hashlib
import importlib
import os
import pickle
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from catalog import FAMILIES, family
from tools.synthetic import synthetic_pixels
from tools.uploads import dress_as_upload, encode_plain

CLASSES = {f.route: f.class_names for f in FAMILIES}
CACHE_VERSION = 1


@dataclass(frozen=True)
class Upload:
    """One file to upload: its bytes, name, MIME type, true class name and how it was made."""

    route: str
    filename: str
    content_type: str
    data: bytes
    label: str | None
    kind: str  # png | jpeg | dressed-png | dressed-jpeg


@dataclass
class ImageSet:
    """Uploads per route; ``source`` says where they came from (for the reports)."""

    uploads: dict[str, list[Upload]]
    source: str
    details: dict = field(default_factory=dict)

    def describe(self) -> str:
        parts = []
        for route, items in self.uploads.items():
            kinds: dict[str, int] = {}
            for item in items:
                kinds[item.kind] = kinds.get(item.kind, 0) + 1
            size = np.mean([len(item.data) for item in items]) / 1024 if items else 0.0
            mix = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
            parts.append(f"{route}: {len(items)} images ({mix}; mean {size:.1f} KiB)")
        return f"{self.source}: " + "; ".join(parts)


def _magic_type(data: bytes) -> tuple[str, str]:
    if data.startswith(b"\x89PNG"):
        return "png", "image/png"
    if data.startswith(b"\xff\xd8"):
        return "jpeg", "image/jpeg"
    return "bin", "application/octet-stream"


def build(route: str, pixels: np.ndarray, labels: list[str | None], *, dressed: float, seed: int) -> list[Upload]:
    """Encode 28x28 uint8 images for ``route``: a ``dressed`` fraction as photographed uploads
    (PNG or JPEG at random), the rest plain, alternately PNG and JPEG."""
    rng = np.random.default_rng(seed)
    n = len(pixels)
    n_dressed = int(round(n * dressed))
    chosen = set(rng.choice(n, size=n_dressed, replace=False).tolist()) if n_dressed else set()
    uploads = []
    for i, (image, label) in enumerate(zip(pixels, labels)):
        if i in chosen:
            data = dress_as_upload(image, family(route).preprocessing, rng, fmt="random")
            ext, mime = _magic_type(data)
            kind = f"dressed-{ext}"
        else:
            ext = "png" if i % 2 == 0 else "jpeg"
            data = encode_plain(image, ext.upper())
            mime, kind = f"image/{ext}", ext
        name = f"{route}-{i:04d}-{label if label is not None else 'x'}.{'jpg' if ext == 'jpeg' else ext}"
        uploads.append(Upload(route, name, mime, data, label, kind))
    return uploads


def has_data(data_dir: str | os.PathLike | None) -> bool:
    """Whether ``data_dir`` holds every family's data files."""
    from training.datasets import data_files

    return bool(data_dir) and all(data_files(f, data_dir) for f in FAMILIES)


def _cache_file(key: dict) -> Path:
    digest = hashlib.sha256(repr(sorted(key.items())).encode()).hexdigest()[:16]
    folder = Path(os.environ.get("LOADTEST_CACHE") or Path(tempfile.gettempdir()) / "loadtest-images")
    return folder / f"images-{digest}.pkl"


def _cached(key: dict, make):
    path = _cache_file(key)
    try:
        with open(path, "rb") as fh:
            return pickle.load(fh)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError):
        pass
    value = make()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            pickle.dump(value, fh)
        os.replace(tmp, path)
    except OSError:
        pass
    return value


def from_data_dir(data_dir: str | os.PathLike, per_model: int = 300, dressed: float = 0.2,
                  seed: int = 0) -> ImageSet:
    """``per_model`` distinct test-split images per model from ``data_dir``."""
    from training.datasets import data_files, load

    data_dir = Path(data_dir)
    stats = [(p.name, p.stat().st_size, int(p.stat().st_mtime)) for f in FAMILIES for p in data_files(f, data_dir)]
    key = dict(v=CACHE_VERSION, source="data", dir=str(data_dir.resolve()), stats=tuple(stats),
               n=per_model, dressed=dressed, seed=seed)

    def make() -> ImageSet:
        uploads = {}
        for i, f in enumerate(FAMILIES):  # the first per_model images of each test split
            raw = load(f.route, data_dir)
            labels = [f.class_names[int(y)] for y in raw.y_test[:per_model]]
            uploads[f.route] = build(f.route, raw.x_test[:per_model], labels, dressed=dressed, seed=seed + i)
        return ImageSet(uploads, f"test splits of {data_dir}", dict(per_model=per_model, dressed=dressed))

    return _cached(key, make)


def synthetic(per_model: int = 100, dressed: float = 0.2, seed: int = 0) -> ImageSet:
    """Synthetic images (no data set needed), encoded and dressed like the real ones."""
    key = dict(v=CACHE_VERSION, source="synthetic", n=per_model, dressed=dressed, seed=seed)

    def make() -> ImageSet:
        uploads = {route: build(route, *synthetic_pixels(route, per_model, seed + i), dressed=dressed,
                                seed=seed + i)
                   for i, route in enumerate(CLASSES)}
        return ImageSet(uploads, "synthetic", dict(per_model=per_model, dressed=dressed))

    return _cached(key, make)


def load_images(source: str | None = None, *, per_model: int | None = None, dressed: float | None = None,
                seed: int = 0) -> ImageSet:
    """The image set named by ``source`` (default ``$LOADTEST_IMAGES`` or ``auto``); see the module doc.

    ``per_model`` defaults to ``$LOADTEST_IMAGES_PER_MODEL`` (300 for real data, 100 synthetic),
    ``dressed`` to ``$LOADTEST_DRESSED`` (0.2).
    """
    source = source or os.environ.get("LOADTEST_IMAGES") or "auto"
    env_n = os.environ.get("LOADTEST_IMAGES_PER_MODEL")
    dressed = float(os.environ.get("LOADTEST_DRESSED", "0.2")) if dressed is None else dressed
    data_dir = os.environ.get("DATA_DIR")
    if source == "auto":
        source = "data" if has_data(data_dir) else "synthetic"
    if source == "data":
        if not has_data(data_dir):
            wanted = ", ".join(name for f in FAMILIES for name in f.data_files)
            raise SystemExit(f"LOADTEST_IMAGES=data needs DATA_DIR with {wanted} (DATA_DIR={data_dir!r})")
        return from_data_dir(data_dir, per_model or int(env_n or 300), dressed, seed)
    if source == "synthetic":
        return synthetic(per_model or int(env_n or 100), dressed, seed)
    if ":" in source:
        module, _, name = source.partition(":")
        made = getattr(importlib.import_module(module), name)()
        if not isinstance(made, ImageSet):
            raise TypeError(f"{source} returned {type(made).__name__}, expected loadtest.images.ImageSet")
        return made
    raise SystemExit(f"unknown image source {source!r}: use data, synthetic, auto or package.module:function")
