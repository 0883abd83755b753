"""How often does the service say "not sure" or "nothing found" for things that are not digits or
signs, and how often for real ones? Out-of-distribution uploads (``tools/ood.py``) and real
validation / test images dressed as uploads, answered in-process by the family's
:class:`inference.Classifier` (decode, preprocess, the stored model, the temperature, the answer)
with the service's threshold.

``python -m bench.ood [--data-dir DIR] [--n-real 2000] [--n-ood 200] [--n-pad 1000]`` (``make
bench-ood``) prints the shares and writes ``reports/bench/ood.md`` and ``ood.png``. Goal: real test
images flagged (``unsure`` or ``found: false``) at most 2 %, out-of-distribution ones as often as
possible.

The digit model also gets what people draw on the web page's pad (``tools/pad.py``, rendered and
encoded as the page sends them): digits written on the pad (a real row: goal at most 2 % flagged;
generated pen paths standing in for people's writing) and one row per kind of non-digit (a
scribble, a short and a long dash, a dot, a letter, a circle left open: goal 90 % flagged over all
kinds).

Seeds: the report is made with ``--seed 0`` (the default); anything tuned on these sets is looked
at with ``--seed 1`` (``bench.uploads.DEV_SEED``). The pad sets draw from generators of their own
(the seed and the set's name: ``bench.uploads.set_rng``), so the pad-written digits are the same
drawings as in ``make bench-uploads`` for the same seed and count.

The temperature is the model's own (``calibration`` in its metadata); a model stored without one
gets a temperature fitted here on its validation split (the split training held out, rebuilt
with the seed and share of its metadata) with ``inference.calibration``. The threshold is the
service's ``UNSURE_BELOW``; the report also shows, per model, the largest threshold (0.05 steps)
that flags at most ``--target`` of the validation images dressed as uploads: the rule the default
was chosen by (the test split is only measured, never used to choose).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from catalog import FAMILIES, MODEL_FILE, Calibration, Family, ModelMetadata
from inference import Classifier
from inference.calibration import calibrate
from inference.calibration import expected_calibration_error as ece
from inference.calibration import fit_temperature
from preprocessing import MNIST_DIGIT
from service.settings import Settings
from bench.uploads import DEV_SEED, PAD_DIGITS, REPORT_SEED, set_rng
from tools import ood, pad
from tools.uploads import dress_as_upload, encode_plain

REAL_LIMIT = 0.02  # real test images flagged at most this share
PAD_GOAL = 0.90  # pad-drawn non-digits flagged at least this share, all kinds together
PAD_PREFIX = "pad: "  # the pad rows' names
PAD_DIGITS_ROW = PAD_PREFIX + "written digits"
GRID = np.round(np.arange(0.05, 1.0001, 0.05), 2)


@dataclass
class Outcome:
    """One set of uploads through the upload path: per image, found and calibrated confidence."""

    name: str
    found: np.ndarray  # bool
    confidence: np.ndarray  # calibrated top probability; nan where nothing was found
    unsure: np.ndarray  # the answers' own flag at the service's threshold
    correct: np.ndarray | None = None  # right label (real images only)
    in_distribution: bool = False

    def flagged(self, threshold: float) -> float:
        """Share flagged (not found, or confidence below ``threshold``)."""
        return float(np.mean(~self.found | (np.nan_to_num(self.confidence, nan=0.0) < threshold)))


def classifier_at(tag: str, metadata: ModelMetadata, model, temperature: float, threshold: float) -> Classifier:
    """The family's Classifier around the loaded ``model``, calibrated at ``temperature``, ``unsure``
    below ``threshold``."""
    metadata = metadata.model_copy(update={"calibration": Calibration(temperature=temperature)})
    return Classifier(tag, metadata, lambda rows: model.predict(rows, batch_size=1024, verbose=0),
                      unsure_below=threshold)


def answered(name: str, answers: list[dict], threshold: float, labels: np.ndarray | None = None,
             in_distribution: bool = False) -> Outcome:
    """The outcome of a Classifier's ``answers`` to one set of uploads."""
    found = np.array([a["found"] for a in answers])
    confidence = np.array([a["confidence"] if a["found"] else np.nan for a in answers], np.float64)
    unsure = np.array([a["unsure"] for a in answers])
    assert np.array_equal(unsure, ~found | (np.nan_to_num(confidence, nan=0.0) < threshold))  # sweep == answers
    correct = None
    if labels is not None:
        correct = np.array([a["found"] and a["index"] == int(y) for a, y in zip(answers, labels)])
    return Outcome(name, found, confidence, unsure, correct, in_distribution)


