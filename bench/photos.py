"""Hard photos: does the preprocessing stem find the ink (the hand) under real paper and light, and
say "nothing found" on blank pages? Accuracy and flagged share on four sets per model, and the
preprocessing CPU time per upload, before (``--baseline DIR``) and after.

``python -m bench.photos [--data-dir DIR] [--n 1000] [--blank 500] [--baseline DIR]``
(``make bench-photos``). Sets: raw (the test split as plain 28x28 PNG files through the stem),
even (evenly lit uploads, ``tools.uploads``), hard (``tools.photos``: digits photographed on paper
with uneven light, shadows, paper lines, blur, rotation, JPEG; signs under uneven light) and blank
(the same photos with nothing on them). ``--split validation`` runs on the training split's
held-out part instead (the one to tune on); the report is on the test split.

This checkout's side ("after") is the family's :class:`inference.Classifier`: its decode step,
then its answers. The baseline is another checkout's ``preprocessing`` package (imported by path,
under another name; it must import its own modules relatively), run through the stored model, and
answers "found" when its vector is not all zeros. CPU time is process time around decode +
preprocessing, measured alternately on the same uploads, so both sides see the same machine load.
Writes ``reports/bench/photos.md`` and ``reports/bench/photos.png``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from catalog import FAMILIES, MODEL_FILE, Family, ModelMetadata
from inference import Classifier
from preprocessing import ASL_SIGN, MNIST_DIGIT
from tools import photos
from tools.uploads import dress_as_upload, encode_plain
from training.lit import accuracy as answers_accuracy

SETS = ("raw", "even", "hard", "blank")
SET_TITLES = {
    "raw": "raw test split (plain 28x28 PNG)",
    "even": "evenly lit uploads",
    "hard": "hard photos",
    "blank": "blank pages / frames (share flagged)",
}
TARGETS = {"hard": 0.97, "blank": 0.95}  # MNIST targets: hard-photo accuracy, blank pages flagged


@dataclass
class Side:
    """One preprocessing's results on one set: found flags, model inputs, CPU seconds."""

    found: list[bool] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)
    cpu: float = 0.0
    prepared: list = field(default_factory=list)  # this checkout's side: the Classifier's Prepared uploads


def load_baseline(directory: Path):
    """The ``preprocessing`` package of another checkout, imported from there.

    Its modules import each other by absolute name (``from preprocessing.digits import ...``), so
    while it loads, ``preprocessing`` must name the other checkout's package; this checkout's is
    put back afterwards, and the baseline's functions keep what they imported.
    """
    init = directory / "preprocessing" / "__init__.py"
    if not init.is_file():
        raise SystemExit(f"--baseline {directory}: no preprocessing/__init__.py there")
    def take_package() -> dict:
        return {name: sys.modules.pop(name) for name in list(sys.modules)
                if name == "preprocessing" or name.startswith("preprocessing.")}

    ours = take_package()
    root = str(directory.resolve())
    sys.path.insert(0, root)
    try:
        module = importlib.import_module("preprocessing")
    finally:
        sys.path.remove(root)
        take_package()  # the baseline's modules: its functions keep them
        sys.modules.update(ours)
    if Path(module.__file__).resolve() != init.resolve():
        raise SystemExit(f"--baseline {directory}: its preprocessing package did not load from there")
    return module


def held_out_indices(y_train: np.ndarray, validation_split: float, seed: int, limit: int | None) -> np.ndarray:
    """The training split's validation part exactly as ``training.datasets.prepare`` held it out."""
    order = np.random.default_rng(seed).permutation(len(y_train))
    if limit is not None:
        order = order[:limit]
    val = np.zeros(len(order), dtype=bool)
    labels = y_train[order]
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        val[members[: int(round(len(members) * validation_split))]] = True
    return order[val]


def make_sets(preprocessing: str, x: np.ndarray, n_blank: int, seed: int) -> dict[str, list[bytes]]:
    """The uploads of every set (raw, even, hard: one per image of ``x``; blank: ``n_blank``)."""
    rng = np.random.default_rng(seed)
    digit = preprocessing == MNIST_DIGIT
    hard = photos.digit_photo if digit else photos.sign_photo
    blank = photos.blank_page if digit else photos.blank_frame
    return {
        "raw": [encode_plain(img) for img in x],
        "even": [dress_as_upload(img, preprocessing, rng, fmt="random") for img in x],
        "hard": [hard(img, rng) for img in x],
        "blank": [blank(rng) for _ in range(n_blank)],
    }


