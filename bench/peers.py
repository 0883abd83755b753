"""``make bench-peers``: the service against the serving systems users would pick instead.

The peers (loadtest/peers: Triton through pytriton, LitServe, Ray Serve, BentoML written the
quickstart way) serve the same stored models with the same weights, get the same uploads from the
same locust scenario and prepare them with the project's stem; only the serving stack differs.
Each peer runs with two (or more) settings of its dynamic batching; the best (highest max req/s)
is the peer's result, and every setting is reported.

One server runs at a time (an idle Ray or Triton is not idle: its daemons would take CPU from the
one measured) and they take turns, in rounds with the order rotated; the report gives medians.
In each server's turn: start (timed), warm-up, closed-loop steps of the mixed scenario (``--users``),
the fixed offered load (half of the service's max, set by the service's turn in the first round,
which comes first), then the small-upload scenario (28x28 PNG digits). Per step: req/s, p50/p99,
errors, the server tree's CPU per request and its split over the tree's processes (Ray's own
daemons apart from the replica doing the work), the mean batch the peer formed (its own counters),
and the peak memory of the tree.

A peer that cannot be set up or started is reported with its exact error; the others go on.
Writes ``reports/bench/peers.md`` (+ .json, peers.png, every locust CSV/HTML and server log under
``reports/bench/peers/``).
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from loadtest.bench import SERVICE_KNOBS, combine
from loadtest.peers import PEERS, BatchSetting, Peer, parse_keys, setup
from loadtest.run import REPO, ServerSpec, run_step, start_server
from loadtest.summary import Step, write_json
from tools.servers import Server

SERVICE = "service"


@dataclass
class Variant:
    """One server in one configuration: the service, or a peer with one batch setting."""

    key: str
    name: str
    config: str
    spec: ServerSpec | None
    protocol: str = "multipart"
    peer: Peer | None = None
    setting: BatchSetting | None = None

    @property
    def family(self) -> str:
        return self.peer.key if self.peer else SERVICE


def service_variant() -> Variant:
    spec = ServerSpec.bentoml("service", unset=SERVICE_KNOBS,
                              description="bentoml serve, defaults (WORKERS=cpu_count, MAX_BATCH_SIZE=128, "
                                          "MAX_LATENCY_MS=1000)")
    return Variant(SERVICE, "the service (adaptive batching)", spec.description, spec)


def peer_variants(peer: Peer, settings: list[BatchSetting] | None = None) -> list[Variant]:
    out = []
    for setting in settings or peer.settings:
        spec = ServerSpec(f"{peer.key}", peer.command(setting), peer.env(setting), setting.label,
                          ready_path=peer.ready_path)
        out.append(Variant(f"{peer.key}@{setting.max_batch_size}/{setting.max_wait_ms:g}",
                           f"{peer.name}", setting.label, spec, peer.protocol, peer, setting))
    return out


# ---- what each process of a server's tree spent -------------------------------------------------

def role(process: psutil.Process) -> str:
    """A short name for what a process of a server's tree is (Ray's process titles kept)."""
    try:
        command = process.cmdline()
        name = process.name()
    except psutil.Error:
        return "?"
    if not command:
        return name
    first = command[0]
    if first.startswith("ray::"):  # Ray's titles: ray::<actor>[.<method running now>]
        return first.split()[0].split(".")[0]
    base = Path(first).name
    if base.startswith("python"):
        if "-m" in command[1:]:
            module = command[command.index("-m") + 1]
            if module.startswith("_bentoml_impl.worker") and "--service-name" in command:
                return f"bentoml worker of {command[command.index('--service-name') + 1]}"
            return f"python -m {module}"
        if "-c" in command[1:] and "multiprocessing" in command[command.index("-c") + 1]:
            return "python multiprocessing child"
        scripts = [Path(part).name for part in command[1:] if part.endswith(".py")]
        return f"python {scripts[0]}" if scripts else base
    return base


def tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def cpu_by_process(pid: int) -> dict[int, tuple[str, float]]:
    """{pid: (role, CPU seconds so far)} over the tree of ``pid``."""
    out = {}
    for process in tree(pid):
        try:
            times = process.cpu_times()
            out[process.pid] = (role(process), times.user + times.system)
        except psutil.Error:
            pass
    return out


def cpu_split(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], seconds: float
              ) -> dict[str, float]:
    """CPU per role between two :func:`cpu_by_process` readings, in % of one core, largest first."""
    split: dict[str, float] = {}
    for pid, (name, cpu) in after.items():
        spent = cpu - before.get(pid, (name, 0.0))[1]
        split[name] = split.get(name, 0.0) + max(0.0, spent)
    return dict(sorted(((k, 100 * v / seconds) for k, v in split.items()), key=lambda kv: -kv[1]))


def rss_mib(pid: int) -> float:
    total = 0
    for process in tree(pid):
        try:
            total += process.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


def stop_all(server: Server, grace: float = 15.0, linger: float = 5.0) -> list[str]:
    """Stop ``server`` as an orchestrator would: SIGTERM to its main process only (a signal to the whole
    group would stop Ray's daemons before the launcher's own shutdown could), then the group after
    ``grace`` s. What of its tree is still alive ``linger`` s after that is killed; returns their roles."""
    processes = tree(server.process.pid)[1:]
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    server.stop()
    _, alive = psutil.wait_procs(processes, timeout=linger)
    left = []
    for process in alive:
        try:
            if process.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{role(process)} (pid {process.pid})")
                process.send_signal(signal.SIGKILL)
        except psutil.Error:
            pass
    return left


# ---- the benchmark ------------------------------------------------------------------------------

class Turns:
    """Runs the variants' turns and keeps every step, error and side measurement."""

    def __init__(self, args, variants: list[Variant], detail: Path):
        self.args = args
        self.variants = variants
        self.detail = detail
        self.steps: dict[str, dict[str, list[Step]]] = {v.key: {} for v in variants}
        self.extra: dict[str, dict] = {v.key: {"errors": [], "ready_s": [], "left_behind": 0, "peak_rss_mib": 0.0}
                                       for v in variants}
        self.rate: float | None = args.rate

    def step(self, variant: Variant, server: Server, level: str, round_no: int, **kwargs) -> Step:
        extra_env = {"LOADTEST_PROTOCOL": variant.protocol, **kwargs.pop("extra_env", {})}
        counters_before = variant.peer.batch_counters(server.url) if variant.peer else None
        cpu_before, t0 = cpu_by_process(server.process.pid), time.monotonic()
        result = run_step(server.url, out_prefix=self.detail / variant.key.replace("/", "_") / f"{level}_r{round_no}",
                          server_pid=server.process.pid, extra_env=extra_env, **kwargs)
        result.cpu_split = cpu_split(cpu_before, cpu_by_process(server.process.pid), time.monotonic() - t0)
        if variant.peer:
            counters_after = variant.peer.batch_counters(server.url)
            if counters_before and counters_after and counters_after[1] > counters_before[1]:
                rows, passes = (a - b for a, b in zip(counters_after, counters_before))
                result.batch_size = {"all": rows / passes}
        extra = self.extra[variant.key]
        extra["peak_rss_mib"] = max(extra["peak_rss_mib"], rss_mib(server.process.pid))
        self.steps[variant.key].setdefault(level, []).append(result)
        batch = f"{result.mean_batch:.2f}" if result.mean_batch else "-"
        print(f"  r{round_no} {variant.key:26} {result.label:>18}: {result.rps:7.1f} req/s  p50 {result.p50_ms:5.0f}  "
              f"p99 {result.p99_ms:5.0f} ms  errors {result.failures}  batch {batch}  "
              f"server {result.cpu.get('server', 0):.0f}% ({result.server_ms_per_request or 0:.2f} ms/req)", flush=True)
        return result

    def turn(self, variant: Variant, round_no: int) -> None:
        args, extra = self.args, self.extra[variant.key]
        if variant.peer and variant.peer.venv and not Path(variant.peer.interpreter).exists():
            extra["errors"].append(f"no environment at {variant.peer.venv}: run `make peers-setup`")
            return
        print(f"{variant.key}: starting ({variant.config})", flush=True)
        t0 = time.monotonic()
        try:
            server = start_server(variant.spec, self.detail / variant.key.replace("/", "_")).wait_ready(args.start_timeout)
        except (RuntimeError, TimeoutError) as exc:
            extra["errors"].append(f"round {round_no}: did not start: {str(exc)[-1500:]}")
            print(f"  {variant.key}: did not start: {str(exc)[-600:]}", flush=True)
            return
        extra["ready_s"].append(time.monotonic() - t0)
        try:
            env = {"LOADTEST_PROTOCOL": variant.protocol}
            run_step(server.url, 8, args.warmup, self.detail / variant.key.replace("/", "_") / f"warmup_r{round_no}",
                     extra_env=env)
            for users in args.user_levels:
                self.step(variant, server, f"u{users}", round_no, users=users, seconds=args.seconds)
            if self.rate is None and variant.key == SERVICE:
                levels = [combine(self.steps[SERVICE][f"u{u}"]) for u in args.user_levels]
                clean = [lv for lv in levels if lv.failures == 0] or levels
                self.rate = round(max(lv.rps for lv in clean) / 2, 1)
                print(f"fixed offered load for every server: {self.rate} req/s (half of the service's max)", flush=True)
            if self.rate:
                self.step(variant, server, "rate", round_no, users=args.rate_users, seconds=args.seconds,
                          rate=self.rate, label=f"{self.rate:.0f} req/s offered")
            if args.small_users:
                self.step(variant, server, "small", round_no, users=args.small_users, seconds=args.seconds,
                          label=f"small PNG, {args.small_users} users", extra_env={"LOADTEST_SCENARIO": "small"})
        except Exception as exc:  # a peer that breaks under load is a result: report it, go on
            extra["errors"].append(f"round {round_no}: {type(exc).__name__}: {exc}")
            print(f"  {variant.key}: {type(exc).__name__}: {exc}", flush=True)
        finally:
            left = stop_all(server)
            extra["left_behind"] += len(left)
            if left:
                extra["errors"].append(f"round {round_no}: outlived its stop: {', '.join(left)}")

    def run(self) -> None:
        keys = [v for v in self.variants]
        for round_no in range(1, self.args.rounds + 1):
            shift = (round_no - 1) % len(keys)
            order = keys[shift:] + keys[:shift]
            if self.rate is None:  # the service's first turn sets the fixed offered load
                order = sorted(order, key=lambda v: v.key != SERVICE)
            print(f"round {round_no} of {self.args.rounds}: " + ", ".join(v.key for v in order), flush=True)
            for variant in order:
                self.turn(variant, round_no)


