"""Loaders on small files the tests write themselves, every kind of broken file, label mapping, splits."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from tools.synthetic import asl_csv_text, write_asl_csvs, write_mnist_npz
from training import datasets
from catalog import family
from training.datasets import DataError

ASL_CLASS_NAMES = family("asl").class_names


def test_mnist_npz_loads_with_checksum(tmp_path):
    write_mnist_npz(tmp_path / "mnist.npz", n_train=50, n_test=20)
    data = datasets.load("mnist", tmp_path)
    assert data.x_train.shape == (50, 28, 28) and data.x_train.dtype == np.uint8
    assert data.x_test.shape == (20, 28, 28)
    assert data.y_train.max() <= 9
    assert data.sources["mnist.npz"] == datasets.sha256_of(tmp_path / "mnist.npz")
    assert data.family.class_names == tuple("0123456789")


def test_data_dir_comes_from_environment(tmp_path, monkeypatch):
    write_mnist_npz(tmp_path / "mnist.npz", n_train=30, n_test=10)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    assert len(datasets.load("mnist").x_train) == 30


def test_mnist_falls_back_to_keras_download(tmp_path, monkeypatch):
    import keras

    calls = []

    def fake_load_data():
        calls.append(1)
        x = np.zeros((4, 28, 28), np.uint8)
        y = np.array([0, 1, 2, 3], np.uint8)
        return (x, y), (x, y)

    monkeypatch.setattr(keras.datasets.mnist, "load_data", fake_load_data)
    data = datasets.load("mnist", tmp_path)  # empty directory: no mnist.npz
    assert calls and len(data.x_train) == 4 and data.sources == {}


def test_mnist_download_failure_says_what_to_do(tmp_path, monkeypatch):
    import keras

    def offline():
        raise OSError("no network")

    monkeypatch.setattr(keras.datasets.mnist, "load_data", offline)
    with pytest.raises(DataError, match=r"mnist\.npz.*--data-dir or set DATA_DIR"):
        datasets.load("mnist", tmp_path)


@pytest.mark.parametrize(
    "override, message",
    [
        (dict(y_test=None), r"missing arrays \['y_test'\]"),
        (dict(x_train=np.zeros((5, 28, 27), np.uint8)), r"x_train has shape \(5, 28, 27\)"),
        (dict(x_train=np.zeros((0, 28, 28), np.uint8), y_train=np.zeros(0, np.uint8)), "x_train is empty"),
        (dict(y_train=np.full(300, 10, np.uint8)), "unknown label 10"),
        (dict(x_test=np.full((100, 28, 28), 300, np.int32)), "pixels outside 0-255"),
        (dict(y_test=np.zeros(7, np.uint8)), r"y_test has shape \(7,\)"),
        (dict(y_train=np.zeros(300, np.float32)), "expected integer labels"),
    ],
)
def test_broken_mnist_npz_is_named(tmp_path, override, message):
    path = write_mnist_npz(tmp_path / "mnist.npz", **override)
    with pytest.raises(DataError, match=message) as info:
        datasets.load("mnist", tmp_path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("content, message", [(b"", "empty"), (b"not a zip file", "not a readable .npz")])
def test_unreadable_mnist_npz(tmp_path, content, message):
    (tmp_path / "mnist.npz").write_bytes(content)
    with pytest.raises(DataError, match=message):
        datasets.load("mnist", tmp_path)


@pytest.mark.parametrize("gz", [False, True])
def test_asl_csv_plain_and_gzip(tmp_path, gz):
    write_asl_csvs(tmp_path, gz=gz, n_train=48, n_test=24)
    data = datasets.load("asl", tmp_path)
    assert data.x_train.shape == (48, 28, 28) and data.x_test.shape == (24, 28, 28)
    assert set(data.sources) == (
        {"sign_mnist_train.csv.gz", "sign_mnist_test.csv.gz"} if gz else {"sign_mnist_train.csv", "sign_mnist_test.csv"}
    )


def test_asl_label_mapping_skips_j(tmp_path):
    rows = [f"{label}," + ",".join(["0"] * 784) for label in (0, 8, 10, 24)]
    path = tmp_path / "sign_mnist_train.csv"
    path.write_text(asl_csv_text(rows=rows))
    _, indices = datasets.read_asl_csv(path)
    assert indices.tolist() == [0, 8, 9, 23]
    assert [ASL_CLASS_NAMES[i] for i in indices] == ["A", "I", "K", "Y"]
    assert len(ASL_CLASS_NAMES) == 24 and "J" not in ASL_CLASS_NAMES and "Z" not in ASL_CLASS_NAMES


def test_asl_pixels_keep_row_major_layout(tmp_path):
    pixels = np.arange(784) % 256
    path = tmp_path / "sign_mnist_test.csv"
    path.write_text(asl_csv_text(rows=["3," + ",".join(map(str, pixels))]))
    x, _ = datasets.read_asl_csv(path)
    assert x[0, 0, :3].tolist() == [0, 1, 2] and x[0, 1, 0] == 28


ZEROS = ",".join(["0"] * 784)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "the file is empty"),
        ("label,pixel1,pixel2\n1,0,0\n", "wrong header"),
        ("label," + ",".join(f"pixel{i}" for i in range(1, 785)) + "\n", "header but no rows"),
        (asl_csv_text(rows=["1," + ZEROS, "2," + ",".join(["0"] * 780)]), "row 2 has 781 columns; expected 785"),
        (asl_csv_text(rows=["1," + ",".join(["0"] * 783) + ",256"]), "row 1 has pixel784 = 256, outside 0-255"),
        (asl_csv_text(rows=["1,-1," + ",".join(["0"] * 783)]), "pixel1 = -1"),
        (asl_csv_text(rows=["1," + ZEROS, "9," + ZEROS]), "row 2 has unknown label 9"),
        (asl_csv_text(rows=["25," + ZEROS]), "unknown label 25"),
        (asl_csv_text(rows=["1,abc," + ",".join(["0"] * 783)]), "not an integer in column pixel1"),
    ],
)
def test_broken_asl_csv_is_named(tmp_path, text, message):
    path = tmp_path / "sign_mnist_train.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message) as info:
        datasets.read_asl_csv(path)
    assert str(path) in str(info.value)


def test_corrupt_gzip_is_named(tmp_path):
    path = tmp_path / "sign_mnist_train.csv.gz"
    path.write_bytes(gzip.compress(b"label,pixel1\n")[:10])
    with pytest.raises(DataError, match="cannot read the file"):
        datasets.read_asl_csv(path)


def write_kaggle_layout(root):
    """The folder kagglehub.dataset_download("datamunge/sign-language-mnist") returns: each CSV in a
    folder of its own name, the letter charts at the top."""
    write_asl_csvs(root / "sign_mnist_train", n_train=48, n_test=24)
    (root / "sign_mnist_train" / "sign_mnist_test.csv").rename(root / "sign_mnist_test.csv.tmp")
    (root / "sign_mnist_test").mkdir()
    (root / "sign_mnist_test.csv.tmp").rename(root / "sign_mnist_test" / "sign_mnist_test.csv")
    for chart in ("amer_sign2.png", "amer_sign3.png", "american_sign_language.PNG"):
        (root / chart).write_bytes(b"\x89PNG\r\n\x1a\n")
    return root


def test_asl_downloads_with_kagglehub_without_local_files(tmp_path, monkeypatch):
    import kagglehub

    download = write_kaggle_layout(tmp_path / "kagglehub" / "datasets" / "datamunge" / "sign-language-mnist"
                                   / "versions" / "1")
    calls = []
    monkeypatch.setattr(kagglehub, "dataset_download", lambda handle: calls.append(handle) or str(download))
    monkeypatch.delenv("DATA_DIR", raising=False)
    data = datasets.load("asl")
    assert calls == ["datamunge/sign-language-mnist"]
    assert data.x_train.shape == (48, 28, 28) and data.x_test.shape == (24, 28, 28)
    assert set(data.sources) == {"sign_mnist_train.csv", "sign_mnist_test.csv"}
    # an empty data directory falls back to the download too, as for MNIST
    assert len(datasets.load("asl", tmp_path / "empty").x_train) == 48 and len(calls) == 2


def test_local_csvs_win_over_the_download(tmp_path, monkeypatch):
    write_asl_csvs(tmp_path, n_train=30, n_test=12)
    monkeypatch.setattr(datasets, "download_kaggle", lambda handle: pytest.fail("downloaded"))
    assert len(datasets.load("asl", tmp_path).x_train) == 30


@pytest.mark.parametrize("failure", [OSError("Max retries exceeded: no network"),
                                     PermissionError("401 Client Error: Unauthorized"),
                                     ImportError("No module named 'kagglehub'")])
def test_failed_download_says_what_to_do_in_one_line(tmp_path, monkeypatch, failure):
    def fail(handle):
        raise failure

    monkeypatch.setattr(datasets, "download_kaggle", fail)
    (tmp_path / "sign_mnist_train.csv").write_text(asl_csv_text(4))
    with pytest.raises(DataError) as info:
        datasets.load("asl", tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert "sign_mnist_test.csv" in message and str(tmp_path.resolve()) in message
    assert "kaggle.com/datasets/datamunge/sign-language-mnist" in message and "DATA_DIR" in message
    assert "KAGGLE_USERNAME" in message and type(failure).__name__ in message


def test_failed_download_without_any_directory(monkeypatch):
    monkeypatch.delenv("DATA_DIR", raising=False)
    monkeypatch.setattr(datasets, "download_kaggle", lambda handle: (_ for _ in ()).throw(OSError("offline")))
    with pytest.raises(DataError, match=r"no data directory given \(--data-dir, DATA_DIR\).*OSError: offline"):
        datasets.load("asl")


def test_download_without_the_csvs_is_named(tmp_path, monkeypatch):
    (tmp_path / "amer_sign2.png").write_bytes(b"")
    monkeypatch.setattr(datasets, "download_kaggle", lambda handle: tmp_path)
    with pytest.raises(DataError, match=f"in {tmp_path} has no sign_mnist_train.csv, sign_mnist_test.csv"):
        datasets.load("asl", tmp_path / "nothing")


def test_prepare_scales_flattens_one_hot_and_stratifies(tmp_path):
    write_mnist_npz(tmp_path / "mnist.npz", n_train=1000, n_test=50)
    data = datasets.load("mnist", tmp_path)
    splits = datasets.prepare(data, validation_split=0.2, seed=3)
    assert splits.x_train.shape[1] == 784 and splits.x_train.dtype == np.float32
    assert 0.0 <= splits.x_train.min() and splits.x_train.max() <= 1.0
    assert np.allclose(splits.x_test[0], data.x_test[0].reshape(784) / 255.0)
    assert splits.y_train.shape[1] == 10 and np.all(splits.y_train.sum(axis=1) == 1)
    assert len(splits.x_train) + len(splits.x_val) == 1000
    # stratified: every class keeps ~20% in validation
    train_counts = splits.y_train.sum(axis=0)
    val_counts = splits.y_val.sum(axis=0)
    assert np.allclose(val_counts / (train_counts + val_counts), 0.2, atol=0.02)
    # no example in both
    train_rows = {row.tobytes() for row in splits.x_train}
    assert not any(row.tobytes() in train_rows for row in splits.x_val)


def test_prepare_is_seeded_and_limits(tmp_path):
    write_mnist_npz(tmp_path / "mnist.npz", n_train=500, n_test=50)
    data = datasets.load("mnist", tmp_path)
    a = datasets.prepare(data, seed=1, limit=200)
    b = datasets.prepare(data, seed=1, limit=200)
    c = datasets.prepare(data, seed=2, limit=200)
    assert len(a.x_train) + len(a.x_val) == 200
    assert np.array_equal(a.x_val, b.x_val) and not np.array_equal(a.x_val, c.x_val)


def test_prepare_can_validate_on_test_like_the_course(tmp_path):
    write_mnist_npz(tmp_path / "mnist.npz", n_train=100, n_test=40)
    splits = datasets.prepare(datasets.load("mnist", tmp_path), validation_from_test=True)
    assert len(splits.x_train) == 100 and np.array_equal(splits.x_val, splits.x_test)


def test_grouped_validation_holds_out_whole_photographs():
    """Copies of one photograph (brightness, noise) form one group; the grouped split never puts
    copies of one photograph on both sides, a random split does."""
    rng = np.random.default_rng(4)
    base = rng.integers(0, 256, (40, 28, 28)).astype(np.float32)
    copies = np.repeat(base, 12, axis=0) * rng.uniform(0.85, 1.15, (480, 1, 1)) + rng.normal(0, 3, (480, 28, 28))
    images = np.clip(copies, 0, 255).astype(np.uint8)
    photo = np.repeat(np.arange(40), 12)
    groups = datasets.near_duplicate_groups(images)
    assert len(np.unique(groups)) == 40 and all(len(np.unique(groups[photo == p])) == 1 for p in range(40))
    fam = datasets.family("mnist")
    data = datasets.RawData(fam, images, photo % 10, images[:10], photo[:10] % 10)

    photo_of = {image.tobytes(): p for image, p in zip(images.reshape(480, -1), photo)}

    def shared_photographs(splits):
        seen = lambda x: {photo_of[np.rint(row * 255).astype(np.uint8).tobytes()] for row in x}  # noqa: E731
        return seen(splits.x_train) & seen(splits.x_val)

    grouped = datasets.prepare(data, validation_split=0.2, validation_groups=True, seed=1)
    assert not shared_photographs(grouped) and 0.15 <= len(grouped.x_val) / 480 <= 0.3
    assert grouped.y_val.sum(axis=0).min() >= 12  # every class has a photograph in validation
    # val_groups numbers the held-out photographs 0..k-1, one number per photograph
    val_photo = [photo_of[np.rint(row * 255).astype(np.uint8).tobytes()] for row in grouped.x_val]
    assert grouped.val_groups.max() + 1 == len(set(val_photo)) == len(grouped.x_val) // 12
    assert len(set(zip(grouped.val_groups.tolist(), val_photo))) == len(set(val_photo))
    randomly = datasets.prepare(data, validation_split=0.2, seed=1)
    assert shared_photographs(randomly) and randomly.val_groups is None
