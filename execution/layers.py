"""Keras layers that ship inside served models. :func:`execution.forward.load_model` imports this
module before it loads a model, so a stored ``model.keras`` that uses them loads anywhere the
service runs; training builds them into its models from here."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from preprocessing.vector import IMAGE_SIDE, blur_matrix


@keras.saving.register_keras_serializable(package="digits_and_signs")
class LocalContrast(layers.Layer):
    """Each pixel of a flat (n, 784) image divided by a Gaussian-blurred copy of the image (``sigma``
    pixels of the 28x28 image) plus ``epsilon``: a light field that changes slowly across the frame
    (a shadow's inside, a gradient) multiplies a pixel and its neighbourhood alike and cancels.

    The blur is separable, two 28x28 matrix products per image: ``G @ X @ G.T``, where row *i* of
    ``G`` is the Gaussian around pixel *i* cut at 3 sigma and scaled to sum to one over the pixels
    inside the frame (a normalised convolution: the border is not darkened). No weights. The same
    in numpy: :func:`preprocessing.vector.local_contrast`."""

    def __init__(self, sigma: float = 2.0, epsilon: float = 0.05, **kwargs):
        super().__init__(**kwargs)
        if sigma <= 0 or epsilon <= 0:
            raise ValueError(f"LocalContrast: sigma and epsilon must be positive; got {sigma}, {epsilon}")
        self.sigma, self.epsilon = float(sigma), float(epsilon)
        self._blur = blur_matrix(IMAGE_SIDE, self.sigma)

    def call(self, inputs):
        image = ops.reshape(inputs, (-1, IMAGE_SIDE, IMAGE_SIDE))
        g = ops.convert_to_tensor(self._blur, dtype=image.dtype)
        blurred = ops.matmul(ops.matmul(g, image), ops.transpose(g))
        return ops.reshape(image / (blurred + self.epsilon), (-1, IMAGE_SIDE * IMAGE_SIDE))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], IMAGE_SIDE * IMAGE_SIDE)

    def get_config(self):
        return {**super().get_config(), "sigma": self.sigma, "epsilon": self.epsilon}