def summarize(turns: Turns) -> dict[str, dict]:
    """Per variant: its medians over the rounds, its best closed-loop level, small and paced results."""
    results = {}
    for variant in turns.variants:
        raw, extra = turns.steps[variant.key], turns.extra[variant.key]
        closed = [combine(raw[f"u{u}"]) for u in turns.args.user_levels if raw.get(f"u{u}")]
        clean = [lv for lv in closed if lv.failures == 0]
        best = max(clean or closed, key=lambda lv: lv.rps) if closed else None
        results[variant.key] = {
            "name": variant.name, "family": variant.family, "config": variant.config, "protocol": variant.protocol,
            "closed": closed, "best": best, "best_clean": bool(clean),
            "paced": combine(raw["rate"]) if raw.get("rate") else None,
            "small": combine(raw["small"]) if raw.get("small") else None,
            "cpu_split": _median_split(raw.get(f"u{best.users}", [])) if best else {},
            "ready_s": statistics.median(extra["ready_s"]) if extra["ready_s"] else None,
            "peak_rss_mib": extra["peak_rss_mib"] or None, "errors": extra["errors"],
            "left_behind": extra["left_behind"],
            "failures": sum(s.failures for steps in raw.values() for s in steps),
            "requests": sum(s.requests for steps in raw.values() for s in steps),
            "docs": list(variant.peer.docs) if variant.peer else [],
        }
    return results


