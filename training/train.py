"""One training run, in steps: load the data, build the model, fit, evaluate, report, save."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from catalog import Family, family
from training import datasets, reports, store
from training.config import TrainConfig
from training.models import build_classifier, inference_model, make_optimizer


@dataclass
class Fit:
    """What ``model.fit`` did: the history, and which epoch's weights the model holds now."""

    history: dict[str, list[float]]
    weights_epoch: int  # 1-based; the last epoch unless early stopping restored an earlier one
    restored: bool  # early stopping put back the best epoch's weights
    seconds_per_epoch: float

    @property
    def epochs_run(self) -> int:
        return len(self.history["loss"])


@dataclass
class RunResult:
    config: TrainConfig
    metrics: dict  # split -> {"loss", "accuracy"}
    fit: Fit
    verdict: str
    model_tag: str | None
    report_dir: Path

    @property
    def history(self) -> dict:
        return self.fit.history


def overfitting_verdict(metrics: dict, history: dict) -> str:
    """Plain-words verdict from the train-validation accuracy gap and the validation loss trend.

    A rise of the validation loss counts only when it is large both relative to its best value and
    in absolute terms (0.02), so that noise on a nearly-zero loss is not called overfitting.
    """
    gap = 100 * (metrics["train"]["accuracy"] - metrics["validation"]["accuracy"])
    val_loss = np.asarray(history.get("val_loss", []), dtype=float)
    rise = absolute = 0.0
    if len(val_loss) > 1:
        best = float(val_loss.min())
        absolute = float(val_loss[-1]) - best
        rise = 100 * absolute / max(best, 1e-12)
    facts = (f"train-validation accuracy gap {gap:+.2f} points; last validation loss "
             f"{rise:.0f}% (+{absolute:.3f}) above its best")
    if gap > 3 or (rise > 25 and absolute > 0.02):
        return f"OVERFITTING: {facts}. Regularise (dropout, augmentation) or stop earlier."
    if gap > 1 or (rise > 10 and absolute > 0.02):
        return f"mild overfitting: {facts}."
    return f"no sign of overfitting: {facts}."


def run(config: TrainConfig) -> RunResult:
    """Train one model end to end; returns its numbers and where its reports went."""
    fam = family(config.dataset)
    model_name = config.model_name or fam.store_name
    report_dir = Path(config.reports_dir) / model_name
    raw, splits = load_splits(config)
    keras.utils.set_random_seed(config.seed)
    model = build_classifier(len(fam.class_names), config, name=model_name)
    fitted = fit(model, splits, config)
    metrics = evaluate(model, splits)
    verdict = overfitting_verdict(metrics, fitted.history)
    write_plots(model, splits, fam, fitted, metrics, config, model_name, report_dir)
    tag = save(model, fam, model_name, metrics, fitted, config, raw) if config.save else None
    result = RunResult(config, metrics, fitted, verdict, tag, report_dir)
    reports.write_json(report_dir / "history.json", fitted.history)
    reports.write_json(report_dir / "summary.json", summary_dict(result))
    print(format_summary(result))
    return result


def load_splits(config: TrainConfig) -> tuple[datasets.RawData, datasets.Splits]:
    """The family's raw data and the model-ready train / validation / test splits."""
    raw = datasets.load(config.dataset, config.data_dir)
    splits = datasets.prepare(raw, validation_split=config.validation_split,
                              validation_from_test=config.validate_on_test, limit=config.limit, seed=config.seed)
    where = ("the test split (as the course did)" if config.validate_on_test
             else f"{config.validation_split:.0%} of the training data, held out")
    print(f"{config.dataset}: {len(splits.x_train)} training, {len(splits.x_val)} validation ({where}), "
          f"{len(splits.x_test)} test images; {len(raw.family.class_names)} classes")
    return raw, splits


