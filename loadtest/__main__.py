"""``python -m loadtest sweep|soak|bench`` (``make loadtest``, ``make soak``, ``make bench``).

* ``sweep``: closed-loop locust runs at 1, 8, 32, 64 users against a service it starts (or
  ``--host``/``$HOST``), locust's CSV and HTML per step, ``summary.md``/``.json`` and a latency
  vs throughput plot under ``reports/loadtest/``; exit 1 when an SLO (loadtest.summary.SLO) is
  missed.
* ``soak``: ``--seconds`` (600) at 70 % of the maximum throughput (from ``--max-rps``, else the
  last sweep's summary, else a short measurement), after a ``--warmup`` (60 s) at the same rate;
  server RSS sampled throughout, from the end of the warm-up; exit 1 on any error or an RSS
  growth of 10 % or more. Writes ``reports/loadtest/soak.md``.
* ``bench``: the service against hand-written servers with the same scenario and images;
  writes ``reports/bench/serving.md`` (see loadtest.bench).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

from loadtest.run import REPO, ProcessTree, ServerSpec, http_get, run_step, start_server
from loadtest.summary import SLO, Step, markdown_table, plot_latency, write_json


def _users(text: str) -> list[int]:
    return [int(v) for v in text.replace(",", " ").split()]


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=os.environ.get("HOST") or None,
                        help="a running server (default $HOST); otherwise the service is started here")
    parser.add_argument("--server-pid", type=int, default=None,
                        help="with --host on this machine: the server's pid, for its CPU and RSS")
    parser.add_argument("--out", type=Path, default=None, help="report folder")
    parser.add_argument("--pin-locust", default=None,
                        help="CPU list to pin locust to (e.g. '1'); default: not pinned, its CPU use is counted")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of unrecorded load first")


def _pin(text: str | None) -> set[int] | None:
    return {int(v) for v in text.split(",")} if text else None


class Target:
    """The server under test: started here (and stopped at the end) or already running."""

    def __init__(self, args, log_dir: Path, spec: ServerSpec | None = None):
        self.server = None
        if args.host:
            self.url, self.pid = args.host.rstrip("/"), args.server_pid
            if http_get(f"{self.url}/readyz")[0] != 200:
                raise SystemExit(f"{self.url}/readyz does not answer 200: is the server running?")
        else:
            spec = spec or ServerSpec.bentoml("service")
            print(f"starting {spec.name}: {' '.join(spec.command)} (log: {log_dir})", flush=True)
            self.server = start_server(spec, log_dir).wait_ready()
            self.url, self.pid = self.server.url, self.server.process.pid

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


def sweep(args) -> int:
    out = args.out or REPO / "reports" / "loadtest"
    out.mkdir(parents=True, exist_ok=True)
    slo = SLO(max_p99_ms=args.slo_p99_ms, max_p99_ms_single_user=args.slo_p99_ms_single_user)
    target = Target(args, out)
    steps: list[Step] = []
    try:
        if args.warmup > 0:
            run_step(target.url, 8, args.warmup, out / "warmup" / "warmup", server_pid=target.pid)
        print(f"sweep against {target.url}: users {args.users}, {args.seconds:.0f} s each", flush=True)
        for users in args.users:
            steps.append(run_step(target.url, users, args.seconds, out / f"u{users}", server_pid=target.pid,
                                  pin_cpus=_pin(args.pin_locust), quiet=False))
    finally:
        target.stop()
    misses = [miss for step in steps for miss in slo.check(step)]
    images = json.loads((out / f"u{args.users[-1]}_sidecar.json").read_text()).get("image_source")
    best = max((s for s in steps if s.failures == 0), key=lambda s: s.rps, default=None)
    plot = plot_latency({"service": steps}, out / "latency_vs_throughput.png",
                        "latency percentiles vs throughput (closed loop, users per point)")
    lines = [
        "# Load test sweep", "",
        f"Target: {target.url}{'' if args.host else ' (started by the runner: bentoml serve, env as given)'}; "
        f"{args.seconds:.0f} s per step, closed loop (no wait between requests), FastHttpUser.",
        f"Images: {images}.", "",
        markdown_table(steps), "",
        f"Max throughput at zero errors: {best.rps:.1f} req/s ({best.label})." if best else "No error-free step.",
        "CPU columns: % of one core over the step (server process tree, the locust process, everything else "
        "on the machine). Mean batch: the adaptive batch size from /metrics.", "",
        f"SLO: {slo.describe()}.", "",
        ("**SLO met.**" if not misses else "**SLO missed:**\n\n" + "\n".join(f"- {m}" for m in misses)), "",
        f"![latency vs throughput]({plot.name})", "",
        "Per step: locust CSV `u<N>_stats.csv`, `u<N>_failures.csv`, HTML `u<N>.html`.", "",
    ]
    (out / "summary.md").write_text("\n".join(lines))
    write_json(out / "summary.json", {"target": target.url, "seconds": args.seconds, "steps": steps,
                                      "max_rps": best.rps if best else None, "slo": slo.describe(),
                                      "misses": misses})
    print("\n" + markdown_table(steps) + "\n")
    print("\n".join(f"SLO MISSED: {m}" for m in misses) or "SLO met.")
    print(f"reports: {out}/summary.md")
    return 1 if misses else 0


def soak(args) -> int:
    out = args.out or REPO / "reports" / "loadtest"
    out.mkdir(parents=True, exist_ok=True)
    slo = SLO(max_p99_ms=args.slo_p99_ms)
    target = Target(args, out / "soak")
    samples: list[tuple[float, float]] = []
    try:
        max_rps = args.max_rps
        source = "--max-rps"
        summary = out / "summary.json"
        if max_rps is None and summary.is_file():
            max_rps, source = json.loads(summary.read_text()).get("max_rps"), f"{summary} (last sweep)"
        if max_rps is None:
            step = run_step(target.url, 32, 15, out / "soak" / "max", server_pid=target.pid, quiet=False)
            max_rps, source = step.rps, "a 15 s closed-loop run at 32 users"
        rate = args.fraction * max_rps
        print(f"soak: {args.seconds:.0f} s at {rate:.1f} req/s = {args.fraction:.0%} of {max_rps:.1f} "
              f"(max from {source})", flush=True)
        tree = ProcessTree(target.pid)
        cold_rss = tree.rss_mib()
        if args.warmup > 0:  # the RSS baseline is taken after this: caches and arenas fill up first
            print(f"warm-up: {args.warmup:.0f} s at the soak rate (RSS now {cold_rss:.0f} MiB)", flush=True)
            run_step(target.url, args.users, args.warmup, out / "soak" / "warmup", rate=rate, server_pid=target.pid)
        stop = threading.Event()
        t0 = time.monotonic()

        def sample():
            shown = 0.0
            while True:
                samples.append((time.monotonic() - t0, tree.rss_mib()))
                if samples[-1][0] - shown >= 60:  # progress once a minute
                    shown = samples[-1][0]
                    print(f"  {shown:4.0f} / {args.seconds:.0f} s, server RSS {samples[-1][1]:.0f} MiB", flush=True)
                if stop.wait(args.rss_every):
                    break
            samples.append((time.monotonic() - t0, tree.rss_mib()))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            step = run_step(target.url, args.users, args.seconds, out / "soak" / "soak", rate=rate,
                            label=f"soak {rate:.0f}/s", server_pid=target.pid, pin_cpus=_pin(args.pin_locust),
                            quiet=False)
        finally:
            stop.set()
            sampler.join()
    finally:
        target.stop()
    misses = slo.check(step)
    have_rss = target.pid is not None and samples and samples[0][1] > 0
    if have_rss:
        misses += slo.check_rss(samples[0][1], samples[-1][1])
    plot = _plot_rss(samples, out / "soak_rss.png") if have_rss else None
    if have_rss:
        start, end = samples[0][1], samples[-1][1]
        half = min(samples, key=lambda sample: abs(sample[0] - samples[-1][0] / 2))[1]
        rss_line = (f"Server RSS (process tree): {cold_rss:.0f} MiB before the {args.warmup:.0f} s warm-up; "
                    f"start {start:.0f} MiB, end {end:.0f} MiB ({(end - start) / start:+.1%}), "
                    f"max {max(v for _, v in samples):.0f} MiB; second half of the soak {(end - half) / half:+.1%}.")
    else:
        rss_line = "Server RSS: not measured (remote host without --server-pid)."
    lines = [
        "# Soak", "",
        f"Target: {target.url}; {args.seconds:.0f} s at {rate:.1f} req/s offered "
        f"({args.fraction:.0%} of {max_rps:.1f} req/s, from {source}), {args.users} paced users.", "",
        markdown_table([step]), "", rss_line, "",
        f"SLO: zero errors, no 5xx, p99 <= {slo.max_p99_ms:.0f} ms, RSS growth < {slo.max_rss_growth:.0%}.", "",
        ("**SLO met.**" if not misses else "**SLO missed:**\n\n" + "\n".join(f"- {m}" for m in misses)), "",
        *([f"![server RSS]({plot.name})", ""] if plot else []),
    ]
    (out / "soak.md").write_text("\n".join(lines))
    write_json(out / "soak.json", {"target": target.url, "rate": rate, "max_rps": max_rps, "step": step,
                                   "warmup_s": args.warmup, "cold_rss_mib": cold_rss, "rss_mib": samples,
                                   "misses": misses})
    print("\n".join(lines))
    return 1 if misses else 0


def _plot_rss(samples, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot([t for t, _ in samples], [v for _, v in samples], marker=".")
    ax.set_xlabel("seconds")
    ax.set_ylabel("server RSS (MiB)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _terminate(signum, frame):
    raise SystemExit(128 + signum)  # run the `finally` blocks: stop the servers started here


def main(argv: list[str] | None = None) -> int:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    parser = argparse.ArgumentParser(prog="python -m loadtest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("sweep", help="users sweep with SLO check (make loadtest)")
    _common(p)
    p.add_argument("--users", type=_users, default=_users(os.environ.get("USERS", "1 8 32 64")))
    p.add_argument("--seconds", type=float, default=float(os.environ.get("SECONDS_PER_STEP", 20)))
    p.add_argument("--slo-p99-ms", type=float, default=SLO.max_p99_ms)
    p.add_argument("--slo-p99-ms-single-user", type=float, default=SLO.max_p99_ms_single_user)

    p = commands.add_parser("soak", help="long run at a fraction of the max throughput (make soak)")
    _common(p)
    p.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", 600)))
    p.add_argument("--fraction", type=float, default=0.7)
    p.add_argument("--max-rps", type=float, default=None)
    p.add_argument("--users", type=int, default=32)
    p.add_argument("--rss-every", type=float, default=10.0)
    p.set_defaults(warmup=60.0)
    p.add_argument("--slo-p99-ms", type=float, default=SLO.max_p99_ms)

    p = commands.add_parser("bench", help="the five servers side by side (make bench)")
    from loadtest.bench import add_arguments

    add_arguments(p)
    args = parser.parse_args(argv)
    if args.command == "sweep":
        return sweep(args)
    if args.command == "soak":
        return soak(args)
    from loadtest.bench import bench

    return bench(args)


if __name__ == "__main__":
    sys.exit(main())
