"""A real (short) training run into the model store, the CLI end to end, and the verdict logic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import bentoml
import numpy as np
import pytest

from conftest import REPO
from catalog import ModelMetadata
from training import store
from training.config import PRESETS, TrainConfig
from training.train import compile_model, estimate_seconds, overfitting_verdict, run, steps_per_epoch, training_feed

PNG = b"\x89PNG\r\n\x1a\n"


def quick_config(data_dir, tmp_path, dataset="mnist", **overrides):
    values = dict(data_dir=str(data_dir), epochs=1, reports_dir=str(tmp_path / "reports"),
                  model_name=f"test_{dataset}_{tmp_path.name}"[:50].lower(), quiet=True, lit_eval=0)
    values.update(overrides)
    return TrainConfig.from_preset(dataset, **values)


def test_one_epoch_run_ends_in_store_and_loads_back_identically(synthetic_data_dir, tmp_path, capsys):
    result = run(quick_config(synthetic_data_dir, tmp_path, lit_eval=30))
    entry = bentoml.models.get(result.model_tag)
    meta = entry.info.metadata
    assert meta["class_names"] == list("0123456789")
    assert meta["preprocessing"] == "mnist_digit"
    assert meta["input"]["shape"] == [784]
    assert set(meta["metrics"]) == {"train", "validation", "test"}
    assert 0 <= meta["metrics"]["test"]["accuracy"] <= 1
    assert meta["training"]["optimizer"] == "adam" and meta["training"]["epochs_run"] == 1
    assert set(meta["data_sha256"]) == {"mnist.npz"}
    assert entry.info.labels["dataset"] == "mnist"
    # calibration: fitted on validation, judged on test; the lit accuracy of 30 photos per split
    calibration = ModelMetadata.from_store(meta).calibration
    assert calibration is not None and calibration.temperature > 0
    assert calibration.ece_after == pytest.approx(result.calibration.ece_after)
    assert set(meta["lit_accuracy"]) == {"validation", "test", "validation_shadow", "test_shadow", "images"} and meta["lit_accuracy"]["images"] == 30
    out = capsys.readouterr().out
    assert f"test ECE {calibration.ece_before:.2%} before, {calibration.ece_after:.2%} after" in out
    assert "test, lit" in out and "training test_mnist_" in out and "(1 of 1)" in out
    # the summary's accuracy column lines up, the longest row name ("validation, shadow") included
    rows = [line for line in out.splitlines() if line.startswith(("train ", "validation", "test ", "test,"))]
    assert len(rows) == 7 and len({line.index("%") for line in rows}) == 1, rows

    loaded, _ = store.load_model(result.model_tag)
    from training import datasets

    x_test = datasets.prepare(datasets.load("mnist", synthetic_data_dir)).x_test
    reloaded = np.asarray(loaded(x_test))
    again, _ = store.load_model(result.model_tag)
    np.testing.assert_array_equal(reloaded, np.asarray(again(x_test)))
    # the stored model's test accuracy is the one in its metadata
    truth = datasets.load("mnist", synthetic_data_dir).y_test
    assert np.mean(reloaded.argmax(1) == truth) == pytest.approx(meta["metrics"]["test"]["accuracy"], abs=1e-6)

    reports = tmp_path / "reports" / result.config.model_name
    for name in ("curves.png", "confusion_matrix.png"):
        assert (reports / name).read_bytes()[:8] == PNG
    history = json.loads((reports / "history.json").read_text())
    assert set(history) >= {"loss", "accuracy", "val_loss", "val_accuracy"}


def test_training_learns_the_synthetic_task(synthetic_data_dir, tmp_path):
    # the synthetic signs are a bright block on dark noise: local contrast would mostly amplify the noise
    result = run(quick_config(synthetic_data_dir, tmp_path, "asl", epochs=6, augment="off",
                              normalize=False, local_contrast=0.0, save=False))
    assert result.model_tag is None
    assert result.metrics["test"]["accuracy"] > 0.8  # 24 classes: chance is ~4%
    assert result.history["loss"][-1] < result.history["loss"][0]


def test_a_distilled_run_keeps_only_the_dense_student(synthetic_data_dir, tmp_path, capsys):
    config = quick_config(synthetic_data_dir, tmp_path, "asl", epochs=2, teacher_epochs=1)
    assert config.distill > 0 and config.distill_blends > 0  # ASL's default: a teacher, answering blended pairs too
    result = run(config)
    out = capsys.readouterr().out
    assert "teacher: a small convolutional network, 1 epochs" in out and "teacher: validation accuracy" in out
    loaded, _ = store.load_model(result.model_tag)
    assert loaded.count_params() == 784 * 512 + 512 + 512 * 512 + 512 + 512 * 24 + 24
    assert not any("teacher" in layer.name for layer in loaded.layers)
    meta = bentoml.models.get(result.model_tag).info.metadata
    assert meta["training"]["distill"] == config.distill and meta["training"]["teacher_epochs"] == 1
    assert meta["training"]["distill_blends"] == config.distill_blends
    assert meta["training"]["teacher_precision"] in ("float32", "bfloat16")  # what it computed in, not "auto"
    assert f"1 epochs in {meta['training']['teacher_precision']}" in out


def test_same_seed_same_run(synthetic_data_dir, tmp_path):
    a = run(quick_config(synthetic_data_dir, tmp_path, epochs=2, save=False, seed=7))
    b = run(quick_config(synthetic_data_dir, tmp_path, epochs=2, save=False, seed=7))
    np.testing.assert_allclose(a.history["loss"], b.history["loss"], rtol=1e-4)


def test_the_training_feed_gives_every_row_once_per_epoch_and_reshuffles():
    x = np.arange(1000, dtype=np.float32).reshape(-1, 1) * np.ones((1, 4), np.float32)
    y = np.eye(10, dtype=np.float32)[np.arange(1000) % 10]
    feed = training_feed(x, y, 128, seed=0)
    assert feed["steps_per_epoch"] == 7  # 1000 // 128: a pass leaves 104 rows over
    batches = iter(feed["x"])
    epochs = []
    for _ in range(2):
        rows = [next(batches) for _ in range(feed["steps_per_epoch"])]
        inputs = np.concatenate([np.asarray(b[0]) for b in rows])
        targets = np.concatenate([np.asarray(b[1]) for b in rows])
        assert inputs.shape == (896, 4) and targets.shape == (896, 10)
        ids = inputs[:, 0].astype(int)
        assert len(set(ids)) == 896  # no row twice in a pass
        assert (targets.argmax(1) == ids % 10).all()  # rows keep their labels
        epochs.append(ids)
    assert not np.array_equal(epochs[0], epochs[1])  # reshuffled
    assert set(epochs[0]) != set(epochs[1])  # and a different remainder left over


def test_the_training_feed_keeps_a_set_smaller_than_a_batch():
    x, y = np.zeros((5, 784), np.float32), np.eye(10, dtype=np.float32)[:5]
    feed = training_feed(x, y, 128, seed=0)
    assert feed["steps_per_epoch"] == 1
    assert np.asarray(next(iter(feed["x"]))[0]).shape == (5, 784)


def test_the_cosine_schedule_reaches_zero_on_the_feeds_last_step():
    """The decay counts the steps the feed really gives (1000 rows in batches of 128: 7 per pass on
    TensorFlow), so the learning rate is zero after the last epoch, not part-way down."""
    import keras

    x, y = np.random.default_rng(0).random((1000, 4), dtype=np.float32), np.eye(10, dtype=np.float32)[np.arange(1000) % 10]
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(10, activation="softmax")])
    config = TrainConfig(epochs=2, batch_size=128, learning_rate=1e-3, cosine_decay=True)
    compile_model(model, config, len(x))
    feed = training_feed(x, y, config.batch_size, seed=0)
    model.fit(**feed, epochs=config.epochs, verbose=0)
    assert int(model.optimizer.iterations) == 2 * steps_per_epoch(len(x), config.batch_size)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.0, abs=1e-9)


def test_calibration_makes_an_overconfident_model_better_calibrated():
    """An untrained model on inputs that say nothing of the label is overconfident; the temperature
    fitted on validation brings the test split's ECE down."""
    import keras

    from training import datasets
    from training.train import calibrate

    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(10, activation="softmax")])
    rng = np.random.default_rng(0)
    x = lambda n: rng.random((n, 784), dtype=np.float32) * 3  # noqa: E731
    y = lambda n: np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)]  # noqa: E731
    splits = datasets.Splits(x(10), y(10), x(2000), y(2000), x(2000), y(2000))
    c, fitted_on = calibrate(model, splits)
    assert fitted_on.startswith("validation, ") and c.temperature > 1.5
    assert c.ece_before > 0.1 and c.ece_after < c.ece_before / 3


