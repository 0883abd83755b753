"""One training run, in steps: load the data, build the model, fit, evaluate, report, save."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import keras
import numpy as np

from catalog import Calibration, Family, ModelMetadata, family
from inference import Classifier, calibration
from preprocessing import MNIST_DIGIT
from training import datasets, lit, outliers, reports, store
from training.config import TrainConfig
from training.models import (build_classifier, build_teacher, distillation_model, inference_model, make_optimizer,
                             teacher_precision)


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
    calibration: Calibration | None = None
    lit_accuracy: dict | None = None  # split -> accuracy on its lit photo uploads (training.lit)
    calibrated_on: str = "validation"

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


def run(config: TrainConfig, position: tuple[int, int] = (1, 1)) -> RunResult:
    """Train one model end to end; returns its numbers and where its reports went.

    ``position``: this run's place among the runs of one command (for the opening line)."""
    fam = family(config.dataset)
    if config.distill:  # the metadata records what the teacher really computed in
        config = replace(config, teacher_precision=teacher_precision(config.teacher_precision))
    model_name = config.store_name
    report_dir = Path(config.reports_dir) / model_name
    raw, splits = load_splits(config)
    announce(config, fam, model_name, splits, position)
    keras.utils.set_random_seed(config.seed)
    model = build_classifier(len(fam.class_names), config, name=model_name)
    fitted = fit(model, splits, config)
    metrics = evaluate(model, splits)
    verdict = overfitting_verdict(metrics, fitted.history)
    served = inference_model(model)
    calibrated, fitted_on = calibrate(served, splits)
    forward = lambda x: served.predict(x, batch_size=1024, verbose=0)  # noqa: E731
    lit_accuracy = lit_accuracies(lit_classifier(fam, model_name, forward), lit_splits(splits, raw, fam, config))
    write_plots(model, splits, fam, fitted, metrics, config, model_name, report_dir)
    tag = (save(served, fam, model_name, metrics, fitted, config, raw, calibrated, lit_accuracy)
           if config.save else None)
    result = RunResult(config, metrics, fitted, verdict, tag, report_dir, calibrated, lit_accuracy, fitted_on)
    reports.write_json(report_dir / "history.json", fitted.history)
    reports.write_json(report_dir / "summary.json", summary_dict(result))
    print(format_summary(result))
    return result


def load_splits(config: TrainConfig) -> tuple[datasets.RawData, datasets.Splits]:
    """The family's raw data and the model-ready train / validation / test splits."""
    raw = datasets.load(config.dataset, config.data_dir)
    splits = datasets.prepare(raw, validation_split=config.validation_split,
                              validation_from_test=config.validate_on_test, validation_groups=config.validation_groups,
                              limit=config.limit, seed=config.seed)
    where = ("the test split (as the course did)" if config.validate_on_test
             else f"{config.validation_split:.0%} of the training data, held out"
             + (" as whole groups of near-duplicates" if config.validation_groups else ""))
    print(f"{config.dataset}: {len(splits.x_train)} training, {len(splits.x_val)} validation ({where}), "
          f"{len(splits.x_test)} test images; {len(raw.family.class_names)} classes")
    return raw, splits


def compile_model(model: keras.Model, config: TrainConfig, train_size: int = 0) -> None:
    """Compile with the configured optimizer; with ``config.cosine_decay`` the learning rate falls
    to zero over ``config.epochs`` epochs of ``train_size`` examples."""
    decay_steps = config.epochs * steps_per_epoch(train_size, config.batch_size) if config.cosine_decay else 0
    optimizer = make_optimizer(config.optimizer, config.learning_rate, config.momentum, decay_steps,
                               config.weight_averaging)
    model.compile(optimizer=optimizer, loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
                  metrics=["accuracy"])


