"""``make bench-train``: train both models, then report accuracy, time per epoch and peak memory.

Each run is a separate ``python -m training`` process so that its peak resident memory is its own.
Usage: ``python -m bench.training [--data-dir DIR] [--presets default course] [--out reports/bench]``.
``--ablation`` instead trains the default recipe with its parts switched on one at a time (what
each part buys) and writes ``reports/bench/ablation.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from catalog import ROUTES, family


# Per family, the default recipe with its parts added one at a time (the rest of the preset unchanged).
_MNIST_OFF = ["--elastic", "0", "--pen", "0", "--slant", "0", "--no-weight-averaging", "--outliers", "0", "--distill", "0"]
ABLATION: dict[str, tuple[tuple[str, list[str]], ...]] = {
    "mnist": (  # the default has no dropout: the teacher regularises (docs/training.md)
        ("no regularisation", ["--augment", "off", *_MNIST_OFF]),
        ("+ jitter", _MNIST_OFF),
        ("+ jitter + elastic", _MNIST_OFF[2:]),
        ("+ jitter + elastic + pen and slant", _MNIST_OFF[6:]),
        ("+ jitter + elastic + pen and slant + weight averaging", _MNIST_OFF[7:]),
        ("+ jitter + elastic + pen and slant + weight averaging + outliers", _MNIST_OFF[9:]),
        ("+ jitter + elastic + pen and slant + weight averaging + outliers + teacher", ["--distill-blends", "0"]),
        ("+ jitter + elastic + pen and slant + weight averaging + outliers + teacher + blended pairs (default)", []),
    ),
    "asl": (  # the default has no dropout: with the teacher, dropout cost the shadowed photos (docs/training.md)
        ("no regularisation", ["--augment", "off", "--no-normalize", "--lighting", "0", "--no-cosine-decay",
                               "--distill", "0", "--local-contrast", "0"]),
        ("+ augmentation", ["--no-normalize", "--lighting", "0", "--no-cosine-decay", "--distill", "0",
                            "--local-contrast", "0"]),
        ("+ augmentation + standardisation", ["--lighting", "0", "--no-cosine-decay", "--distill", "0",
                                              "--local-contrast", "0"]),
        ("+ augmentation + standardisation + uneven light", ["--no-cosine-decay", "--distill", "0",
                                                             "--local-contrast", "0"]),
        ("+ augmentation + standardisation + uneven light + cosine decay", ["--distill", "0", "--local-contrast", "0"]),
        ("+ augmentation + standardisation + uneven light + cosine decay + teacher",
         ["--distill-blends", "0", "--local-contrast", "0"]),
        ("+ augmentation + standardisation + uneven light + cosine decay + teacher + blended pairs",
         ["--local-contrast", "0"]),
        ("+ augmentation + standardisation + uneven light + cosine decay + teacher + blended pairs + local contrast "
         "(default)", []),
    ),
}


def run_one(dataset: str, preset: str, data_dir: str | None, reports_dir: Path, save: bool,
            extra: list[str] = (), label: str | None = None) -> dict:
    """Train one model in a child process; returns its summary plus wall time and peak RSS."""
    folder = reports_dir / (label.replace(" ", "").replace("+", "_") if label else preset)
    command = [sys.executable, "-m", "training", dataset, "--preset", preset, "--quiet",
               "--reports-dir", str(folder), *extra]
    if data_dir:
        command += ["--data-dir", data_dir]
    if not save:
        command.append("--no-save")
    print(f"\n=== {dataset} ({label or preset + ' preset'}): {' '.join(command[1:])}", flush=True)
    start = time.perf_counter()
    child = subprocess.Popen(command)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"training {dataset} ({preset}) failed with exit code {code}")
    name = family(dataset).store_name
    summary = json.loads((folder / name / "summary.json").read_text())
    summary.update(dataset=dataset, preset=label or preset, wall_seconds=wall,
                   peak_rss_mib=usage.ru_maxrss / 1024)  # Linux reports KiB
    return summary


def markdown(results: list[dict], title: str = "Training benchmark") -> str:
    lines = [
        f"# {title}",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}. "
        "Command: `make bench-train` (`python -m bench.training`).",
        "",
        "Lit: the validation / test images photographed under uneven light and read through the upload "
        "path (training/lit.py; a sample per split, see `--lit-eval`); shadow: the same images under a soft-edged "
        "shadow only. ECE: test split, before / after the "
        "temperature fitted on validation.",
        "",
        "| model | recipe | train acc | validation acc | validation lit | validation shadow | test acc | test lit | test shadow | test loss | ECE before / after | epochs (weights kept) | s/epoch | wall s | peak RSS MiB | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        m = r["metrics"]
        lit = r.get("lit_accuracy") or {}
        cal = r.get("calibration") or {}
        shown = lambda v: f"{v:.2%}" if v is not None else "-"  # noqa: E731
        lines.append(
            f"| {r['model'] or r['dataset']} | {r['preset']} | {m['train']['accuracy']:.2%} | "
            f"{m['validation']['accuracy']:.2%} | {shown(lit.get('validation'))} | {shown(lit.get('validation_shadow'))} | "
            f"**{m['test']['accuracy']:.2%}** | {shown(lit.get('test'))} | {shown(lit.get('test_shadow'))} | "
            f"{m['test']['loss']:.4f} | "
            f"{shown(cal.get('ece_before'))} / {shown(cal.get('ece_after'))} | "
            f"{r['epochs_run']} ({r['weights_epoch']}) | {r['seconds_per_epoch']:.1f} | {r['wall_seconds']:.0f} | "
            f"{r['peak_rss_mib']:.0f} | {r['verdict'].split(':')[0]} |"
        )
    lines += ["", "Curves and confusion matrices: `reports/bench/<preset>/<model>/`.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.training", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("DATA_DIR") or None)
    parser.add_argument("--presets", nargs="+", default=["default"], choices=["default", "course"])
    parser.add_argument("--datasets", nargs="+", default=list(ROUTES), choices=ROUTES)
    parser.add_argument("--out", default="reports/bench", type=Path)
    parser.add_argument("--ablation", action="store_true",
                        help="what each part of the default recipe buys (never saved to the store)")
    parser.add_argument("--epochs", type=int, help="with --ablation: epochs per run (default: the preset's)")
    parser.add_argument("--teacher-epochs", type=int, help="with --ablation: the teacher's epochs (default: the preset's)")
    parser.add_argument("--no-save", dest="save", action="store_false",
                        help="do not store the models (by default the default-preset models are stored)")
    args = parser.parse_args(argv)
    if args.ablation:
        extra_epochs = ["--epochs", str(args.epochs)] if args.epochs else []
        extra_epochs += ["--teacher-epochs", str(args.teacher_epochs)] if args.teacher_epochs else []
        results = [
            run_one(dataset, "default", args.data_dir, args.out / "ablation", False,
                    [*flags, *extra_epochs, "--no-save"], label)
            for dataset in args.datasets
            for label, flags in ABLATION[dataset]
        ]
        report = markdown(results, "What each part of the default recipe buys")
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "ablation.md").write_text(report)
        print("\n" + report + f"written: {args.out / 'ablation.md'}")
        return 0
    results = [
        run_one(dataset, preset, args.data_dir, args.out, args.save and preset == "default")
        for preset in args.presets
        for dataset in args.datasets
    ]
    report = markdown(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train.md").write_text(report)
    (args.out / "train.json").write_text(json.dumps(results, indent=2))
    print("\n" + report)
    print(f"written: {args.out / 'train.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
