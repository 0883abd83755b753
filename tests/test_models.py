"""The network: shape, softmax output, input layouts, training-only layers, self-contained file."""

from __future__ import annotations

import os
import subprocess
import sys

import cv2
import keras
import numpy as np
import pytest

from conftest import REPO
from training.config import TrainConfig
from training.models import (EMA_MOMENTUM, BlendPairs, RandomElastic, RandomLighting, RandomLowResolution, RandomPen,
                             TeacherLoss, build_classifier, build_teacher, distillation_model, inference_model,
                             low_resolution_operators, make_optimizer, teacher_precision, training_gpu)


def test_course_shape_and_parameter_count():
    model = build_classifier(10, TrainConfig())
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert [layer.units for layer in dense] == [512, 512, 10]
    assert [layer.activation.__name__ for layer in dense] == ["relu", "relu", "softmax"]
    # 784*512+512 + 512*512+512 + 512*10+10
    assert model.count_params() == 669_706


def test_softmax_output_sums_to_one():
    model = build_classifier(24, TrainConfig(dropout=0.3, augment="nearest", normalize=True))
    x = np.random.default_rng(0).random((5, 784), dtype=np.float32)
    probabilities = np.asarray(model(x))
    assert probabilities.shape == (5, 24)
    assert np.all(probabilities >= 0) and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_accepts_flat_square_and_channel_layouts():
    model = inference_model(build_classifier(10, TrainConfig(augment="constant")))
    x = np.random.default_rng(1).random((3, 784), dtype=np.float32)
    flat = np.asarray(model(x))
    for shape in ((3, 28, 28), (3, 28, 28, 1)):
        np.testing.assert_allclose(np.asarray(model(x.reshape(shape))), flat, atol=1e-6)


def test_inference_model_drops_training_only_layers_and_keeps_weights():
    model = build_classifier(10, TrainConfig(dropout=0.5, augment="constant", normalize=True, lighting=0.7,
                                             slant=0.2, elastic=0.5, pen=0.5))
    served = inference_model(model)
    x = np.random.default_rng(2).random((4, 784), dtype=np.float32)
    # a plain call of the served model is deterministic and equals predict() of the trained one
    np.testing.assert_array_equal(np.asarray(served(x)), np.asarray(served(x)))
    np.testing.assert_allclose(np.asarray(served(x)), model.predict(x, verbose=0), atol=1e-6)
    assert not np.allclose(np.asarray(model(x, training=True)), np.asarray(served(x)))
    names = {layer.name for layer in served.layers}
    assert "random_shift" not in names and "dropout_1" not in names and "per_image_standardize" in names
    assert "random_lighting" in {layer.name for layer in model.layers} and "random_lighting" not in names
    for name in ("random_slant", "random_elastic", "random_pen"):
        assert name in {layer.name for layer in model.layers} and name not in names
    assert not any(isinstance(layer, RandomLighting) for layer in served.layers)
    assert served.count_params() == model.count_params()


def test_random_lighting_darkens_a_share_of_the_images_smoothly():
    layer = RandomLighting(rate=0.7, min_gain=0.3, seed=4)
    x = np.full((2000, 784), 0.8, np.float32)
    np.testing.assert_array_equal(np.asarray(layer(x)), x)  # not training: identity
    lit = np.asarray(layer(x, training=True))
    gains = lit / x
    changed = (gains < 0.999).any(axis=1)
    assert 0.6 < changed.mean() < 0.8  # rate 0.7
    assert gains.max() <= 1.0 + 1e-6 and gains.min() > 0.3**3 - 1e-6  # at most three fields of >= 0.3
    darkest = gains[changed].min(axis=1)
    assert np.percentile(darkest, 10) < 0.5 and np.percentile(darkest, 90) > 0.6  # strengths vary
    # fields are smooth (light, not texture): neighbouring pixels differ little but at a shadow's edge
    images = gains.reshape(-1, 28, 28)
    steps = np.abs(np.diff(images, axis=2))
    assert np.median(steps) < 0.01 and np.percentile(steps, 99) < 0.15
    # the dark side is not always the same: the mean field has no strong direction
    mean = images[changed].mean(axis=0)
    assert abs(mean[:, :14].mean() - mean[:, 14:].mean()) < 0.03 and abs(mean[:14].mean() - mean[14:].mean()) < 0.03
    assert np.array_equal(np.asarray(RandomLighting(rate=0.0)(x, training=True)), x)


