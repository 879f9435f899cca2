"""PlaNet and Dreamer from pixels: the chunks' time alignment, the acting filter, the latent CEM step, runs on
disk (returns.csv, the three-panel rollout.gif, resume after a crash with D_real intact) and the bad inputs."""

from __future__ import annotations

import csv
import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch
from PIL import Image

import mbrl_course.agents.planet as planet_module
import mbrl_course.runs.runner as runner
from mbrl_course.agents.configs import CEMConfig
from mbrl_course.agents.dreamer import DreamerConfig, make_dreamer
from mbrl_course.agents.latent import (
    LatentFilter,
    WorldModelLearner,
    check_frame,
    check_pixel_env,
    chunk_loss,
)
from mbrl_course.agents.planet import PlaNetConfig, make_planet
from mbrl_course.cli import main
from mbrl_course.data import EpisodeBuffer
from mbrl_course.envs import make_env, make_pixel_env
from mbrl_course.planning.latent import latent_return_objective
from mbrl_course.runs import evaluate, load_run, make_config, train
from mbrl_course.ssm.rssm import RSSM, WorldModelConfig, WorldModelTrainConfig

ENV = "Pendulum-v1"
TINY = WorldModelConfig(action_dim=1, deterministic_size=8, stochastic_size=3, hidden_size=8, depth=2)
RUN = dict(seed=0, tier="smoke", progress=False, pixels=True, env_kwargs={"max_episode_steps": 20})  # 10 agent steps


def _train_config(batch_size: int = 3, chunk_length: int = 4) -> WorldModelTrainConfig:
    return WorldModelTrainConfig(num_steps=1, batch_size=batch_size, chunk_length=chunk_length, progress=False)


def _coded_buffer(lengths: list[int]) -> EpisodeBuffer:
    """Episodes whose frame after step k of episode e is filled with the code v = 10 e + k + 1 (the reset frame
    with 10 e), action u_k = v / 100 and reward g_k = v / 10: the reward is a function of the frame reached."""
    buffer = EpisodeBuffer((64, 64, 3), 1, 200, obs_dtype=torch.uint8)
    for e, n in enumerate(lengths):
        for k in range(n):
            obs, nxt = np.full((64, 64, 3), 10 * e + k, np.uint8), np.full((64, 64, 3), 10 * e + k + 1, np.uint8)
            buffer.add(obs, np.array([(10 * e + k + 1) / 100], np.float32), (10 * e + k + 1) / 10, nxt, False,
                       truncated=k == n - 1)
    return buffer


def test_chunks_pair_each_frame_with_the_action_that_led_to_it_and_the_reward_received_on_reaching_it():
    torch.manual_seed(0)
    learner = WorldModelLearner(TINY, _train_config(), seed=0)
    seen = {}
    original = learner.model.loss

    def spy(frames, actions, rewards, *args, **kwargs):
        seen.update(frames=frames, actions=actions, rewards=rewards)
        return original(frames, actions, rewards, *args, **kwargs)

    learner.model.loss = spy
    step = learner.step(_coded_buffer([7, 9]))
    code = seen["frames"][..., 0, 0, 0].double()  # (B, L): the code of each frame y_t
    assert (seen["frames"] == seen["frames"][..., :1, :1, :1]).all()  # whole frames, not mixed
    assert torch.allclose(seen["rewards"].double() * 10, code)  # r_t belongs to the frame it reached
    assert torch.allclose(seen["actions"][..., 0].double() * 100, code)  # a_{t-1} led to y_t
    assert (code.diff(dim=1) == 1).all() and (code % 10 >= 1).all()  # consecutive, inside one episode

    assert step.posterior.s.shape == (3, 4, 3) and step.mask.all()

