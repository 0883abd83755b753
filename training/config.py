"""Every option of a training run, in one place: its default, its help text and its presets.

The command line (``python -m training``) is generated from :class:`TrainConfig`'s fields, and a
preset (:data:`PRESETS`) overrides some defaults per family; what the user sets on the command
line overrides the preset. Nothing else holds a default.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field, fields

from catalog import ROUTES, family

OPTIMIZERS = ("sgd", "momentum", "adam", "adagrad", "rmsprop")
ACTIVATIONS = ("relu", "sigmoid", "linear")
AUGMENT_FILLS = ("off", "constant", "nearest")
PRESET_NAMES = ("default", "course")
TEACHER_PRECISIONS = ("auto", "float32", "bfloat16")


def option(default, help: str, *, flag: str | None = None, choices=None, run_only: bool = False, **argparse_kw):
    """A config field with its command-line help. ``run_only``: how to run, not what to train
    (left out of the model's metadata)."""
    meta = dict(help=help, flag=flag, choices=choices, run_only=run_only, argparse=argparse_kw)
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """One training run. ``from_preset`` fills what the user left unset from :data:`PRESETS`."""

    dataset: str = option("mnist", "which family's model to train", choices=ROUTES)
    preset: str = option("default", "'default': the tuned recipe; 'course': the deck's exact recipe (RMSprop, "
                         "no regularisation, test split as validation)", choices=PRESET_NAMES)
    epochs: int = option(10, "maximum number of epochs (passes over the training data)")
    batch_size: int = option(128, "examples per gradient step")
    optimizer: str = option("adam", "the optimizer", choices=OPTIMIZERS)
    learning_rate: float | None = option(None, "step size (unset: the optimizer's own default)")
    cosine_decay: bool = option(False, "let the learning rate fall to zero over --epochs along a half cosine")
    momentum: float = option(0.9, "momentum, for --optimizer momentum")
    activation: str = option("relu", "hidden-layer activation", choices=ACTIVATIONS)
    hidden: tuple[int, ...] = option((512, 512), "hidden layer sizes", metavar="UNITS", nargs="+", type=int)
    dropout: float = option(0.0, "dropout rate after each hidden layer (0 = off)")
    augment: str = option("off", "training-only random shifts/rotations/zooms, and how new border pixels "
                          "are filled", choices=AUGMENT_FILLS)
    shift: float = option(0.1, "augmentation: largest shift, as a fraction of the side")
    rotation: float = option(0.05, "augmentation: largest rotation, as a fraction of a full turn")
    zoom: float = option(0.1, "augmentation: largest zoom in or out, as a fraction")
    slant: float = option(0.0, "augmentation: largest horizontal shear (slant), as a fraction of the height (0 = off)")
    elastic: float = option(0.0, "augmentation: share of training images bent by a smooth random elastic distortion "
                            "(Simard et al. 2003; 0 = off)")
    elastic_alpha: float = option(2.0, "elastic distortion: largest displacement, in pixels of the 28x28 image")
    pen: float = option(0.0, "augmentation: share of training images whose strokes are made thicker or thinner and "
                        "blurred, as other pens and scanners do (0 = off)")
    low_res: float = option(0.0, "augmentation: share of training images made coarse, as an enlarged thumbnail, a "
                            "coarse scan or a soft focus: shrunk to 8-16 pixels a side and enlarged again (smoothly "
                            "or pixelated), or blurred by 1-2 pixels (0 = off)")
    lighting: float = option(0.0, "training-only uneven light: share of training images multiplied by a random "
                             "illumination field (gradient, vignette, soft shadow; 0 = off)")
    lighting_min_gain: float = option(0.3, "uneven light: the darkest one field may make a pixel, as a fraction "
                                      "of its brightness (fields combine)")
    local_contrast: float = option(0.0, "each pixel divided by a copy of the image blurred over this many pixels "
                                   "(of 28), inside the served model, before the standardisation: slow light "
                                   "fields such as a shadow's inside cancel (0 = off)")
    normalize: bool = option(False, "per-image standardisation inside the model")
    distill: float = option(0.0, "knowledge distillation: weight of a convolutional teacher's answers in the dense "
                            "network's loss (the teacher trains first on the same augmented images and is not "
                            "kept; 0 = off)")
    teacher_epochs: int = option(10, "epochs of the teacher, with --distill")
    teacher_precision: str = option("auto", "with --distill: the teacher's arithmetic. 'bfloat16' (Keras' "
                                    "mixed_bfloat16) is about 3x faster on a CPU with bfloat16 matrix units (AMX, "
                                    "AVX-512 BF16) and much slower on one without; 'auto' picks it on a GPU with "
                                    "bfloat16 tensor cores (Ampere on) and, without a GPU, where the CPU has them. "
                                    "The dense network always trains and is saved in float32",
                                    choices=TEACHER_PRECISIONS)
    distill_temperature: float = option(4.0, "with --distill: both answers are softened (log-probabilities over "
                                        "this) before they are compared, so the teacher's second choices count")
    distill_blends: float = option(0.0, "with --distill: share of the images the teacher answers that are first "
                                   "blended with another image of the batch at a random share (mixup's inputs, no "
                                   "labels), so the dense network learns the teacher's answers between the training "
                                   "images too (function matching); the labels still score the unblended batch "
                                   "(0 = off)")
    label_smoothing: float = option(0.0, "label smoothing: this share of each one-hot target is spread over all "
                                    "classes (0 = off)")
    weight_averaging: bool = option(False, "keep an exponential moving average of the weights while training and "
                                    "use it as the final weights (Keras' optimizer EMA)")
    outliers: float = option(0.0, "outlier exposure: add this many non-digit drawings per training image (scribbles, "
                             "open curves, letters, zigzags, through the upload stem) with a uniform target, so the "
                             "model is unsure of them (digits only; 0 = off)")
    patience: int = option(0, "early stopping on validation loss after this many epochs without "
                           "improvement, keeping the best epoch's weights (0 = off)")
    validation_split: float = option(0.1, "share of training data held out for validation")
    validation_groups: bool = option(False, "hold out whole groups of near-duplicate training images (one "
                                     "photograph's augmented copies) instead of random rows: a validation "
                                     "split that looks like new photographs")
    validate_on_test: bool = option(False, "validate on the test split as the course did (model selection "
                                    "then sees the test set; no early stopping)")
    limit: int | None = option(None, "train on a random subset of this many training examples")
    seed: int = option(0, "random seed for the split, initial weights, dropout and augmentation")
    data_dir: str | None = option(None, "directory with the data files (default: $DATA_DIR, else the download)",
                                  run_only=True)
    reports_dir: str = option("reports", "where reports/<model>/ goes", run_only=True)
    model_name: str | None = option(None, "store name (default: the family's)", run_only=True)
    save: bool = option(True, "write the model to the BentoML store", flag="--no-save", run_only=True)
    skip_existing: bool = option(False, "skip a family whose model is already in the store", run_only=True)
    quiet: bool = option(False, "one line per epoch instead of the progress bar", run_only=True)
    jobs: int = option(1, "with 'all': train up to N families at once, each in its own process, their lines "
                       "prefixed with the family (make train: 2; docs/training.md, 'Both models at once')",
                       run_only=True, metavar="N")
    lit_eval: int = option(500, "images of the validation and of the test split relit as photo uploads for the "
                           "summary's lit accuracy (0 = skip)", run_only=True)

    @classmethod
    def from_preset(cls, dataset: str, preset: str = "default", **overrides) -> "TrainConfig":
        """The preset's values for ``dataset``, with the non-None ``overrides`` on top."""
        if (dataset, preset) not in PRESETS:
            raise ValueError(f"no preset {preset!r} for {dataset!r}")
        values = {**PRESETS[(dataset, preset)], **{k: v for k, v in overrides.items() if v is not None}}
        if "hidden" in values:
            values["hidden"] = tuple(values["hidden"])
        return cls(dataset=dataset, preset=preset, **values)

    @property
    def store_name(self) -> str:
        """The model's name in the BentoML store: ``--model-name``, else the family's."""
        return self.model_name or family(self.dataset).store_name

    def options(self) -> dict:
        """The options that shape the model and its training, for the model's metadata."""
        run_only = {f.name for f in fields(self) if f.metadata.get("run_only")}
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in run_only}