def _bar_images(n: int) -> np.ndarray:
    """``n`` copies of a 28x28 image with a 3-pixel-wide vertical bar, (n, 28, 28, 1)."""
    x = np.zeros((n, 28, 28, 1), np.float32)
    x[:, 4:24, 12:15] = 1.0
    return x


def test_random_elastic_bends_strokes_smoothly_and_keeps_them():
    x = _bar_images(200)
    np.testing.assert_array_equal(np.asarray(RandomElastic(rate=1.0, alpha=2.0, seed=1)(x)), x)  # not training
    bent = np.asarray(RandomElastic(rate=0.5, alpha=2.0, seed=1)(x, training=True))
    changed = np.abs(bent - x).max(axis=(1, 2, 3)) > 1e-3
    assert 0.35 < changed.mean() < 0.65  # rate 0.5
    # the bar moves by at most alpha (+1 for the bilinear edge): no ink further than 3 pixels from it
    far = np.ones((28, 28), bool)
    far[1:27, 9:18] = False
    assert bent[:, far].max() < 1e-6
    ink = bent.sum(axis=(1, 2, 3)) / x.sum(axis=(1, 2, 3))
    assert 0.5 < ink.min() and ink.max() < 2.0  # bent (stretched or squeezed), not erased
    # smooth: the bar stays one piece (every row of the bar still has ink)
    assert (bent[changed][:, 6:22].max(axis=2) > 0.3).all()
    assert np.array_equal(np.asarray(RandomElastic(rate=0.0)(x, training=True)), x)


def test_random_pen_makes_strokes_thicker_thinner_and_blurred():
    x = _bar_images(400)
    np.testing.assert_array_equal(np.asarray(RandomPen(rate=1.0, seed=2)(x)), x)  # not training
    drawn = np.asarray(RandomPen(rate=0.6, seed=2)(x, training=True))
    assert drawn.min() >= 0.0 and drawn.max() <= 1.0
    ink = drawn.sum(axis=(1, 2, 3)) / x.sum(axis=(1, 2, 3))
    changed = np.abs(drawn - x).max(axis=(1, 2, 3)) > 1e-3
    assert 0.45 < changed.mean() < 0.75  # rate 0.6
    assert (ink > 1.2).any() and (ink < 0.8).any()  # thicker and thinner pens both occur
    soft = ((drawn > 0.05) & (drawn < 0.95)).sum(axis=(1, 2, 3))
    assert (soft[changed] > 0).mean() > 0.5  # most changed strokes have a soft (blurred or blended) edge


def test_low_resolution_operators_are_opencvs_resizes_and_blur():
    image = np.random.default_rng(4).random((28, 28)).astype(np.float32)
    operators = low_resolution_operators((8, 14))
    for operator, (side, enlarge) in zip(operators, [(8, cv2.INTER_CUBIC), (8, cv2.INTER_NEAREST),
                                                     (14, cv2.INTER_CUBIC), (14, cv2.INTER_NEAREST)]):
        small = cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)
        expected = cv2.resize(small, (28, 28), interpolation=enlarge)
        np.testing.assert_allclose(operator @ image @ operator.T, expected, atol=1e-5)
    (blur,) = low_resolution_operators((), (1.5,))
    expected = cv2.GaussianBlur(image, (0, 0), 1.5, borderType=cv2.BORDER_CONSTANT)
    np.testing.assert_allclose(blur @ image @ blur.T, expected, atol=1e-3)  # OpenCV's kernel is a little shorter