def test_the_learner_starts_chunks_from_the_zero_state_and_averages_over_real_steps_only():
    torch.manual_seed(0)
    model = RSSM(TINY)
    config = _train_config(batch_size=1, chunk_length=6)
    buffer = _coded_buffer([4])  # shorter than L: 4 real steps, 2 of padding
    batch = buffer.sample_sequences(1, 6, generator=torch.Generator().manual_seed(0))
    assert batch.mask.tolist() == [[True] * 4 + [False] * 2]
    loss, out = chunk_loss(model, batch, config, torch.Generator().manual_seed(1))
    prefix = model.loss(batch.next_obs[:, :4], batch.action[:, :4], batch.reward[:, :4], config.free_nats,
                        generator=torch.Generator().manual_seed(1))  # the same draws for the first 4 steps
    assert loss.item() == pytest.approx(prefix.loss.item(), rel=1e-5)
    posterior, _ = model.observe(batch.next_obs, batch.action, initial_state=model.initial_state(1),
                                 generator=torch.Generator().manual_seed(1))
    assert torch.allclose(out.posterior.s, posterior.s) and torch.allclose(out.posterior.h, posterior.h)

    full = buffer.sample_sequences(2, 3, generator=torch.Generator().manual_seed(0))
    assert full.mask.all()
    loss, out = chunk_loss(model, full, config, torch.Generator().manual_seed(2))
    reference = model.loss(full.next_obs, full.action, full.reward, config.free_nats,
                           generator=torch.Generator().manual_seed(2))
    assert loss.item() == pytest.approx(reference.loss.item(), rel=1e-6)


def test_the_acting_filter_equals_observe_over_the_same_sequence():
    torch.manual_seed(0)
    model = RSSM(TINY)
    frames = torch.randint(0, 256, (1, 6, 64, 64, 3), dtype=torch.uint8)
    actions = torch.rand(1, 6, 1) * 4 - 2
    actions[:, 0] = 0.0  # no action before the episode's first frame
    posterior, _ = model.observe(frames, actions, generator=torch.Generator().manual_seed(3))
    latent_filter = LatentFilter(model, generator=torch.Generator().manual_seed(3))
    latent_filter.reset()
    for t in range(6):
        state = latent_filter.observe(frames[0, t].numpy(), None if t == 0 else actions[0, t].numpy())
        assert torch.allclose(state.h, posterior.h[:, t], atol=1e-6)
        assert torch.allclose(state.s, posterior.s[:, t], atol=1e-6)
    latent_filter.reset()  # a new episode starts from zeros again
    again = latent_filter.observe(frames[0, 0].numpy())
    first, _ = model.observe_step(model.initial_state(1), torch.zeros(1, 1), frames[:, 0],
                                  generator=torch.Generator().manual_seed(3))
    assert torch.allclose(again.h, first.h)


def test_planet_acts_with_the_first_action_of_cems_plan_over_the_latent_return(monkeypatch):
    env = make_pixel_env(ENV, seed=0)
    config = PlaNetConfig.for_budget("smoke")
    agent = make_planet(env, ENV, config, seed=0)
    calls = []

    def spy(model, state, **kwargs):
        calls.append((model, state))
        return latent_return_objective(model, state, **kwargs)

    monkeypatch.setattr(planet_module, "latent_return_objective", spy)
    frame, _ = env.reset(seed=0)
    evaluation = agent.evaluation_actor()
    evaluation.reset()
    acting, planning = agent.generator.get_state(), agent.planner.generator.get_state()
    action = evaluation.act(frame)
    assert calls and calls[0][0] is agent.world_model.model and calls[0][1] is agent.filter.state

    # the oracle: the same filter update and a fresh CEM with the same draws
    generator = torch.Generator().set_state(acting)
    state = LatentFilter(agent.world_model.model, generator=generator).observe(frame)
    cem = config.planner.build(env.action_space.low, env.action_space.high, seed=0)
    cem.generator.set_state(planning)
    plan = cem.plan(latent_return_objective(agent.world_model.model, state, generator=generator))
    assert action.shape == (1,) and action.dtype == np.float32
    assert np.allclose(action, plan[0].numpy())

    agent.actor.exploration_std = 100.0  # the noise pushes the action to the bounds, never beyond
    noisy = [agent.act(frame) for _ in range(5)]
    assert all(-2.0 <= a[0] <= 2.0 for a in noisy) and any(abs(a[0]) == 2.0 for a in noisy)


