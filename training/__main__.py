"""Command line: ``python -m training {mnist,asl,all,linear} [options]``."""

from __future__ import annotations

import argparse
import os
import sys


def build_parser() -> argparse.ArgumentParser:
    from training.models import ACTIVATIONS, OPTIMIZERS

    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train the course's dense classifiers into the BentoML model store "
        "(or run the y = mx + b example: python -m training linear --help).",
    )
    parser.add_argument("dataset", choices=["mnist", "asl", "all"], help="which model to train ('all': mnist, then asl)")
    parser.add_argument("--preset", choices=["default", "course"], default="default",
                        help="'default': the tuned recipe; 'course': the deck's exact recipe (RMSprop, "
                        "no regularisation, test split as validation)")
    parser.add_argument("--data-dir", help="directory with mnist.npz / sign_mnist_*.csv[.gz] (default: $DATA_DIR)")
    parser.add_argument("--epochs", type=int, help="maximum number of epochs (passes over the training data)")
    parser.add_argument("--batch-size", type=int, help="examples per gradient step")
    parser.add_argument("--optimizer", choices=OPTIMIZERS)
    parser.add_argument("--learning-rate", type=float, help="step size (default: the optimizer's own)")
    parser.add_argument("--momentum", type=float, help="momentum for --optimizer momentum (default 0.9)")
    parser.add_argument("--activation", choices=ACTIVATIONS, help="hidden-layer activation (default relu)")
    parser.add_argument("--hidden", type=int, nargs="+", metavar="UNITS", help="hidden layer sizes (default 512 512)")
    parser.add_argument("--dropout", type=float, help="dropout rate after each hidden layer (0 = off)")
    parser.add_argument("--augment", choices=["off", "constant", "nearest"],
                        help="training-only random shifts/rotations/zooms, and how new border pixels are filled")
    parser.add_argument("--shift", type=float, help="augmentation: largest shift, as a fraction of the side")
    parser.add_argument("--rotation", type=float, help="augmentation: largest rotation, as a fraction of a full turn")
    parser.add_argument("--zoom", type=float, help="augmentation: largest zoom in or out, as a fraction")
    parser.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None,
                        help="per-image standardisation inside the model")
    parser.add_argument("--patience", type=int, help="early stopping on validation loss after this many epochs without improvement (0 = off)")
    parser.add_argument("--validation-split", type=float, help="share of training data held out for validation (default 0.1)")
    parser.add_argument("--validate-on-test", action="store_true", default=None,
                        help="validate on the test split as the course did (model selection then sees the test set)")
    parser.add_argument("--limit", type=int, help="train on a random subset of this many training examples")
    parser.add_argument("--seed", type=int, help="random seed for the split, initial weights, dropout, augmentation (default 0)")
    parser.add_argument("--reports-dir", default="reports", help="where reports/<model>/ goes (default: reports)")
    parser.add_argument("--model-name", help="store name (default mnist_dense / asl_dense)")
    parser.add_argument("--no-save", dest="save", action="store_false", help="do not write to the model store")
    parser.add_argument("--skip-existing", action="store_true",
                        help="skip a data set whose model is already in the store")
    parser.add_argument("--quiet", action="store_true", help="one line per epoch instead of a progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["linear"]:
        from training import linear

        return linear.main(argv[1:])
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)

    from training.datasets import DATASETS, DataError
    from training.train import TrainConfig, run

    names = ["mnist", "asl"] if args.dataset == "all" else [args.dataset]
    if args.model_name and len(names) > 1:
        build_parser().error("--model-name needs a single data set")
    for name in names:
        if args.skip_existing and _in_store(args.model_name or DATASETS[name].model_name):
            continue
        config = TrainConfig.from_preset(
            name,
            args.preset,
            data_dir=args.data_dir,
            epochs=args.epochs,
            batch_size=args.batch_size,
            optimizer=args.optimizer,
            learning_rate=args.learning_rate,
            momentum=args.momentum,
            activation=args.activation,
            hidden=args.hidden,
            dropout=args.dropout,
            augment=args.augment,
            shift=args.shift,
            rotation=args.rotation,
            zoom=args.zoom,
            normalize=args.normalize,
            patience=args.patience,
            validation_split=args.validation_split,
            validation_from_test=args.validate_on_test,
            limit=args.limit,
            seed=args.seed,
            reports_dir=args.reports_dir,
            model_name=args.model_name,
            save=args.save,
            verbose=2 if args.quiet else "auto",
        )
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
