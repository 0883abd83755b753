"""The course's dense classifier: 784 -> Dense 512 -> Dense 512 -> softmax, built with plain Keras layers.

Everything the model needs beyond the course's input (pixels scaled to 0-1) lives inside it:
optional local contrast (:class:`execution.layers.LocalContrast`, the one layer of this project
a served model may hold; ``execution.forward.load_model`` registers it), optional per-image
standardisation (a LayerNormalization without learned scale) and, while
training, random shifts, small rotations and zooms, and uneven light (:class:`RandomLighting`,
this module's only own layer). Keras' random image layers augment on a plain ``model(x)`` call
unless ``training=False`` is passed, so what is saved and served is :func:`inference_model`: the
same layers and weights without the training-only ones.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import keras
import numpy as np
from keras import layers, ops

from execution.layers import LocalContrast
from preprocessing import VECTOR_LENGTH
from preprocessing import IMAGE_SIDE
from training.config import TrainConfig


@keras.saving.register_keras_serializable(package="training")
class RandomLighting(layers.Layer):
    """Training-only uneven light: a share ``rate`` of the images (flat 784-vectors, 0-1) is
    multiplied by a random illumination field, as a webcam or phone photo of a hand is lit.

    Each lit image gets one primary field kind (a shadow half of the time, a gradient or a vignette
    a quarter each: measured, shadows are what a model trained without them fails on) and each
    other kind with probability 0.3, multiplied together:

    * a **gradient** across the frame in a random direction, from 1 down to a gain drawn from
      ``[min_gain, 1]`` at the dark side, linear or bent (the ramp raised to a power 0.5-2);
    * a **vignette**: a radial fall-off around a centre anywhere in the middle 60 % of the frame,
      elliptical (axis ratio up to 2), down to a gain from ``[min_gain, 1]`` at the farthest corner,
      its profile raised to a power 0.5-1.5;
    * a soft-edged **shadow**: a half-plane through a random point or an ellipse (radii 15-60 % of
      the frame) anywhere, a gain from ``[min_gain, 1]`` inside, the edge blurred over 2-25 % of
      the frame.

    The ranges are wider than the evaluation fields of :mod:`training.lighting` (gradients to
    0.5-0.85, vignettes to 0.6-0.9, shadows of 0.45-0.8): training covers more than what is
    measured. Identity unless ``training`` is true; :func:`inference_model` drops the layer.
    Works on every Keras backend (keras.ops and keras.random only).
    """

    KINDS = ("gradient", "vignette", "shadow")
    EXTRA_KIND = 0.3  # chance of each kind besides the primary one

    def __init__(self, rate: float = 0.7, min_gain: float = 0.3, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= rate <= 1 or not 0 < min_gain <= 1:
            raise ValueError(f"RandomLighting: rate must be in 0-1 and min_gain in (0, 1]; got {rate}, {min_gain}")
        self.rate, self.min_gain, self.seed = float(rate), float(min_gain), seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        yy, xx = np.mgrid[0:IMAGE_SIDE, 0:IMAGE_SIDE].astype(np.float32) / (IMAGE_SIDE - 1)
        self._grid = (yy.reshape(1, -1), xx.reshape(1, -1))  # pixel centres in 0-1, row-major

    def _uniform(self, n, low=0.0, high=1.0):
        return keras.random.uniform((n, 1), minval=low, maxval=high, seed=self.seed_generator)

    def fields(self, n):
        """``n`` random fields, (n, 784) gains in (0, 1], each drawn as for a lit image."""
        yy, xx = (ops.convert_to_tensor(g) for g in self._grid)
        u = self._uniform
        gain = lambda: u(n, self.min_gain, 1.0)  # noqa: E731

        theta = u(n, 0.0, 2 * np.pi)
        c, s = ops.cos(theta), ops.sin(theta)
        spread = ops.abs(c) + ops.abs(s)  # the ramp's range over the unit square
        ramp = (c * (xx - 0.5) + s * (yy - 0.5) + 0.5 * spread) / spread  # 0 bright side .. 1 dark side
        gradient = 1.0 - ops.power(ops.clip(ramp, 0.0, 1.0), u(n, 0.5, 2.0)) * (1.0 - gain())

        cy, cx = u(n, 0.2, 0.8), u(n, 0.2, 0.8)
        aspect = ops.exp(u(n, -np.log(2.0), np.log(2.0)))
        sy, sx = ops.sqrt(aspect), 1.0 / ops.sqrt(aspect)
        r2 = ops.square((yy - cy) / sy) + ops.square((xx - cx) / sx)
        far = ops.square(ops.maximum(cy, 1.0 - cy) / sy) + ops.square(ops.maximum(cx, 1.0 - cx) / sx)  # farthest corner
        vignette = 1.0 - ops.power(ops.clip(r2 / far, 0.0, 1.0), u(n, 0.5, 1.5)) * (1.0 - gain())

        phi = u(n, 0.0, 2 * np.pi)
        edge = ops.cos(phi) * (xx - u(n, 0.2, 0.8)) + ops.sin(phi) * (yy - u(n, 0.2, 0.8))
        ey, ex, ry, rx = u(n), u(n), u(n, 0.15, 0.6), u(n, 0.15, 0.6)
        blob = ops.sqrt(ops.square((yy - ey) / ry) + ops.square((xx - ex) / rx)) - 1.0
        distance = ops.where(u(n) < 0.5, edge, blob)
        inside = ops.sigmoid(-4.0 * distance / u(n, 0.02, 0.25))
        shadow = 1.0 - inside * (1.0 - gain())

        # the primary kind: a shadow half of the time (the hardest to learn), else a gradient or vignette
        pick = u(n)
        primary = (pick < 0.25, ops.logical_and(pick >= 0.25, pick < 0.5), pick >= 0.5)
        field = ops.ones_like(gradient)
        for chosen, kind_field in zip(primary, (gradient, vignette, shadow)):
            active = ops.logical_or(chosen, u(n) < self.EXTRA_KIND)
            field = field * ops.where(active, kind_field, 1.0)
        return field

    def call(self, inputs, training=None):
        if not training or self.rate == 0:
            return inputs
        n = ops.shape(inputs)[0]
        lit = self._uniform(n) < self.rate
        return inputs * ops.where(lit, self.fields(n), 1.0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "min_gain": self.min_gain, "seed": self.seed}



@keras.saving.register_keras_serializable(package="training")
class RandomElastic(layers.Layer):
    """Training-only elastic distortion in the manner of Simard et al. (2003): a share ``rate`` of
    the images (n, 28, 28, 1) is resampled through a smooth random displacement field, random
    displacements of up to ``alpha`` pixels on a coarse ``grid`` x ``grid`` lattice, bilinearly
    upsampled to the image. Unlike ``keras.layers.RandomElasticTransform``, whose field is smoothed
    over about a pixel (a frayed stroke at 28x28), this bends whole strokes, as another writer's hand
    does. Identity unless ``training``."""

    def __init__(self, rate: float = 0.5, alpha: float = 2.0, grid: int = 4, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.rate, self.alpha, self.grid, self.seed = float(rate), float(alpha), int(grid), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        if not training or self.rate == 0:
            return inputs
        n = ops.shape(inputs)[0]
        side = IMAGE_SIDE
        coarse = keras.random.uniform((n, self.grid, self.grid, 2), -self.alpha, self.alpha, seed=self.seed_generator)
        field = ops.image.resize(coarse, (side, side), interpolation="bilinear")  # (n, 28, 28, 2) pixels
        apply = keras.random.uniform((n, 1, 1, 1), seed=self.seed_generator) < self.rate
        field = ops.where(apply, field, 0.0)
        rows = ops.arange(side, dtype="float32")[None, :, None] + field[..., 0]
        cols = ops.arange(side, dtype="float32")[None, None, :] + field[..., 1]
        # bilinear sampling by gathering from the flattened batch (black outside the frame)
        flat = ops.reshape(inputs, (-1,))
        first = ops.reshape(ops.arange(n) * side * side, (-1, 1, 1))
        r0, c0 = ops.floor(rows), ops.floor(cols)
        wr, wc = rows - r0, cols - c0
        r0, c0 = ops.cast(r0, "int32"), ops.cast(c0, "int32")

        def at(r, c):
            inside = ops.logical_and(ops.logical_and(r >= 0, r < side), ops.logical_and(c >= 0, c < side))
            index = first + ops.clip(r, 0, side - 1) * side + ops.clip(c, 0, side - 1)
            return ops.where(inside, ops.take(flat, index), 0.0)

        warped = ((1 - wr) * (1 - wc) * at(r0, c0) + (1 - wr) * wc * at(r0, c0 + 1)
                  + wr * (1 - wc) * at(r0 + 1, c0) + wr * wc * at(r0 + 1, c0 + 1))
        return warped[..., None]

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "alpha": self.alpha, "grid": self.grid, "seed": self.seed}


def _peak_to_one(x):
    """Each image (n, 28, 28, 1) scaled so its brightest pixel is 1, as the stem scales every upload."""
    peak = ops.max(x, axis=(1, 2, 3), keepdims=True)
    return ops.where(peak > 0, x / ops.maximum(peak, 1e-6), x)


@keras.saving.register_keras_serializable(package="training")
class RandomPen(layers.Layer):
    """Training-only pen and scanner variation on images (n, 28, 28, 1): a share ``rate`` of them
    gets strokes up to a pixel thicker or thinner (a blend towards a 3x3 grey dilation or erosion)
    and a blur of up to ``max_blur`` (a blend towards a 3x3 Gaussian), each image its own amount.
    Other writers' pens, markers and scanners differ from MNIST's in exactly these. Identity unless
    ``training``."""

    def __init__(self, rate: float = 0.5, max_blur: float = 1.0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.rate, self.max_blur, self.seed = float(rate), float(max_blur), seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        g = np.array([1.0, 2.0, 1.0], np.float32)
        self._kernel = (np.outer(g, g) / 16.0).reshape(3, 3, 1, 1)

    def call(self, inputs, training=None):
        if not training or self.rate == 0:
            return inputs
        n = ops.shape(inputs)[0]
        u = lambda low, high: keras.random.uniform((n, 1, 1, 1), low, high, seed=self.seed_generator)  # noqa: E731
        apply = ops.cast(u(0.0, 1.0) < self.rate, inputs.dtype)
        thicker = ops.max_pool(inputs, 3, strides=1, padding="same")
        thinner = -ops.max_pool(-inputs, 3, strides=1, padding="same")
        width = u(-1.0, 1.0) * apply  # > 0 thicker, < 0 thinner
        x = inputs + ops.maximum(width, 0.0) * (thicker - inputs) + ops.maximum(-width, 0.0) * (thinner - inputs)
        blurred = ops.conv(x, ops.convert_to_tensor(self._kernel), padding="same")
        x = ops.clip(x + u(0.0, self.max_blur) * apply * (blurred - x), 0.0, 1.0)
        return _peak_to_one(x)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "max_blur": self.max_blur, "seed": self.seed}


def low_resolution_operators(sides: tuple[int, ...], blurs: tuple[float, ...] = (),
                             side: int = IMAGE_SIDE) -> np.ndarray:
    """(2 * len(sides) + len(blurs), side, side): linear maps of one image axis. For each of
    ``sides``, OpenCV's area shrink to that many pixels and its enlargement back (bicubic, then
    nearest neighbour); for each of ``blurs``, a Gaussian blur of that sigma (black beyond the
    frame). An image ``X`` becomes ``A @ X @ A.T``: all of them are separable."""
    operators = []
    for small in sides:
        shrink = cv2.resize(np.eye(side, dtype=np.float32), (side, small), interpolation=cv2.INTER_AREA)
        for enlarge in (cv2.INTER_CUBIC, cv2.INTER_NEAREST):
            grow = cv2.resize(np.eye(small, dtype=np.float32), (small, side), interpolation=enlarge)
            operators.append(grow @ shrink)
    for sigma in blurs:
        kernel = cv2.getGaussianKernel(2 * int(np.ceil(3 * sigma)) + 1, sigma).astype(np.float32)
        operators.append(cv2.filter2D(np.eye(side, dtype=np.float32), -1, kernel, borderType=cv2.BORDER_CONSTANT))
    return np.stack(operators)


@keras.saving.register_keras_serializable(package="training")
class RandomLowResolution(layers.Layer):
    """Training-only: a share ``rate`` of the images (n, 28, 28, 1) shrunk to one of ``sides``
    pixels a side and enlarged again, smoothly or pixelated, or blurred by one of ``blurs``
    (:func:`low_resolution_operators`, each of them equally often): a thumbnail, a coarse scan, a
    photo of a small digit that someone enlarged, a soft focus. Identity unless ``training``."""

    def __init__(self, rate: float = 0.1, sides: tuple[int, ...] = (8, 10, 12, 14, 16),
                 blurs: tuple[float, ...] = (1.0, 1.5, 2.0), seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.rate, self.seed = float(rate), seed
        self.sides, self.blurs = tuple(int(s) for s in sides), tuple(float(b) for b in blurs)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self._operators = low_resolution_operators(self.sides, self.blurs)

    def call(self, inputs, training=None):
        if not training or self.rate == 0:
            return inputs
        n = ops.shape(inputs)[0]
        which = keras.random.randint((n,), 0, len(self._operators), seed=self.seed_generator)
        apply = keras.random.uniform((n, 1, 1, 1), seed=self.seed_generator) < self.rate
        a = ops.take(ops.convert_to_tensor(self._operators, dtype=inputs.dtype), which, axis=0)
        small = ops.matmul(ops.matmul(a, inputs[..., 0]), ops.transpose(a, (0, 2, 1)))
        return _peak_to_one(ops.where(apply, ops.clip(small[..., None], 0.0, 1.0), inputs))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "sides": self.sides, "blurs": self.blurs, "seed": self.seed}


def build_classifier(num_classes: int, config: TrainConfig, name: str = "dense_classifier") -> keras.Model:
    """Build (uncompiled) the dense classifier that ``config`` describes.

    ``config.augment`` is 'off' or the fill mode for pixels shifted in from outside the frame:
    'constant' (black, right for MNIST's dark background) or 'nearest' (photos of hands);
    ``shift`` and ``zoom`` are fractions of the image side, ``rotation`` a fraction of a full turn.
    ``config.lighting`` > 0 adds :class:`RandomLighting` (after the geometric augmentation, before
    the standardisation); ``config.local_contrast`` > 0 divides each pixel by its neighbourhood
    (:class:`~execution.layers.LocalContrast`, kept in the served model) just before it.
    The input accepts (n, 784), (n, 28, 28) and (n, 28, 28, 1) alike.
    """
    pixels, x = _augmented_input(config)
    for i, units in enumerate(config.hidden, start=1):
        x = layers.Dense(units, activation=config.activation, name=f"hidden_{i}")(x)
        if config.dropout:
            x = layers.Dropout(config.dropout, name=f"dropout_{i}")(x)
    probabilities = layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(pixels, probabilities, name=name)


def _augmented_input(config: TrainConfig):
    """The model input and the tensor after the training-only augmentation and the standardisation."""
    # Declared as (None, 1) so that Keras' own rank adjustment lets all three layouts in:
    # (n, 784) gains a trailing axis, (n, 28, 28, 1) loses one; Reshape flattens either.
    pixels = keras.Input(shape=(None, 1), name="pixels")
    x = layers.Reshape((VECTOR_LENGTH,), name="flatten")(pixels)
    if config.augment != "off":
        fill, shift = config.augment, config.shift
        x = layers.Reshape((28, 28, 1), name="as_image")(x)
        x = layers.RandomTranslation(shift, shift, fill_mode=fill, name="random_shift")(x)
        x = layers.RandomRotation(config.rotation, fill_mode=fill, name="random_rotation")(x)
        x = layers.RandomZoom(config.zoom, fill_mode=fill, name="random_zoom")(x)
        if config.slant:
            x = layers.RandomShear(x_factor=config.slant, fill_mode=fill, name="random_slant")(x)
        if config.elastic:
            x = RandomElastic(config.elastic, config.elastic_alpha, name="random_elastic")(x)
        if config.pen:
            x = RandomPen(config.pen, name="random_pen")(x)
        if config.low_res:
            x = RandomLowResolution(config.low_res, name="random_low_res")(x)
        x = layers.Reshape((VECTOR_LENGTH,), name="as_vector")(x)
    if config.lighting:
        x = RandomLighting(config.lighting, config.lighting_min_gain, name="random_lighting")(x)
    if config.local_contrast:
        x = LocalContrast(config.local_contrast, name="local_contrast")(x)
    if config.normalize:
        x = layers.LayerNormalization(center=False, scale=False, name="per_image_standardize")(x)
    return pixels, x


TEACHER_FILTERS = (32, 64)
# CPU flags of bfloat16 matrix instructions, which oneDNN (TensorFlow's CPU kernels) uses for bfloat16
BFLOAT16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


def teacher_precision(requested: str, cpuinfo: str | None = None, gpu: tuple[int, int] | None = None) -> str:
    """``requested`` ('auto', 'float32' or 'bfloat16') made concrete. 'auto' is bfloat16 where the
    training computes on a GPU with bfloat16 tensor cores (``gpu``: its compute capability, by
    default :func:`training_gpu`'s; 8.0 and later, Ampere on) or, without a GPU, where the CPU has
    bfloat16 matrix instructions (:data:`BFLOAT16_CPU_FLAGS` among ``cpuinfo``'s flags, by default
    /proc/cpuinfo); float32 elsewhere, where bfloat16 is emulated and slower."""
    if requested != "auto":
        return requested
    gpu = training_gpu() if gpu is None else gpu
    if gpu:
        return "bfloat16" if gpu >= (8, 0) else "float32"
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:  # not Linux: no way to tell, so the safe one
            cpuinfo = ""
    return "bfloat16" if BFLOAT16_CPU_FLAGS & set(cpuinfo.split()) else "float32"


def training_gpu() -> tuple[int, int] | tuple[()]:
    """The compute capability of the GPU that Keras' backend trains on, or ``()`` on a CPU."""
    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            if jax.default_backend() == "gpu":
                return tuple(int(part) for part in str(jax.devices()[0].compute_capability).split(".")[:2])
        elif backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                return tuple(tf.config.experimental.get_device_details(gpus[0]).get("compute_capability", (0, 0)))
        elif backend == "torch":
            import torch

            if torch.cuda.is_available():
                return tuple(torch.cuda.get_device_capability(0))
    except (AttributeError, RuntimeError, ValueError):  # a device that does not say: treated as no GPU
        return ()
    return ()


def build_teacher(num_classes: int, config: TrainConfig, name: str = "teacher") -> keras.Model:
    """A small convolutional network (two blocks of two 3x3 convolutions and a 2x2 pooling, then
    Dense 256) with the student's input, augmentation and uneven light. Training-only: it learns
    the task first, and the dense student then learns from its answers (:func:`distillation_model`).
    In ``config.teacher_precision`` (:func:`teacher_precision`): with bfloat16 its layers compute in
    bfloat16 on float32 weights (Keras' mixed_bfloat16), and its probabilities come out in float32."""
    pixels, x = _augmented_input(config)
    dtype = "mixed_bfloat16" if teacher_precision(config.teacher_precision) == "bfloat16" else None
    x = layers.Reshape((IMAGE_SIDE, IMAGE_SIDE, 1), name="teacher_image")(x)
    for block, filters in enumerate(TEACHER_FILTERS, start=1):
        for half in "ab":
            x = layers.Conv2D(filters, 3, padding="same", activation="relu", dtype=dtype,
                              name=f"teacher_conv_{block}{half}")(x)
        x = layers.MaxPooling2D(dtype=dtype, name=f"teacher_pool_{block}")(x)
    x = layers.Flatten(dtype=dtype, name="teacher_features")(x)
    x = layers.Dropout(0.3, dtype=dtype, name="teacher_dropout_1")(x)
    x = layers.Dense(256, activation="relu", dtype=dtype, name="teacher_dense")(x)
    x = layers.Dropout(0.3, dtype=dtype, name="teacher_dropout_2")(x)
    probabilities = layers.Dense(num_classes, activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(pixels, probabilities, name=name)


class TeacherLoss(layers.Layer):
    """Training-only: given ``[output, student, teacher]``, passes ``output`` (the student's
    answers on the batch, which the labels score) through and, while training, adds ``weight`` x
    T² x KL(teacher || student) to the loss, both answers softened at temperature T
    (log-probabilities / T, renormalised): knowledge distillation. ``student`` and ``teacher``
    answer the same images: ``output``'s batch itself, or its :class:`BlendPairs` copy."""

    def __init__(self, weight: float, temperature: float, **kwargs):
        super().__init__(**kwargs)
        self.weight, self.temperature = float(weight), float(temperature)

    def call(self, inputs, training=None):
        output, student, teacher = inputs
        if training:
            soften = lambda p: ops.log_softmax(ops.log(p + 1e-7) / self.temperature, axis=-1)  # noqa: E731
            log_t, log_s = soften(ops.stop_gradient(teacher)), soften(student)
            divergence = ops.mean(ops.sum(ops.exp(log_t) * (log_t - log_s), axis=-1))
            self.add_loss(self.weight * self.temperature**2 * divergence)
        return output

    def compute_output_shape(self, input_shape):
        return input_shape[0]


class BlendPairs(layers.Layer):
    """Training-only: a share ``share`` of the batch's images, each blended with another image of
    the same batch, ``lam * x + (1 - lam) * partner`` with ``lam`` uniform in 0-1 (mixup's inputs,
    Zhang et al. 2018); the other images pass unchanged. A blend has no label; the teacher answers
    it, so the student learns the teacher's answers between the training images too ("function
    matching", Beyer et al. 2022)."""

    def __init__(self, share: float = 1.0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= share <= 1:
            raise ValueError(f"BlendPairs: share must be in 0-1; got {share}")
        self.share, self.seed = float(share), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        if not training:
            return inputs
        n = ops.shape(inputs)[0]
        partner = ops.take(inputs, keras.random.shuffle(ops.arange(n), seed=self.seed_generator), axis=0)
        lam = keras.random.uniform((n, 1), seed=self.seed_generator)
        blended = keras.random.uniform((n, 1), seed=self.seed_generator) < self.share
        lam = ops.where(blended, lam, 1.0)
        return lam * inputs + (1.0 - lam) * partner

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "share": self.share, "seed": self.seed}


def distillation_model(student: keras.Model, teacher: keras.Model, weight: float, temperature: float,
                       blends: float = 0.0) -> keras.Model:
    """A training model around ``student`` (sharing its layers, so fitting it trains the student):
    the frozen ``teacher`` (an :func:`inference_model`) answers each augmented, lit batch, and
    :class:`TeacherLoss` adds how far the student's answers are from its. With ``blends`` > 0
    that share of the images the teacher answers are :class:`BlendPairs` blends (the labels still
    score the student on the unblended batch): one teacher pass per step, as without blends."""
    teacher.trainable = False
    pixels = keras.Input(shape=(None, 1), name="pixels")
    x, seen, network = pixels, None, []
    for layer in student.layers[1:]:
        if seen is None and layer.name not in AUGMENTATION_LAYERS:
            seen = x
        if seen is not None:
            network.append(layer)
        x = layer(x)
    shown, answer = seen, x
    if blends:
        shown = BlendPairs(blends, name="blend_pairs")(seen)
        answer = shown
        for layer in network:
            answer = layer(answer)
    taught_loss = TeacherLoss(weight, temperature, name="teacher_loss")([x, answer, teacher(shown)])
    return keras.Model(pixels, taught_loss, name=student.name)


TRAINING_ONLY_LAYERS = ("as_image", "random_shift", "random_rotation", "random_zoom", "random_slant", "random_elastic",
                        "random_pen", "random_low_res", "as_vector", "random_lighting")
# the input's flattening and the training-only augmentation: the teacher sees what comes out of them
AUGMENTATION_LAYERS = ("flatten", *TRAINING_ONLY_LAYERS)


def inference_model(model: keras.Model) -> keras.Model:
    """The trained model without augmentation, uneven light and dropout: same layers, same weights,
    built-in Keras layers only."""
    pixels = keras.Input(shape=(None, 1), name="pixels")
    x = pixels
    for layer in model.layers[1:]:
        if layer.name in TRAINING_ONLY_LAYERS or isinstance(layer, layers.Dropout):
            continue
        x = layer(x)
    return keras.Model(pixels, x, name=model.name)


# Weight averaging: the average spans about 1 / (1 - EMA_MOMENTUM) steps (two to three epochs of MNIST).
EMA_MOMENTUM = 0.999


def make_optimizer(name: str, learning_rate: float | None, momentum: float, decay_steps: int = 0,
                   weight_averaging: bool = False):
    """The course's optimizers by name: sgd, momentum, adam, adagrad, rmsprop. With ``decay_steps``
    the learning rate (``learning_rate``, else the optimizer's default) falls to zero over that many
    steps along a half cosine; with ``weight_averaging`` the optimizer keeps an exponential moving
    average of the weights, which ``fit`` writes into the model at its end."""
    name = name.lower()
    kwargs = {} if learning_rate is None else {"learning_rate": learning_rate}
    if decay_steps:
        start = learning_rate if learning_rate is not None else (0.01 if name in ("sgd", "momentum") else 0.001)
        kwargs = {"learning_rate": keras.optimizers.schedules.CosineDecay(start, decay_steps)}
    if weight_averaging:
        kwargs.update(use_ema=True, ema_momentum=EMA_MOMENTUM)
    if name == "sgd":
        return keras.optimizers.SGD(**kwargs)
    if name == "momentum":
        return keras.optimizers.SGD(momentum=momentum, **kwargs)
    if name == "adam":
        return keras.optimizers.Adam(**kwargs)
    if name == "adagrad":
        return keras.optimizers.Adagrad(**kwargs)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(**kwargs)
    raise ValueError(f"unknown optimizer {name!r}; choose sgd, momentum, adam, adagrad or rmsprop")

