import math

import numpy as np
import pytest

from training.linear import fit, gradient, least_squares, main, mse, rmse, step

# The course's worked example: points (1, 3), (2, 5); start m = -1, b = 5; λ = 0.1.
X = [1.0, 2.0]
Y = [3.0, 5.0]
M0, B0, LR = -1.0, 5.0, 0.1

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# --- the worked example, derived by hand --------------------------------------
# predictions: -1·1 + 5 = 4, -1·2 + 5 = 3; errors y - ŷ: 3 - 4 = -1, 5 - 3 = 2
# MSE = ((-1)² + 2²) / 2 = 2.5
# dm = -2/2 · (1·(-1) + 2·2) = -3;  db = -2/2 · (-1 + 2) = -1
# m' = -1 - 0.1·(-3) = -0.7;  b' = 5 - 0.1·(-1) = 5.1
# at (-0.7, 5.1): predictions 4.4, 3.7; errors -1.4, 1.3; MSE = (1.96 + 1.69) / 2 = 1.825


def test_worked_example_mse():
    assert mse(M0, B0, X, Y) == pytest.approx(2.5)


def test_worked_example_rmse():
    assert rmse(M0, B0, X, Y) == pytest.approx(math.sqrt(2.5))
    assert rmse(M0, B0, X, Y) == pytest.approx(1.5811388300841898)


def test_worked_example_gradient():
    dm, db = gradient(M0, B0, X, Y)
    assert dm == pytest.approx(-3.0)
    assert db == pytest.approx(-1.0)


def test_worked_example_one_step():
    m1, b1 = step(M0, B0, X, Y, LR)
    assert m1 == pytest.approx(-0.7)
    assert b1 == pytest.approx(5.1)
    assert mse(m1, b1, X, Y) == pytest.approx(1.825)


def test_worked_example_accepts_numpy_arrays():
    assert gradient(M0, B0, np.array(X), np.array(Y)) == pytest.approx((-3.0, -1.0))


def test_worked_example_least_squares_is_line_through_both_points():
    assert least_squares(X, Y) == pytest.approx((2.0, 1.0))
    assert mse(2.0, 1.0, X, Y) == pytest.approx(0.0)


# --- the gradient against central finite differences --------------------------


def test_gradient_matches_central_finite_differences():
    rng = np.random.default_rng(0)
    h = 1e-6
    for _ in range(10):
        n = int(rng.integers(1, 20))
        x = rng.normal(0.0, 2.0, size=n)
        y = rng.normal(0.0, 3.0, size=n)
        m, b = rng.normal(0.0, 2.0, size=2)
        dm, db = gradient(m, b, x, y)
        num_dm = (mse(m + h, b, x, y) - mse(m - h, b, x, y)) / (2 * h)
        num_db = (mse(m, b + h, x, y) - mse(m, b - h, x, y)) / (2 * h)
        assert dm == pytest.approx(num_dm, rel=1e-6, abs=1e-6)
        assert db == pytest.approx(num_db, rel=1e-6, abs=1e-6)


def test_gradient_is_zero_at_least_squares_solution():
    rng = np.random.default_rng(1)
    x = rng.uniform(-3, 3, size=30)
    y = 1.5 * x - 2 + rng.normal(0, 0.5, size=30)
    assert gradient(*least_squares(x, y), x, y) == pytest.approx((0.0, 0.0), abs=1e-9)


# --- fit ----------------------------------------------------------------------


@pytest.fixture
def noisy_data():
    rng = np.random.default_rng(42)
    x = rng.uniform(-2.0, 2.0, size=50)
    y = 3.0 * x + 0.5 + rng.normal(0.0, 0.3, size=50)
    return x, y


def test_fit_converges_to_least_squares(noisy_data):
    x, y = noisy_data
    history = fit(x, y, m=0.0, b=0.0, learning_rate=0.1, steps=500)
    ls_m, ls_b = least_squares(x, y)
    assert history[-1].m == pytest.approx(ls_m, abs=1e-6)
    assert history[-1].b == pytest.approx(ls_b, abs=1e-6)
    assert history[-1].loss == pytest.approx(mse(ls_m, ls_b, x, y), rel=1e-9)
    # Sanity: the noisy data really came from roughly y = 3x + 0.5.
    assert ls_m == pytest.approx(3.0, abs=0.2)
    assert ls_b == pytest.approx(0.5, abs=0.2)