def test_bad_inputs_give_clear_errors():
    with pytest.raises(ValueError, match=r"frame: expected a uint8 image of shape \(64, 64, 3\).*got shape \(3,\)"):
        check_frame("frame", np.zeros(3, np.float32))
    with pytest.raises(TypeError, match="frame: expected a uint8 image"):
        check_frame("frame", [0, 1])
    with pytest.raises(ValueError, match="env: expected observations that are uint8 images.*make_pixel_env"):
        check_pixel_env(make_env(ENV))
    with pytest.raises(ValueError, match="env: expected observations"):
        make_planet(make_env(ENV), ENV, PlaNetConfig.for_budget("smoke"))
    with pytest.raises(ValueError, match="planner.horizon: expected at most .*chunk_length = 6.*got 7"):
        dataclasses.replace(PlaNetConfig.for_budget("smoke"), planner=CEMConfig(horizon=7))
    with pytest.raises(ValueError, match="planner.horizon"):
        make_config("planet", tier="smoke", overrides={"planner.horizon": "50"})
    # an RSSM checkpoint built for another observation size
    vectors = WorldModelLearner(dataclasses.replace(TINY, obs_dim=3), _train_config())
    pixels = WorldModelLearner(TINY, _train_config())
    with pytest.raises(ValueError, match="checkpoint: its RSSM was built for observations that are vectors of 3, "
                                         "this agent's for 64×64×3 frames"):
        pixels.load_state_dict(vectors.state_dict())
    with pytest.raises(ValueError, match="checkpoint: its RSSM was built with other sizes.*depth"):
        pixels.load_state_dict(WorldModelLearner(dataclasses.replace(TINY, depth=4), _train_config()).state_dict())
    with pytest.raises(TypeError, match="buffer: expected an EpisodeBuffer"):
        make_planet(make_pixel_env(ENV), ENV, PlaNetConfig.for_budget("smoke")).update(object())


