"""Command line: ``python -m training {mnist,asl,all,linear} [options]`` (options: training.config)."""

from __future__ import annotations

import argparse
import os
import sys


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
    if argv[:1] == ["linear"]:
        from training import linear

        return linear.main(argv[1:])
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)

    from catalog import family
    from training.config import configs_from_arguments
    from training.datasets import DataError
    from training.train import run

    configs = configs_from_arguments(args)
    if args.model_name and len(configs) > 1:
        parser.error("--model-name needs a single data set")
    for config in configs:
        if config.skip_existing and _in_store(config.model_name or family(config.dataset).store_name):
            continue
        try:
            run(config)
        except DataError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    return 0


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
