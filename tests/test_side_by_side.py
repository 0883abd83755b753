"""Training several families at once: the wall-time estimate, the children's arguments, the relay
of their lines and exit codes, and ``python -m training all --jobs 2`` end to end."""

from __future__ import annotations

import io
import sys

import pytest

from test_training import cli
from training.__main__ import build_parser
from training.side_by_side import child_arguments, run_side_by_side, wall_seconds


def test_the_wall_time_is_the_work_over_what_the_cores_can_run_at_once():
    minute = 60.0
    # 2 cores: a run keeps 1.65 busy, so two at once do 2 / 1.65 of one run's work per minute
    assert wall_seconds([20 * minute, 22 * minute], jobs=2, cores=2) == pytest.approx(42 * minute * 1.65 / 2)
    assert wall_seconds([20 * minute, 22 * minute], jobs=2, cores=8) == 22 * minute  # the longer run
    assert wall_seconds([20 * minute, 22 * minute], jobs=1, cores=8) == 42 * minute  # one after the other
    assert wall_seconds([2 * minute, 22 * minute], jobs=2, cores=2) == 22 * minute  # never below the longest
    assert wall_seconds([5 * minute], jobs=4, cores=1) == 5 * minute


def test_the_child_gets_its_family_where_all_stood():
    parser = build_parser()
    argv = ["--reports-dir", "all", "all", "--epochs", "2"]  # an option's value may read "all" too
    assert child_arguments(parser, argv, "asl") == ["--reports-dir", "all", "asl", "--epochs", "2"]
    assert child_arguments(parser, ["all"], "mnist") == ["mnist"]
    with pytest.raises(ValueError):
        child_arguments(parser, ["asl"], "mnist")


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_lines_come_prefixed_whole_and_the_first_failure_is_the_exit_code():
    out = io.StringIO()
    commands = {
        "ok": _python("print('one'); print('two')"),
        "bad": _python("import sys; print('broken', file=sys.stderr); sys.exit(3)"),
        "late": _python("import sys; sys.exit(5)"),
    }
    assert run_side_by_side(commands, jobs=2, env={}, out=out) == 3
    lines = out.getvalue().splitlines()
    assert "  ok | one" in lines and "  ok | two" in lines and " bad | broken" in lines  # names right-aligned
    assert lines.index("  ok | one") < lines.index("  ok | two")


def test_one_job_runs_the_children_one_after_the_other():
    out = io.StringIO()
    commands = {"a": _python("import time; print('a starts', flush=True); time.sleep(0.5); print('a ends')"),
                "b": _python("print('b starts')")}
    assert run_side_by_side(commands, jobs=1, env={}, out=out) == 0
    assert out.getvalue().splitlines() == ["a | a starts", "a | a ends", "b | b starts"]
    out = io.StringIO()
    assert run_side_by_side(commands, jobs=2, env={}, out=out) == 0
    lines = out.getvalue().splitlines()
    assert lines.index("b | b starts") < lines.index("a | a ends")  # b did not wait for a


def test_cli_trains_both_families_side_by_side(synthetic_data_dir, tmp_path):
    done = cli("all", "--jobs", "2", "--data-dir", str(synthetic_data_dir), "--epochs", "1", "--teacher-epochs", "1",
               "--lit-eval", "0", "--no-save", "--reports-dir", str(tmp_path / "r"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "mnist_dense: about" in out and "asl_dense: about" in out and "side by side (2 at once" in out
    assert "mnist | verdict:" in out and "  asl | verdict:" in out
    assert (tmp_path / "r" / "mnist_dense" / "summary.json").is_file()
    assert (tmp_path / "r" / "asl_dense" / "summary.json").is_file()


def test_cli_side_by_side_stops_on_bad_data_with_a_clear_error(tmp_path):
    """The parent reads every family's data before it starts a child: a broken file is one line, exit 2."""
    (tmp_path / "mnist.npz").write_bytes(b"not an npz")
    done = cli("all", "--jobs", "2", "--data-dir", str(tmp_path), "--no-save")
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-3000:]
    assert "mnist.npz: not a readable .npz file" in done.stderr and "Traceback" not in done.stderr
    assert "side by side" not in done.stdout  # nothing started