def _median_split(steps: list[Step]) -> dict[str, float]:
    names = {name for s in steps for name in getattr(s, "cpu_split", {})}
    split = {name: statistics.median(getattr(s, "cpu_split", {}).get(name, 0.0) for s in steps) for name in names}
    return dict(sorted(split.items(), key=lambda kv: -kv[1]))


def best_of_family(results: dict[str, dict], family: str, what: str) -> dict | None:
    """The family's variant with the highest req/s in ``what`` ('best' closed loop or 'small')."""
    candidates = [r for r in results.values() if r["family"] == family and r.get(what)]
    return max(candidates, key=lambda r: r[what].rps) if candidates else None


def goals(results: dict[str, dict], families: list[str]) -> list[str]:
    mine = results.get(SERVICE)
    lines = []
    if not mine or not mine["best"]:
        return ["- the service was not measured"]
    for family in families:
        peer_mixed, peer_small = best_of_family(results, family, "best"), best_of_family(results, family, "small")
        name = PEERS[family].name
        if not peer_mixed:
            lines.append(f"- {name}: not measured (see its errors)")
            continue
        ratio = mine["best"].rps / peer_mixed["best"].rps
        lines.append(f"- mixed scenario, the service ≥ 1.0× {name} ({peer_mixed['config']}): {mine['best'].rps:.1f} vs "
                     f"{peer_mixed['best'].rps:.1f} req/s = {ratio:.2f}× → **{'met' if ratio >= 1 else 'missed'}**")
        if mine["small"] and peer_small:
            ratio = mine["small"].rps / peer_small["small"].rps
            lines.append(f"- small uploads, the service ≥ 1.0× {name} ({peer_small['config']}): {mine['small'].rps:.1f} "
                         f"vs {peer_small['small'].rps:.1f} req/s = {ratio:.2f}× → **{'met' if ratio >= 1 else 'missed'}**")
        paced = [r for r in results.values() if r["family"] == family and r.get("paced")]
        if mine["paced"] and paced:
            lowest = min(paced, key=lambda r: r["paced"].p99_ms)
            ok = mine["paced"].p99_ms <= lowest["paced"].p99_ms
            lines.append(f"- p99 at half the service's max, the service ≤ {name}'s lowest ({lowest['config']}): "
                         f"{mine['paced'].p99_ms:.0f} vs {lowest['paced'].p99_ms:.0f} ms → **{'met' if ok else 'missed'}**")
    return lines


