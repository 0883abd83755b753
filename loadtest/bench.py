"""``make bench``: the service against hand-written servers, in one run.

Every server gets the same locust scenario and the same images (loadtest/locustfile.py). They
all run side by side (an idle one costs nothing) and take turns, in rounds with the order rotated,
so that the background load of a shared machine hits all of them alike; the report gives medians:

1. the service with adaptive batching, in its default configuration;
2. the same service with batching off (``BATCHING=off``: one forward pass per request);
3. the tutorial server: FastAPI + Keras ``model.predict`` per request (loadtest.alternatives.tutorial);
4. the careful server: FastAPI + ``model(x, training=False)`` per request (…alternatives.careful);
5. the floor: Starlette + numpy forward pass, one worker (…alternatives.floor);

and on request ``base``: the service served from another checkout (``--baseline DIR``, e.g. the
previous commit in a ``git worktree``), for a before/after comparison in the same run.

For each: closed-loop steps (``--users``, default 16 and 64) give the maximum throughput at zero
errors; then a fixed offered load (``--rate``, default half of (1)'s maximum) gives p50/p99 at the
same load for all. Then the small-upload scenario (``--small-users``, default 32 users posting
28x28 PNG digits to /mnist/predict, ``LOADTEST_SCENARIO=small``) on (1), (5) and ``base``: what the
stack costs per request when the image is nearly free. For (1) (``--profile``) a further run under
py-spy gives the CPU breakdown, and on (5) locust's own CPU per request is measured with
FastHttpUser and with HttpUser. Writes ``reports/bench/serving.md`` (+ .json, .png, and every
locust CSV/HTML under ``reports/bench/serving/``).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import threading
import time
from pathlib import Path

import psutil

from loadtest import profile
from loadtest.run import REPO, Server, ServerSpec, http_get, run_step, start_server
from loadtest.summary import Step, plot_latency, write_json

SERVICE_KNOBS = ("MAX_BATCH_SIZE", "MAX_LATENCY_MS", "WORKERS", "BATCHING", "BENTOML_CONFIG")
SMALL_VARIANTS = ("1", "5", "base")


def specs(baseline: Path | None = None) -> dict[str, ServerSpec]:
    alt = "loadtest.alternatives."
    floor = ServerSpec.uvicorn("floor", alt + "floor")
    service = "bentoml serve, defaults (WORKERS=cpu_count, MAX_BATCH_SIZE=128, MAX_LATENCY_MS=1000)"
    return {
        "1": ServerSpec.bentoml("1 service, adaptive batching", unset=SERVICE_KNOBS, description=service),
        "2": ServerSpec.bentoml("2 service, no batching", {"BATCHING": "off"}, unset=SERVICE_KNOBS,
                                description="the same, BATCHING=off"),
        "3": ServerSpec.uvicorn("3 tutorial: FastAPI + model.predict", alt + "tutorial",
                                description="uvicorn, 1 worker"),
        "4": ServerSpec.uvicorn("4 careful: FastAPI + model(x)", alt + "careful", description="uvicorn, 1 worker"),
        "5": ServerSpec("5 floor: Starlette + numpy", floor.command, {"OPENBLAS_NUM_THREADS": "1"},
                        "uvicorn, 1 worker, single-threaded BLAS"),
        "base": ServerSpec.bentoml("base: service from the baseline checkout", unset=SERVICE_KNOBS, cwd=baseline,
                                   description=f"bentoml serve from {baseline.name if baseline else '?'}"),
    }


def add_arguments(p) -> None:
    p.add_argument("--variants", default=os.environ.get("BENCH_VARIANTS", "1,2,3,4,5"),
                   help="comma-separated (choices: 1 2 3 4 5 base); without --rate, 1 must be one")
    p.add_argument("--baseline", type=Path, default=None,
                   help="checkout to serve as variant 'base' (added to --variants when given)")
    p.add_argument("--users", default=os.environ.get("BENCH_USERS", "16 64"),
                   help="closed-loop steps per server (users)")
    p.add_argument("--small-users", type=int, default=32,
                   help="users of the small-upload scenario (0: skip it)")
    p.add_argument("--seconds", type=float, default=float(os.environ.get("BENCH_SECONDS", 10)))
    p.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", 2)),
                   help="rounds of every step, servers taking turns; the report gives the median")
    p.add_argument("--rate", type=float, default=None, help="fixed offered load, req/s (default: half of (1)'s max)")
    p.add_argument("--rate-users", type=int, default=16,
                   help="paced users for the fixed load (each at rate/users; enough while latency < users/rate)")
    p.add_argument("--warmup", type=float, default=4.0)
    p.add_argument("--profile", default="1", help="variants to profile with py-spy ('' for none)")
    p.add_argument("--profile-seconds", type=float, default=10.0)
    p.add_argument("--compare-clients", default="5",
                   help="variant on which to measure locust's CPU per request with FastHttpUser and HttpUser")
    p.add_argument("--pin-locust", default=None, help="CPU list to pin locust to; default: counted, not pinned")
    p.add_argument("--out", type=Path, default=None)


def _pin(text):
    return {int(v) for v in text.split(",")} if text else None


def profile_under_load(server: Server, seconds: float, out: Path, users: int = 32) -> tuple[str, dict] | None:
    """py-spy on the server tree while locust runs ``users`` closed-loop users (not a measured step)."""
    out.mkdir(parents=True, exist_ok=True)
    result: dict = {}
    load = threading.Thread(target=lambda: result.setdefault(
        "step", run_step(server.url, users, seconds + 6, out / "profile_load", server_pid=server.process.pid)))
    load.start()
    time.sleep(3)
    raw = profile.record(server.process.pid, seconds, out / "pyspy.txt")
    load.join()
    if raw is None:
        return None
    counts = profile.breakdown(raw.read_text())
    return profile.markdown(counts, seconds, 100), {p: dict(c) for p, c in counts.items()}


def combine(steps: list[Step]) -> Step:
    """The median of the rounds of one load level (errors and statuses added up); ``spread`` keeps
    the lowest and highest req/s."""
    def med(values):
        values = sorted(v for v in values if v is not None)
        return statistics.median(values) if values else None

    first = steps[0]
    status: dict[str, int] = {}
    for step in steps:
        for code, n in step.status.items():
            status[code] = status.get(code, 0) + n
    methods = {m for step in steps for m in step.batch_size}
    combined = Step(label=first.label, users=first.users, requests=sum(s.requests for s in steps),
                    failures=sum(s.failures for s in steps), rps=med(s.rps for s in steps),
                    p50_ms=med(s.p50_ms for s in steps), p95_ms=med(s.p95_ms for s in steps),
                    p99_ms=med(s.p99_ms for s in steps), max_ms=max(s.max_ms for s in steps),
                    offered_rps=first.offered_rps, status=status, bad_answers=sum(s.bad_answers for s in steps),
                    images_per_request=med(s.images_per_request for s in steps),
                    accuracy={k: med(s.accuracy.get(k) for s in steps) for k in first.accuracy},
                    batch_size={m: med(s.batch_size.get(m) for s in steps) for m in methods},
                    cpu={k: med(s.cpu.get(k) for s in steps) for k in first.cpu},
                    seconds=sum(s.seconds for s in steps))
    combined.spread = (min(s.rps for s in steps), max(s.rps for s in steps))
    return combined


def bench(args) -> int:
    out = args.out or REPO / "reports" / "bench"
    detail = out / "serving"
    detail.mkdir(parents=True, exist_ok=True)
    users = [int(v) for v in str(args.users).replace(",", " ").split()]
    all_specs = specs(args.baseline)
    chosen = [v.strip() for v in args.variants.split(",") if v.strip()]
    if args.baseline and "base" not in chosen:
        chosen.append("base")
    unknown = [v for v in chosen if v not in all_specs]
    if unknown or ("base" in chosen and not args.baseline):
        raise SystemExit(f"unknown variants {unknown} (or base without --baseline)")
    if args.rate is None and "1" not in chosen:
        raise SystemExit("without --rate, variant 1 sets the offered load: include it")
    machine = {"cpus": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
               "load_average_before": os.getloadavg(), "python": platform.python_version(),
               "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
               "openblas": {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS")}}
    try:
        machine["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                           text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    started = time.time()
    servers: dict[str, Server] = {}
    raw: dict[str, dict[str, list[Step]]] = {key: {} for key in chosen}
    extra: dict[str, dict] = {key: {} for key in chosen}
    pin = _pin(args.pin_locust)

    def start(key: str) -> None:
        spec = all_specs[key]
        print(f"starting {spec.name} ({spec.description})", flush=True)
        t0 = time.monotonic()
        servers[key] = start_server(spec, detail / key).wait_ready()
        extra[key].setdefault("ready_s", time.monotonic() - t0)
        run_step(servers[key].url, 8, args.warmup, detail / key / "warmup", server_pid=servers[key].process.pid)

    def alive(key: str) -> bool:
        server = servers[key]
        return server.process.poll() is None and http_get(f"{server.url}/readyz")[0] == 200

    def step(key: str, level: str, round_no: int, **kwargs) -> Step:
        for attempt in (1, 2, 3):
            if not alive(key):  # killed from outside (a shared machine): start it again, redo the step
                print(f"  {all_specs[key].name} is gone (exit code {servers[key].process.poll()}): restarting",
                      flush=True)
                servers[key].stop()
                extra[key]["restarts"] = extra[key].get("restarts", 0) + 1
                start(key)
            server = servers[key]
            result = run_step(server.url, out_prefix=detail / key / f"{level}_r{round_no}",
                              server_pid=server.process.pid, pin_cpus=pin, **kwargs)
            if alive(key):
                break
        raw[key].setdefault(level, []).append(result)
        print(f"  r{round_no} {all_specs[key].name[:34]:34} {result.label:>16}: {result.rps:7.1f} req/s  "
              f"p50 {result.p50_ms:5.0f}  p99 {result.p99_ms:5.0f} ms  errors {result.failures}  "
              f"cpu " + " ".join(f"{k} {v:.0f}%" for k, v in result.cpu.items()), flush=True)
        return result

    def rotated(round_no: int) -> list[str]:
        shift = round_no % len(chosen)
        return chosen[shift:] + chosen[:shift]

    try:
        # All servers run side by side (idle ones cost nothing) and take turns, round after round
        # in rotated order, so that a change in the machine's background load hits them all alike.
        for key in chosen:
            start(key)
        for round_no in range(1, args.rounds + 1):
            print(f"closed loop, round {round_no} of {args.rounds}", flush=True)
            for key in rotated(round_no):
                for u in users:
                    step(key, f"u{u}", round_no, users=u, seconds=args.seconds)
        rate = args.rate
        if rate is None:
            levels = [combine(steps) for steps in raw["1"].values()]
            clean = [lv for lv in levels if lv.failures == 0] or levels
            rate = round(max(lv.rps for lv in clean) / 2, 1)
            print(f"fixed offered load for every server: {rate} req/s (half of (1)'s max)", flush=True)
        for round_no in range(1, args.rounds + 1):
            print(f"fixed load {rate} req/s, round {round_no} of {args.rounds}", flush=True)
            for key in rotated(round_no):
                step(key, "rate", round_no, users=args.rate_users, seconds=args.seconds, rate=rate,
                     label=f"{rate:.0f} req/s offered")
        small = [key for key in chosen if key in SMALL_VARIANTS] if args.small_users else []
        for round_no in range(1, args.rounds + 1):
            if small:
                print(f"small uploads (28x28 PNG digits), {args.small_users} users, round {round_no}", flush=True)
            for key in [k for k in rotated(round_no) if k in small]:
                step(key, "small", round_no, users=args.small_users, seconds=args.seconds,
                     label=f"small PNG, {args.small_users} users", extra_env={"LOADTEST_SCENARIO": "small"})
        if args.compare_clients in servers:
            key, clients = args.compare_clients, {}
            for client in ("fast", "http"):
                result = step(key, f"client_{client}", 1, users=args.rate_users, seconds=args.seconds, rate=rate,
                              label=f"{client} client", extra_env={"LOADTEST_CLIENT": client})
                clients[client] = {"rps": result.rps, "locust_cpu_pct": result.cpu["locust"], "p50_ms": result.p50_ms,
                                   "cpu_ms_per_request": 10 * result.cpu["locust"] / result.rps if result.rps else None}
            extra[key]["clients"] = clients
        for key in [v.strip() for v in args.profile.split(",") if v.strip() in servers]:
            if args.profile_seconds > 0:
                print(f"profiling {all_specs[key].name} with py-spy for {args.profile_seconds:.0f} s under 32 users",
                      flush=True)
                if not alive(key):
                    servers[key].stop()
                    start(key)
                prof = profile_under_load(servers[key], args.profile_seconds, detail / key / "profile")
                if prof:
                    extra[key]["profile_md"], extra[key]["profile"] = prof
        for key, server in servers.items():
            try:
                tree = [psutil.Process(server.process.pid), *psutil.Process(server.process.pid).children(True)]
                extra[key]["rss_mib"] = sum(p.memory_info().rss for p in tree) / 2**20
            except psutil.Error:
                pass
    finally:
        for server in servers.values():
            server.stop()
    results: dict[str, dict] = {}
    for key in chosen:
        closed = [combine(raw[key][f"u{u}"]) for u in users]
        clean = [lv for lv in closed if lv.failures == 0]
        results[key] = {"name": all_specs[key].name, "config": all_specs[key].description, "closed": closed,
                        "paced": combine(raw[key]["rate"]), "best": max(clean, key=lambda lv: lv.rps) if clean else None,
                        "small": combine(raw[key]["small"]) if "small" in raw[key] else None,
                        "rounds": {level: steps for level, steps in raw[key].items()}, **extra[key]}
    if "2" in results and any((lv.mean_batch or 0) > 1.001 for lv in results["2"]["closed"]):
        results["2"]["name"] += " (NOT OFF: batches were formed)"
        print("WARNING: variant 2 formed batches: BATCHING=off was ignored", flush=True)
    images = json.loads((detail / chosen[0] / f"u{users[-1]}_r1_sidecar.json").read_text()).get("image_source")
    md = report(results, rate, users, args, machine, images, time.time() - started)
    (out / "serving.md").write_text(md)
    write_json(out / "serving.json", {"machine": machine, "rate": rate, "users": users, "seconds": args.seconds,
                                      "rounds": args.rounds, "results": results})
    plot_latency({r["name"].split(":")[0]: [*r["closed"], r["paced"]] for r in results.values()},
                 out / "serving.png", "p50/p99 vs throughput per server (closed-loop steps + fixed load)")
    print("\n" + md)
    print(f"reports: {out / 'serving.md'}")
    return 0


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}×" if a and b else "–"


def report(results: dict, rate: float, users: list[int], args, machine: dict, images: str, wall: float) -> str:
    one = results.get("1", {}).get("best")  # the ratios column: (1) divided by each
    lines = [
        "# Serving benchmark", "",
        f"`make bench` (`python -m loadtest bench`), {time.strftime('%Y-%m-%d %H:%M')}, commit "
        f"{machine.get('commit', '?')}; {machine['cpus']} CPUs ({machine['cpu']}), {machine['memory_gib']} GiB; "
        f"load average before: {', '.join(f'{v:.2f}' for v in machine['load_average_before'])}; "
        f"whole run {wall / 60:.1f} min.", "",
        f"Scenario: loadtest/locustfile.py (45 % /mnist/predict, 45 % /asl/predict, 10 % predict_batch of 2–10 "
        f"images; half the single predictions with top_k = all classes), FastHttpUser. Images: {images}.",
        f"All servers run side by side and take turns: {args.rounds} rounds (order rotated each round) of "
        f"closed-loop steps at {', '.join(map(str, users))} users, {args.seconds:.0f} s each, after a "
        f"{args.warmup:.0f} s warm-up; then {args.rounds} rounds of {rate:.1f} req/s offered by {args.rate_users} "
        "paced users. Every number is the median over the rounds; errors are added up.",
        "The load generator runs on the same 2 cores: its CPU use is counted (locust column), "
        + ("and it was pinned to CPU " + args.pin_locust + "." if args.pin_locust else "not pinned."), "",
        "## Throughput and latency", "",
        f"| server | config | max req/s at 0 errors (users) | (1) ÷ this | p50 ms @ {rate:.0f}/s | p99 ms @ {rate:.0f}/s "
        f"| achieved @ {rate:.0f}/s | errors | mean batch | server CPU % | server CPU ms/req | locust CPU % "
        "| other CPU % | RSS MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, r in results.items():
        best, paced = r["best"], r["paced"]
        top = f"{best.rps:.1f} ({best.users})" if best else "errors at every step"
        errors = sum(s.failures for s in r["closed"]) + paced.failures
        at = best or paced
        batch = (f"{best.mean_batch:.2f}" if best and best.mean_batch else "–")
        lines.append(
            f"| {r['name']} | {r['config']} | {top} | {_ratio(one.rps if one else None, best.rps if best else None)} | "
            f"{paced.p50_ms:.0f} | {paced.p99_ms:.0f} | {paced.rps:.1f} | {errors} | {batch} | "
            f"{at.cpu.get('server', 0):.0f} | {at.server_ms_per_request or 0:.1f} | {at.cpu.get('locust', 0):.0f} | "
            f"{at.cpu.get('other', 0):.0f} | {r.get('rss_mib', 0):.0f} |")
    lines += ["", "CPU columns (at the max-throughput step): % of one core; 'other' is everything else on the "
              "machine (other users of this box included); server CPU ms/req = server CPU time per request, the "
              "efficiency number least disturbed by a busy machine. RSS: the server's process tree after the run.", ""]
    restarted = {r["name"]: r["restarts"] for r in results.values() if r.get("restarts")}
    if restarted:
        lines += ["Killed from outside during the run and restarted (the interrupted step was repeated): "
                  + ", ".join(f"{name} ({n}×)" for name, n in restarted.items()) + ".", ""]
    targets = []
    for key in ("1", "base"):
        mine = results.get(key, {}).get("best")
        if not mine:
            continue
        name = f"({key})"

        def target(other_key, factor, what):
            other = results.get(other_key, {}).get("best")
            if not other:
                return f"- {name} ≥ {factor}× {what}: not measured"
            ok = mine.rps >= factor * other.rps
            return (f"- {name} ≥ {factor}× {what}: {mine.rps:.1f} vs {other.rps:.1f} req/s = {mine.rps / other.rps:.2f}× "
                    f"→ **{'met' if ok else 'missed'}**")

        paced = results[key]["paced"]
        half = mine.rps / 2
        targets += [target("4", 2, "(4) careful"), target("5", 0.8, "(5) floor"),
                    f"- {name} p99 ≤ 50 ms at half the max throughput of (1) ({rate:.0f} req/s offered; half its own: "
                    f"{half:.0f}): p99 {paced.p99_ms:.0f} ms, {paced.rps:.1f} req/s achieved → "
                    f"**{'met' if paced.p99_ms <= 50 else 'missed'}**"]
    small = {key: r["small"] for key, r in results.items() if r.get("small")}
    floor_small = small.get("5")
    for key in ("1", "base"):
        if key in small and floor_small:
            ratio = small[key].rps / floor_small.rps
            targets.append(f"- ({key}) ≥ 0.8× (5) floor on small uploads: {small[key].rps:.1f} vs {floor_small.rps:.1f} "
                           f"req/s = {ratio:.2f}× → **{'met' if ratio >= 0.8 else 'missed'}**")
    if targets:
        lines += ["## Targets", "", *targets, ""]
    if small:
        lines += ["## Small uploads", "",
                  f"{args.small_users} closed-loop users posting 28x28 PNG test digits to /mnist/predict "
                  "(`LOADTEST_SCENARIO=small`): decoding and the model are nearly free, so this measures what "
                  "the HTTP stack costs per request.", "",
                  "| server | req/s | rounds' req/s | (5) ratio | p50 ms | p99 ms | errors | server CPU ms/req | locust CPU % |",
                  "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
        for key, lv in small.items():
            spread = f"{lv.spread[0]:.0f}–{lv.spread[1]:.0f}" if lv.spread else "–"
            lines.append(f"| {results[key]['name']} | {lv.rps:.1f} | {spread} | "
                         f"{_ratio(lv.rps, floor_small.rps if floor_small else None)} | {lv.p50_ms:.0f} | "
                         f"{lv.p99_ms:.0f} | {lv.failures} | {lv.server_ms_per_request or 0:.2f} | "
                         f"{lv.cpu.get('locust', 0):.0f} |")
        lines.append("")
    lines += ["## Every step (median of the rounds)", "",
              "| server | load | req/s | rounds' req/s | p50 | p95 | p99 ms | errors | 5xx | mean batch | server CPU % | "
              "server CPU ms/req | locust CPU % | other CPU % |",
              "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results.values():
        for s in [*r["closed"], r["paced"]]:
            batch = f"{s.mean_batch:.2f}" if s.mean_batch else "–"
            spread = f"{s.spread[0]:.0f}–{s.spread[1]:.0f}" if s.spread else "–"
            lines.append(f"| {r['name']} | {s.label} | {s.rps:.1f} | {spread} | {s.p50_ms:.0f} | {s.p95_ms:.0f} | {s.p99_ms:.0f} | "
                         f"{s.failures} | {s.server_errors} | {batch} | {s.cpu.get('server', 0):.0f} | "
                         f"{s.server_ms_per_request or 0:.1f} | {s.cpu.get('locust', 0):.0f} | {s.cpu.get('other', 0):.0f} |")
    lines += ["", "![latency vs throughput](serving.png)", ""]
    for r in results.values():
        if r.get("clients"):
            c = r["clients"]
            lines += ["## Load generator cost", "",
                      f"Locust CPU per request against {r['name']} at {rate:.0f} req/s offered: FastHttpUser "
                      f"{c['fast']['cpu_ms_per_request']:.2f} ms, HttpUser (requests) {c['http']['cpu_ms_per_request']:.2f} ms "
                      f"(p50 {c['fast']['p50_ms']:.0f} vs {c['http']['p50_ms']:.0f} ms). The scenario uses FastHttpUser.", ""]
    for key, r in results.items():
        if r.get("profile_md"):
            lines += [f"## Where the time goes: {r['name']} (py-spy, 32 users, {args.profile_seconds:.0f} s)", "",
                      "Each sample goes to the innermost frame that matches a bucket (loadtest/profile.py); "
                      "idle samples (waiting in epoll, locks, idle threads) are left out.", "",
                      r["profile_md"]]
    return "\n".join(lines)
