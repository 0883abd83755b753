"""Command line: ``python -m training {mnist,asl,all,linear} [options]`` (options: training.config)."""

from __future__ import annotations

import argparse
import os
import sys

from training.quiet import quiet_tensorflow


def build_parser() -> argparse.ArgumentParser:
    from training.config import add_arguments

    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train the course's dense classifiers into the BentoML model store "
        "(or run the y = mx + b example: python -m training linear --help).",
    )
    add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    user_env = dict(os.environ)  # before quiet_tensorflow() sets its log level: the children choose their own
    if argv[:1] == ["linear"]:
        from training import linear

        return linear.main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet_tensorflow()

    from training.config import configs_from_arguments
    from training.datasets import DataError
    from training.train import run

    configs = configs_from_arguments(args)
    if args.model_name and len(configs) > 1:
        parser.error("--model-name needs a single data set")
    jobs = configs[0].jobs
    if jobs < 1:
        parser.error("--jobs must be at least 1")
    configs = [config for config in configs
               if not (config.skip_existing and _in_store(config.store_name))]
    if jobs > 1 and len(configs) > 1:
        return _side_by_side(parser, argv, configs, jobs, user_env)
    for number, config in enumerate(configs, start=1):
        try:
            run(config, position=(number, len(configs)))
        except DataError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    return 0


def _side_by_side(parser: argparse.ArgumentParser, argv: list[str], configs: list, jobs: int,
                  env: dict[str, str]) -> int:
    """Estimate each run here, one after the other, then train them side by side
    (:mod:`training.side_by_side`)."""
    from catalog import family
    from training import side_by_side
    from training.datasets import DataError
    from training.train import estimate_seconds, load_splits, minutes_text

    names = [config.store_name for config in configs]
    at_once = min(jobs, len(configs))
    head = f"training {' and '.join(names)} side by side ({at_once} at once, each in its own process)"
    if configs[0].quiet:
        print(head, flush=True)
    else:
        alone = []
        for name, config in zip(names, configs):
            try:
                _, splits = load_splits(config)
            except DataError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            estimate = estimate_seconds(config, family(config.dataset), splits)
            alone.append(estimate["total"])
            print(f"{name}: about {minutes_text(estimate['total'])} alone (at most {config.epochs} epochs of "
                  f"~{estimate['epoch']:.2g} s, from {estimate['step'] * 1000:.0f} ms per step measured just now)",
                  flush=True)
        cores = side_by_side.machine_cores()
        wall = side_by_side.wall_seconds(alone, jobs, cores)
        print(f"{head}: about {minutes_text(wall)} in all on this machine (an estimate: {cores} cores, one run keeps "
              f"about {side_by_side.CORES_PER_RUN:g} busy; early stopping often ends sooner)", flush=True)
    commands = {config.dataset: side_by_side.child_command(side_by_side.child_arguments(parser, argv, config.dataset))
                for config in configs}
    return side_by_side.run_side_by_side(commands, jobs, env)


def _in_store(model_name: str) -> bool:
    import bentoml

    try:
        entry = bentoml.models.get(model_name)
    except bentoml.exceptions.NotFound:
        return False
    print(f"{entry.tag} is already in the model store; skipping (train it again: python -m training ...)")
    return True


if __name__ == "__main__":
    sys.exit(main())