def test_fit_loss_non_increasing_for_small_learning_rate(noisy_data):
    x, y = noisy_data
    losses = [r.loss for r in fit(x, y, m=-5.0, b=5.0, learning_rate=0.01, steps=200)]
    assert all(later <= earlier for earlier, later in zip(losses, losses[1:]))
    assert losses[-1] < losses[0] / 10


def test_fit_history_shape_and_initial_record():
    history = fit(X, Y, M0, B0, LR, steps=7)
    assert len(history) == 8
    assert [r.step for r in history] == list(range(8))
    first = history[0]
    assert (first.m, first.b) == (M0, B0)
    assert first.loss == pytest.approx(2.5)
    assert (first.dm, first.db) == pytest.approx((-3.0, -1.0))
    second = history[1]
    assert (second.m, second.b) == pytest.approx((-0.7, 5.1))
    assert second.loss == pytest.approx(1.825)


def test_fit_each_record_is_consistent_with_step():
    history = fit(X, Y, M0, B0, LR, steps=5)
    for before, after in zip(history, history[1:]):
        assert (after.m, after.b) == pytest.approx(step(before.m, before.b, X, Y, LR))
        assert (before.dm, before.db) == pytest.approx(gradient(before.m, before.b, X, Y))


def test_fit_zero_steps_returns_only_initial_state():
    history = fit(X, Y, M0, B0, LR, steps=0)
    assert len(history) == 1
    assert history[0].step == 0


def test_fit_diverges_with_too_large_learning_rate(noisy_data):
    x, y = noisy_data
    losses = [r.loss for r in fit(x, y, m=0.0, b=0.0, learning_rate=2.0, steps=20)]
    assert all(later > earlier for earlier, later in zip(losses, losses[1:]))
    assert losses[-1] > 1e6 * losses[0]


# --- CLI ----------------------------------------------------------------------


def _data_rows(out: str) -> list[list[float]]:
    rows = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 6 and parts[0].isdigit():
            rows.append([float(p) for p in parts])
    return rows


def test_cli_defaults_print_worked_example(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    rows = _data_rows(out)
    assert len(rows) == 51  # default 50 steps plus step 0
    assert rows[0] == pytest.approx([0, -1.0, 5.0, 2.5, -3.0, -1.0])
    assert rows[1][:4] == pytest.approx([1, -0.7, 5.1, 1.825])
    assert "least squares: y = 2·x + 1" in out


def test_cli_options_and_every(capsys):
    argv = ["--points", "1,3 2,5", "--m", "-1", "--b", "5", "--learning-rate", "0.1", "--steps", "10", "--every", "5"]
    assert main(argv) == 0
    rows = _data_rows(capsys.readouterr().out)
    assert [int(r[0]) for r in rows] == [0, 5, 10]
    assert rows[0] == pytest.approx([0, -1.0, 5.0, 2.5, -3.0, -1.0])


def test_cli_every_always_prints_final_step(capsys):
    assert main(["--steps", "7", "--every", "5"]) == 0
    rows = _data_rows(capsys.readouterr().out)
    assert [int(r[0]) for r in rows] == [0, 5, 7]


def test_cli_plot_writes_png(tmp_path, capsys):
    path = tmp_path / "nested" / "dir" / "loss.png"
    assert main(["--steps", "20", "--plot", str(path)]) == 0
    data = path.read_bytes()
    assert len(data) > len(PNG_SIGNATURE)
    assert data.startswith(PNG_SIGNATURE)
    assert str(path) in capsys.readouterr().out


@pytest.mark.parametrize("points", ["", "1,3 2", "1,3 a,5", "1;3 2;5", "1,2,3", "1,nan"])
def test_cli_bad_points_is_usage_error(points, capsys):
    with pytest.raises(SystemExit) as excinfo:
        main(["--points", points])
    assert excinfo.value.code != 0
    assert "--points" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--steps", "-1"], ["--every", "0"], ["--learning-rate", "fast"]])
def test_cli_bad_numeric_options_are_usage_errors(argv):
    with pytest.raises(SystemExit) as excinfo:
        main(argv)
    assert excinfo.value.code != 0
