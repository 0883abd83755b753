"""``make bench-cluster``: the local cluster (tools/cluster.py) under load, scenario by scenario.

1. **Rollout**: while locust runs through the front door, the replicas are replaced one at a time
   by an image that serves a second model version, then rolled back the same way. Passes with no
   failed request and the answers' ``model`` switching from v1 to v2 (and back).
2. **Replica killed**: SIGKILL to one replica's main process under load. Measured: the seconds
   until the load balancer takes it out, the failed requests with retries on and (a second run)
   off against the requests it had in flight, and the seconds until it is back in rotation.
3. **Slow and idle clients**: connections that send their request head one byte a second and
   connections that send nothing (loadtest/slow_clients.py), next to good requests at a steady
   rate. Measured: the good requests' p99, and when the proxy closed the slow connections.
4. **What the front door costs**: the same paced load at half the maximum sent to one replica
   directly and through the proxy, taking turns. Measured: CPU per request of replica + proxy, and p99.

The same functions run at a small scale in CI (tests/test_cluster.py). ``make bench-cluster``
runs them at full scale and writes ``reports/bench/cluster.md`` (+ ``.json``, ``.png``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from loadtest.run import ProcessTree, run_step
from loadtest.summary import Step
from tools.cluster import Cluster, build_next_version_image, podman, qualified
from tools.servers import REPO

OUT = REPO / "reports" / "bench" / "cluster.md"


@dataclass
class Scale:
    """How big each scenario is: CI runs SMALL, ``make bench-cluster`` FULL."""

    users: int  # locust users of the good traffic
    rate: float | None  # their requests/s in all (None: closed loop, as fast as answers come)
    warmup_s: float  # load before the action starts
    tail_s: float  # load after the action ends
    slow: int  # connections sending their head a byte a second
    idle: int  # connections sending nothing
    slow_s: float  # how long the slow/idle clients run
    cost_s: float  # seconds per measured step of the cost comparison
    cost_rounds: int


SMALL = Scale(users=4, rate=60, warmup_s=3, tail_s=3, slow=500, idle=2000, slow_s=16, cost_s=6, cost_rounds=1)
FULL = Scale(users=32, rate=None, warmup_s=10, tail_s=10, slow=500, idle=2000, slow_s=30, cost_s=20, cost_rounds=2)


class Load:
    """Locust in the background through ``host`` until :meth:`stop` (or ``max_s``)."""

    def __init__(self, host: str, users: int, out_prefix: Path, max_s: float = 1800, rate: float | None = None):
        self.timeline_file = out_prefix.with_name(out_prefix.name + "_timeline.json")
        self._until = threading.Event()
        self._result: dict = {}
        self._thread = threading.Thread(target=self._run, args=(host, users, out_prefix, max_s, rate), daemon=True)

    def _run(self, host, users, out_prefix, max_s, rate):
        try:
            self._result["step"] = run_step(host, users, max_s, out_prefix, rate=rate, until=self._until,
                                            extra_env={"LOADTEST_TIMELINE": str(self.timeline_file)})
        except BaseException as exc:  # reported by stop()
            self._result["error"] = exc

    def __enter__(self) -> "Load":
        self.started = time.time()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._until.set()
        self._thread.join(timeout=120)

    def stop(self) -> tuple[Step, dict[int, dict]]:
        """Ends the run; returns locust's step and the per-second timeline."""
        self.__exit__()
        if "error" in self._result:
            raise self._result["error"]
        timeline = json.loads(self.timeline_file.read_text()) if self.timeline_file.is_file() else {}
        return self._result["step"], {int(k): v for k, v in timeline.items()}


def _served_models(image: str) -> set[str]:
    """The model tags an image serves (read from its model store, without starting it)."""
    done = podman("run", "--rm", "--entrypoint", "sh", image, "-c",
                  'for d in "$BENTO_PATH"/models/*/; do echo "$(basename "$d"):$(cat "$d/latest")"; done')
    return set(done.stdout.split())


