"""Image preprocessing shared by training and serving.

``PREPROCESSORS`` maps the preprocessing name stored in a model's metadata
(``MNIST_DIGIT`` / ``ASL_SIGN``) to the function that turns a decoded image
into that model's 28x28 input; ``image_to_vector`` does decode + preprocess.
"""

from .images import (
    ACCEPTED_FORMATS,
    ASL_SIGN,
    DEFAULT_MAX_PIXELS,
    IMAGE_SIDE,
    MNIST_DIGIT,
    PREPROCESSORS,
    VECTOR_LENGTH,
    ImageError,
    ImageTooLarge,
    decode_image,
    image_to_vector,
    pixels_to_model_input,
    prepare_digit,
    prepare_sign,
    to_grayscale,
)

__all__ = [
    "ACCEPTED_FORMATS",
    "ASL_SIGN",
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SIDE",
    "MNIST_DIGIT",
    "PREPROCESSORS",
    "VECTOR_LENGTH",
    "ImageError",
    "ImageTooLarge",
    "decode_image",
    "image_to_vector",
    "pixels_to_model_input",
    "prepare_digit",
    "prepare_sign",
    "to_grayscale",
]