@pytest.mark.parametrize("args, needle", [
    (["train", "pets", "--pixels"], "pets learns from the env's state vector"),
    (["train", "planet"], "planet learns from 64×64×3 frames; pass --pixels"),
    (["train", "planet", "--pixels", "--env", "InvertedPendulum-v5"], "Pendulum-v1"),
    (["train", "planet", "--pixels", "--set", "planner.horizon=99"], "planner.horizon: expected at most"),
])
def test_the_command_line_refuses_pixels_where_they_do_not_fit(args, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("MBRL_COURSE_BUDGET", "smoke")
    with pytest.raises(SystemExit) as exc:
        main([*args, "--out", str(tmp_path / "run"), "--quiet"])
    assert exc.value.code == 2
    assert needle in capsys.readouterr().err


def _rows(path) -> list[dict[str, str]]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("algo", ["planet", "dreamer"])
def test_a_pixel_run_writes_returns_and_a_three_panel_gif(algo, tmp_path, monkeypatch):
    monkeypatch.setenv("MBRL_COURSE_BUDGET", "smoke")
    out = tmp_path / algo
    code = main(["train", algo, "--env", ENV, "--pixels", "--episodes", "2", "--max-episode-steps", "20",
                 "--out", str(out), "--quiet"])
    assert code == 0
    rows = _rows(out / "returns.csv")
    assert [int(r["env_steps"]) for r in rows] == [10, 20]  # 20 env steps at action repeat 2
    gif = Image.open(out / "rollout.gif")
    assert gif.size == (3 * 64 + 4, 64) and gif.n_frames == 11  # the reset frame and 10 more, three panels
    _, agent, buffer, ckpt = load_run(out)
    assert ckpt["pixels"] and buffer.obs_dtype == torch.uint8 and len(buffer) == 20
    assert len(evaluate(out, episodes=1, progress=False)) == 1  # the noiseless actor on the pixel env


class CrashAt(gym.Wrapper):
    """Raise KeyboardInterrupt (a crash) at the ``at``-th step; record every transition's frames before it."""

    def __init__(self, env: gym.Env, at: int):
        super().__init__(env)
        self.at, self.calls, self.seen = at, 0, []

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.obs = obs
        return obs, info

    def step(self, action):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        out = self.env.step(action)
        self.seen.append((self.obs, out[0]))
        self.obs = out[0]
        return out


@pytest.mark.parametrize("algo", ["planet", "dreamer"])
def test_a_crashed_pixel_run_resumes_with_d_real_intact(algo, tmp_path, monkeypatch):
    made = []

    def crashing(env_id, **kwargs):
        made.append(CrashAt(make_pixel_env(env_id, **kwargs), at=25))  # in the third episode of 10 steps
        return made[-1]

    monkeypatch.setattr(runner, "make_pixel_env", crashing)
    with pytest.raises(KeyboardInterrupt):
        train(algo, ENV, episodes=4, out=tmp_path, record=False, **RUN)
    seen = made[0].seen
    _, _, buffer, ckpt = load_run(tmp_path)
    assert ckpt["episodes_done"] == 2 and len(buffer) == len(seen) == 24
    stored = buffer.all()
    assert torch.equal(stored.obs, torch.as_tensor(np.stack([o for o, _ in seen])))
    assert torch.equal(stored.next_obs, torch.as_tensor(np.stack([n for _, n in seen])))

    monkeypatch.setattr(runner, "make_pixel_env", make_pixel_env)
    rows = train(algo, ENV, episodes=4, out=tmp_path, resume=True, record=False, **RUN)
    assert [r["episode"] for r in rows] == [0, 1, 2, 3]
    _, _, resumed, _ = load_run(tmp_path)
    assert len(resumed) == 24 + 20 and resumed.episodes == 5  # the crashed episode's 4 steps kept, 2 more run
    again = resumed.all()
    assert torch.equal(again.obs[:24], stored.obs) and torch.equal(again.reward[:24], stored.reward)


def test_dreamer_trains_the_world_model_then_the_actor_critic_from_its_posteriors_every_c_steps():
    env = make_pixel_env(ENV, seed=0)
    config = dataclasses.replace(DreamerConfig.for_budget("smoke"), train_every=3)
    agent = make_dreamer(env, ENV, config, seed=0)
    learner = agent.learner
    assert agent.model is None and not learner.episodic
    buffer = _coded_buffer([7, 4])  # the second episode is shorter than L = 6: padded chunks
    starts, steps = [], []
    world_step, ac_update = learner.world_model.step, learner.actor_critic.update

    def spy_step(buf):
        steps.append(world_step(buf))
        return steps[-1]

    def spy_update(model, start_state):
        assert model is learner.world_model.model
        starts.append(start_state)
        return ac_update(model, start_state)

    learner.world_model.step, learner.actor_critic.update = spy_step, spy_update
    results = [learner.policy_update(None, buffer) for _ in range(7)]
    assert [r is not None for r in results] == [False, False, True, False, False, True, False]
    assert len(steps) == len(starts) == 2 and learner.world_model.steps == 2
    for step, start in zip(steps, starts):  # imagination starts from the real steps' posteriors, detached
        assert torch.equal(start.s, step.posterior.s[step.mask]) and not start.s.requires_grad
    assert set(results[2]) >= {"model_loss", "actor_loss", "value_loss"}
    learner.check_finite()
    learner.actor_critic.nonfinite.fill_(True)
    with pytest.raises(FloatingPointError, match="actor"):
        learner.check_finite()

    frame, _ = env.reset(seed=0)
    evaluation = agent.evaluation_actor()
    evaluation.reset()
    acting = learner.generator.get_state()
    action = evaluation.act(frame)  # the actor's mode on the filtered state
    state = LatentFilter(learner.world_model.model, generator=torch.Generator().set_state(acting)).observe(frame)
    assert np.allclose(action, learner.actor_critic.act(state.features, deterministic=True)[0].numpy())
    assert all(-2.0 <= agent.act(frame)[0] <= 2.0 for _ in range(5))


def test_dreamer_refuses_an_imagination_horizon_longer_than_the_chunks():
    smoke = DreamerConfig.for_budget("smoke")
    with pytest.raises(ValueError, match="actor_critic.horizon: expected at most .*chunk_length = 6.*got 7"):
        dataclasses.replace(smoke, actor_critic=dataclasses.replace(smoke.actor_critic, horizon=7))
    with pytest.raises(ValueError, match="env: expected observations"):
        make_dreamer(make_env(ENV), ENV, smoke)


def test_the_contrastive_world_model_trains_through_the_same_learner():
    torch.manual_seed(0)
    learner = WorldModelLearner(dataclasses.replace(TINY, representation="contrastive"), _train_config(2, 6))
    buffer = _coded_buffer([9, 4])  # full and padded chunks
    batch = buffer.sample_sequences(4, 6, generator=torch.Generator().manual_seed(0))
    assert not batch.mask.all()
    loss, out = chunk_loss(learner.model, batch, learner.config, torch.Generator().manual_seed(1))
    mask = batch.mask
    expected = (out.kl.clamp_min(3.0) - out.reconstruction - out.reward - out.contrastive)[mask].mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    losses = learner.train(buffer, 3)
    assert len(losses) == 3 and all(np.isfinite(losses))
