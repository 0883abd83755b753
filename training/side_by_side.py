"""Several families trained at once, each in its own ``python -m training FAMILY --quiet`` process.

One training process of these small networks keeps about :data:`CORES_PER_RUN` cores busy (163
and 165 % CPU in two whole ``make train`` runs one model after the other on 2 cores): many of a
step's operations are too small to spread over more. A second process fills what the first
leaves idle, so the two families finish sooner than one after the other (docs/training.md, "Both
models at once"). Every process seeds itself as a run alone does, so the models are the ones
``python -m training all`` trains one after the other. Each child's lines come out whole, after
its family's name; the opening estimate is measured first, one family at a time, on an otherwise
idle machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from typing import IO

# cores one training process keeps busy on average (the module's docstring says where it was measured)
CORES_PER_RUN = 1.65


def machine_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def wall_seconds(alone: list[float], jobs: int, cores: int) -> float:
    """About how long runs that take ``alone`` seconds each one at a time take with up to ``jobs``
    at once on ``cores`` cores: never less than the longest run, nor than the whole work at the
    throughput of ``cores / CORES_PER_RUN`` runs (at most ``jobs``, at least one)."""
    throughput = max(1.0, min(float(jobs), len(alone), cores / CORES_PER_RUN))
    return max(max(alone, default=0.0), sum(alone) / throughput)


def child_arguments(parser: argparse.ArgumentParser, argv: list[str], route: str) -> list[str]:
    """``argv`` (whose data set is ``all``) with ``route`` in the data set's place: the one token
    whose replacement changes what the parser reads as the data set (an option's value that happens
    to read ``all`` does not)."""
    for i, token in enumerate(argv):
        if token == "all":
            candidate = [*argv[:i], route, *argv[i + 1:]]
            if parser.parse_args(candidate).dataset == route:
                return candidate
    raise ValueError(f"no data set 'all' in {argv}")


def run_side_by_side(commands: dict[str, list[str]], jobs: int, env: dict[str, str],
                     out: IO[str] = sys.stdout) -> int:
    """Run ``commands`` (name -> argv), at most ``jobs`` at once; every line a child writes (standard
    output and error) goes to ``out`` as ``name | line``. Returns 0, or the first non-zero exit
    status in the order of ``commands``."""
    lock = threading.Lock()
    width = max(map(len, commands), default=0)
    pending = list(commands.items())
    codes: dict[str, int] = {}
    running: list[tuple[str, subprocess.Popen, threading.Thread]] = []

    def relay(name: str, stream: IO[str]) -> None:
        for line in stream:
            with lock:
                out.write(f"{name:>{width}} | {line.rstrip()}\n")
                out.flush()

    try:
        while pending or running:
            while pending and len(running) < max(1, jobs):
                name, argv = pending.pop(0)
                child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                         text=True, bufsize=1)
                reader = threading.Thread(target=relay, args=(name, child.stdout), daemon=True)
                reader.start()
                running.append((name, child, reader))
            finished = [entry for entry in running if entry[1].poll() is not None]
            if not finished:
                time.sleep(0.2)
            for name, child, reader in finished:
                reader.join()
                codes[name] = child.returncode
                running.remove((name, child, reader))
    finally:
        for _, child, _ in running:  # interrupted: leave no orphan training
            child.terminate()
        for _, child, _ in running:
            child.wait()
    return next((codes[name] for name in commands if codes.get(name)), 0)


def child_command(argv: list[str]) -> list[str]:
    """``python -m training ARGV --quiet``: one line per epoch, no estimate of its own."""
    return [sys.executable, "-m", "training", *argv, "--quiet"]