def test_random_low_resolution_coarsens_a_share_of_the_images():
    x = _bar_images(400)
    np.testing.assert_array_equal(np.asarray(RandomLowResolution(rate=1.0, seed=2)(x)), x)  # not training
    coarse = np.asarray(RandomLowResolution(rate=0.5, sides=(8,), blurs=(1.5,), seed=2)(x, training=True))
    changed = np.abs(coarse - x).max(axis=(1, 2, 3)) > 1e-3
    assert 0.35 < changed.mean() < 0.65  # rate 0.5
    assert coarse.min() >= 0.0 and np.allclose(coarse.max(axis=(1, 2, 3)), 1.0)  # peak at 1, as the stem's
    # neither an 8-pixel copy nor a blur keeps a sharp bar: its edges spread over more pixels
    assert (((coarse > 0.05) & (coarse < 0.95)).sum(axis=(1, 2, 3))[changed] > 0).all()
    model = build_classifier(10, TrainConfig(augment="constant", low_res=0.2))
    assert "random_low_res" in [layer.name for layer in model.layers]
    assert "random_low_res" not in [layer.name for layer in inference_model(model).layers]


def test_weight_averaging_and_label_smoothing_are_keras_own():
    averaged = make_optimizer("adam", 1e-3, 0.9, weight_averaging=True)
    assert averaged.use_ema and averaged.ema_momentum == EMA_MOMENTUM
    assert not make_optimizer("adam", 1e-3, 0.9).use_ema
    from training.train import compile_model

    model = build_classifier(10, TrainConfig(hidden=(8,)))
    compile_model(model, TrainConfig(hidden=(8,), label_smoothing=0.1))
    assert model.loss.label_smoothing == 0.1


def test_random_lighting_trains_on_the_jax_backend():
    """The training-only layer uses keras.ops only: a model with it fits under JAX as well."""
    pytest.importorskip("jax")
    script = (
        "import numpy as np, keras\n"
        "from training.config import TrainConfig\n"
        "from training.models import build_classifier, inference_model\n"
        "assert keras.backend.backend() == 'jax'\n"
        "m = build_classifier(3, TrainConfig(hidden=(8,), lighting=1.0, normalize=True, augment='nearest',\n"
        "                                    slant=0.2, elastic=1.0, pen=1.0))\n"
        "m.compile('adam', 'categorical_crossentropy')\n"
        "x = np.random.default_rng(0).random((32, 784), dtype=np.float32); y = np.eye(3)[np.arange(32) % 3]\n"
        "h = m.fit(x, y, epochs=2, batch_size=16, verbose=0).history['loss']\n"
        "assert np.isfinite(h).all(), h\n"
        "p = np.asarray(inference_model(m)(x)); assert np.allclose(p.sum(1), 1, atol=1e-5)\n"
        "print('ok')\n"
    )
    env = dict(os.environ, KERAS_BACKEND="jax")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("ok")


@pytest.mark.parametrize("name, cls", [("sgd", "SGD"), ("momentum", "SGD"), ("adam", "Adam"),
                                       ("adagrad", "Adagrad"), ("rmsprop", "RMSprop")])
def test_optimizers_by_name(name, cls):
    optimizer = make_optimizer(name, 0.01, 0.9)
    assert type(optimizer).__name__ == cls
    assert float(optimizer.learning_rate) == pytest.approx(0.01)
    if name == "momentum":
        assert optimizer.momentum == pytest.approx(0.9)


def test_cosine_decay_falls_to_zero_over_the_run():
    schedule = keras.optimizers.schedules.deserialize(
        make_optimizer("adam", 0.002, 0.9, decay_steps=100).get_config()["learning_rate"])
    assert float(schedule(0)) == pytest.approx(0.002) and float(schedule(50)) == pytest.approx(0.001, rel=1e-3)
    assert float(schedule(100)) == pytest.approx(0.0, abs=1e-9)
    default_start = keras.optimizers.schedules.deserialize(
        make_optimizer("sgd", None, 0.9, decay_steps=10).get_config()["learning_rate"])
    assert float(default_start(0)) == pytest.approx(0.01)  # the optimizer's own default