def plot(results: dict[str, dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [(key, r) for key, r in results.items() if r["best"]]
    labels = [key.replace("@", "\n") for key, _ in measured]
    xs = range(len(measured))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(8, 1.3 * len(measured)), 8), sharex=True)
    width = 0.4
    top.bar([x - width / 2 for x in xs], [r["best"].rps for _, r in measured], width, label="mixed scenario, max")
    top.bar([x + width / 2 for x in xs], [r["small"].rps if r["small"] else 0 for _, r in measured], width,
            label="small PNG uploads")
    top.set_ylabel("req/s")
    top.legend()
    top.set_title("max throughput (closed loop, 0 errors where reached)")
    bottom.bar([x - width / 2 for x in xs], [r["paced"].p50_ms if r["paced"] else 0 for _, r in measured], width,
               label="p50")
    bottom.bar([x + width / 2 for x in xs], [r["paced"].p99_ms if r["paced"] else 0 for _, r in measured], width,
               label="p99")
    bottom.set_yscale("log")
    bottom.set_ylabel("ms")
    bottom.set_title("latency at half the service's max")
    bottom.legend()
    bottom.set_xticks(list(xs), labels, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def report(args, turns: Turns, results: dict[str, dict], families: list[str], machine: dict, setup_s: dict) -> str:
    rate = turns.rate or 0
    lines = [
        "# The service against the servers users would pick instead", "",
        f"`make bench-peers` (bench/peers.py), {time.strftime('%Y-%m-%d %H:%M', time.localtime())}; machine: "
        f"{machine['cpus']} CPUs, {machine['memory_gib']} GiB, commit {machine.get('commit', '?')}. "
        f"{args.rounds} round(s), one server at a time, order rotated; closed loop at "
        f"{', '.join(map(str, args.user_levels))} users, {args.seconds:.0f} s per step after a {args.warmup:.0f} s "
        f"warm-up; {rate:.1f} req/s offered by {args.rate_users} paced users (half the service's max); the small-upload "
        f"scenario at {args.small_users} users. Medians over the rounds; errors added up.", "",
        "Every server: the same stored models and weights, the same uploads and locust scenario "
        "(loadtest/locustfile.py), the project's stem for decoding and preprocessing. Triton speaks the KServe v2 "
        "protocol (the image bytes as a BYTES tensor, the same answer as JSON in a BYTES output); the others the "
        "service's multipart routes. The peers' forward pass is numpy with the stored weights; the service's is "
        "JAX (its own).", "",
        "## Goals", "", *goals(results, families), "",
        "## Every server and setting", "",
        f"| server | batch setting | start to ready s | max req/s (users) | small req/s | service ÷ this (mixed / small) "
        f"| p50 / p99 ms @ {rate:.0f}/s | achieved | CPU ms/req at max | mean batch at max | peak RSS MiB | errors |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    mine = results.get(SERVICE, {})
    for key, r in results.items():
        best, small, paced = r["best"], r["small"], r["paced"]

        def ratio(a, b):
            return f"{a.rps / b.rps:.2f}×" if a and b and b.rps else "–"

        if not best:
            lines.append(f"| {r['name']} | {r['config']} | – | not measured | – | – | – | – | – | – | – | "
                         f"{r['failures']} |")
            continue
        top = f"{best.rps:.1f} ({best.users})" + ("" if r["best_clean"] else " with errors")
        batch = f"{best.mean_batch:.2f}" if best.mean_batch else "–"
        at_rate = f"{paced.p50_ms:.0f} / {paced.p99_ms:.0f} | {paced.rps:.1f}" if paced else "– | –"
        lines.append(
            f"| {r['name']} | {r['config']} | {r['ready_s'] or 0:.1f} | {top} | {small.rps if small else 0:.1f} | "
            f"{ratio(mine.get('best'), best)} / {ratio(mine.get('small'), small)} | {at_rate} | "
            f"{best.server_ms_per_request or 0:.2f} | {batch} | {r['peak_rss_mib'] or 0:.0f} | "
            f"{r['failures']} of {r['requests']} |")
    lines += ["", "CPU ms/req: CPU time of the server's whole process tree per request at its max step (the "
              "efficiency number least disturbed by a busy machine). Peak RSS: the tree's resident memory, highest "
              "reading after a step (Ray's object store is shared memory, counted where mapped).",
              "", "![throughput and latency](peers.png)", ""]
    failed = {key: r for key, r in results.items() if r["errors"] or r["left_behind"]}
    if failed:
        lines += ["## Errors and leftovers", ""]
        for key, r in failed.items():
            for error in r["errors"]:
                lines += [f"- **{key}**:", "", "```", error.strip(), "```", ""]
            if r["left_behind"]:
                lines.append(f"- **{key}**: {r['left_behind']} process(es) still alive after its stop, killed")
        lines.append("")
    lines += ["## Where each server's CPU goes (at its max step, % of one core)", ""]
    for key, r in results.items():
        if r["cpu_split"]:
            parts = ", ".join(f"{name} {pct:.0f}%" for name, pct in list(r["cpu_split"].items())[:8] if pct >= 0.5)
            lines.append(f"- **{key}**: {parts}")
    lines += ["", "## Every step (median of the rounds)", "",
              "| server | setting | load | req/s | rounds' req/s | p50 | p99 ms | errors | mean batch | server CPU % "
              "| CPU ms/req | locust CPU % | other CPU % |",
              "|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key, r in results.items():
        for s in [*r["closed"], *(x for x in (r["paced"], r["small"]) if x)]:
            spread = f"{s.spread[0]:.0f}–{s.spread[1]:.0f}" if s.spread else "–"
            batch = f"{s.mean_batch:.2f}" if s.mean_batch else "–"
            lines.append(f"| {r['name']} | {r['config']} | {s.label} | {s.rps:.1f} | {spread} | {s.p50_ms:.0f} | "
                         f"{s.p99_ms:.0f} | {s.failures} | {batch} | {s.cpu.get('server', 0):.0f} | "
                         f"{s.server_ms_per_request or 0:.2f} | {s.cpu.get('locust', 0):.0f} | {s.cpu.get('other', 0):.0f} |")
    lines += ["", "## How each peer is set up", ""]
    for family in families:
        peer = PEERS[family]
        made = setup_s.get(family)
        lines.append(f"- **{peer.name}** (`{peer.module}`): settings "
                     + "; ".join(s.label for s in peer.settings)
                     + (f"; environment {peer.venv.name} made in {made:.0f} s this run" if made else "")
                     + ". Docs followed: " + ", ".join(peer.docs))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--peers", default=os.environ.get("PEERS", ",".join(PEERS)))
    parser.add_argument("--users", default="32 64", help="closed-loop steps (users)")
    parser.add_argument("--small-users", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rate", type=float, default=None, help="fixed offered load (default: half the service's max)")
    parser.add_argument("--rate-users", type=int, default=16)
    parser.add_argument("--start-timeout", type=float, default=240.0)
    parser.add_argument("--no-setup", action="store_true", help="use the peers' environments as they are")
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "bench")
    args = parser.parse_args(argv)
    args.user_levels = [int(v) for v in args.users.replace(",", " ").split()]
    peers = parse_keys(args.peers)
    detail = args.out / "peers"
    detail.mkdir(parents=True, exist_ok=True)
    setup_s, variants, setup_errors = {}, [service_variant()], {}
    for peer in peers:
        if not args.no_setup:
            try:
                print(f"{peer.key}: environment ...", flush=True)
                setup_s[peer.key] = setup(peer)
            except RuntimeError as exc:
                setup_errors[peer.key] = str(exc)
                print(f"{peer.key}: setup FAILED: {exc}", flush=True)
        variants += peer_variants(peer)
    machine = {"cpus": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
               "memory_gib": round(psutil.virtual_memory().total / 2**30, 1), "load_average_before": os.getloadavg()}
    try:
        machine["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                           text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    turns = Turns(args, variants, detail)
    for variant in variants:
        if variant.peer and variant.peer.key in setup_errors:
            turns.extra[variant.key]["errors"].append(f"setup: {setup_errors[variant.peer.key]}")
    runnable = [v for v in variants if not (v.peer and v.peer.key in setup_errors)]
    turns.variants, all_variants = runnable, variants
    turns.run()
    turns.variants = all_variants
    results = summarize(turns)
    families = [p.key for p in peers]
    plot(results, args.out / "peers.png")
    text = report(args, turns, results, families, machine, setup_s)
    (args.out / "peers.md").write_text(text)
    write_json(args.out / "peers.json", {"machine": machine, "rate": turns.rate, "args": {
        k: v for k, v in vars(args).items() if k != "out"}, "results": results})
    print(text.split("## Every server")[0], flush=True)
    print(f"report: {args.out / 'peers.md'}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
