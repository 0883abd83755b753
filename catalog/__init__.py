"""The model families this project trains and serves: the one list everything else derives from.

Each :class:`Family` names its URL route, its BentoML store name, what it classifies, the
preprocessing that turns an upload into its input, the loader of its data and the files that
loader reads. Training, the service, the Bento, the benchmarks and the load tests all read this
list; ``tests/test_catalog.py`` checks that no other module keeps a copy of it.

The class names are here because they define the data set (training writes them into the model's
metadata). The service reads them from the model's metadata only, never from here.

Adding a family: append a :class:`Family` to :data:`FAMILIES`, give it a loader in
``training/datasets.py`` and, if it needs one, a preprocessing function in ``preprocessing/``
(README, "Adding a model family").
"""

from __future__ import annotations

from dataclasses import dataclass

from catalog.metadata import MODEL_FILE, Calibration, InputSpec, ModelMetadata, SplitMetrics

__all__ = ["FAMILIES", "Calibration", "Family", "InputSpec", "MODEL_FILE", "ModelMetadata", "SplitMetrics", "family"]


@dataclass(frozen=True)
class Family:
    """One model family: a data set, the model trained on it, and where it is served."""

    route: str  #: URL prefix (``POST /<route>/predict``) and the training CLI's data set name
    store_name: str  #: name in the BentoML model store
    classifies: str  #: what one input shows, in words ("a handwritten digit")
    class_names: tuple[str, ...]  #: output order; written into the model's metadata by training
    preprocessing: str  #: id of the function in ``preprocessing`` that makes an upload its input
    loader: str  #: ``module:function`` that loads the data set (raw uint8 pixels + class indices)
    data_files: tuple[str, ...]  #: files the loader reads from the data directory
    source: str  #: where the data set is published
    kaggle_dataset: str | None = None  #: Kaggle handle the loader downloads from (kagglehub) without local files

    @property
    def train_command(self) -> str:
        """The command that trains this family's model into the store."""
        return f"python -m training {self.route}"

    @property
    def model_tag(self) -> str:
        """The store tag the service serves: the newest version."""
        return f"{self.store_name}:latest"


# Sign Language MNIST labels letters by alphabet position; J (9) and Z (25) need motion and are absent.
_ASL_LETTERS = tuple(chr(ord("A") + i) for i in range(25) if i != 9)

FAMILIES: tuple[Family, ...] = (
    Family(
        route="mnist",
        store_name="mnist_dense",
        classifies="a handwritten digit",
        class_names=tuple(str(d) for d in range(10)),
        preprocessing="mnist_digit",
        loader="training.datasets:load_mnist",
        data_files=("mnist.npz",),
        source="https://yann.lecun.com/exdb/mnist/ (keras.datasets.mnist)",
    ),
    Family(
        route="asl",
        store_name="asl_dense",
        classifies="an American Sign Language letter",
        class_names=_ASL_LETTERS,
        preprocessing="asl_sign",
        loader="training.datasets:load_asl",
        data_files=("sign_mnist_train.csv", "sign_mnist_test.csv"),
        source="https://www.kaggle.com/datasets/datamunge/sign-language-mnist",
        kaggle_dataset="datamunge/sign-language-mnist",
    ),
)

ROUTES: tuple[str, ...] = tuple(f.route for f in FAMILIES)


def family(route: str) -> Family:
    """The family served under ``/<route>/``; ValueError names the known ones."""
    for candidate in FAMILIES:
        if candidate.route == route:
            return candidate
    raise ValueError(f"unknown model family {route!r}; known: {', '.join(ROUTES)}")
