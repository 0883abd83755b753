"""A local cluster: replicas of the service's image behind HAProxy, with podman.

    python -m tools.cluster up [--replicas 2] [--port 8080] [--image digits_and_signs:latest]
    python -m tools.cluster roll --image digits_and_signs:v2     # replace the replicas one at a time
    python -m tools.cluster new-version --image digits_and_signs:v2  # a second model version's image
    python -m tools.cluster status
    python -m tools.cluster watch     # restarts replicas stopped by hand (``up`` starts it in the background)
    python -m tools.cluster down

(``make cluster``, ``make cluster-down``.) The replicas run on a private podman network and publish
no port. The front door (deploy/loadbalancer: HAProxy from Debian's packages) runs on the host's
network and is the only thing listening on the public port. This module plays the part of Kubernetes' endpoints controller. It puts a replica into the
front door's rotation once the front door's own check of the replica's ``/readyz`` has passed.
On a rollout, it takes an old replica out of rotation and stops it (SIGTERM: the replica drains).
Between those two moments, the front door's health checks decide alone: a replica that drains
or dies is taken out without this module.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tools.container import engine_env
from tools.servers import REPO, free_port

LOADBALANCER = REPO / "deploy" / "loadbalancer"
BUILD_SCRIPT = REPO / "deploy" / "container" / "build-image.sh"
LB_IMAGE = "localhost/digits_and_signs_lb:latest"
# The load balancer's base: Debian's own image; where no registry answers, the local stand-in of
# the service's base image (Debian bookworm too), made by deploy/container/base-image.sh.
LB_BASES = ("docker.io/library/debian:bookworm-slim", "docker.io/library/python:3.11-slim")
REPLICA_PORT = 3000
LABEL = "io.digits-and-signs"
SLOTS = 16  # REPLICA_SLOTS of haproxy.cfg
GRACE_SECONDS = 30  # SIGTERM to SIGKILL, as terminationGracePeriodSeconds in deploy/kubernetes/base


def lb_defaults(path: Path = LOADBALANCER / "haproxy.cfg") -> dict[str, str]:
    """haproxy.cfg's settings that the environment may change, with their defaults (``presetenv``)."""
    return dict(re.findall(r"^\s*presetenv\s+(\S+)\s+(\S+)", path.read_text(), re.M))


def lb_settings(path: Path = LOADBALANCER / "haproxy.cfg") -> dict:
    """The front door's settings as haproxy.cfg sets them (its ``presetenv`` defaults filled in), in
    the units the Kubernetes front door's test compares with (deploy/kubernetes/frontdoor)."""
    text = path.read_text()
    env = lb_defaults(path)

    def value(pattern: str) -> str:
        found = re.search(pattern, text, re.M).group(1).strip('"')
        return re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], found)

    def seconds(v: str) -> float:
        number, unit = re.fullmatch(r"([\d.]+)(ms|s|m)?", v).groups()
        return float(number) * {"ms": 0.001, "s": 1, "m": 60, None: 0.001}[unit]

    server = value(r"^\s*default-server\s+(.*)$")
    option = lambda name: re.search(rf"\b{name}\s+(\S+)", server).group(1)  # noqa: E731
    return {
        "health_path": value(r"^\s*http-check send meth GET uri (\S+)"),
        "health_interval_s": seconds(option("inter")),
        "health_timeout_s": seconds(value(r"^\s*timeout check\s+(\S+)")),
        "unhealthy_threshold": int(option("fall")),
        "healthy_threshold": int(option("rise")),
        "passive_local_failures": int(option("error-limit")),
        "request_received_s": seconds(value(r"^\s*timeout http-request\s+(\S+)")),
        "idle_s": seconds(value(r"^\s*timeout http-keep-alive\s+(\S+)")),
        "request_timeout_s": seconds(value(r"^\s*timeout server\s+(\S+)")),
        "connect_timeout_s": seconds(value(r"^\s*timeout connect\s+(\S+)")),
        "connections": int(value(r"^\s*maxconn\s+(\S+)")),
        "per_client": int(value(r"sc_conn_cur\(0\) gt (\S+) \}")),
        "retries": int(value(r"^\s*retries\s+(\S+)")),
        "retry_on": value(r"^\s*retry-on\s+(.*)$").split(),
    }


class ClusterError(RuntimeError):
    """A podman or load-balancer step failed; the message says which and why."""


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["podman", *args], env=engine_env(), capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise ClusterError(f"podman {' '.join(args[:3])} ...: {(done.stderr or done.stdout).strip()[-1500:]}")
    return done


