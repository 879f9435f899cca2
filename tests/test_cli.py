"""The command line end to end on a temporary directory."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest

from mbrl_course.cli import main


def run_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, MBRL_COURSE_BUDGET="smoke", TQDM_DISABLE="1")
    return subprocess.run([sys.executable, "-m", "mbrl_course.cli", *args], capture_output=True, text=True,
                          env=env, check=check, timeout=600)


@pytest.mark.slow
def test_train_evaluate_compare_end_to_end(tmp_path):
    out = tmp_path / "pets"
    run_cli("train", "pets", "--env", "Pendulum-v1", "--episodes", "2", "--seed", "0", "--device", "cpu",
            "--out", str(out), "--set", "planner.horizon=5")
    for name in ("returns.csv", "learning_curve.png", "checkpoint.pt", "rollout.gif"):
        assert (out / name).stat().st_size > 0, name
    with open(out / "returns.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["episode"] for r in rows] == ["0", "1"]
    assert [int(r["env_steps"]) for r in rows] == [200, 400]
    assert all(float(r["wall_s"]) > 0 for r in rows)
    assert -2000 < float(rows[-1]["return"]) <= 0

    result = run_cli("evaluate", str(out), "--episodes", "1")
    assert "return:" in result.stdout

    result = run_cli("train", "pets", "--env", "Pendulum-v1", "--episodes", "3", "--out", str(out), "--resume",
                     "--no-render")
    with open(out / "returns.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 3

    compare = tmp_path / "compare.png"
    run_cli("compare", str(out), str(out), "--out", str(compare))
    assert compare.stat().st_size > 0


@pytest.mark.parametrize(
    "args, needle",
    [
        (["train", "ppo"], "invalid choice: 'ppo'"),
        (["train", "pets", "--env", "CartPole-v1"], "invalid choice: 'CartPole-v1'"),
        (["train", "pets", "--episodes", "0"], "--episodes"),
        (["train", "pets", "--set", "horizon"], "KEY=VALUE"),
        (["train", "mbpo", "--set", "ensemble_size=7"], "it moved to 'model.ensemble_size'"),
        (["train", "mbpo", "--set", "learner.lr=fast"], "learner.lr expects a number"),
        (["evaluate", "/nonexistent/run"], "checkpoint.pt"),
        (["train", "pets", "--pixels"], "--pixels works with planet, dreamer"),
        (["train", "dreamer"], "dreamer learns from 64×64×3 frames; pass --pixels"),
    ],
)
def test_bad_arguments_give_clear_errors(args, needle, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    assert needle in capsys.readouterr().err


def test_budget_command(capsys, monkeypatch):
    monkeypatch.setenv("MBRL_COURSE_BUDGET", "full")
    assert main(["budget"]) == 0
    assert capsys.readouterr().out.strip() == "full"
