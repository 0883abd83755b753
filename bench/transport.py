"""How the HTTP workers should reach a model executor: BentoML's own means against a local socket,
with the in-worker placement as the number to beat. ``python -m bench.transport``.

Three servers of the same HTTP layer, side by side, taking turns (rounds, order rotated; medians):

* ``in-worker``: ``PLACEMENT=worker``, every worker batches and runs its own passes;
* ``executor, socket``: ``PLACEMENT=executor``, the shipped model executor (execution/executor.py);
* ``executor, BentoML``: ``bench.bentoml_executor``, a second BentoML service reached through
  ``bentoml.depends`` with batchable APIs (BentoML's adaptive batching over every worker's calls).

Single uploads alternating the families (``bench.loadgen``, closed loop) at each ``--connections``;
req/s, p50 / p99, errors and the server's CPU per request (its whole process tree). Writes
``reports/bench/transport.md`` (+ ``.json``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from bench import loadgen
from bench.gpu import REPO, tree_cpu, upload_requests
from tools.servers import BENTOML, Server

OUT = REPO / "reports" / "bench" / "transport.md"
VARIANTS = {
    "in-worker": ([BENTOML, "serve"], {"PLACEMENT": "worker"}),
    "executor, socket": ([BENTOML, "serve"], {"PLACEMENT": "executor"}),
    "executor, BentoML": ([BENTOML, "serve", "bench.bentoml_executor:DigitsAndSigns"], {}),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.transport", description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--processes", type=int, default=1, help="load generator processes")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)

    servers: dict[str, Server] = {}
    results: dict[str, dict[int, list]] = {name: {c: [] for c in args.connections} for name in VARIANTS}
    try:
        for name, (command, env) in VARIANTS.items():
            print(f"starting {name} ...", flush=True)
            started = time.monotonic()
            servers[name] = Server([*command, "--host", "127.0.0.1", "--port", "{port}"],
                                   env={"KERAS_BACKEND": "jax", **env},
                                   log=REPO / "reports" / "bench" / "transport" / f"{name.replace(', ', '-')}.log")
            servers[name].wait_ready(300)
            print(f"  ready after {time.monotonic() - started:.1f} s", flush=True)
        requests = upload_requests("127.0.0.1")
        for round_ in range(args.rounds):
            order = list(servers)[round_ % len(servers):] + list(servers)[: round_ % len(servers)]
            for connections in args.connections:
                for name in order:
                    server = servers[name]
                    cpu = tree_cpu(server.process.pid)
                    result = loadgen.run(server.url, requests, connections, args.seconds, args.warmup, args.processes)
                    cpu = tree_cpu(server.process.pid) - cpu
                    row = {"req_s": result.per_second, "p50": result.percentile(50), "p99": result.percentile(99),
                           "errors": result.errors,
                           "cpu_ms": 1000 * cpu / max(1, result.answers + result.failures)}
                    results[name][connections].append(row)
                    print(f"round {round_ + 1}, {connections} connections, {name}: {row['req_s']:.1f} req/s, "
                          f"p50 {row['p50']:.1f} ms, p99 {row['p99']:.1f} ms, {row['cpu_ms']:.2f} ms CPU/req, "
                          f"errors {row['errors']}", flush=True)
    finally:
        for server in servers.values():
            server.stop()

    lines = ["# Reaching the model: in-worker, a model executor on a local socket, a model executor through "
             "BentoML", "", f"`python -m bench.transport`, {time.strftime('%Y-%m-%d %H:%M')}: single uploads "
             f"alternating /mnist and /asl, closed loop, {args.seconds:g} s per step after {args.warmup:g} s, "
             f"{args.rounds} rounds (medians; the range in brackets). Server CPU counts the whole process tree "
             "(workers, executor, decoders), load and load generator share the machine.", "",
             "| connections | variant | req/s | ÷ in-worker | p50 ms | p99 ms | server CPU ms / req | errors |",
             "|---:|---|---:|---:|---:|---:|---:|---:|"]
    summary = {}
    for connections in args.connections:
        base = statistics.median(r["req_s"] for r in results["in-worker"][connections])
        for name in servers:
            rows = results[name][connections]
            med = {k: statistics.median(r[k] for r in rows if r[k] is not None) for k in ("req_s", "p50", "p99", "cpu_ms")}
            spread = f"{min(r['req_s'] for r in rows):.0f}–{max(r['req_s'] for r in rows):.0f}"
            summary.setdefault(name, {})[connections] = {**med, "rounds": rows}
            lines.append(f"| {connections} | {name} | {med['req_s']:.1f} ({spread}) | {med['req_s'] / base:.2f}× | "
                         f"{med['p50']:.1f} | {med['p99']:.1f} | {med['cpu_ms']:.2f} | "
                         f"{sum(r['errors'] for r in rows)} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=1))
    print("\n".join(lines) + f"\n\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