def qualified(image: str) -> str:
    """The name podman shows for a local image: ``digits_and_signs:v2`` -> ``localhost/digits_and_signs:v2``."""
    return image if "/" in image.split(":")[0] else f"localhost/{image}"


def image_exists(image: str) -> bool:
    return podman("image", "exists", image, check=False).returncode == 0


def build_lb_image(image: str = LB_IMAGE) -> str:
    """The load balancer's image (deploy/loadbalancer/Containerfile), built when it is missing."""
    if image_exists(image):
        return image
    base = next((b for b in LB_BASES if image_exists(b)), None)
    if base is None and podman("pull", "--quiet", LB_BASES[0], timeout=90, check=False).returncode == 0:
        base = LB_BASES[0]
    if base is None:  # no registry: the local stand-in (Debian bookworm from Debian's packages)
        subprocess.run([str(REPO / "deploy" / "container" / "base-image.sh")], env=engine_env(), check=True)
        base = LB_BASES[1]
    print(f"cluster: building {image} (HAProxy from Debian's packages, on {base})", flush=True)
    podman("build", "--quiet", "--build-arg", f"BASE_IMAGE={base}", "-t", image,
           "-f", str(LOADBALANCER / "Containerfile"), str(LOADBALANCER), timeout=900)
    return image


def build_next_version_image(image: str, note: str, store: str | None = None) -> dict[str, str]:
    """A second version of every served model, and the image that serves it (tagged ``image``).

    The models of ``store`` ($BENTOML_HOME by default) are copied under new versions (same
    weights, ``copied_from`` in their metadata) into a private store, so the user's own store and
    its ``latest`` stay as they were; the image is built from that store by ``make image``'s
    script. Returns the new model tags by store name."""
    store = store or os.environ.get("BENTOML_HOME") or str(Path.home() / "bentoml")
    home = tempfile.mkdtemp(prefix="cluster_next_version_")
    try:
        models = Path(store) / "models"
        for entry in sorted(models.iterdir()):
            latest = entry / "latest"
            if not latest.is_file():
                continue
            version = latest.read_text().strip()
            shutil.copytree(entry / version, Path(home) / "models" / entry.name / version)
            shutil.copy(latest, Path(home) / "models" / entry.name / "latest")
        script = ("import json, sys\nfrom catalog import FAMILIES\nfrom training.store import copy_version\n"
                  "print(json.dumps({f.store_name: str(copy_version(f.store_name + ':latest', sys.argv[1]).tag)"
                  " for f in FAMILIES}))")
        env = {**os.environ, "BENTOML_HOME": home, "BENTOML_DO_NOT_TRACK": "true"}
        done = subprocess.run([sys.executable, "-c", script, note], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=300)
        if done.returncode != 0:
            raise ClusterError(f"copying the models failed:\n{done.stderr[-3000:]}")
        tags = json.loads(done.stdout.strip().splitlines()[-1])
        build = subprocess.run([str(BUILD_SCRIPT)], cwd=REPO, capture_output=True, text=True, timeout=1800,
                               env={**engine_env(), "BENTOML_HOME": home, "IMAGE": image, "CONTAINER_ENGINE": "buildah",
                                    "BENTOML": str(Path(sys.executable).with_name("bentoml"))})
        if build.returncode != 0:
            raise ClusterError(f"building {image} failed:\n{(build.stdout + build.stderr)[-4000:]}")
        print(build.stdout.strip().splitlines()[-1], flush=True)
        return tags
    finally:
        shutil.rmtree(home, ignore_errors=True)


@dataclass
class Replica:
    """One replica container: its slot in the load balancer, name, image and state."""

    slot: int
    name: str
    image: str
    running: bool
    address: str
    pid: int