def test_unknown_optimizer():
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer("lbfgs", None, 0.9)


def test_saved_file_loads_without_this_project(tmp_path):
    """model.keras loads with plain keras in a process that cannot import this project."""
    model = inference_model(build_classifier(10, TrainConfig(dropout=0.2, augment="constant", normalize=True,
                                                             lighting=0.7)))
    path = tmp_path / "model.keras"
    model.save(path)
    x = np.random.default_rng(3).random((6, 784), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "expected.npy", np.asarray(model(x)))
    script = (
        "import sys, numpy as np, keras\n"
        "assert not any(m.split('.')[0] in ('training', 'preprocessing', 'service') for m in sys.modules)\n"
        "m = keras.saving.load_model('model.keras')\n"
        "x = np.load('x.npy'); e = np.load('expected.npy')\n"
        "for shape in ((6, 784), (6, 28, 28), (6, 28, 28, 1)):\n"
        "    np.testing.assert_allclose(np.asarray(m(x.reshape(shape))), e, atol=1e-6)\n"
        "np.testing.assert_allclose(m.predict(x, verbose=0), e, atol=1e-6)\n"
        "print('ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-I", "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("ok")


def test_teacher_loss_is_the_softened_kl_and_only_while_training():
    rng = np.random.default_rng(5)
    p = rng.dirichlet(np.ones(6), size=8).astype(np.float32)
    q = rng.dirichlet(np.ones(6), size=8).astype(np.float32)
    layer = TeacherLoss(2.0, temperature=4.0)
    np.testing.assert_array_equal(np.asarray(layer([p, p, q], training=True)), p)  # the output passes through
    soften = lambda a: np.exp(np.log(a) / 4.0) / np.exp(np.log(a) / 4.0).sum(1, keepdims=True)  # noqa: E731
    kl = np.mean(np.sum(soften(q) * np.log(soften(q) / soften(p)), axis=1))
    assert float(layer.losses[-1]) == pytest.approx(2.0 * 16.0 * kl, rel=1e-3)
    same = TeacherLoss(1.0, temperature=4.0)
    same([p, p, p], training=True)
    assert abs(float(same.losses[-1])) < 1e-5
    quiet = TeacherLoss(1.0, temperature=1.0)
    quiet([p, p, q], training=False)
    assert not quiet.losses
    other = TeacherLoss(0.5, temperature=4.0)  # the pair compared is not the output: answers on blends
    np.testing.assert_array_equal(np.asarray(other([p, q, p], training=True)), p)
    kl_back = np.mean(np.sum(soften(p) * np.log(soften(p) / soften(q)), axis=1))
    assert float(other.losses[-1]) == pytest.approx(0.5 * 16.0 * kl_back, rel=1e-3)


def test_teacher_precision_is_bfloat16_only_where_the_cpu_has_bfloat16_matrix_units():
    cpu = ()  # training on the CPU
    assert teacher_precision("auto", "flags\t: fpu sse avx512f avx512_bf16 amx_tile", cpu) == "bfloat16"
    assert teacher_precision("auto", "flags\t: fpu sse avx512f amx_bf16 amx_tile", cpu) == "bfloat16"
    assert teacher_precision("auto", "flags\t: fpu sse avx2 avx512f avx512_vnni", cpu) == "float32"
    assert teacher_precision("auto", "", cpu) == "float32"
    assert teacher_precision("float32", "flags\t: amx_bf16", cpu) == "float32"  # asked for: kept
    assert teacher_precision("bfloat16", "flags\t: sse", cpu) == "bfloat16"


def test_teacher_precision_on_a_gpu_follows_its_tensor_cores_not_the_cpu():
    assert teacher_precision("auto", "flags\t: fpu sse avx2", (9, 0)) == "bfloat16"  # H100: bfloat16 tensor cores
    assert teacher_precision("auto", "flags\t: fpu sse avx2", (8, 0)) == "bfloat16"  # A100
    assert teacher_precision("auto", "flags\t: avx512_bf16 amx_bf16", (7, 5)) == "float32"  # T4: emulated there
    assert teacher_precision("float32", "", (9, 0)) == "float32"  # asked for: kept


def test_training_gpu_is_empty_without_a_gpu():
    from execution.placement import visible_gpus

    if visible_gpus():
        pytest.skip("this machine has a GPU")
    assert training_gpu() == ()
    assert teacher_precision("auto", "flags\t: fpu sse avx2") == "float32"  # the default reads this machine


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_the_teacher_computes_in_its_precision_and_answers_in_float32(precision):
    teacher = build_teacher(24, TrainConfig(augment="nearest", teacher_precision=precision))
    convolutions = [layer for layer in teacher.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convolutions) == 4 and {layer.compute_dtype for layer in convolutions} == {precision}
    assert {w.dtype for w in teacher.weights} == {"float32"}  # the weights stay float32 either way
    answers = inference_model(teacher).predict(np.random.default_rng(1).random((5, 784), np.float32), verbose=0)
    assert answers.dtype == np.float32
    np.testing.assert_allclose(answers.sum(axis=1), 1.0, rtol=1e-5)


def test_blend_pairs_mixes_each_image_with_another_of_its_batch_while_training():
    x = np.eye(8, dtype=np.float32)  # image i has its one bright pixel at i
    np.testing.assert_array_equal(np.asarray(BlendPairs(seed=1)(x)), x)  # identity unless training
    keras.utils.set_random_seed(2)
    blended = np.asarray(BlendPairs(seed=3)(x, training=True))
    np.testing.assert_allclose(blended.sum(axis=1), 1.0, rtol=1e-6)  # lam * own + (1 - lam) * partner
    assert (blended >= 0).all() and ((blended > 1e-6).sum(axis=1) <= 2).all()
    partners = [int(np.argmax(np.where(np.arange(8) == i, -1.0, row))) for i, row in enumerate(blended)]
    shares = blended[np.arange(8), np.arange(8)]
    assert ((shares > 0) & (shares <= 1)).all() and 0.1 < shares.mean() < 0.9 and np.ptp(shares) > 0.1
    moved = [i for i in range(8) if shares[i] < 1 - 1e-6 and partners[i] != i]
    assert len(set(partners[i] for i in moved)) == len(moved) >= 4  # partners come from a shuffle of the batch


def test_blend_pairs_blends_only_its_share_of_the_images():
    x = np.eye(400, dtype=np.float32)
    blended = np.asarray(BlendPairs(0.5, seed=4)(x, training=True))
    kept = np.isclose(blended[np.arange(400), np.arange(400)], 1.0)
    assert 0.4 < kept.mean() < 0.6
    np.testing.assert_array_equal(blended[kept], x[kept])  # the rest pass unchanged
    np.testing.assert_array_equal(np.asarray(BlendPairs(0.0, seed=4)(x, training=True)), x)
    with pytest.raises(ValueError, match="share"):
        BlendPairs(1.5)


@pytest.mark.parametrize("blends", [0.0, 0.5])
def test_distillation_trains_the_student_and_leaves_the_teacher_alone(blends):
    config = TrainConfig(augment="nearest", normalize=True, lighting=0.7, dropout=0.1)
    keras.utils.set_random_seed(6)
    student = build_classifier(24, config)
    teacher = inference_model(build_teacher(24, config))
    trainer = distillation_model(student, teacher, 1.0, 4.0, blends)
    assert any(isinstance(layer, BlendPairs) for layer in trainer.layers) == bool(blends)
    trainer.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    x = np.random.default_rng(7).random((64, 784), dtype=np.float32)
    y = np.eye(24, dtype=np.float32)[np.arange(64) % 24]
    before_student, before_teacher = student.get_weights(), teacher.get_weights()
    history = trainer.fit(x, y, batch_size=32, epochs=1, verbose=0).history
    assert history["loss"][0] > 0
    assert all(not np.allclose(a, b) for a, b in zip(before_student, student.get_weights()) if a.size > 1)
    assert all(np.array_equal(a, b) for a, b in zip(before_teacher, teacher.get_weights()))
    served = inference_model(student)  # what is saved: the course's dense network, nothing of the teacher
    assert served.count_params() == 784 * 512 + 512 + 512 * 512 + 512 + 512 * 24 + 24
    assert not any(isinstance(layer, (TeacherLoss, keras.Model)) or "teacher" in layer.name for layer in served.layers)


def test_local_contrast_cancels_a_slow_light_field_and_keeps_shapes():
    from execution.layers import LocalContrast
    from preprocessing.vector import blur_matrix, local_contrast

    rng = np.random.default_rng(5)
    blur = blur_matrix(28, 2.0)
    np.testing.assert_allclose(blur.sum(axis=1), 1.0, rtol=1e-6)  # normalised inside the frame
    assert blur[0, 7] == 0 and blur[0, 6] > 0  # cut at 3 sigma
    layer = LocalContrast(2.0, epsilon=1e-4)
    hands = np.clip(rng.random((8, 28, 28)) * 0.3 + 0.5, 0, 1).astype(np.float32)
    hands[:, 8:20, 10:18] += 0.3  # a shape
    x = hands.reshape(8, 784)
    yy, xx = np.mgrid[0:28, 0:28] / 27.0
    slow = (0.45 + 0.5 * xx * yy).reshape(1, 784).astype(np.float32)  # a gradient from 0.45 to 0.95
    plain, lit = np.asarray(layer(x)), np.asarray(layer(x * slow))
    np.testing.assert_allclose(local_contrast(x, 2.0, 1e-4), plain, rtol=1e-5)  # the numpy twin agrees
    # the field moves the raw pixels by up to 55 %, the output by a few per cent
    assert (np.abs(x * slow - x) / x).max() > 0.5
    assert np.median(np.abs(lit - plain) / np.abs(plain)) < 0.03
    # a uniform image has no contrast left; a shape keeps it
    flat = np.asarray(layer(np.full((1, 784), 0.6, np.float32)))
    np.testing.assert_allclose(flat, 1.0, atol=1e-3)
    edges = plain.reshape(8, 28, 28)
    assert edges[:, 9:19, 10].mean() > edges[:, 9:19, 9].mean() + 0.2  # the shape's edge, inside against outside


def test_local_contrast_is_in_the_served_sign_model_not_its_teacher_and_loads_without_training(tmp_path):
    config = TrainConfig.from_preset("asl", "default", hidden=(16,))
    assert config.local_contrast == 2.0 and TrainConfig.from_preset("mnist", "default").local_contrast == 0
    model = build_classifier(24, config)
    served = inference_model(model)
    names = [layer.name for layer in served.layers]
    assert names.index("local_contrast") < names.index("per_image_standardize")  # before the standardisation
    from training.train import teacher_config

    assert "local_contrast" not in {layer.name for layer in build_teacher(24, teacher_config(config)).layers}
    path = tmp_path / "model.keras"
    served.save(path)
    x = np.random.default_rng(3).random((4, 784), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "expected.npy", np.asarray(served(x)))
    # the service's loader, in a process that never imports the training package
    script = ("import sys, numpy as np\n"
              "from execution.forward import load_model\n"
              f"m = load_model({str(path)!r})\n"
              f"x = np.load({str(tmp_path / 'x.npy')!r}); e = np.load({str(tmp_path / 'expected.npy')!r})\n"
              "assert np.allclose(np.asarray(m(x)), e, atol=1e-5)\n"
              "assert not any(name.startswith('training') for name in sys.modules)\n"
              "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("ok")