# The defaults reach the targets on the real data (README, docs/decisions.md). The course preset is
# the deck's recipe: RMSprop, batch 32, no regularisation, test split as validation; it overfits
# ASL visibly, which is the point of that lesson.
PRESETS: dict[tuple[str, str], dict] = {
    ("mnist", "default"): dict(
        epochs=45, batch_size=256, learning_rate=2e-3, cosine_decay=True, augment="constant", shift=0.08,
        rotation=0.03, zoom=0.08, slant=0.1, elastic=0.3, elastic_alpha=1.5, pen=0.3, weight_averaging=True,
        outliers=0.1, distill=1.0, teacher_epochs=12, distill_blends=0.5,
    ),
    ("asl", "default"): dict(
        epochs=110, augment="nearest", normalize=True, lighting=0.8, learning_rate=1e-3, cosine_decay=True,
        distill=3.0, teacher_epochs=30, distill_blends=0.5, local_contrast=2.0,
    ),
    ("mnist", "course"): dict(epochs=5, batch_size=32, optimizer="rmsprop", learning_rate=1e-3,
                              validate_on_test=True),
    ("asl", "course"): dict(epochs=20, batch_size=32, optimizer="rmsprop", learning_rate=1e-3,
                            validate_on_test=True),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One command-line option per field (``dataset`` positional, with ``all``); every default is
    None, meaning "the preset's value", so a preset can tell set from unset."""
    for f in fields(TrainConfig):
        meta = f.metadata
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        help_text = f"{meta['help']} (default: {_shown(default)}{_preset_values(f.name)})"
        if f.name == "dataset":
            parser.add_argument("dataset", choices=[*ROUTES, "all"], help=f"{meta['help']} ('all': every family)")
            continue
        flag = meta["flag"] or "--" + f.name.replace("_", "-")
        if isinstance(default, bool):
            if meta["flag"]:  # a switch that turns a default-on option off
                parser.add_argument(flag, dest=f.name, action="store_const", const=not default, default=None,
                                    help=meta["help"])
            else:
                parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                                    help=help_text)
            continue
        kind = meta["argparse"].get("type") or _type_of(f.type)
        parser.add_argument(flag, dest=f.name, default=None, choices=meta["choices"], help=help_text,
                            **{"type": kind, **meta["argparse"]})


def _shown(value) -> str:
    return " ".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)


def _preset_values(name: str) -> str:
    """``; mnist/default: 30, ...``: the presets that set this option."""
    values = [f"{route}/{preset}: {_shown(v[name])}" for (route, preset), v in PRESETS.items() if name in v]
    return "; " + ", ".join(values) if values else ""


def _type_of(annotation: str):
    for name, kind in (("int", int), ("float", float)):
        if annotation.startswith(name):
            return kind
    return str


def configs_from_arguments(args: argparse.Namespace) -> list[TrainConfig]:
    """One config per family named on the command line (``all``: every family, in catalog order)."""
    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if f.name not in ("dataset", "preset")}
    routes = list(ROUTES) if args.dataset == "all" else [args.dataset]
    return [TrainConfig.from_preset(route, args.preset or "default", **given) for route in routes]