@dataclass
class Cluster:
    """The containers of one local cluster, named after ``name``: network, load balancer, replicas."""

    name: str = "digits-and-signs"
    image: str = "localhost/digits_and_signs:latest"
    port: int = 8080
    bind: str = "0.0.0.0"
    lb_image: str = LB_IMAGE
    lb_env: dict[str, str] = field(default_factory=dict)  # haproxy.cfg's settings (MAX_CONNECTIONS, ...)
    replica_env: dict[str, str] = field(default_factory=dict)

    # ---- names ---------------------------------------------------------------------------------
    @property
    def network(self) -> str:
        return self.name

    @property
    def lb(self) -> str:
        return f"{self.name}-lb"

    @property
    def url(self) -> str:
        host = "localhost" if self.bind in ("0.0.0.0", "::", "127.0.0.1") else self.bind
        return f"http://{host}:{self.port}"

    @property
    def run_dir(self) -> Path:
        """The host folder that holds the load balancer's admin socket."""
        return Path(tempfile.gettempdir()) / f"{self.name}-lb-run"

    # ---- the load balancer ---------------------------------------------------------------------
    def admin(self, command: str, timeout: float = 5.0) -> str:
        """One command of HAProxy's runtime API (its admin socket); returns the answer."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(timeout)
            sock.connect(str(self.run_dir / "admin.sock"))
            sock.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def slot_stats(self) -> dict[int, dict[str, str]]:
        """The load balancer's view of every replica slot (``show stat``: status, check_status,
        scur = connections in flight, ...), by slot number."""
        text = self.admin("show stat").lstrip("# ")
        rows = csv.DictReader(io.StringIO(text))
        return {int(r["svname"].removeprefix("replica")): r for r in rows
                if r["pxname"] == "replicas" and r["svname"].startswith("replica")}

    def in_rotation(self) -> list[int]:
        """Slots that take requests now (UP, not draining)."""
        return [slot for slot, r in self.slot_stats().items() if r["status"] == "UP"]

    def start_lb(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.run_dir, 0o777)  # HAProxy runs as its own user in the container
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        files = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
        env = dict(self.lb_env)
        # HAProxy wants about two open files per connection (client and replica side)
        env.setdefault("MAX_CONNECTIONS", str(min(int(lb_defaults()["MAX_CONNECTIONS"]), (files - 200) // 2)))
        # The host's network, not the cluster's: clients reach HAProxy with no address translation
        # on the way (podman's port forwarding broke a few kept-alive client connections whenever
        # a replica's container restarted), and HAProxy sees their real addresses (the per-client
        # cap). It reaches the replicas on the private network from the host.
        env.setdefault("FRONT_BIND", f"{self.bind}:{self.port}")
        env.setdefault("STATS_BIND", f"127.0.0.1:{free_port()}")
        args = ["run", "-d", "--name", self.lb, "--network", "host", "--restart", "always",
                "--label", f"{LABEL}.cluster={self.name}", "--label", f"{LABEL}.role=lb",
                "--ulimit", f"nofile={files}:{files}", "--ulimit", "nproc=4096:4096",
                "-v", f"{LOADBALANCER / 'haproxy.cfg'}:/etc/haproxy/haproxy.cfg:ro",
                "-v", f"{self.run_dir}:/run/haproxy"]
        for key, value in env.items():
            args += ["-e", f"{key}={value}"]
        podman(*args, self.lb_image)
        deadline = time.monotonic() + 30
        while not (self.run_dir / "admin.sock").exists() or not self._admin_answers():
            if time.monotonic() > deadline:
                raise ClusterError(f"the load balancer did not start:\n{podman('logs', self.lb, check=False).stderr[-2000:]}")
            time.sleep(0.1)

    def lb_pid(self) -> int:
        """The host PID of the load balancer's main process (HAProxy's master)."""
        return int(podman("inspect", self.lb, "--format", "{{.State.Pid}}").stdout.strip())

    def configure_lb(self, **settings: str) -> None:
        """Start the load balancer again with these haproxy.cfg settings (e.g. RETRIES="0") and put
        the running replicas back into its rotation; nothing to do when they are already set."""
        defaults = lb_defaults()
        if all(self.lb_env.get(k, defaults.get(k)) == v for k, v in settings.items()):
            return
        self.lb_env.update(settings)
        podman("rm", "-f", "-t", "5", self.lb, timeout=60)
        self.start_lb()
        for replica in self.replicas():
            if replica.running:
                self.add_to_rotation(replica)

    def set_retries(self, on: bool) -> None:
        """Retries on (haproxy.cfg's default) or off (RETRIES=0)."""
        self.configure_lb(RETRIES=lb_defaults()["RETRIES"] if on else "0")

    def _admin_answers(self) -> bool:
        try:
            return "replicas" in self.admin("show stat")
        except OSError:
            return False

    # ---- replicas ------------------------------------------------------------------------------
    def replicas(self) -> list[Replica]:
        """The replica containers of this cluster, by slot."""
        done = podman("ps", "-a", "--filter", f"label={LABEL}.cluster={self.name}",
                      "--filter", f"label={LABEL}.role=replica", "--format", "{{.Names}}")
        found = []
        for name in done.stdout.split():
            info = podman("inspect", name, "--format",
                          "{{index .Config.Labels \"" + LABEL + ".slot\"}} {{.ImageName}} {{.State.Running}} "
                          "{{.State.Pid}} {{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
                          check=False).stdout.split()
            if len(info) < 4:
                continue
            found.append(Replica(int(info[0]), name, info[1], info[2] == "true", info[4] if len(info) > 4 else "",
                                 int(info[3])))
        return sorted(found, key=lambda r: r.slot)

    def start_replica(self, image: str | None = None, ready_timeout: float = 300) -> Replica:
        """A new replica in a free slot, put into rotation once the load balancer finds it ready."""
        used = {r.slot for r in self.replicas()}
        slot = next(s for s in range(1, SLOTS + 1) if s not in used)
        name = f"{self.name}-replica-{slot}"
        args = ["run", "-d", "--name", name, "--network", self.network, "--restart", "on-failure",
                "--label", f"{LABEL}.cluster={self.name}", "--label", f"{LABEL}.role=replica",
                "--label", f"{LABEL}.slot={slot}"]
        for key, value in self.replica_env.items():
            args += ["-e", f"{key}={value}"]
        podman(*args, image or self.image)
        replica = next(r for r in self.replicas() if r.slot == slot)
        self.add_to_rotation(replica, ready_timeout)
        return replica

    def add_to_rotation(self, replica: Replica, ready_timeout: float = 300) -> None:
        """The replica's address in its slot; requests once the load balancer finds it ready."""
        slot, name = replica.slot, replica.name
        # checked by the load balancer, but given no requests (drain), until its /readyz answers 200
        self.admin(f"set server replicas/replica{slot} addr {replica.address} port {REPLICA_PORT}")
        self.admin(f"set server replicas/replica{slot} state drain")
        deadline = time.monotonic() + ready_timeout
        while self.slot_stats()[slot]["check_status"] != "L7OK":
            if time.monotonic() > deadline or not self._running(name):
                logs = podman("logs", name, check=False)
                raise ClusterError(f"replica {name} did not get ready:\n{(logs.stdout + logs.stderr)[-3000:]}")
            time.sleep(0.2)
        self.admin(f"set server replicas/replica{slot} state ready")
        while self.slot_stats()[slot]["status"] != "UP":  # the second passing check (rise 2)
            if time.monotonic() > deadline:
                raise ClusterError(f"replica {name} ready, but not taken into rotation")
            time.sleep(0.1)

    def _running(self, name: str) -> bool:
        return podman("inspect", name, "--format", "{{.State.Running}}", check=False).stdout.strip() == "true"

    def stop_replica(self, replica: Replica, grace: float = GRACE_SECONDS) -> None:
        """Out of rotation and stopped, as Kubernetes deletes a pod: the load balancer sends it no
        new requests while SIGTERM makes it drain (it finishes what it holds), then it is removed."""
        marker = self.run_dir / f"stopping-{replica.name}"
        marker.touch()  # the watcher leaves it stopped
        try:
            self.admin(f"set server replicas/replica{replica.slot} state drain")
            podman("stop", "-t", str(int(grace)), replica.name, timeout=grace + 60)
            self.admin(f"set server replicas/replica{replica.slot} state maint")
            podman("rm", "-f", replica.name, check=False)
        finally:
            marker.unlink(missing_ok=True)

    def reconcile(self) -> list[str]:
        """One pass of the watcher: a replica that stopped without this module stopping it (a crash
        its restart policy did not catch, ``podman kill``, ``podman stop``) is started again and,
        once ready, put back into rotation; a replica whose address changed gets its slot updated.
        Returns what it did."""
        done = []
        stats = self.slot_stats()
        for replica in self.replicas():
            if (self.run_dir / f"stopping-{replica.name}").exists():
                continue
            if not replica.running:
                podman("start", replica.name, check=False)
                replica = next((r for r in self.replicas() if r.name == replica.name), replica)
                if not replica.running:
                    continue
                done.append(f"{replica.name} started again")
            elif stats.get(replica.slot, {}).get("addr", "").split(":")[0] == replica.address:
                continue
            try:
                self.add_to_rotation(replica)
                done.append(f"{replica.name} in rotation at {replica.address}")
            except ClusterError as exc:
                done.append(f"{replica.name}: {exc}")
        return done

    def watch(self, interval: float = 0.5) -> None:
        """Reconcile until stopped (``python -m tools.cluster watch``; ``up`` starts it)."""
        while True:
            try:
                for line in self.reconcile():
                    print(f"{time.strftime('%H:%M:%S')} watch: {line}", flush=True)
            except (OSError, ClusterError) as exc:  # the load balancer restarting, say
                print(f"{time.strftime('%H:%M:%S')} watch: {exc}", flush=True)
            time.sleep(interval)

    def start_watcher(self) -> None:
        log = open(self.run_dir / "watch.log", "ab")
        proc = subprocess.Popen([sys.executable, "-m", "tools.cluster", "watch", "--name", self.name], cwd=REPO,
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=engine_env())
        (self.run_dir / "watch.pid").write_text(str(proc.pid))

    def stop_watcher(self) -> None:
        pid_file = self.run_dir / "watch.pid"
        if pid_file.is_file():
            try:
                os.kill(int(pid_file.read_text()), 15)
            except (ProcessLookupError, ValueError):
                pass
            pid_file.unlink()

    def kill_replica(self, replica: Replica) -> None:
        """SIGKILL to the replica's main process, from outside the container, as a crash or the
        kernel's OOM killer would: the container's restart policy brings it back."""
        os.kill(replica.pid, 9)

    def roll(self, image: str, on_step=None) -> None:
        """Replace every replica that does not run ``image``, one at a time: start the new one, wait
        until it is ready, take the old one out, drain and stop it (maxSurge 1, maxUnavailable 0)."""
        for old in [r for r in self.replicas() if r.image != image]:
            new = self.start_replica(image)
            if on_step:
                on_step(f"{new.name} ready ({image})")
            self.stop_replica(old)
            if on_step:
                on_step(f"{old.name} drained and stopped")
        self.image = image

    # ---- the whole cluster ---------------------------------------------------------------------
    def up(self, replicas: int = 2) -> str:
        """Network, load balancer and ``replicas`` ready replicas of ``image``; returns the front
        door's URL. Stops an earlier cluster of the same name first."""
        if not image_exists(self.image):
            raise ClusterError(f"no image {self.image}: build it first (make image)")
        self.down()
        build_lb_image(self.lb_image)
        podman("network", "create", self.network)
        self.start_lb()
        for _ in range(replicas):
            replica = self.start_replica()
            print(f"cluster: {replica.name} ready ({replica.address})", flush=True)
        self.start_watcher()
        return self.url

    def down(self) -> None:
        """Stop and remove every container of this cluster and its network."""
        self.stop_watcher()
        done = podman("ps", "-aq", "--filter", f"label={LABEL}.cluster={self.name}")
        ids = done.stdout.split()
        if ids and podman("rm", "-f", "-t", "5", *ids, timeout=180, check=False).returncode:
            # podman 4.3 races with a container that stops by itself while it kills it ("could not be
            # stopped ... container state improper: stopped"); by now it has stopped: remove again
            podman("rm", "-f", "--ignore", "-t", "5", *ids, timeout=180)
        podman("network", "rm", "-f", self.network, check=False)
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def status(self) -> list[str]:
        stats = self.slot_stats() if (self.run_dir / "admin.sock").exists() else {}
        env = podman("inspect", self.lb, "--format", "{{range .Config.Env}}{{println .}}{{end}}", check=False).stdout
        bound = re.search(r"^FRONT_BIND=(.*):(\d+)$", env, re.M)
        if bound:  # the port it was started with, whatever this command was given
            self.bind, self.port = bound.group(1), int(bound.group(2))
        lines = [f"front door: {self.url}" if bound else "front door: not running"]
        for r in self.replicas():
            s = stats.get(r.slot, {})
            lines.append(f"  slot {r.slot}: {r.name} {r.image} {'running' if r.running else 'stopped'} "
                         f"{r.address or '-'}  load balancer: {s.get('status', '?')} ({s.get('check_status', '?')})")
        return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.cluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down", "roll", "status", "new-version", "watch"])
    parser.add_argument("--name", default="digits-and-signs")
    parser.add_argument("--image", default="localhost/digits_and_signs:latest")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--bind", default="0.0.0.0", help="the front door's host address")
    parser.add_argument("--note", default="second version (copy)", help="new-version: noted in the models' metadata")
    args = parser.parse_args(argv)
    image = qualified(args.image)
    cluster = Cluster(args.name, image, args.port, args.bind)
    try:
        if args.command == "up":
            url = cluster.up(args.replicas)
            print(f"cluster: {args.replicas} replicas of {image} behind HAProxy: {url}", flush=True)
        elif args.command == "down":
            cluster.down()
            print(f"cluster: {args.name} stopped")
        elif args.command == "roll":
            cluster.roll(image, on_step=lambda s: print(f"cluster: {s}", flush=True))
        elif args.command == "status":
            print("\n".join(cluster.status()))
        elif args.command == "watch":
            cluster.watch()
        elif args.command == "new-version":
            tags = build_next_version_image(image, args.note)
            print(f"cluster: {image} serves {', '.join(tags.values())}")
    except ClusterError as exc:
        print(f"cluster: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
