"""The handwriting variation sets (tools/variations.py) and the benchmarks' pad and variation rows
(bench/uploads.py, bench/ood.py), small and fast, with a stand-in model."""

from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from bench import ood as bench_ood
from bench import uploads as bench_uploads
from catalog import ModelMetadata
from inference import Classifier
from preprocessing import MNIST_DIGIT, decode_image, find_digit
from tools import variations


def _digit28() -> np.ndarray:
    """A '7'-like MNIST image: light strokes, 2-3 px wide, on black."""
    a = np.zeros((28, 28), np.uint8)
    a[6:9, 7:21] = 255
    for i, y in enumerate(range(9, 23)):
        x = 19 - i // 2
        a[y, x - 1 : x + 2] = 255
    return a


def _ink(data: bytes) -> np.ndarray:
    return 1.0 - np.asarray(decode_image(data), np.float64) / 255.0


@pytest.mark.parametrize("name", list(variations.SETS))
def test_every_variation_is_a_deterministic_png_of_dark_ink_on_white(name):
    a = variations.variation(_digit28(), name, np.random.default_rng(1))
    assert a == variations.variation(_digit28(), name, np.random.default_rng(1))
    image = Image.open(io.BytesIO(a))
    assert image.format == "PNG" and image.mode == "L"
    assert variations.SIDES[0] <= image.width == image.height <= variations.SIDES[1]
    ink = _ink(a)
    assert ink[0].max() < 0.05 and ink[:, -1].max() < 0.05  # paper all round the digit
    assert find_digit(decode_image(a)).found


def test_stroke_sets_thin_and_thicken_and_blur_spreads():
    def share(name):  # the ink's darkness per pixel of the frame (frames differ in size)
        return _ink(variations.variation(_digit28(), name, np.random.default_rng(2))).mean()

    plain = share("blur 0.7")
    assert share("stroke thinner") < plain < share("stroke thicker") < share("stroke much thicker")

    def darkest(name):  # a blur spreads the strokes' ink: their darkest pixel grows lighter
        return _ink(variations.variation(_digit28(), name, np.random.default_rng(2))).max()

    assert darkest("blur 1.8") < darkest("blur 1.2") < darkest("blur 0.7")


def test_low_resolution_sets_lose_detail():
    """The 8x8 copy's enlargement is far from the original, the 14x14 one close."""
    def err(name):
        data = variations.variation(_digit28(), name, np.random.default_rng(3))
        return np.abs(find_digit(decode_image(data)).pixels - find_digit(Image.fromarray(_digit28())).pixels).mean()

    assert err("low-res 14") < err("low-res 8")


@pytest.mark.parametrize("name", list(variations.CROPPED_SETS))
def test_every_cropped_set_is_a_16px_png_cut_to_the_digit(name):
    data = variations.cropped(_digit28(), name)
    image = Image.open(io.BytesIO(data))
    _, binary, light_on_dark, enlarged = variations.CROPPED_SETS[name]
    assert image.format == "PNG" and image.mode == "L" and image.size == (16 * enlarged, 16 * enlarged)
    ink = np.asarray(image, np.float64) / 255.0
    ink = ink if light_on_dark else 1.0 - ink
    reaches = [side.max() > 0.2 for side in (ink[0], ink[-1], ink[:, 0], ink[:, -1])]
    assert (reaches[0] and reaches[1]) or (reaches[2] and reaches[3])  # no paper around the digit
    assert ink.mean() < 0.5  # ... and the background is most of the image
    assert (set(np.unique(ink)) <= {0.0, 1.0}) == binary
    assert find_digit(decode_image(data)).found