def run_stems(uploads: list[bytes], classifier: Classifier, baseline) -> tuple[Side, Side | None]:
    """Decode + preprocess every upload with the Classifier's decode step and the baseline's, alternately."""
    preprocessing = classifier.preprocessing
    after, before = Side(), (Side() if baseline is not None else None)
    for data in uploads[:3]:  # first calls pay one-off costs (imports, allocator, OpenCV's setup)
        classifier.prepare(data)
        if baseline is not None:
            baseline.image_to_vector(data, preprocessing)
    for i, data in enumerate(uploads):
        order = ("after", "before") if i % 2 == 0 else ("before", "after")
        for which in order:
            if which == "after":
                start = time.process_time()
                prepared = classifier.prepare(data)
                after.cpu += time.process_time() - start
                after.prepared.append(prepared)
                after.vectors.append(prepared.vector)
                after.found.append(prepared.found)
            elif before is not None:
                start = time.process_time()
                vector = baseline.image_to_vector(data, preprocessing)
                before.cpu += time.process_time() - start
                before.vectors.append(vector)
                before.found.append(bool(np.any(vector)))
    return after, before


def evaluate(fam: Family, x: np.ndarray, y: np.ndarray, args, baseline) -> dict:
    """Every set of one family: accuracy (right and found), flagged share, CPU ms per upload."""
    import bentoml
    from execution.forward import load_model  # registers the project's own layers

    entry = bentoml.models.get(fam.model_tag)
    model = load_model(entry.path_of(MODEL_FILE))
    classifier = Classifier(str(entry.tag), ModelMetadata.from_store(entry.info.metadata),
                            lambda rows: model.predict(rows, batch_size=1024, verbose=0))
    preprocessing = classifier.preprocessing
    print(f"{fam.store_name}: making {len(x)} uploads per set and {args.blank} blanks ...", flush=True)
    sets = make_sets(preprocessing, x, args.blank, args.seed)
    result = {"model": str(entry.tag), "preprocessing": preprocessing, "n": len(x), "sets": {}, "examples": {}}
    for name, uploads in sets.items():
        print(f"  {name}: {len(uploads)} uploads", flush=True)
        after, before = run_stems(uploads, classifier, baseline)
        row = {"n": len(uploads), "mib": sum(map(len, uploads)) / 2**20}
        for label, side in (("after", after), ("before", before)):
            if side is None:
                continue
            found = np.array(side.found)
            row[f"flagged_{label}"] = float(np.mean(~found))
            row[f"ms_{label}"] = 1000 * side.cpu / len(uploads)
            if name != "blank" and side is after:
                answers = classifier.predict_prepared(side.prepared)
                row[f"accuracy_{label}"] = answers_accuracy(answers, y)
                guesses = [a["label"] for a in answers]  # None: nothing found
            elif name != "blank":
                predicted = np.asarray(model.predict(np.stack(side.vectors), batch_size=1024, verbose=0)).argmax(1)
                row[f"accuracy_{label}"] = float(np.mean((predicted == y) & found))
                guesses = [fam.class_names[i] for i in predicted]
            if name == "hard":
                result["examples"][label] = (np.stack(side.vectors[:12]), guesses[:12])
            if name == "blank":
                result["examples"][f"blank_{label}"] = np.stack(side.vectors[:4])
        result["sets"][name] = row
        if name in ("hard", "blank"):
            result["examples"][f"{name}_uploads"] = uploads[:12]
    if preprocessing == ASL_SIGN:
        result["flat_field"] = flat_field_check(classifier, sets, y)
    result["labels"] = y[:12]
    result["class_names"] = list(fam.class_names)
    return result


FLAT_FIELDS = ((7.0, 0.5), (10.0, 0.5), (10.0, 1.0))  # (blur sigma in px of 28, strength)


