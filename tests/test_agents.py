"""The MPC loop, PETS and MBMF: D_real grows, the model is refit, the agents beat random actions."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from mbrl_course.agents import (
    MBMFConfig,
    PETSConfig,
    RandomAgent,
    make_mbmf,
    make_pets,
    mpc_loop,
    run_episode,
)
from mbrl_course.data import ReplayBuffer
from mbrl_course.envs import make_env
from mbrl_course.runs import evaluate, train

ENV = "Pendulum-v1"


class CountingAgent(RandomAgent):
    def __init__(self, action_space):
        super().__init__(action_space, seed=1)
        self.updates, self.sizes = 0, []

    def update(self, buffer):
        self.updates += 1
        self.sizes.append(len(buffer))


def test_mpc_loop_grows_d_real_and_refits_after_every_episode():
    env = make_env(ENV, max_episode_steps=15)
    agent = CountingAgent(env.action_space)
    buffer = ReplayBuffer(3, 1)
    results = mpc_loop(env, agent, buffer, episodes=3, seed_episodes=1, seed=0)
    assert [r.steps for r in results] == [15, 15, 15]
    assert agent.updates == 3 and agent.sizes == [15, 30, 45]
    batch = buffer.all()
    # D_real holds (i, u, g_i, i'): consecutive transitions chain within an episode
    assert torch.allclose(batch.next_obs[:14], batch.obs[1:15])


def random_returns(seeds_from: int, episodes: range, steps: int) -> float:
    env = make_env(ENV, max_episode_steps=steps)
    agent = RandomAgent(env.action_space, seed=123)
    return float(np.mean([run_episode(env, agent, None, episode=e, seed=seeds_from).ret for e in episodes]))


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["pets", "mbmf"])
def test_agent_beats_random_policy_on_pendulum(algo, tmp_path):
    if algo == "pets":
        overrides = {"model.ensemble_size": 3, "model.hidden_size": 64, "model.num_layers": 3,
                     "planner.horizon": 15, "planner.population": 100, "planner.elites": 10,
                     "planner.iterations": 3, "particles": 4, "fit.epochs": 30}
    else:
        overrides = {"model.hidden_sizes": "128,128", "planner.horizon": 15, "planner.population": 400,
                     "fit.epochs": 40}
    episodes, steps = 5, 150
    rows = train(algo, ENV, episodes=episodes, out=tmp_path, seed=0, tier="smoke", overrides=overrides,
                 record=False, progress=False, env_kwargs={"max_episode_steps": steps})
    scored = range(3, 5)
    learned = float(np.mean([rows[e]["return"] for e in scored]))
    baseline = random_returns(0, scored, steps)
    # random actions score about -900 on 150 steps; a working controller swings up or holds the pole
    assert learned > baseline + 300, (learned, baseline)


def test_same_seed_same_run(tmp_path):
    kw = dict(episodes=2, seed=3, tier="smoke", record=False, progress=False, env_kwargs={"max_episode_steps": 20})
    a = train("pets", ENV, out=tmp_path / "a", **kw)
    b = train("pets", ENV, out=tmp_path / "b", **kw)
    assert [r["return"] for r in a] == [r["return"] for r in b]


def test_resume_continues_the_run(tmp_path):
    kw = dict(seed=0, tier="smoke", record=False, progress=False, env_kwargs={"max_episode_steps": 20})
    full = train("mbmf", ENV, episodes=3, out=tmp_path / "full", **kw)
    train("mbmf", ENV, episodes=2, out=tmp_path / "part", **kw)
    resumed = train("mbmf", ENV, episodes=3, out=tmp_path / "part", resume=True, **kw)
    assert len(resumed) == 3
    assert [r["return"] for r in resumed] == pytest.approx([r["return"] for r in full], abs=1e-3)
    with open(tmp_path / "part" / "returns.csv") as fh:
        assert list(csv.DictReader(fh).fieldnames) == ["episode", "return", "env_steps", "wall_s"]
    assert len(evaluate(tmp_path / "part", episodes=1, progress=False)) == 1


def test_ctrl_c_keeps_checkpoint_and_data(tmp_path, monkeypatch):
    kw = dict(seed=0, tier="smoke", record=False, progress=False, env_kwargs={"max_episode_steps": 10})
    import mbrl_course.runs.runner as runner

    real_loop = runner.mpc_loop

    def interrupted_loop(env, agent, buffer, **kwargs):
        calls = {"n": 0}
        step = env.step

        def step_then_interrupt(action):
            calls["n"] += 1
            if calls["n"] == 15:  # in the middle of the second episode
                raise KeyboardInterrupt
            return step(action)

        env.step = step_then_interrupt
        return real_loop(env, agent, buffer, **kwargs)

    monkeypatch.setattr(runner, "mpc_loop", interrupted_loop)
    with pytest.raises(KeyboardInterrupt):
        train("pets", ENV, episodes=3, out=tmp_path, **kw)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert ckpt["episodes_done"] == 1 and len(ckpt["returns"]) == 1
    kept = ReplayBuffer(3, 1)
    kept.load_state_dict(ckpt["buffer"])
    assert len(kept) == 14  # the finished episode's 10 transitions and the 4 of the interrupted one
    monkeypatch.setattr(runner, "mpc_loop", real_loop)
    rows = train("pets", ENV, episodes=3, out=tmp_path, resume=True, **kw)
    assert [r["episode"] for r in rows] == [0, 1, 2]


def test_diverging_fit_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    kw = dict(seed=0, tier="smoke", record=False, progress=False, env_kwargs={"max_episode_steps": 10})
    import mbrl_course.agents.mpc as mpc

    calls = {"n": 0}
    real_fit = mpc.fit_model

    def fit_that_diverges_the_second_time(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise FloatingPointError("model loss became NaN")
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(mpc, "fit_model", fit_that_diverges_the_second_time)
    with pytest.raises(FloatingPointError, match="last good checkpoint"):
        train("pets", ENV, episodes=3, out=tmp_path, **kw)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert ckpt["episodes_done"] == 1


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(algo="muzero"), "algo"),
        (dict(episodes=0), "episodes"),
        (dict(episodes=-3), "episodes"),
        (dict(env_id="Pendulum-v9"), "Pendulum-v9"),
        (dict(overrides={"horizn": 3}), "horizn"),
        (dict(overrides={"planner.horizon": "abc"}), "planner.horizon"),
        (dict(overrides={"horizon": 3}), "it moved to 'planner.horizon'"),
    ],
)
def test_bad_arguments_are_named(tmp_path, kwargs, match):
    args = dict(algo="pets", env_id=ENV, episodes=1, overrides=None) | kwargs
    with pytest.raises(ValueError, match=match):
        train(args["algo"], args["env_id"], episodes=args["episodes"], out=tmp_path, tier="smoke",
              overrides=args["overrides"], record=False, progress=False)


def test_existing_run_is_not_overwritten_silently(tmp_path):
    kw = dict(seed=0, tier="smoke", record=False, progress=False, env_kwargs={"max_episode_steps": 5})
    train("mbmf", ENV, episodes=1, out=tmp_path, **kw)
    with pytest.raises(FileExistsError, match="resume"):
        train("mbmf", ENV, episodes=1, out=tmp_path, **kw)


def test_cuda_request_without_gpu_is_refused(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ValueError, match="device"):
        train("pets", ENV, episodes=1, out=tmp_path, device="cuda", tier="smoke", progress=False)


@pytest.mark.gpu
@pytest.mark.parametrize("make, config", [(make_pets, PETSConfig.for_budget("smoke")),
                                          (make_mbmf, MBMFConfig.for_budget("smoke"))])
def test_agent_step_on_cuda(make, config):
    env = make_env(ENV, max_episode_steps=5)
    agent = make(env, ENV, config, device="cuda", seed=0)
    buffer = ReplayBuffer(3, 1, device="cuda")
    mpc_loop(env, agent, buffer, episodes=2, seed_episodes=1, seed=0)
    assert next(agent.model.parameters()).device.type == "cuda"
    action = agent.act(env.reset(seed=0)[0])
    assert action.shape == (1,) and np.all(np.abs(action) <= 2.0)