@dataclass
class FamilyResult:
    family: Family
    model_tag: str
    temperature: float
    temperature_source: str
    ece: dict[str, float]
    outcomes: list[Outcome] = field(default_factory=list)
    raw_outcomes: list[Outcome] = field(default_factory=list)  # the same at temperature 1

    def by_name(self, name: str, raw: bool = False) -> Outcome:
        return next(o for o in (self.raw_outcomes if raw else self.outcomes) if o.name == name)


def largest_threshold(outcome: Outcome, target: float) -> float:
    """The largest threshold of GRID that flags at most ``target`` of ``outcome``."""
    fitting = [t for t in GRID if outcome.flagged(float(t)) <= target]
    return float(max(fitting)) if fitting else 0.0


def evaluate(fam: Family, raw_by_route: dict, args, threshold: float) -> FamilyResult:
    import bentoml
    from execution.forward import load_model  # registers the project's own layers

    from training import datasets

    entry = bentoml.models.get(fam.model_tag)
    model = load_model(entry.path_of(MODEL_FILE))
    metadata = ModelMetadata.from_store(entry.info.metadata)
    raw = raw_by_route[fam.route]
    splits = datasets.prepare(raw, validation_split=float(metadata.training.get("validation_split", 0.1)),
                              seed=int(metadata.training.get("seed", 0)))
    val_labels, test_labels = splits.y_val.argmax(1), raw.y_test
    val_p = np.asarray(model.predict(splits.x_val, batch_size=1024, verbose=0))
    test_p = np.asarray(model.predict(splits.x_test, batch_size=1024, verbose=0))
    if metadata.calibration is not None:
        temperature, source = metadata.calibration.temperature, "the model's metadata"
    else:
        temperature, source = fit_temperature(val_p, val_labels), "fitted here on the validation split"
    eces = {f"{split}, {kind}": ece(calibrate(p, temperature) if kind == "calibrated" else p, labels)
            for split, p, labels in (("validation", val_p, val_labels), ("test", test_p, test_labels))
            for kind in ("raw", "calibrated")}
    result = FamilyResult(fam, str(entry.tag), temperature, source, eces)
    calibrated_classifier = classifier_at(str(entry.tag), metadata, model, temperature, threshold)
    raw_classifier = classifier_at(str(entry.tag), metadata, model, 1.0, threshold)

    rng = np.random.default_rng(args.seed)
    val_pixels = np.rint(splits.x_val * 255).astype(np.uint8).reshape(-1, 28, 28)
    pick_val = rng.choice(len(val_pixels), min(args.n_real, len(val_pixels)), replace=False)
    pick_test = rng.choice(len(raw.x_test), min(args.n_real, len(raw.x_test)), replace=False)
    sets = [
        ("validation, dressed as uploads", [dress_as_upload(x, fam.preprocessing, rng, fmt="random")
                                            for x in val_pixels[pick_val]], val_labels[pick_val]),
        ("test, plain PNG", [encode_plain(x) for x in raw.x_test[pick_test]], test_labels[pick_test]),
        ("test, dressed as uploads", [dress_as_upload(x, fam.preprocessing, rng, fmt="random")
                                      for x in raw.x_test[pick_test]], test_labels[pick_test]),
    ]
    for kind in ood.KINDS:
        sets.append((kind, ood.ood_uploads(kind, args.n_ood, rng), None))
    other = next(f for f in FAMILIES if f is not fam)
    other_pixels = raw_by_route[other.route].x_test
    pick = rng.choice(len(other_pixels), min(args.n_ood, len(other_pixels)), replace=False)
    other_name = "signs (to the digit model)" if fam.route == "mnist" else "digits (to the sign model)"
    sets.append((other_name, ood.other_family_uploads(other_pixels[pick], other.preprocessing, rng), None))
    if fam.preprocessing == MNIST_DIGIT and args.n_pad > 0:  # the web page's drawing pad
        uploads, labels = pad.digit_uploads(args.n_pad, set_rng(args.seed, PAD_DIGITS))
        sets.append((PAD_DIGITS_ROW, uploads, labels))
        for kind in pad.NON_DIGIT_KINDS:
            sets.append((PAD_PREFIX + kind, pad.non_digit_uploads(kind, args.n_ood, set_rng(args.seed, kind)), None))

    for name, uploads, labels in sets:
        start = time.perf_counter()
        real = labels is not None
        prepared = [calibrated_classifier.prepare(data) for data in uploads]  # decoded once for both
        for classifier, outcomes in ((calibrated_classifier, result.outcomes), (raw_classifier, result.raw_outcomes)):
            outcomes.append(answered(name, classifier.predict_prepared(prepared), threshold, labels, real))
        o = result.outcomes[-1]
        print(f"  {fam.route} {name}: {len(uploads)} uploads, found {o.found.mean():.1%}, "
              f"flagged {o.flagged(threshold):.1%} ({time.perf_counter() - start:.1f} s)", flush=True)
    return result