def test_too_few_validation_errors_leave_the_temperature_at_one(synthetic_data_dir, tmp_path, capsys):
    result = run(quick_config(synthetic_data_dir, tmp_path, "asl", epochs=3, augment="off", lighting=0.0,
                              normalize=False, local_contrast=0.0, save=False, lit_eval=16))
    assert result.calibrated_on.startswith("nothing: validation has ")  # 24 validation images
    assert result.calibration.temperature == 1.0
    assert result.calibration.ece_after == pytest.approx(result.calibration.ece_before, abs=1e-6)
    assert set(result.lit_accuracy) == {"validation", "test", "validation_shadow", "test_shadow", "images"} and result.lit_accuracy["images"] == 16
    assert "temperature 1.000 (fitted on nothing: validation has" in capsys.readouterr().out


def test_the_estimate_is_measured_here(synthetic_data_dir):
    from catalog import family
    from training import datasets

    config = TrainConfig.from_preset("asl", epochs=4, lit_eval=10)
    splits = datasets.prepare(datasets.load("asl", synthetic_data_dir))
    estimate = estimate_seconds(config, family("asl"), splits)
    assert 0 < estimate["step"] < 5 and estimate["epoch"] >= estimate["step"]
    assert estimate["total"] > config.epochs * estimate["epoch"]  # plus compiling and the lit photos


