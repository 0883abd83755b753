"""The course's dense classifier: 784 -> Dense 512 -> Dense 512 -> softmax, built with plain Keras layers.

Everything the model needs beyond the course's input (pixels scaled to 0-1) lives inside it as
built-in Keras layers, so ``model.keras`` loads with ``keras.saving.load_model`` anywhere:
optional per-image standardisation (a LayerNormalization without learned scale) and, while
training, random shifts, small rotations and zooms. Keras' random image layers augment on a
plain ``model(x)`` call unless ``training=False`` is passed, so what is saved and served is
:func:`inference_model`: the same layers and weights without the training-only ones.
"""

from __future__ import annotations

import keras
from keras import layers

from preprocessing import VECTOR_LENGTH
from training.config import TrainConfig



def build_classifier(num_classes: int, config: TrainConfig, name: str = "dense_classifier") -> keras.Model:
    """Build (uncompiled) the dense classifier that ``config`` describes.

    ``config.augment`` is 'off' or the fill mode for pixels shifted in from outside the frame:
    'constant' (black, right for MNIST's dark background) or 'nearest' (photos of hands);
    ``shift`` and ``zoom`` are fractions of the image side, ``rotation`` a fraction of a full turn.
    The input accepts (n, 784), (n, 28, 28) and (n, 28, 28, 1) alike.
    """
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
        x = layers.Reshape((VECTOR_LENGTH,), name="as_vector")(x)
    if config.normalize:
        x = layers.LayerNormalization(center=False, scale=False, name="per_image_standardize")(x)
    for i, units in enumerate(config.hidden, start=1):
        x = layers.Dense(units, activation=config.activation, name=f"hidden_{i}")(x)
        if config.dropout:
            x = layers.Dropout(config.dropout, name=f"dropout_{i}")(x)
    probabilities = layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(pixels, probabilities, name=name)


TRAINING_ONLY_LAYERS = ("as_image", "random_shift", "random_rotation", "random_zoom", "as_vector")


def inference_model(model: keras.Model) -> keras.Model:
    """The trained model without augmentation and dropout: same layers, same weights."""
    pixels = keras.Input(shape=(None, 1), name="pixels")
    x = pixels
    for layer in model.layers[1:]:
        if layer.name in TRAINING_ONLY_LAYERS or isinstance(layer, layers.Dropout):
            continue
        x = layer(x)
    return keras.Model(pixels, x, name=model.name)


def make_optimizer(name: str, learning_rate: float | None, momentum: float):
    """The course's optimizers by name: sgd, momentum, adam, adagrad, rmsprop."""
    name = name.lower()
    kwargs = {} if learning_rate is None else {"learning_rate": learning_rate}
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