def flat_field(vectors: np.ndarray, sigma: float, strength: float) -> np.ndarray:
    """Signs evened out: each 28x28 input divided by its blurred copy to the power ``strength``."""
    import cv2

    out = []
    for v in vectors.reshape(-1, 28, 28):
        background = np.maximum(cv2.GaussianBlur(v, (0, 0), sigma, borderType=cv2.BORDER_REFLECT), 1e-3)
        out.append(np.clip(v * (background.mean() / background) ** strength, 0.0, 1.0))
    return np.stack(out).reshape(-1, 784).astype(np.float32)


def flat_field_check(classifier: Classifier, sets: dict[str, list[bytes]], y: np.ndarray) -> list[dict]:
    """Would evening out the light of sign inputs pay? Accuracy (top class) on the raw split and the
    lit photos with and without a flat field applied to the Classifier's inputs (the stem does not use
    one: it must not cost raw accuracy)."""
    base = {name: np.stack([classifier.prepare(d).vector for d in sets[name]]) for name in ("raw", "hard")}

    def accuracy(vectors):
        return float(np.mean(classifier.probabilities(vectors).argmax(1) == y))

    rows = [{"variant": "none (the stem)", **{k: accuracy(v) for k, v in base.items()}}]
    for sigma, strength in FLAT_FIELDS:
        rows.append({"variant": f"flat field, blur sigma {sigma:g} px, strength {strength:g}",
                     **{k: accuracy(flat_field(v, sigma, strength)) for k, v in base.items()}})
    return rows


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v:.2%}"


