"""The course's "simpler model": fit y = m·x + b by gradient descent, by hand.

The loss is the mean squared error over the n points,

    MSE(m, b) = 1/n Σ (y - (m·x + b))²

and its partial derivatives are

    ∂MSE/∂m = -2/n Σ x·(y - (m·x + b))
    ∂MSE/∂b = -2/n Σ (y - (m·x + b))

One step moves (m, b) against the gradient, scaled by the learning rate.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

# The course's worked example: two points, start at m = -1, b = 5, λ = 0.1.
DEFAULT_POINTS = "1,3 2,5"
DEFAULT_M = -1.0
DEFAULT_B = 5.0
DEFAULT_LEARNING_RATE = 0.1
DEFAULT_STEPS = 50


def _as_arrays(x, y) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.ndim != 1 or y.ndim != 1:
        raise ValueError("x and y must be one-dimensional")
    if x.shape != y.shape:
        raise ValueError(f"x and y differ in length: {x.size} != {y.size}")
    if x.size == 0:
        raise ValueError("need at least one point")
    return x, y


def mse(m: float, b: float, x, y) -> float:
    """Mean squared error of the line y = m·x + b on the points (x, y)."""
    x, y = _as_arrays(x, y)
    error = y - (m * x + b)
    return float(np.mean(error**2))


def rmse(m: float, b: float, x, y) -> float:
    """Root mean squared error of the line y = m·x + b on the points (x, y)."""
    return math.sqrt(mse(m, b, x, y))


def gradient(m: float, b: float, x, y) -> tuple[float, float]:
    """Partial derivatives (dm, db) of the MSE with respect to m and b."""
    x, y = _as_arrays(x, y)
    error = y - (m * x + b)
    dm = -2.0 * float(np.mean(x * error))
    db = -2.0 * float(np.mean(error))
    return dm, db


def step(m: float, b: float, x, y, learning_rate: float) -> tuple[float, float]:
    """One gradient-descent step: return the updated (m, b)."""
    dm, db = gradient(m, b, x, y)
    return m - learning_rate * dm, b - learning_rate * db


@dataclass(frozen=True)
class StepRecord:
    """State after `step` updates: the parameters, their loss and gradient."""

    step: int
    m: float
    b: float
    loss: float
    dm: float
    db: float


def fit(x, y, m: float, b: float, learning_rate: float, steps: int) -> list[StepRecord]:
    """Run `steps` gradient-descent steps; return steps + 1 records, record 0 = the start."""
    if steps < 0:
        raise ValueError("steps must be >= 0")
    x, y = _as_arrays(x, y)
    m, b = float(m), float(b)
    history = []
    for i in range(steps + 1):
        dm, db = gradient(m, b, x, y)
        history.append(StepRecord(i, m, b, mse(m, b, x, y), dm, db))
        if i < steps:
            m, b = m - learning_rate * dm, b - learning_rate * db
    return history


def least_squares(x, y) -> tuple[float, float]:
    """Exact minimiser (m, b) of the MSE, in closed form."""
    x, y = _as_arrays(x, y)
    design = np.column_stack([x, np.ones_like(x)])
    (m, b), *_ = np.linalg.lstsq(design, y, rcond=None)
    return float(m), float(b)


def parse_points(text: str) -> tuple[list[float], list[float]]:
    """Parse "x1,y1 x2,y2 ..." into lists of x and y values."""
    xs, ys = [], []
    for pair in text.split():
        parts = pair.split(",")
        if len(parts) != 2:
            raise ValueError(f"expected 'x,y', got {pair!r}")
        try:
            px, py = float(parts[0]), float(parts[1])
        except ValueError:
            raise ValueError(f"not a number in {pair!r}") from None
        if not (math.isfinite(px) and math.isfinite(py)):
            raise ValueError(f"not a finite number in {pair!r}")
        xs.append(px)
        ys.append(py)
    if not xs:
        raise ValueError("no points given")
    return xs, ys


def plot_loss(history: Sequence[StepRecord], path: str | Path) -> Path:
    """Write a PNG of the loss curve to `path`, creating parent directories."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed; must precede pyplot import
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    try:
        ax.plot([r.step for r in history], [r.loss for r in history], marker=".")
        ax.set_xlabel("step")
        ax.set_ylabel("loss (MSE)")
        ax.set_title("Gradient descent on y = m·x + b: loss per step")
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path


def _num(value: float) -> str:
    # "+ 0.0" turns -0.0 into 0.0 so a zero gradient does not print as "-0".
    return f"{value + 0.0:.6g}"


def _format_line(m: float, b: float) -> str:
    sign = "-" if b < 0 else "+"
    return f"y = {_num(m)}·x {sign} {_num(abs(b))}"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training linear",
        description="Fit y = m·x + b to points by gradient descent on the MSE.",
    )
    parser.add_argument(
        "--points",
        default=DEFAULT_POINTS,
        help=f'space-separated "x,y" pairs (default: "{DEFAULT_POINTS}")',
    )
    parser.add_argument("--m", type=float, default=DEFAULT_M, help="initial slope (default: %(default)s)")
    parser.add_argument("--b", type=float, default=DEFAULT_B, help="initial intercept (default: %(default)s)")
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=DEFAULT_LEARNING_RATE,
        help="gradient-descent step size λ (default: %(default)s)",
    )
    parser.add_argument(
        "--steps", type=_non_negative_int, default=DEFAULT_STEPS, help="number of steps (default: %(default)s)"
    )
    parser.add_argument("--every", type=_positive_int, default=1, help="print every K-th step (default: every step)")
    parser.add_argument("--plot", metavar="PATH", help="write a PNG of the loss curve to PATH")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: run the fit, print per-step values, optionally plot."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        x, y = parse_points(args.points)
    except ValueError as exc:
        parser.error(f"argument --points: {exc}")

    # A too-large learning rate overflows to inf/nan; report that once below instead of numpy warnings.
    with np.errstate(over="ignore", invalid="ignore"):
        history = fit(x, y, args.m, args.b, args.learning_rate, args.steps)

    print(f"{'step':>6} {'m':>12} {'b':>12} {'loss':>12} {'dm':>12} {'db':>12}")
    for record in history:
        # Always show the final step so the end state is visible whatever --every is.
        if record.step % args.every == 0 or record.step == args.steps:
            values = (record.m, record.b, record.loss, record.dm, record.db)
            print(f"{record.step:>6d} " + " ".join(f"{_num(v):>12}" for v in values))

    final = history[-1]
    print(f"fitted:        {_format_line(final.m, final.b)}  (MSE {_num(final.loss)})")
    if len(set(x)) > 1:
        ls_m, ls_b = least_squares(x, y)
        print(f"least squares: {_format_line(ls_m, ls_b)}  (MSE {_num(mse(ls_m, ls_b, x, y))})")
    else:
        # All x equal: the slope is not identifiable, so no unique exact line exists.
        print("least squares: not unique (all x values are equal)")
    if not math.isfinite(final.loss):
        print("warning: the loss diverged; try a smaller --learning-rate", file=sys.stderr)

    if args.plot:
        path = plot_loss(history, args.plot)
        print(f"loss curve written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