def announce(config: TrainConfig, fam: Family, model_name: str, splits: datasets.Splits,
             position: tuple[int, int]) -> None:
    """The run's opening line: which model, and (unless ``quiet``) about how long it will take here."""
    head = f"training {model_name} ({position[0]} of {position[1]})"
    if config.quiet:
        print(f"{head}: at most {config.epochs} epochs", flush=True)
        return
    estimate = estimate_seconds(config, fam, splits)
    print(f"{head}: about {minutes_text(estimate['total'])} on this machine "
          f"(an estimate: at most {config.epochs} epochs of ~{estimate['epoch']:.2g} s, from "
          f"{estimate['step'] * 1000:.0f} ms per step measured just now; early stopping often ends sooner)",
          flush=True)


def minutes_text(seconds: float) -> str:
    """``seconds`` in whole minutes, at least one: '1 minute', '17 minutes'."""
    minutes = max(1, round(seconds / 60))
    return f"{minutes} minute{'s' if minutes > 1 else ''}"


def outlier_share(config: TrainConfig) -> float:
    """Non-digit drawings added per training image: ``config.outliers`` for digit models, else 0."""
    return config.outliers if family(config.dataset).preprocessing == MNIST_DIGIT else 0.0


def estimate_seconds(config: TrainConfig, fam: Family, splits: datasets.Splits, steps: int = 8) -> dict:
    """Seconds per training step, per epoch and for the whole run (at most ``config.epochs`` epochs,
    the outliers' drawing, the teacher's epochs, the validation passes and the lit evaluation included), measured on
    throwaway copies of the models: ``fit`` on ``steps`` batches (it compiles) and on ``3 * steps``
    batches (timed; see :func:`_time_steps`), and a few lit photos made and answered."""
    x, y = splits.x_train[: 3 * steps * config.batch_size], splits.y_train[: 3 * steps * config.batch_size]
    with_outliers = outlier_share(config)
    rows = round(len(splits.x_train) * (1 + with_outliers))
    batches = steps_per_epoch(rows, config.batch_size)
    probe = build_classifier(len(fam.class_names), config, name="probe")
    teacher_total = 0.0
    if config.distill:
        teacher = build_teacher(len(fam.class_names), teacher_config(config), name="probe_teacher")
        compile_model(teacher, teacher_config(config), rows)
        first, teacher_step = _time_steps(teacher, x, y, config.batch_size, steps)
        teacher_total = first + config.teacher_epochs * batches * teacher_step
        probe = distillation_model(probe, inference_model(teacher), config.distill, config.distill_temperature,
                                   config.distill_blends)
    compile_model(probe, config, rows)
    first, step = _time_steps(probe, x, y, config.batch_size, steps)
    validation = -(-len(splits.x_val) // config.batch_size) * step / 3  # forward only: ~1/3 of a step
    epoch = batches * step + validation
    lit_seconds = 0.0
    if config.lit_eval:
        images = np.rint(splits.x_val[:4].reshape(-1, 28, 28) * 255).astype(np.uint8)
        # A uniform stand-in for the model: the real forward pass is one call per split, and timing
        # a first predict() here would charge its compilation to every photo.
        uniform = lambda x: np.full((len(x), len(fam.class_names)), 1 / len(fam.class_names), np.float32)  # noqa: E731
        timed = lit_classifier(fam, "probe", uniform)
        start = time.perf_counter()
        timed.predict(lit.lit_uploads(images, fam.preprocessing))
        per_image = (time.perf_counter() - start) / len(images)
        # the lit sets and their shadow-only twins
        lit_seconds = 2 * per_image * (min(config.lit_eval, len(splits.x_val)) + min(config.lit_eval, len(splits.x_test)))
    outlier_seconds = 0.0
    if with_outliers:
        start = time.perf_counter()
        outliers.outlier_vectors(20, config.seed)
        outlier_seconds = (time.perf_counter() - start) / 20 * (rows - len(splits.x_train))
    total = outlier_seconds + teacher_total + first + config.epochs * epoch + lit_seconds
    return {"step": step, "epoch": epoch, "total": total}


def _time_steps(model: keras.Model, x: np.ndarray, y: np.ndarray, batch_size: int, steps: int) -> tuple[float, float]:
    """Seconds of the first (compiling) ``fit`` over the first ``steps`` batches, and per step: the
    median time between the ends of two batches in a ``fit`` over all of ``x``. What each ``fit``
    call costs once (its iterator, the epoch's end) is left out, and so are the steps a busy machine
    slowed."""
    start = time.perf_counter()
    model.fit(x[: steps * batch_size], y[: steps * batch_size], batch_size=batch_size, epochs=1, verbose=0)
    first = time.perf_counter() - start  # compiling: once more for the real model
    ends: list[float] = []
    clock = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: ends.append(time.perf_counter()))
    start = time.perf_counter()
    model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0, callbacks=[clock])
    if len(ends) < 3:  # too few batches for a median: the whole call, per batch
        return first, (time.perf_counter() - start) / max(1, len(ends))
    return first, float(np.median(np.diff(ends)))