def plot(results: list[FamilyResult], threshold: float, path: Path) -> None:
    """Flagged share against the threshold, per kind: one column per model; the top row at the
    model's temperature, the bottom row at temperature 1 (its raw softmax)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(results), figsize=(6.4 * len(results), 9.6), squeeze=False)
    grid = np.linspace(0, 1, 101)
    for column, result in enumerate(results):
        for row, (outcomes, temperature) in enumerate(((result.outcomes, result.temperature),
                                                       (result.raw_outcomes, 1.0))):
            ax = axes[row][column]
            for o in outcomes:
                if o.name.startswith("validation"):
                    style = dict(color="grey", linewidth=1.8, linestyle=":")
                elif o.in_distribution:
                    style = dict(color="black", linewidth=2.2, linestyle="--")
                else:
                    style = dict(linewidth=1.4)
                ax.plot(grid, [100 * o.flagged(t) for t in grid], label=o.name, **style)
            ax.axvline(threshold, color="tab:red", linewidth=1)
            ax.axhline(100 * REAL_LIMIT, color="tab:red", linewidth=1, linestyle=":")
            ax.set_title(f"{result.model_tag}, T = {temperature:.3g}", fontsize=10)
            ax.set_xlabel("threshold on the confidence (UNSURE_BELOW)")
            ax.set_ylabel("flagged: unsure or found false (%)")
            ax.set_ylim(-2, 102)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="center left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def report(results: list[FamilyResult], threshold: float, args, png: Path) -> str:
    lines = [
        "# Out-of-distribution uploads: unsure and nothing found",
        "",
        f"Command: `make bench-ood` (`python -m bench.ood --n-real {args.n_real} --n-ood {args.n_ood} "
        f"--n-pad {args.n_pad} --seed {args.seed}`). Every image goes through the upload path in-process (`inference.Classifier`: "
        "decode and preprocessing, the stored model, the temperature, the answer). Flagged = the answer has `unsure: true` "
        f"(calibrated confidence below `UNSURE_BELOW` = {threshold:g}) or `found: false`. Goal: real test "
        f"images flagged at most {REAL_LIMIT:.0%}, everything else as often as possible. Uploads: digits as "
        "photographed dark ink on paper and signs as resized photos (`tools/uploads.py`), half JPEG; the "
        "out-of-distribution kinds are described in `tools/ood.py`. The digit model's rows \"pad: ...\" are drawn "
        "on the web page's pad and sent as the page sends them (`tools/pad.py`): digits written on the pad "
        "(generated pen paths standing in for people's writing; a real row, goal at most 2 % flagged) and "
        f"non-digits (a scribble, dashes within 15 degrees of horizontal, a tap, a letter, an open circle; goal "
        f"{PAD_GOAL:.0%} flagged over all kinds). Seed {args.seed} (tuning looks at seed {DEV_SEED}).",
        "",
    ]
    for result in results:
        val = result.by_name("validation, dressed as uploads")
        val_raw = result.by_name("validation, dressed as uploads", raw=True)
        best, best_raw = largest_threshold(val, args.target), largest_threshold(val_raw, args.target)
        test = result.by_name("test, dressed as uploads")
        test_raw = result.by_name("test, dressed as uploads", raw=True)
        lines += [
            f"## {result.model_tag}",
            "",
            f"Temperature {result.temperature:.3f} ({result.temperature_source}). Expected calibration error "
            "(15 bins): " + ", ".join(f"{k} {v:.4f}" for k, v in result.ece.items()) + ".",
            f"Largest threshold flagging at most {args.target:.1%} of the validation uploads: "
            f"{best:.2f} calibrated (it flags {test.flagged(best):.1%} of the dressed test uploads), "
            f"{best_raw:.2f} at temperature 1 ({test_raw.flagged(best_raw):.1%} of the test uploads).",
            "",
            f"| images | n | found: false | flagged (T = {result.temperature:.3g}) | flagged (T = 1) | "
            "accuracy (real) |",
            "|---|---|---|---|---|---|",
        ]
        for o, o_raw in zip(result.outcomes, result.raw_outcomes):
            flagged = o.flagged(threshold)
            note = ""
            if o.name.startswith("test") or o.name == PAD_DIGITS_ROW:
                note = " (within 2 %)" if flagged <= REAL_LIMIT else " (MISSED: over 2 %)"
            accuracy = f"{o.correct.mean():.2%}" if o.correct is not None else ""
            name = f"**{o.name}**" if o.in_distribution else o.name
            lines.append(f"| {name} | {len(o.found)} | {np.mean(~o.found):.1%} | {flagged:.1%}{note} | "
                         f"{o_raw.flagged(threshold):.1%} | {accuracy} |")
        drawn = [(o, o_raw) for o, o_raw in zip(result.outcomes, result.raw_outcomes)
                 if o.name.startswith(PAD_PREFIX) and not o.in_distribution]
        if drawn:
            n = sum(len(o.found) for o, _ in drawn)
            share = sum(o.flagged(threshold) * len(o.found) for o, _ in drawn) / n
            share_raw = sum(o_raw.flagged(threshold) * len(o.found) for o, o_raw in drawn) / n
            goal = "reached" if share >= PAD_GOAL else "MISSED"
            lines.append(f"| pad non-digits, all kinds | {n} | {np.mean(np.concatenate([~o.found for o, _ in drawn])):.1%} | "
                         f"{share:.1%} (goal {PAD_GOAL:.0%}: {goal}) | {share_raw:.1%} | |")
        lines.append("")
    lines += [f"![flagged share against the threshold]({png.name})", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ood", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("DATA_DIR") or None)
    parser.add_argument("--n-real", type=int, default=2000, help="validation and test images per model (default 2000)")
    parser.add_argument("--n-ood", type=int, default=200, help="images per out-of-distribution kind (default 200)")
    parser.add_argument("--target", type=float, default=0.015,
                        help="share of validation uploads a suggested threshold may flag (default 0.015)")
    parser.add_argument("--n-pad", type=int, default=1000,
                        help="digits written on the pad (digit model; default 1000; 0: no pad rows)")
    parser.add_argument("--seed", type=int, default=REPORT_SEED,
                        help=f"{REPORT_SEED}: the report's; {DEV_SEED} while tuning (see the docstring)")
    parser.add_argument("--families", default=",".join(f.route for f in FAMILIES),
                        help="comma-separated routes (default: all)")
    parser.add_argument("--out", type=Path, default=Path("reports/bench/ood.md"))
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from training import datasets

    threshold = Settings.from_env().unsure_below
    raw_by_route = {fam.route: datasets.load(fam.route, args.data_dir) for fam in FAMILIES}
    results = []
    for fam in FAMILIES:
        if fam.route not in args.families.split(","):
            continue
        print(f"{fam.store_name}:", flush=True)
        results.append(evaluate(fam, raw_by_route, args, threshold))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    png = args.out.with_suffix(".png")
    plot(results, threshold, png)
    text = report(results, threshold, args, png)
    args.out.write_text(text)
    print("\n" + text + f"\nwritten: {args.out}, {png}")
    worst = max(r.by_name("test, dressed as uploads").flagged(threshold) for r in results)
    return 0 if worst <= REAL_LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())