def test_presets_keep_the_course_recipe_one_option_away():
    course = TrainConfig.from_preset("asl", "course")
    assert (course.optimizer, course.epochs, course.batch_size) == ("rmsprop", 20, 32)
    assert course.validate_on_test and course.dropout == 0 and course.augment == "off"
    assert TrainConfig.from_preset("mnist", "course").epochs == 5
    assert course.lighting == 0 and TrainConfig.from_preset("asl").lighting == 0.8  # uneven light: ASL's default
    assert course.distill == 0 and TrainConfig.from_preset("mnist", "course").distill == 0  # the course: no teacher
    assert course.distill_blends == 0 and TrainConfig.from_preset("asl").distill_blends == 0.5  # half blended
    assert TrainConfig.from_preset("asl").dropout == 0  # with the teacher, dropout cost the shadowed photos
    mnist_course = TrainConfig.from_preset("mnist", "course")
    assert (mnist_course.elastic, mnist_course.pen, mnist_course.slant, mnist_course.outliers) == (0, 0, 0, 0)
    assert not mnist_course.weight_averaging and mnist_course.label_smoothing == 0
    assert TrainConfig.from_preset("mnist").distill == 1.0 and TrainConfig.from_preset("mnist").outliers > 0
    assert TrainConfig.from_preset("mnist").lighting == 0
    tuned = TrainConfig.from_preset("mnist", epochs=3, optimizer="sgd")
    assert (tuned.epochs, tuned.optimizer, tuned.elastic) == (3, "sgd", PRESETS[("mnist", "default")]["elastic"])