def fit(model: keras.Model, splits: datasets.Splits, config: TrainConfig) -> Fit:
    """Compile and fit; with ``patience`` (and a held-out validation split) early stopping keeps the
    best epoch's weights."""
    model.compile(optimizer=make_optimizer(config.optimizer, config.learning_rate, config.momentum),
                  loss="categorical_crossentropy", metrics=["accuracy"])
    timer = EpochTimer()
    callbacks: list[keras.callbacks.Callback] = [timer]
    stopper = None
    if config.patience and not config.validate_on_test:
        stopper = keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience,
                                                restore_best_weights=True)
        callbacks.append(stopper)
    history = model.fit(splits.x_train, splits.y_train, validation_data=(splits.x_val, splits.y_val),
                        epochs=config.epochs, batch_size=config.batch_size, callbacks=callbacks,
                        verbose=2 if config.quiet else "auto").history
    history = {k: [float(v) for v in values] for k, values in history.items()}
    restored = stopper is not None and stopper.best_weights is not None
    epochs_run = len(history["loss"])
    return Fit(history, stopper.best_epoch + 1 if restored else epochs_run, restored,
               float(np.mean(timer.seconds)) if timer.seconds else 0.0)


def evaluate(model: keras.Model, splits: datasets.Splits) -> dict:
    """Loss and accuracy per split, of the weights the model holds now."""
    metrics = {}
    for split, x, y in (("train", splits.x_train, splits.y_train), ("validation", splits.x_val, splits.y_val),
                        ("test", splits.x_test, splits.y_test)):
        loss, accuracy = model.evaluate(x, y, batch_size=1024, verbose=0)
        metrics[split] = {"loss": float(loss), "accuracy": float(accuracy)}
    return metrics


def write_plots(model, splits, fam: Family, fitted: Fit, metrics: dict, config: TrainConfig, model_name: str,
                report_dir: Path) -> None:
    """``curves.png`` (training vs validation) and ``confusion_matrix.png`` (test split)."""
    predicted = model.predict(splits.x_test, batch_size=1024, verbose=0).argmax(axis=1)
    counts = reports.confusion_matrix(splits.y_test.argmax(axis=1), predicted, len(fam.class_names))
    title = f"{model_name}: {config.preset} preset, {config.optimizer}, {fitted.epochs_run} epochs"
    reports.plot_curves(fitted.history, report_dir / "curves.png", title)
    reports.plot_confusion(counts, fam.class_names, report_dir / "confusion_matrix.png",
                           f"{model_name} on the test split: accuracy {metrics['test']['accuracy']:.2%}")


def save(model, fam: Family, model_name: str, metrics: dict, fitted: Fit, config: TrainConfig,
         raw: datasets.RawData) -> str:
    """The inference model as a new version of ``model_name`` in the store; returns its tag."""
    entry = store.save_model(
        inference_model(model), model_name, fam,
        metrics=metrics,
        training={**config.options(), "epochs_run": fitted.epochs_run, "weights_epoch": fitted.weights_epoch},
        data_sha256=raw.sources,
        labels={"dataset": fam.route, "preset": config.preset},
    )
    return str(entry.tag)


class EpochTimer(keras.callbacks.Callback):
    """Records wall seconds per epoch."""

    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def summary_dict(result: RunResult) -> dict:
    return {
        "model": result.model_tag,
        "metrics": result.metrics,
        "verdict": result.verdict,
        "epochs_run": result.fit.epochs_run,
        "weights_epoch": result.fit.weights_epoch,
        "weights_restored": result.fit.restored,
        "seconds_per_epoch": result.fit.seconds_per_epoch,
        "options": result.config.options(),
    }


def format_summary(result: RunResult) -> str:
    """The end-of-run table: accuracy and loss per split, then the overfitting verdict."""
    lines = [
        "",
        f"{'split':<12}{'accuracy':>10}{'loss':>10}",
        "-" * 32,
    ]
    for split in ("train", "validation", "test"):
        m = result.metrics[split]
        lines.append(f"{split:<12}{m['accuracy']:>10.2%}{m['loss']:>10.4f}")
    fitted = result.fit
    weights = (f"early stopping kept the weights of epoch {fitted.weights_epoch}" if fitted.restored
               else f"weights of the last epoch, {fitted.weights_epoch}")
    lines += [
        "-" * 32,
        f"epochs run: {fitted.epochs_run} ({weights}), {fitted.seconds_per_epoch:.1f} s per epoch",
        f"verdict: {result.verdict}",
    ]
    if result.config.validate_on_test:
        lines.append("note: validation = test split here, as in the course; its test accuracy is not an unbiased estimate.")
    lines.append(f"reports: {result.report_dir}/ (curves.png, confusion_matrix.png, history.json, summary.json)")
    lines.append(f"saved: {result.model_tag}" if result.model_tag else "not saved (--no-save)")
    return "\n".join(lines)