def report(results: list[dict], args, has_baseline: bool) -> str:
    lines = [
        "# Hard photos: ink extraction and 'nothing found'",
        "",
        f"Command: `python -m bench.photos --n {args.n} --blank {args.blank} --seed {args.seed}"
        + (f" --baseline {args.baseline_label}" if has_baseline else "")
        + (f" --split {args.split}" if args.split != "test" else "")
        + "` (`make bench-photos`). "
        f"Images from the {args.split} split. Accuracy counts an upload right only when the stem found "
        "something and the model's top class is the label; flagged = the stem said nothing was found "
        "(`Prepared.found` false; the baseline: an all-zero vector). CPU = process time of decode + "
        "preprocessing per upload, both stems alternately on the same uploads.",
        "",
        "| model | set | uploads | MiB | accuracy before | accuracy after | flagged before | flagged after "
        "| CPU ms/upload before | CPU ms/upload after |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for name in SETS:
            row = r["sets"][name]
            lines.append(
                f"| {r['model']} | {SET_TITLES[name]} | {row['n']} | {row['mib']:.1f} "
                f"| {_pct(row.get('accuracy_before'))} | {_pct(row.get('accuracy_after'))} "
                f"| {_pct(row.get('flagged_before'))} | {_pct(row.get('flagged_after'))} "
                f"| {row.get('ms_before', float('nan')):.1f} | {row['ms_after']:.1f} |"
            )
    for r in results:
        if "flat_field" in r:
            lines += ["", f"Signs ({r['model']}): evening out the light of the 28x28 input, a decision "
                      "(applied to the stem's output; the stem uses none):", "",
                      "| variant | raw test split | lit hard photos |", "|---|---|---|"]
            lines += [f"| {f['variant']} | {f['raw']:.2%} | {f['hard']:.2%} |" for f in r["flat_field"]]
    lines += ["", "Targets (digits): hard photos >= 97 %, blank pages flagged >= 95 %, real images flagged well "
              "under 1 %, evenly lit uploads and the raw split no worse than before, CPU no higher than before."]
    for r in results:
        if r["preprocessing"] != MNIST_DIGIT:
            continue
        s = r["sets"]
        checks = [
            ("hard photos >= 97 %", s["hard"]["accuracy_after"] >= TARGETS["hard"]),
            ("blank pages flagged >= 95 %", s["blank"]["flagged_after"] >= TARGETS["blank"]),
            ("real images flagged < 1 %", max(s[k]["flagged_after"] for k in ("raw", "even", "hard")) < 0.01),
        ]
        if has_baseline:
            checks += [
                ("raw split no worse", s["raw"]["accuracy_after"] >= s["raw"]["accuracy_before"]),
                ("evenly lit no worse", s["even"]["accuracy_after"] >= s["even"]["accuracy_before"]),
                ("CPU per upload no higher (all sets)",
                 sum(s[k]["ms_after"] * s[k]["n"] for k in SETS) <= sum(s[k]["ms_before"] * s[k]["n"] for k in SETS)),
            ]
        lines.append("")
        lines += [f"- {r['model']}: {text}: {'met' if ok else 'MISSED'}" for text, ok in checks]
    return "\n".join(lines) + "\n"


def plot(results: list[dict], path: Path, has_baseline: bool) -> None:
    """Example hard photos with what the model saw (after, before), and accuracy bars per set."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    columns = 6
    rows_per_family = 3 if has_baseline else 2
    fig = plt.figure(figsize=(2.0 * columns + 6, 2.1 * rows_per_family * len(results)))
    grid = fig.add_gridspec(rows_per_family * len(results), columns + 3)
    for f, r in enumerate(results):
        ex = r["examples"]
        for c in range(columns):
            top = f * rows_per_family
            ax = fig.add_subplot(grid[top, c])
            photo = Image.open(io.BytesIO(ex["hard_uploads"][c]))
            photo.thumbnail((256, 256))
            ax.imshow(photo)
            ax.set_title(f"label {r['class_names'][r['labels'][c]]}", fontsize=8)
            ax.axis("off")
            for k, label in enumerate(["after"] + (["before"] if has_baseline else [])):
                vectors, guesses = ex[label]
                ax = fig.add_subplot(grid[top + 1 + k, c])
                ax.imshow(vectors[c].reshape(28, 28), cmap="gray", vmin=0, vmax=1)
                ok = guesses[c] == r["class_names"][r["labels"][c]]
                ax.set_title(f"{label}: {guesses[c] or 'nothing found'}", fontsize=8,
                             color="green" if ok else "red")
                ax.axis("off")
        ax = fig.add_subplot(grid[f * rows_per_family : (f + 1) * rows_per_family, columns + 1 :])
        names = list(SETS)
        xs = np.arange(len(names))
        value = lambda name, side: r["sets"][name].get(  # noqa: E731
            f"flagged_{side}" if name == "blank" else f"accuracy_{side}", 0.0)
        width = 0.38
        if has_baseline:
            ax.bar(xs - width / 2, [value(n, "before") for n in names], width, label="before", color="#bbbbbb")
        ax.bar(xs + (width / 2 if has_baseline else 0), [value(n, "after") for n in names], width,
               label="after", color="#3070b0")
        ax.set_xticks(xs, ["raw", "even", "hard", "blank\n(flagged)"], fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_title(r["model"], fontsize=9)
        ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.photos", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("DATA_DIR") or None)
    parser.add_argument("--n", type=int, default=1000, help="images per model and set (default 1000)")
    parser.add_argument("--blank", type=int, default=500, help="blank pages / frames per model (default 500)")
    parser.add_argument("--split", choices=("test", "validation"), default="test",
                        help="test (the report) or the training split's held-out part (for tuning)")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="a checkout whose preprocessing/ is the 'before' (e.g. the pre-change main)")
    parser.add_argument("--families", default=",".join(f.route for f in FAMILIES),
                        help="comma-separated routes (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("reports/bench/photos.md"))
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from training import datasets

    baseline = load_baseline(args.baseline) if args.baseline else None
    args.baseline_label = args.baseline.name if args.baseline else None
    results = []
    for fam in FAMILIES:
        if fam.route not in args.families.split(","):
            continue
        data = datasets.load(fam.route, args.data_dir)
        if args.split == "test":
            x, y = data.x_test, data.y_test
        else:
            import bentoml

            training = ModelMetadata.from_store(bentoml.models.get(fam.model_tag).info.metadata).training
            held = held_out_indices(data.y_train, training.get("validation_split", 0.1),
                                    training.get("seed", 0), training.get("limit"))
            x, y = data.x_train[held], data.y_train[held]
        pick = np.random.default_rng(args.seed).choice(len(x), size=min(args.n, len(x)), replace=False)
        results.append(evaluate(fam, x[pick], y[pick], args, baseline))
    text = report(results, args, baseline is not None)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    plot(results, args.out.with_suffix(".png"), baseline is not None)
    print("\n" + text + f"written: {args.out} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