def _timeline_rows(timeline: dict[int, dict], versions: dict[str, str]) -> list[dict]:
    """Per second from the first: ok, failed, and the share of each version among the answers."""
    if not timeline:
        return []
    first = min(timeline)
    rows = []
    for second in range(first, max(timeline) + 1):
        bucket = timeline.get(second, {"ok": 0, "failed": 0, "models": {}})
        by_version: dict[str, int] = {}
        for model, n in bucket["models"].items():
            version = versions.get(model, "other")
            by_version[version] = by_version.get(version, 0) + n
        answered = sum(by_version.values())
        rows.append({"t": second - first, "epoch": second, "ok": bucket["ok"], "failed": bucket["failed"],
                     "share": {v: n / answered for v, n in by_version.items()} if answered else {}})
    return rows


# ---- 1. rollout ----------------------------------------------------------------------------------

def rollout(cluster: Cluster, v1: str, v2: str, scale: Scale, out: Path) -> dict:
    """Roll the cluster from image ``v1`` to ``v2`` and back under load; the timeline and verdict."""
    versions = {**{m: "v1" for m in _served_models(v1)}, **{m: "v2" for m in _served_models(v2)}}
    events: list[tuple[float, str]] = []
    with Load(cluster.url, scale.users, out / "rollout", rate=scale.rate) as load:
        time.sleep(scale.warmup_s)
        for image, name in ((v2, "v2"), (v1, "v1")):
            events.append((time.time(), f"roll to {name}"))
            cluster.roll(image, on_step=lambda s: events.append((time.time(), s)))
            events.append((time.time(), f"all replicas on {name}"))
            time.sleep(scale.tail_s)
        step, timeline = load.stop()
    rows = _timeline_rows(timeline, versions)
    t0 = rows[0]["epoch"] if rows else load.started
    switched = [e for e in events if e[1] == "all replicas on v2"][0][0]
    back = [e for e in events if e[1] == "roll to v1"][0][0]
    seen_v2 = [r for r in rows if r["share"].get("v2")]
    only_v2 = [r for r in rows if switched + 1 <= r["epoch"] < back and r["share"]]
    return {
        "requests": step.requests, "failures": step.failures, "status": step.status, "rps": step.rps,
        "p99_ms": step.p99_ms, "bad_answers": step.bad_answers,
        "first_seconds_v1_only": all(r["share"].get("v1", 0) == 1 for r in rows[:max(1, int(scale.warmup_s) - 1)]
                                     if r["share"]),
        "v2_seen": bool(seen_v2),
        "v2_only_after_switch": bool(only_v2) and all(r["share"].get("v2", 0) == 1 for r in only_v2),
        "v1_only_at_end": all(r["share"].get("v1", 0) == 1 for r in rows[-max(1, int(scale.tail_s) - 1):]
                              if r["share"]),
        "events": [(round(t - t0, 2), text) for t, text in events],
        "timeline": rows, "versions": versions,
    }


# ---- 2. replica killed ---------------------------------------------------------------------------

def replica_kill(cluster: Cluster, scale: Scale, out: Path, *, retries: bool, how: str = "process") -> dict:
    """SIGKILL one replica under load; how fast it is out and back, and what failed.

    ``how``: "process" sends it to the replica's main process from the host, as a crash would
    (podman's restart policy restarts it); "podman" is ``podman kill -s KILL`` (a stop by hand,
    which podman does not restart: the cluster's watcher does)."""
    cluster.set_retries(retries)
    victim = cluster.replicas()[0]
    with Load(cluster.url, scale.users, out / f"kill-retries-{'on' if retries else 'off'}", rate=scale.rate) as load:
        time.sleep(scale.warmup_s)
        stats = cluster.slot_stats()[victim.slot]
        in_flight = int(stats["scur"] or 0) + int(stats["qcur"] or 0)
        sent_before = int(stats["stot"] or 0)
        killed = time.time()
        if how == "process":
            cluster.kill_replica(victim)
        else:
            podman("kill", "--signal", "KILL", victim.name)
        out_s = back_s = None
        sent_while_dead = 0
        while time.time() - killed < 120:
            stats = cluster.slot_stats()[victim.slot]
            status = stats["status"]
            if out_s is None and status != "UP":
                out_s = time.time() - killed
                # requests the load balancer sent it after the kill, before it was out
                sent_while_dead = int(stats["stot"] or 0) - sent_before
            if out_s is not None and status == "UP":
                back_s = time.time() - killed
                break
            time.sleep(0.02)
        time.sleep(scale.tail_s)
        step, timeline = load.stop()
    restarts = podman("inspect", victim.name, "--format", "{{.RestartCount}}").stdout.strip()
    rows = _timeline_rows(timeline, {})
    t0 = rows[0]["epoch"] if rows else killed
    return {"retries": retries, "how": how, "requests": step.requests, "failures": step.failures, "status": step.status,
            "in_flight_at_kill": in_flight, "sent_after_kill": sent_while_dead, "out_after_s": out_s, "back_after_s": back_s,
            "restarts": int(restarts or 0), "rps": step.rps, "p99_ms": step.p99_ms,
            "kill_at_s": round(killed - t0, 2), "timeline": rows}