def test_summary_says_which_weights_it_kept(synthetic_data_dir, tmp_path, capsys):
    stopped = run(quick_config(synthetic_data_dir, tmp_path, epochs=3, patience=1, weight_averaging=False, save=False))
    assert stopped.fit.restored and 1 <= stopped.fit.weights_epoch <= stopped.fit.epochs_run
    assert stopped.fit.weights_epoch == int(np.argmin(stopped.history["val_loss"])) + 1
    assert f"early stopping kept the weights of epoch {stopped.fit.weights_epoch}" in capsys.readouterr().out
    # validated on the test split, patience is ignored: the model keeps its last epoch's weights
    on_test = run(quick_config(synthetic_data_dir, tmp_path, epochs=2, patience=1, validate_on_test=True,
                               weight_averaging=False, save=False))
    assert not on_test.fit.restored and on_test.fit.weights_epoch == 2
    assert "weights of the last epoch, 2" in capsys.readouterr().out


def test_a_grouped_validation_counts_the_photographs_it_got_wrong():
    """Near-copies of one photograph err together, so the summary says how many photographs the
    validation errors come from: that, not the image count, is what a comparison can resolve."""
    import keras

    from training.datasets import Splits
    from training.train import evaluate

    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(2, activation="softmax")])
    kernel = np.zeros((784, 2), np.float32)
    kernel[0] = (-10.0, 10.0)  # pixel 0 on: class 1, off: class 0
    model.layers[-1].set_weights([kernel, np.zeros(2, np.float32)])
    model.compile(loss="categorical_crossentropy", metrics=["accuracy"])
    x = np.zeros((8, 784), np.float32)
    x[[2, 3, 4], 0] = 1.0  # answers: 0 0 1 1 1 0 0 0
    y = np.eye(2, dtype=np.float32)[[0, 0, 1, 1, 0, 0, 1, 0]]  # wrong: rows 4 (photograph 2), 6 (photograph 3)
    groups = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    metrics = evaluate(model, Splits(x, y, x, y, x, y, groups))
    assert metrics["validation"]["accuracy"] == 0.75
    assert (metrics["validation"]["photographs"], metrics["validation"]["photographs_wrong"]) == (4, 2)
    assert "photographs" not in metrics["test"]
    assert "photographs" not in evaluate(model, Splits(x, y, x, y, x, y))["validation"]  # a random split
    stored = ModelMetadata(class_names=["a", "b"], preprocessing="mnist_digit", metrics=metrics).to_store()
    assert stored["metrics"]["validation"]["photographs_wrong"] == 2 and "photographs" not in stored["metrics"]["test"]


def test_every_option_has_one_home_the_config():
    """The CLI is generated from TrainConfig: every field is an option, with its help and default."""
    from dataclasses import fields

    from training.__main__ import build_parser

    parser = build_parser()
    dests = {action.dest: action for action in parser._actions}
    for f in fields(TrainConfig):
        assert f.name in dests, f"{f.name} has no command-line option"
        assert f.metadata["help"] in dests[f.name].help
    assert set(PRESETS[("mnist", "default")]) <= {f.name for f in fields(TrainConfig)}
    args = parser.parse_args(["asl", "--epochs", "2", "--no-normalize"])
    config = TrainConfig.from_preset("asl", **{k: v for k, v in vars(args).items() if k not in ("dataset", "preset")})
    assert (config.epochs, config.normalize, config.lighting) == (2, False, PRESETS[("asl", "default")]["lighting"])


def test_weight_averaging_and_early_stopping_do_not_mix(synthetic_data_dir, tmp_path):
    with pytest.raises(ValueError, match="choose one"):
        run(quick_config(synthetic_data_dir, tmp_path, epochs=2, patience=1, weight_averaging=True, save=False))


