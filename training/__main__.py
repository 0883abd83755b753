"""Command line: ``python -m training {mnist,asl,all,linear} [options]`` (options: training.config)."""

from __future__ import annotations

import argparse
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
    if argv[:1] == ["linear"]:
        from training import linear

        return linear.main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet_tensorflow()

    from catalog import family
    from training.config import configs_from_arguments
    from training.datasets import DataError
    from training.train import run

    configs = configs_from_arguments(args)
    if args.model_name and len(configs) > 1:
        parser.error("--model-name needs a single data set")
    for number, config in enumerate(configs, start=1):
        if config.skip_existing and _in_store(config.model_name or family(config.dataset).store_name):
            continue
        try:
            run(config, position=(number, len(configs)))
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