# ---- 3. slow and idle clients --------------------------------------------------------------------

def slow_clients(cluster: Cluster, scale: Scale, out: Path, good_rate: float) -> dict:
    """Slow-head and idle connections through the front door, with good requests at ``good_rate``."""
    report = out / "slow_clients.json"
    command = [sys.executable, "-m", "loadtest.slow_clients", "--host", cluster.url, "--slow", str(scale.slow),
               "--idle", str(scale.idle), "--seconds", str(scale.slow_s), "--json", str(report)]
    users = max(4, scale.users // 2)
    lb = ProcessTree(cluster.lb_pid())
    rss = [lb.rss_mib()]
    with Load(cluster.url, users, out / "slow-good", rate=good_rate) as load:
        time.sleep(2)
        attacker = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        while attacker.poll() is None:  # the front door's memory while it holds the connections
            rss.append(lb.rss_mib())
            time.sleep(0.5)
        _, stderr = attacker.communicate(timeout=60)
        attack = subprocess.CompletedProcess(command, attacker.returncode, "", stderr)
        step, _ = load.stop()
    if attack.returncode != 0:
        raise RuntimeError(f"slow_clients failed:\n{attack.stderr[-3000:]}")
    return {"good": {"requests": step.requests, "failures": step.failures, "rps": step.rps, "p50_ms": step.p50_ms,
                     "p99_ms": step.p99_ms, "status": step.status},
            "lb_rss_mib": {"before": rss[0], "max": max(rss)},
            "attack": json.loads(report.read_text())}


# ---- 4. what the front door costs ----------------------------------------------------------------

def front_door_cost(cluster: Cluster, scale: Scale, out: Path) -> dict:
    """One replica, directly and through the proxy, at half its maximum, taking turns."""
    replica = cluster.replicas()[0]
    others = [r.slot for r in cluster.replicas()[1:]]
    for slot in others:  # one replica in rotation: the same server behind both doors
        cluster.admin(f"set server replicas/replica{slot} state maint")
    try:
        direct = f"http://{replica.address}:3000"
        targets = {"direct": direct, "through the proxy": cluster.url}
        peak = run_step(direct, 32, scale.cost_s, out / "cost-max", server_pid=replica.pid)
        half = peak.rps / 2
        lb = ProcessTree(cluster.lb_pid())
        rounds: dict[str, list[dict]] = {name: [] for name in targets}
        for r in range(scale.cost_rounds):
            for name, url in targets.items():
                lb0 = lb.cpu_seconds()
                step = run_step(url, 16, scale.cost_s, out / f"cost-{r}-{name.split()[0]}", rate=half,
                                server_pid=replica.pid)
                lb_cpu = lb.cpu_seconds() - lb0
                replica_ms = step.cpu["server"] * 10 * step.seconds / max(1, step.requests)
                proxy_ms = 1000 * lb_cpu / max(1, step.requests)
                rounds[name].append({"rps": step.rps, "p50_ms": step.p50_ms, "p99_ms": step.p99_ms,
                                     "failures": step.failures, "replica_ms": replica_ms, "proxy_ms": proxy_ms,
                                     "total_ms": replica_ms + proxy_ms})
    finally:
        for slot in others:
            cluster.admin(f"set server replicas/replica{slot} state ready")

    def median(name: str, key: str) -> float:
        values = sorted(x[key] for x in rounds[name])
        return values[len(values) // 2]

    ratio = median("through the proxy", "total_ms") / median("direct", "total_ms")
    return {"max_rps_direct": peak.rps, "half_rps": half, "rounds": rounds,
            "cpu_ratio": ratio, "proxy_share": median("through the proxy", "proxy_ms") / median("through the proxy", "total_ms")}


# ---- the report ----------------------------------------------------------------------------------

def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [k for k in ("rollout", "kill_retries_on", "kill_retries_off") if k in results]
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 3.2 * len(panels)), squeeze=False)
    for ax, key in zip(axes[:, 0], panels):
        rows = results[key]["timeline"]
        t = [r["t"] for r in rows]
        ax.plot(t, [r["ok"] for r in rows], label="answers/s", color="tab:blue")
        ax.bar(t, [r["failed"] for r in rows], label="failed/s", color="tab:red")
        ax.set_ylabel("requests/s")
        if key == "rollout":
            share = ax.twinx()
            share.plot(t, [r["share"].get("v2", 0) * 100 for r in rows], color="tab:green", label="% answered by v2")
            share.set_ylabel("% by model v2")
            share.set_ylim(-5, 105)
            share.legend(loc="lower right")
            for at, text in results[key]["events"]:
                if text.startswith("roll to") or text.startswith("all replicas"):
                    ax.axvline(at, color="grey", ls=":")
            ax.set_title(f"Rollout v1 -> v2 -> v1 under load: {results[key]['failures']} failed of "
                         f"{results[key]['requests']}")
        else:
            r = results[key]
            ax.axvline(r["kill_at_s"], color="black", ls="--", label="SIGKILL")
            ax.set_title(f"Replica killed, retries {'on' if r['retries'] else 'off'}: {r['failures']} failed of "
                         f"{r['requests']}; out after {r['out_after_s'] or float('nan'):.2f} s, back after "
                         f"{r['back_after_s'] or float('nan'):.1f} s")
        ax.legend(loc="upper left")
        ax.set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def markdown(results: dict, scale: Scale) -> str:
    lines = ["# The local cluster under load (`make bench-cluster`)", "",
             f"Scale: {asdict(scale)}. Replicas of the service's image behind HAProxy (tools/cluster.py), "
             "locust through the front door, on this machine.", ""]
    if "rollout" in results:
        r = results["rollout"]
        lines += ["## Rollout v1 -> v2 -> v1", "",
                  f"{r['requests']} requests, **{r['failures']} failed**, {r['rps']:.0f} req/s, p99 {r['p99_ms']:.0f} ms; "
                  f"v1 only at first: {r['first_seconds_v1_only']}; v2 only between the switch and the rollback: "
                  f"{r['v2_only_after_switch']}; v1 only at the end: {r['v1_only_at_end']}.", "",
                  "| s | event |", "|---:|---|", *[f"| {t:.1f} | {text} |" for t, text in r["events"]], ""]
    for key in ("kill_retries_on", "kill_retries_off"):
        if key in results:
            r = results[key]
            killer = "SIGKILL to its main process" if r["how"] == "process" else "`podman kill -s KILL`"
            lines += [f"## Replica killed (retries {'on' if r['retries'] else 'off'}; {killer})", "",
                      f"{r['requests']} requests, **{r['failures']} failed**; {r['in_flight_at_kill']} in flight on it at "
                      f"the kill and {r['sent_after_kill']} sent to it after the kill, before it was out; out of rotation after "
                      f"{r['out_after_s']:.2f} s; back in rotation after {r['back_after_s']:.1f} s "
                      f"({r['restarts']} restart).", ""]
    if "slow" in results:
        s = results["slow"]
        good, attack = s["good"], s["attack"]
        lines += ["## Slow and idle clients", "",
                  f"Good requests: {good['requests']} at {good['rps']:.0f} req/s, {good['failures']} failed, "
                  f"p50 {good['p50_ms']:.0f} ms, **p99 {good['p99_ms']:.0f} ms**. The front door's memory: "
                  f"{s['lb_rss_mib']['before']:.0f} MiB before, {s['lb_rss_mib']['max']:.0f} MiB at most while it held them.", "",
                  "```", json.dumps({k: v for k, v in attack.items() if k != "timeline"}, indent=1), "```", ""]
    if "cost" in results:
        c = results["cost"]
        lines += ["## What the front door costs", "",
                  f"One replica, max {c['max_rps_direct']:.0f} req/s directly; paced at {c['half_rps']:.0f} req/s.", "",
                  "| target | round | req/s | p50 ms | p99 ms | failed | replica CPU ms/req | proxy CPU ms/req | total |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name, rounds in c["rounds"].items():
            for i, x in enumerate(rounds):
                lines.append(f"| {name} | {i + 1} | {x['rps']:.0f} | {x['p50_ms']:.0f} | {x['p99_ms']:.0f} | "
                             f"{x['failures']} | {x['replica_ms']:.2f} | {x['proxy_ms']:.3f} | {x['total_ms']:.2f} |")
        lines += ["", f"CPU per request through the proxy / directly: **{c['cpu_ratio']:.3f}×** (the proxy's own "
                      f"share {100 * c['proxy_share']:.1f} %).", ""]
    for key, error in results.get("errors", {}).items():
        lines += [f"## {key}: failed", "", "```", error, "```", ""]
    return "\n".join(lines)


def write(results: dict, scale: Scale, out: Path = OUT) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown(results, scale))
    out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str))
    if any(k in results for k in ("rollout", "kill_retries_on")):
        plot(results, out.with_suffix(".png"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default="localhost/digits_and_signs:latest", help="v1 (make image)")
    parser.add_argument("--v2", default="localhost/digits_and_signs:v2", help="built here: the models copied under new versions")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--small", action="store_true", help="CI's scale")
    parser.add_argument("--only", nargs="*", choices=["rollout", "kill", "slow", "cost"])
    args = parser.parse_args(argv)
    scale = SMALL if args.small else FULL
    args.image, args.v2 = qualified(args.image), qualified(args.v2)
    work = OUT.parent / "cluster"
    work.mkdir(parents=True, exist_ok=True)
    only = set(args.only or ["rollout", "kill", "slow", "cost"])
    results: dict = {"errors": {}}
    cluster = Cluster(image=args.image, port=args.port)
    try:
        if "rollout" in only:
            print(f"bench-cluster: building {args.v2} (a second version of the models)", flush=True)
            build_next_version_image(args.v2, "make bench-cluster: second version")
        print(f"bench-cluster: {args.replicas} replicas of {args.image}", flush=True)
        cluster.up(args.replicas)
        steps = [("rollout", lambda: rollout(cluster, args.image, args.v2, scale, work)),
                 ("kill_retries_on", lambda: replica_kill(cluster, scale, work, retries=True)),
                 ("kill_retries_off", lambda: replica_kill(cluster, scale, work, retries=False, how="podman")),
                 ("cost", lambda: front_door_cost(cluster, scale, work)),
                 ("slow", lambda: slow_clients(cluster, scale, work, good_rate=results.get("cost", {}).get("half_rps", 100)))]
        for key, run in steps:
            if key.split("_")[0] not in only:
                continue
            print(f"bench-cluster: {key} ...", flush=True)
            try:
                cluster.set_retries(True)
                results[key] = run()
            except Exception as exc:  # the others still run and report
                results["errors"][key] = f"{type(exc).__name__}: {exc}"
            write(results, scale)
            print(f"bench-cluster: {key} done", flush=True)
    finally:
        cluster.down()
    print(OUT.read_text())
    return 0 if not results["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