def fit(model: keras.Model, splits: datasets.Splits, config: TrainConfig) -> Fit:
    """Compile and fit; with ``patience`` (and a held-out validation split) early stopping keeps the
    best epoch's weights."""
    if config.weight_averaging and config.patience and not config.validate_on_test:
        raise ValueError("--weight-averaging keeps the averaged weights of the last epoch, early stopping "
                         "(--patience) a best epoch's: choose one (e.g. --patience 0 or --no-weight-averaging)")
    trainer = model
    x_fit, y_fit = splits.x_train, splits.y_train
    share = outlier_share(config)
    if share:
        x_fit, y_fit = outliers.with_outliers(x_fit, y_fit, share, config.seed)
        print(f"outlier exposure: {len(x_fit) - len(splits.x_train)} non-digit drawings with a uniform target "
              "added to the training data", flush=True)
    if config.distill:
        teacher = train_teacher(model.output_shape[-1], x_fit, y_fit, splits, config)
        trainer = distillation_model(model, teacher, config.distill, config.distill_temperature, config.distill_blends)
    compile_model(trainer, config, len(x_fit))
    timer = EpochTimer()
    callbacks: list[keras.callbacks.Callback] = [timer]
    if config.weight_averaging:  # validation measures the averaged weights, the ones that are kept
        callbacks.append(keras.callbacks.SwapEMAWeights())
    stopper = None
    if config.patience and not config.validate_on_test:
        stopper = keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience,
                                                restore_best_weights=True)
        callbacks.append(stopper)
    history = trainer.fit(**training_feed(x_fit, y_fit, config.batch_size, config.seed),
                          validation_data=(splits.x_val, splits.y_val), epochs=config.epochs, callbacks=callbacks,
                          verbose=2 if config.quiet else "auto").history
    history = {k: [float(v) for v in values] for k, values in history.items()}
    if trainer is not model:  # the student itself, for evaluate()
        compile_model(model, config, len(splits.x_train))
    restored = stopper is not None and stopper.best_weights is not None
    epochs_run = len(history["loss"])
    return Fit(history, stopper.best_epoch + 1 if restored else epochs_run, restored,
               float(np.mean(timer.seconds)) if timer.seconds else 0.0)


