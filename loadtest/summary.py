"""Reading locust's CSV, the SLO check, the markdown table and the latency/throughput plot.

Pure functions of files and numbers (no server, no locust run), so they are tested directly.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Step:
    """One load level: what locust measured, plus what the runner counted around it."""

    label: str  # e.g. "64 users" or "rate 120/s"
    users: int
    requests: int
    failures: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float = 0.0
    offered_rps: float | None = None  # the paced rate, when users wait between requests
    status: dict[str, int] = field(default_factory=dict)  # HTTP status -> count (0: no answer)
    bad_answers: int = 0
    images_per_request: float | None = None
    accuracy: dict[str, float | None] = field(default_factory=dict)
    batch_size: dict[str, float | None] = field(default_factory=dict)  # model -> mean batch size
    cpu: dict[str, float] = field(default_factory=dict)  # server/locust/other, % of one core
    seconds: float = 0.0
    spread: tuple[float, float] | None = None  # lowest and highest req/s of the rounds (bench)

    @property
    def errors(self) -> int:
        return self.failures

    @property
    def error_rate(self) -> float:
        return self.failures / self.requests if self.requests else 0.0

    @property
    def server_errors(self) -> int:
        return sum(n for code, n in self.status.items() if str(code).startswith("5"))

    @property
    def server_ms_per_request(self) -> float | None:
        """Server CPU time per request (ms): the efficiency, robust to a busy machine."""
        server = self.cpu.get("server")
        return server * 10 / self.rps if server is not None and self.rps else None

    @property
    def mean_batch(self) -> float | None:
        sizes = [v for v in self.batch_size.values() if v is not None]
        return sum(sizes) / len(sizes) if sizes else None

    def as_dict(self) -> dict:
        return {**asdict(self), "error_rate": self.error_rate, "server_errors": self.server_errors,
                "mean_batch": self.mean_batch, "server_ms_per_request": self.server_ms_per_request}


def read_locust_stats(prefix: str | Path) -> dict:
    """The ``Aggregated`` row of ``<prefix>_stats.csv`` as numbers (ms and req/s)."""
    path = Path(f"{prefix}_stats.csv")
    with open(path, newline="") as fh:
        rows = [row for row in csv.DictReader(fh) if row.get("Name") == "Aggregated"]
    if not rows:
        raise ValueError(f"{path} has no Aggregated row")
    row = rows[0]

    def number(key: str) -> float:
        value = row.get(key, "")
        return float(value) if value not in ("", "N/A") else 0.0

    return {"requests": int(number("Request Count")), "failures": int(number("Failure Count")),
            "rps": number("Requests/s"), "p50_ms": number("50%"), "p95_ms": number("95%"),
            "p99_ms": number("99%"), "max_ms": number("Max Response Time")}


# ---- /metrics --------------------------------------------------------------------------------

_SAMPLE = re.compile(r"^model_batch_size_(sum|count)\{([^}]*)\}\s+(\S+)$", re.M)


def batch_counters(metrics_text: str) -> dict[str, dict[str, float]]:
    """``{model: {"sum": s, "count": n}}`` of the service's batch size histogram
    (``model_batch_size``, rows per forward pass of the upload routes), added up over samples."""
    totals: dict[str, dict[str, float]] = {}
    for kind, labels, value in _SAMPLE.findall(metrics_text):
        model = re.search(r'model="([^"]*)"', labels)
        if model:
            entry = totals.setdefault(model.group(1), {"sum": 0.0, "count": 0.0})
            entry[kind] += float(value)
    return totals


def mean_batch_sizes(before: dict, after: dict) -> dict[str, float | None]:
    """Mean batch size per model between two :func:`batch_counters` readings."""
    sizes = {}
    for model, end in after.items():
        start = before.get(model, {"sum": 0.0, "count": 0.0})
        count = end["count"] - start["count"]
        sizes[model] = (end["sum"] - start["sum"]) / count if count > 0 else None
    return sizes


# ---- SLO -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SLO:
    """What ``make loadtest`` (and the soak) holds the service to; a miss makes it exit 1.

    * ``max_server_errors``: 5xx answers of all kinds (503 shedding included): none;
    * ``max_error_rate``: failed requests (any non-200, no answer, or an answer that fails the
      checks in the locustfile) over all requests: 0;
    * ``max_p99_ms``: p99 latency at every load level of the sweep, closed loop up to 64 users
      (the adaptive batcher's own budget is MAX_LATENCY_MS = 1000 ms, beyond which it sheds);
    * ``max_p99_ms_single_user``: p99 for one user alone (no queueing: the service's own latency).
    * ``max_rss_growth``: soak only, server RSS growth from the start to the end: under 10 %.
    """

    max_server_errors: int = 0
    max_error_rate: float = 0.0
    max_p99_ms: float = 1000.0
    max_p99_ms_single_user: float = 100.0
    max_rss_growth: float = 0.10

    def check(self, step: Step) -> list[str]:
        misses = []
        if step.requests == 0:
            misses.append(f"{step.label}: no request was answered")
        if step.server_errors > self.max_server_errors:
            codes = {c: n for c, n in step.status.items() if str(c).startswith("5")}
            misses.append(f"{step.label}: {step.server_errors} 5xx answers {codes} (allowed {self.max_server_errors})")
        if step.error_rate > self.max_error_rate:
            misses.append(f"{step.label}: error rate {step.error_rate:.3%} ({step.failures} of {step.requests}) "
                          f"> {self.max_error_rate:.3%}")
        limit = self.max_p99_ms_single_user if step.users == 1 and step.offered_rps is None else self.max_p99_ms
        if step.requests and step.p99_ms > limit:
            misses.append(f"{step.label}: p99 {step.p99_ms:.0f} ms > {limit:.0f} ms")
        return misses

    def check_rss(self, start_mib: float, end_mib: float) -> list[str]:
        growth = (end_mib - start_mib) / start_mib if start_mib else 0.0
        if growth >= self.max_rss_growth:
            return [f"server RSS grew {growth:.1%} ({start_mib:.0f} -> {end_mib:.0f} MiB) >= {self.max_rss_growth:.0%}"]
        return []

    def describe(self) -> str:
        return (f"no 5xx (at most {self.max_server_errors}); error rate <= {self.max_error_rate:.1%}; "
                f"p99 <= {self.max_p99_ms:.0f} ms at every step and <= {self.max_p99_ms_single_user:.0f} ms "
                f"for 1 user; soak: RSS growth < {self.max_rss_growth:.0%}")


# ---- markdown and plot -----------------------------------------------------------------------

def _fmt(value, spec: str = ".0f", none: str = "–") -> str:
    return none if value is None else format(value, spec)


def markdown_table(steps: list[Step]) -> str:
    lines = ["| load | req/s | images/s | p50 ms | p95 ms | p99 ms | errors | 5xx | mean batch | "
             "server CPU % | server CPU ms/req | locust CPU % | other CPU % |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in steps:
        images = s.rps * s.images_per_request if s.images_per_request else None
        lines.append(
            f"| {s.label} | {s.rps:.1f} | {_fmt(images, '.1f')} | {s.p50_ms:.0f} | {s.p95_ms:.0f} | "
            f"{s.p99_ms:.0f} | {s.failures} | {s.server_errors} | {_fmt(s.mean_batch, '.2f')} | "
            f"{_fmt(s.cpu.get('server'))} | {_fmt(s.server_ms_per_request, '.1f')} | {_fmt(s.cpu.get('locust'))} | "
            f"{_fmt(s.cpu.get('other'))} |")
    return "\n".join(lines)


def plot_latency(series: dict[str, list[Step]], path: str | Path, title: str) -> Path:
    """Latency percentiles (p50, p95, p99) against throughput, one colour per series."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    many = len(series) > 1
    fig, ax = plt.subplots(figsize=(11, 6) if many else (8, 5))
    styles = {"p50_ms": ("p50", ":"), "p95_ms": ("p95", "--"), "p99_ms": ("p99", "-")}
    if many:  # one colour per server: p50 and p99 only, or the plot is unreadable
        del styles["p95_ms"]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, steps) in enumerate(series.items()):
        steps = sorted((s for s in steps if s.requests), key=lambda s: s.rps)
        if not steps:
            continue
        colour = colours[i % len(colours)]
        for key, (short, style) in styles.items():
            ax.plot([s.rps for s in steps], [getattr(s, key) for s in steps], style, marker="o", color=colour,
                    label=f"{name} {short}" if len(series) > 1 else short)
        for s in steps:
            label = s.label.replace(" users", "u").replace(" user", "u").replace(" req/s offered", "/s")
            ax.annotate(label, (s.rps, s.p99_ms), textcoords="offset points", xytext=(4, 4), fontsize=7,
                        color=colour)
    ax.set_xlabel("throughput (requests/s)")
    ax.set_ylabel("latency (ms)")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        if many:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        else:
            ax.legend(fontsize=7)
    ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_json(path: str | Path, payload: dict) -> None:
    Path(path).write_text(json.dumps(payload, indent=1, default=lambda o: o.as_dict() if isinstance(o, Step) else str(o)))
