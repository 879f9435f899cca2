"""Runs on disk: recording never stops training, every agent checkpoints alike, the core writes nothing."""

from __future__ import annotations

import re
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import mbrl_course
import mbrl_course.runs.runner as runner
from mbrl_course.agents import PETSConfig, make_pets
from mbrl_course.data import ReplayBuffer
from mbrl_course.envs import make_env
from mbrl_course.runs import CHECKPOINT_VERSION, evaluate, load_run, make_config, train

ENV = "Pendulum-v1"
SMOKE = dict(seed=0, progress=False, env_kwargs={"max_episode_steps": 10})


class BrokenRender(gym.Wrapper):
    """An env that renders ``good`` frames, then raises on every ``render()`` (a GL context lost midway)."""

    def __init__(self, env: gym.Env, good: int):
        super().__init__(env)
        self.good, self.calls = good, 0

    @property
    def render_mode(self):
        return "rgb_array"

    def render(self):
        self.calls += 1
        if self.calls > self.good:
            raise RuntimeError("GL context lost")
        return np.zeros((8, 8, 3), dtype=np.uint8)


@pytest.mark.parametrize("good", [0, 3])
def test_a_render_that_fails_midway_warns_once_and_training_goes_on(tmp_path, monkeypatch, good):
    monkeypatch.setenv("MBRL_COURSE_BUDGET", "smoke")
    made = []

    def make_broken_env(env_id, **kwargs):
        made.append(BrokenRender(make_env(env_id, **kwargs), good))
        return made[-1]

    monkeypatch.setattr(runner, "make_env", make_broken_env)
    with pytest.warns(UserWarning, match="render") as caught:
        rows = train("pets", ENV, episodes=2, out=tmp_path, record=True, **SMOKE)
    assert len([w for w in caught if "render" in str(w.message)]) == 1
    assert made[0].calls == good + 1  # after the failure, the env is asked no more
    assert [r["episode"] for r in rows] == [0, 1]
    assert (tmp_path / "checkpoint.pt").exists() and (tmp_path / "returns.csv").exists()
    assert not (tmp_path / "rollout.gif").exists()


def test_an_env_that_cannot_render_trains_without_recording(tmp_path, monkeypatch):
    monkeypatch.setenv("MBRL_COURSE_BUDGET", "smoke")
    made = []

    def make_env_without_gl(env_id, render_mode=None, **kwargs):  # make_env's answer when GL cannot load
        env = make_env(env_id, **kwargs)
        env.render = lambda: pytest.fail("render() called on an env with render_mode None")
        made.append(env)
        return env

    monkeypatch.setattr(runner, "make_env", make_env_without_gl)
    rows = train("pets", ENV, episodes=2, out=tmp_path, record=True, **SMOKE)
    assert len(rows) == 2 and made[0].render_mode is None
    assert not (tmp_path / "rollout.gif").exists()


def test_mpc_agents_checkpoint_their_generators_like_every_agent():
    env = make_env(ENV, max_episode_steps=20)
    config = PETSConfig.for_budget("smoke")
    trained, fresh = make_pets(env, ENV, config, seed=0), make_pets(env, ENV, config, seed=1)
    buffer = ReplayBuffer(3, 1)
    obs, _ = env.reset(seed=0)
    for _ in range(20):
        action = env.action_space.sample()
        next_obs, reward, terminated, _, _ = env.step(action)
        buffer.add(obs, action, float(reward), next_obs, terminated)
        obs = next_obs
    trained.update(buffer)
    trained.act(obs)  # the generators have moved on from their seeds
    fresh.load_state_dict(trained.state_dict())
    assert fresh.evaluation_actor() is fresh
    trained.reset(), fresh.reset()  # a checkpoint falls between episodes: no warm-start plan to carry
    for _ in range(3):  # the same model, the same noise, the same planner samples: the same actions
        assert np.array_equal(fresh.act(obs), trained.act(obs))


def test_load_run_gives_the_composed_config_back_and_refuses_old_checkpoints(tmp_path):
    overrides = {"planner.horizon": 4, "fit.epochs": 2}
    train("pets", ENV, episodes=1, out=tmp_path, tier="smoke", overrides=overrides, record=False, **SMOKE)
    env, agent, buffer, ckpt = load_run(tmp_path)
    assert ckpt["config"] == make_config("pets", tier="smoke", overrides=overrides)
    assert agent.planner.horizon == 4 and len(buffer) == 10 and env.render_mode is None
    assert len(evaluate(tmp_path, episodes=1, progress=False)) == 1
    stored = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert stored["version"] == CHECKPOINT_VERSION and stored["config"]["planner"]["horizon"] == 4
    stored["version"] = 1
    torch.save(stored, tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError, match="version 1.*train the run again"):
        load_run(tmp_path)


def test_names_of_runs_say_where_they_moved():
    with pytest.raises(ImportError, match="from mbrl_course.runs import train"):
        from mbrl_course.agents import train  # noqa: F401


PACKAGE = Path(mbrl_course.__file__).parent


@pytest.mark.parametrize("layer", ["agents", "models", "planning", "rl", "envs", "filters"])
def test_the_core_never_imports_runs_viz_cli_or_grading(layer):
    upward = re.compile(r"^\s*(from|import)\s+mbrl_course(\.(runs|viz|cli|grading)\b|\s+import\s+.*\b(runs|viz|cli|grading)\b)",
                        re.MULTILINE)
    for path in (PACKAGE / layer).rglob("*.py"):
        assert not upward.search(path.read_text()), path


def test_the_runs_layer_treats_every_agent_alike():
    source = (PACKAGE / "runs" / "runner.py").read_text()
    assert not re.search(r"isinstance\(agent|hasattr\((agent|config)", source)