def test_verdict_names_overfitting():
    metrics = lambda tr, va: {"train": {"accuracy": tr}, "validation": {"accuracy": va}}  # noqa: E731
    assert overfitting_verdict(metrics(0.99, 0.985), {"val_loss": [0.5, 0.3, 0.2]}).startswith("no sign")
    assert overfitting_verdict(metrics(1.0, 0.81), {"val_loss": [0.9, 0.6, 0.7]}).startswith("OVERFITTING")
    assert overfitting_verdict(metrics(0.99, 0.99), {"val_loss": [0.5, 0.2, 0.4]}).startswith("OVERFITTING")
    assert overfitting_verdict(metrics(0.99, 0.975), {"val_loss": [0.5, 0.3]}).startswith("mild")
    # a tiny loss wobbling is not overfitting, however large the relative change
    assert overfitting_verdict(metrics(1.0, 0.999), {"val_loss": [0.5, 0.003, 0.005]}).startswith("no sign")


def cli(*args, env_extra=None, cwd=REPO):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "training", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_trains_saves_and_skips_existing(synthetic_data_dir, tmp_path):
    name = f"cli_asl_{tmp_path.name}"[:40].lower()
    common = ["--epochs", "1", "--quiet", "--lit-eval", "0", "--model-name", name, "--reports-dir", str(tmp_path / "r")]
    done = cli("asl", "--data-dir", str(synthetic_data_dir), "--optimizer", "momentum",
               "--learning-rate", "0.05", "--hidden", "64", "32", "--activation", "sigmoid", *common)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "validation" in done.stdout and "verdict:" in done.stdout and f"saved: {name}:" in done.stdout
    entry = bentoml.models.get(name)
    training = entry.info.metadata["training"]
    assert training["hidden"] == [64, 32] and training["activation"] == "sigmoid"
    assert training["optimizer"] == "momentum" and training["learning_rate"] == 0.05
    assert entry.info.metadata["class_names"][-1] == "Y"

    again = cli("asl", "--data-dir", str(synthetic_data_dir), "--skip-existing", *common)
    assert again.returncode == 0 and "already in the model store" in again.stdout
    assert len(bentoml.models.list(name)) == 1


def test_cli_bad_data_is_a_clear_error(tmp_path):
    """A broken data file: one line naming it, exit code 2, no traceback (and no download: files are there)."""
    (tmp_path / "sign_mnist_train.csv").write_text("label,pixel1\n1,0\n")
    (tmp_path / "sign_mnist_test.csv").write_text("label,pixel1\n1,0\n")
    done = cli("asl", "--data-dir", str(tmp_path), "--no-save")
    assert done.returncode == 2
    assert "sign_mnist_train.csv: wrong header" in done.stderr and "Traceback" not in done.stderr


def test_cli_rejects_bad_options():
    done = cli("mnist", "--optimizer", "newton")
    assert done.returncode == 2 and "invalid choice" in done.stderr


def test_cli_runs_the_linear_example():
    done = cli("linear", "--steps", "1")
    assert done.returncode == 0, done.stderr
    assert "-0.7" in done.stdout and "5.1" in done.stdout


def test_the_step_time_leaves_out_what_each_fit_call_costs_once():
    """A model whose steps take ~20 ms and whose every ``fit`` call costs 0.4 s more before it starts:
    the estimate's step time is the step's, not the step's plus a share of the call's cost (which
    the estimate once charged to every one of its 8 timed steps, 50 ms each here)."""
    import keras

    from training.train import _time_steps

    class SlowCalls(keras.Sequential):
        def fit(self, *args, **kwargs):
            time.sleep(0.4)
            return super().fit(*args, **kwargs)

        def train_step(self, data):
            time.sleep(0.02)
            return super().train_step(data)

    model = SlowCalls([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="categorical_crossentropy", run_eagerly=True)
    x, y = np.zeros((24 * 8, 4), np.float32), np.tile(np.eye(2, dtype=np.float32), (12 * 8, 1))
    first, step = _time_steps(model, x, y, batch_size=8, steps=8)
    assert first > 0.4 + 8 * 0.02
    assert 0.02 <= step < 0.045, step  # charging 0.4 s to 8 steps would make it 0.07
    _, one_batch = _time_steps(model, x[:8], y[:8], batch_size=8, steps=8)  # too few for a median
    assert one_batch > 0.02