def steps_per_epoch(rows: int, batch_size: int) -> int:
    """Gradient steps in one pass over ``rows`` training rows, as :func:`training_feed` feeds them:
    whole batches only on TensorFlow (at least one), every row on other backends. The cosine
    schedule counts the same steps, so that its learning rate reaches zero on the last one."""
    if keras.backend.backend() == "tensorflow":
        return max(1, rows // batch_size)
    return -(-rows // batch_size)


def training_feed(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int) -> dict:
    """``fit``'s training data, as keyword arguments. On TensorFlow: one endless ``tf.data`` stream
    of shuffled batches (reshuffled on every pass; a pass drops the fewer than ``batch_size`` rows
    left over, different ones each time) with ``steps_per_epoch`` of one pass. Keras' own feed of
    numpy arrays starts a new iterator every epoch, and on TensorFlow the first step of about half
    of those waited 1.5 s (22,000 rows) to 9 s (59,400 rows); a stream that lasts the whole run
    starts once. Other backends get the arrays as they are."""
    if keras.backend.backend() != "tensorflow":
        return dict(x=x, y=y, batch_size=batch_size)
    import tensorflow as tf

    rows = len(x)
    inputs, targets = tf.constant(x), tf.constant(y)
    stream = (tf.data.Dataset.range(rows).shuffle(rows, seed=seed, reshuffle_each_iteration=True)
              .batch(batch_size, drop_remainder=rows >= batch_size).repeat()
              .map(lambda i: (tf.gather(inputs, i), tf.gather(targets, i)))
              .prefetch(tf.data.AUTOTUNE))
    return dict(x=stream, steps_per_epoch=steps_per_epoch(rows, batch_size), shuffle=False)  # the stream shuffles


def teacher_config(config: TrainConfig) -> TrainConfig:
    """The teacher's run: ``teacher_epochs`` along a half cosine, with the plain jitter and light only.

    The elastic and pen distortions cost a small network more accuracy in its few epochs than they
    teach it, and its answers on distorted images are still good ones; the low-resolution ones are
    left out alike (not measured for the teacher). No label smoothing or weight
    averaging: a smoothed teacher's answers teach less (Mueller et al. 2019). No local contrast: it
    is how the dense network sees past a shadow, and the teacher was chosen seeing the lit image."""
    return replace(config, epochs=config.teacher_epochs, cosine_decay=True, label_smoothing=0.0,
                   weight_averaging=False, elastic=0.0, pen=0.0, low_res=0.0, slant=0.0, local_contrast=0.0)


def train_teacher(num_classes: int, x: np.ndarray, y: np.ndarray, splits: datasets.Splits,
                  config: TrainConfig) -> keras.Model:
    """Fit the convolutional teacher (:func:`training.models.build_teacher`) on the same training
    rows ``x``, ``y`` (outliers included), augmentation and light for ``config.teacher_epochs``, its
    learning rate falling to zero along a half cosine; returns its inference model (frozen by the
    distillation, never saved), after its accuracy on ``splits``' validation rows."""
    schedule = teacher_config(config)
    teacher = build_teacher(num_classes, schedule)
    compile_model(teacher, schedule, len(x))
    print(f"teacher: a small convolutional network, {config.teacher_epochs} epochs in "
          f"{teacher_precision(config.teacher_precision)}; the dense network learns from its answers next", flush=True)
    teacher.fit(**training_feed(x, y, config.batch_size, config.seed), epochs=config.teacher_epochs,
                verbose=2 if config.quiet else "auto")
    served = inference_model(teacher)
    served.compile(loss="categorical_crossentropy", metrics=["accuracy"])
    _, accuracy = served.evaluate(splits.x_val, splits.y_val, batch_size=1024, verbose=0)
    print(f"teacher: validation accuracy {accuracy:.2%}", flush=True)
    return served


def evaluate(model: keras.Model, splits: datasets.Splits) -> dict:
    """Loss and accuracy per split, of the weights the model holds now; with a grouped validation
    split (``splits.val_groups``) also how many photographs it holds and how many had an error."""
    metrics = {}
    for split, x, y in (("train", splits.x_train, splits.y_train), ("validation", splits.x_val, splits.y_val),
                        ("test", splits.x_test, splits.y_test)):
        loss, accuracy = model.evaluate(x, y, batch_size=1024, verbose=0)
        metrics[split] = {"loss": float(loss), "accuracy": float(accuracy)}
    if splits.val_groups is not None:  # near-copies err together: the count of photographs is the resolution
        wrong = model.predict(splits.x_val, batch_size=1024, verbose=0).argmax(1) != splits.y_val.argmax(1)
        metrics["validation"].update(photographs=int(splits.val_groups.max()) + 1,
                                     photographs_wrong=len(np.unique(splits.val_groups[wrong])))
    return metrics


# Temperature scaling learns from wrong answers; with fewer than this many on the validation split
# the fit is not determined (none at all: the NLL keeps falling as T -> 0) and T stays 1.
MIN_CALIBRATION_ERRORS = 20


@dataclass
class LitSplits:
    """The validation and test images photographed under uneven light, as uploads (encoded images):
    under any of the evaluation fields, and under a shadow only (its soft edge across the subject)."""

    x_val: list[bytes]
    y_val: np.ndarray  # class indices
    x_test: list[bytes]
    y_test: np.ndarray
    x_val_shadow: list[bytes]
    x_test_shadow: list[bytes]


def lit_splits(splits: datasets.Splits, raw: datasets.RawData, fam: Family, config: TrainConfig) -> LitSplits | None:
    """Up to ``config.lit_eval`` validation and test images as lit photo uploads
    (:mod:`training.lit`); None when ``lit_eval`` is 0."""
    if not config.lit_eval:
        return None
    val_images = np.rint(splits.x_val.reshape(-1, 28, 28) * 255).astype(np.uint8)  # x_val = uint8 / 255
    val = lit.sample(len(val_images), config.lit_eval, config.seed)
    test = lit.sample(len(raw.x_test), config.lit_eval, config.seed)
    shadow = ("shadow",)
    return LitSplits(lit.lit_uploads(val_images[val], fam.preprocessing, config.seed),
                     splits.y_val.argmax(axis=1)[val],
                     lit.lit_uploads(raw.x_test[test], fam.preprocessing, config.seed + 1), raw.y_test[test],
                     lit.lit_uploads(val_images[val], fam.preprocessing, config.seed + 2, kinds=shadow),
                     lit.lit_uploads(raw.x_test[test], fam.preprocessing, config.seed + 3, kinds=shadow))


def calibrate(served: keras.Model, splits: datasets.Splits) -> tuple[Calibration, str]:
    """Temperature scaling fitted on the validation split; the test split's ECE without and with it.

    With fewer than :data:`MIN_CALIBRATION_ERRORS` wrong answers on validation (Sign Language
    MNIST's random hold-out is nearly a copy of its training photos: none at all), the temperature
    is not determined and stays 1. Returns the calibration and what it was fitted on."""
    predict = lambda x: np.asarray(served.predict(x, batch_size=1024, verbose=0))  # noqa: E731
    val, val_labels = predict(splits.x_val), splits.y_val.argmax(axis=1)
    errors = int(np.sum(val.argmax(axis=1) != val_labels))
    if errors >= MIN_CALIBRATION_ERRORS:
        temperature, fitted_on = calibration.fit_temperature(val, val_labels), f"validation, {errors} wrong"
    else:
        temperature = 1.0
        fitted_on = (f"nothing: validation has {errors} wrong answers, under {MIN_CALIBRATION_ERRORS}, "
                     "so the temperature stays 1")
    test, test_labels = predict(splits.x_test), splits.y_test.argmax(axis=1)
    result = Calibration(
        temperature=temperature,
        ece_before=calibration.expected_calibration_error(test, test_labels),
        ece_after=calibration.expected_calibration_error(calibration.calibrate(test, temperature),
                                                         test_labels),
    )
    return result, fitted_on


def lit_classifier(fam: Family, tag: str, forward) -> Classifier:
    """The family's :class:`~inference.Classifier` around ``forward`` (the in-memory model's predict).
    Uncalibrated: a temperature never changes the top class, all the lit accuracy counts."""
    return Classifier(tag, ModelMetadata(class_names=list(fam.class_names), preprocessing=fam.preprocessing), forward)


def lit_accuracies(classifier: Classifier, lit_data: LitSplits | None) -> dict | None:
    """Accuracy of the Classifier's answers to the lit photos of the validation and test images, under
    any field and under a shadow only (:func:`training.lit.accuracy`: a photo where nothing was found
    counts as wrong); None without them."""
    if lit_data is None:
        return None
    accuracy = lambda x, y: lit.accuracy(classifier.predict(x), y)  # noqa: E731
    return {"validation": accuracy(lit_data.x_val, lit_data.y_val), "test": accuracy(lit_data.x_test, lit_data.y_test),
            "validation_shadow": accuracy(lit_data.x_val_shadow, lit_data.y_val),
            "test_shadow": accuracy(lit_data.x_test_shadow, lit_data.y_test),
            "images": len(lit_data.y_test)}


def write_plots(model, splits, fam: Family, fitted: Fit, metrics: dict, config: TrainConfig, model_name: str,
                report_dir: Path) -> None:
    """``curves.png`` (training vs validation) and ``confusion_matrix.png`` (test split)."""
    predicted = model.predict(splits.x_test, batch_size=1024, verbose=0).argmax(axis=1)
    counts = reports.confusion_matrix(splits.y_test.argmax(axis=1), predicted, len(fam.class_names))
    title = f"{model_name}: {config.preset} preset, {config.optimizer}, {fitted.epochs_run} epochs"
    reports.plot_curves(fitted.history, report_dir / "curves.png", title)
    reports.plot_confusion(counts, fam.class_names, report_dir / "confusion_matrix.png",
                           f"{model_name} on the test split: accuracy {metrics['test']['accuracy']:.2%}")


def save(served: keras.Model, fam: Family, model_name: str, metrics: dict, fitted: Fit, config: TrainConfig,
         raw: datasets.RawData, calibrated: Calibration | None = None, lit_accuracy: dict | None = None) -> str:
    """The inference model as a new version of ``model_name`` in the store; returns its tag."""
    extra = {"lit_accuracy": lit_accuracy} if lit_accuracy else {}
    entry = store.save_model(
        served, model_name, fam,
        metrics=metrics,
        training={**config.options(), "epochs_run": fitted.epochs_run, "weights_epoch": fitted.weights_epoch},
        data_sha256=raw.sources,
        labels={"dataset": fam.route, "preset": config.preset},
        calibration=calibrated,
        **extra,
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
        "calibration": result.calibration.model_dump() if result.calibration else None,
        "calibrated_on": result.calibrated_on,
        "lit_accuracy": result.lit_accuracy,
    }


def format_summary(result: RunResult) -> str:
    """The end-of-run table: accuracy and loss per split, then the overfitting verdict."""
    label = len("validation, shadow")  # the longest row name, so that every number lines up
    rule = "-" * (label + 20)
    lines = ["", f"{'split':<{label}}{'accuracy':>10}{'loss':>10}", rule]
    for split in ("train", "validation", "test"):
        m = result.metrics[split]
        lines.append(f"{split:<{label}}{m['accuracy']:>10.2%}{m['loss']:>10.4f}")
    val = result.metrics["validation"]
    if val.get("photographs"):
        lines.append(f"(validation: {val['photographs']} photographs held out whole, {val['photographs_wrong']} with an "
                     f"image answered wrong; a photograph is {1 / val['photographs']:.1%} of it on average)")
    if result.lit_accuracy:
        lines.append(rule)
        rows = [(f"{split}, lit", split) for split in ("validation", "test")]
        rows += [(f"{split}, shadow", f"{split}_shadow") for split in ("validation", "test")
                 if f"{split}_shadow" in result.lit_accuracy]
        lines += [f"{name:<{label}}{result.lit_accuracy[key]:>10.2%}" for name, key in rows]
        lines.append(f"(lit: up to {result.lit_accuracy['images']} images per split photographed under uneven "
                     "light, read through the upload path; shadow: under a shadow only)")
    fitted = result.fit
    weights = (f"early stopping kept the weights of epoch {fitted.weights_epoch}" if fitted.restored
               else f"weights of the last epoch, {fitted.weights_epoch}")
    lines += [
        rule,
        f"epochs run: {fitted.epochs_run} ({weights}), {fitted.seconds_per_epoch:.1f} s per epoch",
        f"verdict: {result.verdict}",
    ]
    if result.calibration:
        c = result.calibration
        lines.append(f"calibration: temperature {c.temperature:.3f} (fitted on {result.calibrated_on}); test ECE "
                     f"{c.ece_before:.2%} before, {c.ece_after:.2%} after (15 bins, top label)")
    if result.config.validate_on_test:
        lines.append("note: validation = test split here, as in the course; its test accuracy is not an unbiased estimate.")
    lines.append(f"reports: {result.report_dir}/ (curves.png, confusion_matrix.png, history.json, summary.json)")
    lines.append(f"saved: {result.model_tag}" if result.model_tag else "not saved (--no-save)")
    return "\n".join(lines)