def test_unknown_variation_is_refused():
    with pytest.raises(ValueError, match="unknown variation"):
        variations.variation(_digit28(), "sepia", np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown cropped set"):
        variations.cropped(_digit28(), "sepia")


# ------------------------------------------------------------------ the benchmarks' rows


def _classifier(confidence: float, label: int | None = None) -> Classifier:
    """A stand-in digit model: ``confidence`` on ``label`` (None: the class of the input's
    brightest column's parity, so it is sometimes right), the rest spread evenly."""

    def forward(rows: np.ndarray) -> np.ndarray:
        out = np.full((len(rows), 10), (1 - confidence) / 9, np.float32)
        for i, row in enumerate(rows):
            out[i, label if label is not None else int(row.reshape(28, 28).sum(0).argmax()) % 10] = confidence
        return out

    return Classifier("stand-in", ModelMetadata(class_names=list("0123456789"), preprocessing=MNIST_DIGIT),
                      forward, unsure_below=0.6)


def test_answer_stats_counts_flagged_and_sure_errors():
    answers = [
        {"found": True, "unsure": False, "index": 3},  # sure, right
        {"found": True, "unsure": False, "index": 5},  # sure, wrong
        {"found": True, "unsure": True, "index": 3},  # unsure, right
        {"found": False, "unsure": True, "index": None},  # nothing found
    ]
    stats = bench_uploads.answer_stats(answers, np.array([3, 3, 3, 3]))
    assert stats == {"n": 4, "accuracy": 0.5, "flagged": 0.5, "not_found": 0.25, "sure": 2, "sure_wrong": 0.5}
    none_sure = bench_uploads.answer_stats(answers[2:], np.array([3, 3]))
    assert none_sure["sure"] == 0 and np.isnan(none_sure["sure_wrong"])


def test_digit_sets_rows_with_a_stand_in_model():
    x = np.stack([_digit28()] * 4)
    y = np.full(4, 7)
    rows = bench_uploads.digit_sets(_classifier(0.9, 7), x, y, 4, seed=bench_uploads.DEV_SEED)
    assert [r["set"] for r in rows] == [bench_uploads.PAD_DIGITS, *variations.SETS, *variations.CROPPED_SETS]
    pad_row, *variation_rows = rows
    # the pad's digits are 0, 1, 2, 3, all answered "7", 90 % sure: sure and wrong
    assert pad_row == {"set": bench_uploads.PAD_DIGITS, "n": 4, "accuracy": 0.0, "flagged": 0.0,
                       "not_found": 0.0, "sure": 4, "sure_wrong": 1.0}
    for row in variation_rows:  # the 7s, answered "7" wherever the stem finds them
        assert row["n"] == 4 and row["accuracy"] == 1.0 - row["not_found"] and row["sure_wrong"] == 0.0
    unsure = bench_uploads.digit_sets(_classifier(0.5, 7), x, y, 2, seed=0)
    assert all(r["flagged"] == 1.0 and r["sure"] == 0 for r in unsure)


def test_sets_draw_from_generators_of_their_own():
    a = bench_uploads.set_rng(0, "blur 1.2").random(3)
    assert np.array_equal(a, bench_uploads.set_rng(0, "blur 1.2").random(3))
    assert not np.array_equal(a, bench_uploads.set_rng(0, "blur 1.8").random(3))
    assert not np.array_equal(a, bench_uploads.set_rng(bench_uploads.DEV_SEED, "blur 1.2").random(3))
    assert bench_uploads.REPORT_SEED != bench_uploads.DEV_SEED


def _outcome(name: str, flagged: list[bool], real: bool = False) -> bench_ood.Outcome:
    found = np.ones(len(flagged), bool)
    confidence = np.where(flagged, 0.3, 0.99)
    correct = np.ones(len(flagged), bool) if real else None
    return bench_ood.Outcome(name, found, confidence, np.array(flagged), correct, real)


def test_ood_report_has_the_pad_rows_and_their_goals():
    outcomes = [
        _outcome("validation, dressed as uploads", [False] * 10, True),
        _outcome("test, plain PNG", [False] * 10, True),
        _outcome("test, dressed as uploads", [False] * 10, True),
        _outcome(bench_ood.PAD_DIGITS_ROW, [True] + [False] * 9, True),  # 10 % flagged: over 2 %
        _outcome(bench_ood.PAD_PREFIX + "dot", [True] * 4, False),
        _outcome(bench_ood.PAD_PREFIX + "scribble", [True, True, False, False], False),
    ]
    family = SimpleNamespace(route="mnist")
    result = bench_ood.FamilyResult(family, "mnist_dense:test", 1.0, "test", {}, outcomes, outcomes)
    args = SimpleNamespace(n_real=10, n_ood=4, n_pad=10, seed=0, target=0.015)
    text = bench_ood.report([result], 0.6, args, bench_ood.Path("ood.png"))
    assert "--n-pad 10 --seed 0" in text
    assert f"| **{bench_ood.PAD_DIGITS_ROW}** | 10 | 0.0% | 10.0% (MISSED: over 2 %) |" in text
    assert "| pad: dot | 4 | 0.0% | 100.0% |" in text
    assert "| pad non-digits, all kinds | 8 | 0.0% | 75.0% (goal 90%: MISSED) | 75.0% | |" in text
