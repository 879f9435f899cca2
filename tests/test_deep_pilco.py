"""Deep PILCO: the dropout model's particles, moment matching, both policy gradients, the agent end to end."""

from __future__ import annotations

import csv
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mbrl_course.agents import DeepPILCOConfig, DeepPILCOLearner, make_deep_pilco
from mbrl_course.agents.deep_pilco import (
    deep_pilco_loop_kwargs,
    episode_starts,
    particle_objective,
    start_distribution,
)
from mbrl_course.cli import main
from mbrl_course.data import ReplayBuffer
from mbrl_course.envs import make_env
from mbrl_course.models import DropoutDynamics, DynamicsModel, moment_match_resample, rollout
from mbrl_course.models.imagination import _standard_normal
from mbrl_course.rl.controllers import RBFController
from mbrl_course.runs import make_config

F64 = torch.float64
ENV = "mbrl_course/CartPoleSwingUp-v0"


def _model(obs_dim=3, act_dim=1, hidden=(16, 16), dropout=0.3, seed=0) -> DropoutDynamics:
    """A small untrained dropout network with non-trivial normalisers and output noise."""
    torch.manual_seed(seed)
    model = DropoutDynamics(obs_dim, act_dim, hidden_sizes=hidden, dropout=dropout, init_noise_std=0.2)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        model.input_normalizer.mean.copy_(torch.randn(obs_dim + act_dim, generator=g, dtype=F64))
        model.input_normalizer.std.copy_(torch.rand(obs_dim + act_dim, generator=g, dtype=F64) + 0.5)
        model.output_normalizer.mean.copy_(0.1 * torch.randn(obs_dim, generator=g, dtype=F64))
        model.output_normalizer.std.copy_(0.2 * torch.rand(obs_dim, generator=g, dtype=F64) + 0.1)
    return model


def _masked_mean(model: DropoutDynamics, obs, action, masks):
    """The masked network written out with F.linear: an oracle independent of the model's forward."""
    h = (torch.cat([obs, action], -1) - model.input_normalizer.mean) / model.input_normalizer.std
    for layer, mask in zip(model.layers[:-1], masks):
        h = torch.relu(F.linear(h, layer.weight, layer.bias)) * mask
    delta = F.linear(h, model.layers[-1].weight, model.layers[-1].bias)
    return obs + model.output_normalizer.mean + model.output_normalizer.std * delta


def test_each_row_keeps_its_mask_over_the_whole_horizon_and_rows_differ():
    model = _model()
    assert isinstance(model, DynamicsModel)
    rows, horizon = 6, 5
    prop = model.propagator(generator=torch.Generator().manual_seed(3), moment_matching=False, output_noise=False)
    out = rollout(model, torch.zeros(rows, 3, dtype=F64), policy=lambda obs: obs[:, :1].sin(), horizon=horizon,
                  reward_fn=lambda o, a, n: n[:, 0], propagator=prop)
    keep = 1 - model.dropout
    assert all(set(m.unique().tolist()) <= {0.0, 1 / keep} for m in prop.masks)
    for t in range(horizon):  # every step of row r used the same mask z^r: the oracle with the stored masks
        torch.testing.assert_close(out.obs[t + 1], _masked_mean(model, out.obs[t], out.action[t], prop.masks))
    first = out.obs[1]  # identical starts and actions, different masks: different next states
    assert torch.cdist(first, first)[~torch.eye(rows, dtype=torch.bool)].min() > 1e-6
    # the share of dropped units is p (4 standard errors over many rows)
    masks = model.draw_masks((4000,), torch.Generator().manual_seed(0))
    dropped = torch.cat([(m == 0).flatten() for m in masks]).double()
    assert abs(float(dropped.mean()) - model.dropout) < 4 * math.sqrt(model.dropout * keep / dropped.numel())


def test_a_noisy_step_is_a_deterministic_function_of_state_mask_and_noise():
    model = _model()
    gen = torch.Generator().manual_seed(7)
    prop = model.propagator(generator=gen, moment_matching=False)
    obs, action = torch.randn(5, 3, dtype=F64), torch.randn(5, 1, dtype=F64)
    prop.layout(5)
    before = gen.get_state()
    first, _ = prop.step(obs, action)
    gen.set_state(before)
    again, _ = prop.step(obs, action)  # the same masks, the same noise: the same next states
    torch.testing.assert_close(again, first, rtol=0, atol=0)
    gen.set_state(before)
    noise = _standard_normal((5, 3), gen, obs)  # the ε the step drew
    expected = _masked_mean(model, obs, action, prop.masks) + model.output_std() * noise
    torch.testing.assert_close(first, expected)
    third, _ = prop.step(obs, action)  # fresh noise, same masks: a different draw
    assert not torch.allclose(third, first)
    with pytest.raises(ValueError, match="holds masks for 5 rows, got 4"):
        prop.step(obs[:4], action[:4])


def test_moment_matching_resample_keeps_the_particles_mean_and_covariance():
    gen = torch.Generator().manual_seed(0)
    particles = torch.randn(7, 3, generator=gen, dtype=F64) ** 3 + torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    mean, cov = particles.mean(0), torch.cov(particles.T)  # unbiased: 1/(R−1)
    n_draws = 40_000
    noise = torch.randn(n_draws, 7, 7, generator=gen, dtype=F64)
    draws = moment_match_resample(particles.expand(n_draws, 7, 3), noise).reshape(-1, 3)
    n = draws.shape[0]
    se_mean = (cov.diagonal() / n).sqrt()
    assert bool(((draws.mean(0) - mean).abs() < 4 * se_mean).all())
    se_cov = ((cov.diagonal()[:, None] * cov.diagonal()[None, :] + cov**2) / n).sqrt()
    assert bool(((torch.cov(draws.T) - cov).abs() < 4 * se_cov).all())
    # the resample passes gradients to the particles: finite differences agree
    fixed = torch.randn(4, 7, 7, generator=gen, dtype=F64)
    assert torch.autograd.gradcheck(lambda x: moment_match_resample(x, fixed), particles.expand(4, 7, 3).clone()
                                    .requires_grad_())
    with pytest.raises(ValueError, match="at least 2 particles"):
        moment_match_resample(particles[:1], noise[0, :1, :1])


def test_the_propagator_refits_its_rows_after_every_step():
    model = _model()
    gen = torch.Generator().manual_seed(1)
    prop = model.propagator(generator=gen)  # moment matching on (the default)
    obs, action = torch.randn(6, 3, dtype=F64), torch.randn(6, 1, dtype=F64)
    prop.layout(6)
    before = gen.get_state()
    out, _ = prop.step(obs, action)
    gen.set_state(before)
    noisy = _masked_mean(model, obs, action, prop.masks) + model.output_std() * _standard_normal((6, 3), gen, obs)
    torch.testing.assert_close(out, moment_match_resample(noisy, _standard_normal((6, 6), gen, obs)))
    with pytest.raises(ValueError, match="at least 2 rows"):
        model.propagator().layout(1)


def test_the_predictive_distribution_is_the_mixture_over_masks():
    model = _model()
    obs, action = torch.randn(4, 3, dtype=F64), torch.randn(4, 1, dtype=F64)
    dist = model.next_state_distribution(obs, action, masks=16, generator=torch.Generator().manual_seed(2))
    masks = model.draw_masks((16, 1), torch.Generator().manual_seed(2))
    means = torch.stack([_masked_mean(model, obs, action, [m[k] for m in masks]) for k in range(16)])  # (S, B, O)
    torch.testing.assert_close(dist.mean, means.mean(0))
    torch.testing.assert_close(dist.variance, model.output_std() ** 2 + means.var(0, correction=0))
    assert dist.batch_shape == (4,) and dist.event_shape == (3,)


def test_fit_learns_the_state_change_and_the_output_noise():
    gen = torch.Generator().manual_seed(0)
    obs, action = torch.randn(1500, 2, generator=gen, dtype=F64), torch.rand(1500, 1, generator=gen, dtype=F64)
    true_std = torch.tensor([0.05, 0.2], dtype=F64)
    next_obs = obs + 0.5 * action + 0.1 * obs.flip(-1) + true_std * torch.randn(1500, 2, generator=gen, dtype=F64)
    buffer = ReplayBuffer(2, 1, dtype=F64)
    buffer.add_batch(obs, action, torch.zeros(1500), next_obs, torch.zeros(1500))
    torch.manual_seed(0)
    model = DropoutDynamics(2, 1, hidden_sizes=(32, 32), dropout=0.05)
    report = model.fit(buffer, generator=torch.Generator().manual_seed(1), epochs=40, batch_size=64, lr=3e-3,
                       weight_decay=1e-5, patience=40)
    assert report.train_loss[-1] < report.train_loss[0]
    # the learned noise is the data's (dropout's spread adds a little: within 25 %)
    torch.testing.assert_close(model.output_std(), true_std, rtol=0.25, atol=0)


def _policy(obs_dim=3, bound=2.0, seed=0) -> RBFController:
    policy = RBFController(obs_dim, 1, bound, num_basis=4)
    policy.initialise(torch.zeros(obs_dim), torch.ones(obs_dim), torch.Generator().manual_seed(seed))
    return policy


def _smooth_reward(obs, action, next_obs):
    return torch.exp(-0.5 * next_obs.square().sum(-1)) - 0.05 * action.square().sum(-1)


def test_the_reparameterised_gradient_matches_finite_differences_with_the_noise_fixed():
    model, policy = _model(hidden=(12,)), _policy()
    start = torch.randn(6, 3, generator=torch.Generator().manual_seed(4), dtype=F64)

    def objective():  # the same seed: the same masks, noises, resamples and exploration every call
        return particle_objective(model, policy, start, horizon=4, reward_fn=_smooth_reward, exploration_std=0.3,
                                  moment_matching=True, generator=torch.Generator().manual_seed(5))

    params = list(policy.parameters())
    grads = torch.autograd.grad(objective().loss, params)
    eps = 1e-6
    with torch.no_grad():
        for p, g in zip(params, grads):
            flat = p.view(-1)
            for i in range(flat.numel()):
                flat[i] += eps
                up = float(objective().loss)
                flat[i] -= 2 * eps
                down = float(objective().loss)
                flat[i] += eps
                assert float(g.view(-1)[i]) == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-8)
    assert sum(float(g.abs().sum()) for g in grads) > 1e-3  # not vacuous


def test_reinforce_is_unbiased_against_the_reparameterised_gradient():
    model, policy = _model(obs_dim=2, hidden=(8,), dropout=0.3), _policy(obs_dim=2)
    start = torch.tensor([[0.5, -0.3]], dtype=F64).expand(50, 2)
    params = list(policy.parameters())

    def estimates(gradient: str, seed: int) -> torch.Tensor:  # 200 independent estimates, each from K = 50
        gen = torch.Generator().manual_seed(seed)
        rows = []
        for _ in range(200):
            loss = particle_objective(model, policy, start, horizon=3, reward_fn=_smooth_reward, gradient=gradient,
                                      exploration_std=0.5, moment_matching=False, generator=gen).loss
            rows.append(torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)]))
        return torch.stack(rows)

    reparam, reinforce = estimates("reparam", 0), estimates("reinforce", 1)
    diff = reparam.mean(0) - reinforce.mean(0)
    se = (reparam.var(0) / reparam.shape[0] + reinforce.var(0) / reinforce.shape[0]).sqrt()
    assert bool((diff.abs() < 4 * se + 1e-12).all()), (diff / se).tolist()
    assert bool((reparam.mean(0).abs() > 6 * se).any())  # the gradient is clearly nonzero: the check has power
    assert float(reinforce.var(0).sum()) > float(reparam.var(0).sum())  # and it pays in variance


def test_the_start_distribution_is_fit_to_the_first_observation_of_each_episode():
    buffer = ReplayBuffer(2, 1)
    starts = []
    for episode, length in enumerate((3, 4, 2)):
        for t in range(length):
            obs = [episode * 10.0 + t, -float(episode)]
            if t == 0:
                starts.append(obs)
            buffer.add(obs, [0.0], 0.0, obs, False, truncated=t == length - 1)
    torch.testing.assert_close(episode_starts(buffer), torch.tensor(starts))
    mean, chol = start_distribution(torch.tensor(starts, dtype=F64), min_std=0.1)
    torch.testing.assert_close(mean, torch.tensor(starts, dtype=F64).mean(0))
    torch.testing.assert_close(chol @ chol.T, torch.cov(torch.tensor(starts, dtype=F64).T) + 0.01 * torch.eye(2,
                               dtype=F64))


def _rows(path) -> list[dict]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_train_deep_pilco_on_the_swing_up_finishes_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv("MBRL_COURSE_BUDGET", "smoke")
    settings = ["--set", "policy_steps=3", "--set", "fit.max_updates=30"]
    common = ["--env", ENV, "--seed", "0", "--no-render", "--quiet", *settings]
    assert main(["train", "deep-pilco", "--episodes", "3", "--out", str(tmp_path / "full"), *common]) == 0
    assert main(["train", "deep-pilco", "--episodes", "2", "--out", str(tmp_path / "part"), *common]) == 0
    assert main(["train", "deep-pilco", "--episodes", "3", "--out", str(tmp_path / "part"), "--resume",
                 *common]) == 0
    full, resumed = _rows(tmp_path / "full" / "returns.csv"), _rows(tmp_path / "part" / "returns.csv")
    assert [int(r["env_steps"]) for r in full] == [40, 80, 120]  # PILCO's 4 s trials, as `train pilco` runs
    assert [r["return"] for r in resumed] == [r["return"] for r in full]  # every generator was checkpointed
    assert all(0 <= float(r["return"]) <= 40 for r in full)
    state = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=False)["agent"]
    assert state["learner"]["updates"] == 3 * 3 and state["learner"]["optimizer"]["state"]


def test_bad_settings_and_a_policy_of_the_wrong_action_size_are_refused(tmp_path):
    for overrides, match in [({"gradient": "sgd"}, "gradient"), ({"particles": 0}, "particles"),
                             ({"exploration_std": -0.1}, "exploration_std"), ({"model.dropout": 1.0}, "dropout"),
                             ({"gradient": "reinforce", "moment_matching": True}, "moment_matching"),
                             ({"gradient": "reinforce", "exploration_std": 0}, "exploration_std"),
                             ({"policy_lr": "fast"}, "policy_lr")]:
        with pytest.raises(ValueError, match=match):
            make_config("deep-pilco", tier="smoke", overrides=overrides)
    assert make_config("deep-pilco", tier="smoke", overrides={"gradient": "reinforce"}).gradient == "reinforce"
    with pytest.raises(ValueError, match=r"policy: expected actions of shape \(\.\.\., 1\)"):
        DeepPILCOLearner(RBFController(5, 2, 10.0), obs_dim=5, action_bound=[10.0], reward_fn=_smooth_reward)
    with pytest.raises(ValueError, match="symmetric"):
        make_deep_pilco(_Asymmetric(make_env(ENV)), ENV, DeepPILCOConfig.for_budget("smoke"))
    with pytest.raises(ValueError, match="model: Deep PILCO"):
        make_deep_pilco(make_env(ENV), ENV, DeepPILCOConfig.for_budget("smoke")).learner.policy_update(
            None, ReplayBuffer(5, 1))


class _Asymmetric(gym.Wrapper):
    def __init__(self, env):
        super().__init__(env)
        self.action_space = gym.spaces.Box(low=-1.0, high=2.0, shape=(1,), dtype=np.float32)


@pytest.mark.gpu
def test_deep_pilco_runs_on_cuda():
    env = make_env(ENV, max_episode_steps=20)
    config = DeepPILCOConfig.for_budget("smoke")
    agent = make_deep_pilco(env, ENV, config, device="cuda", seed=0)
    from mbrl_course.agents import dyna_loop

    buffer = ReplayBuffer(5, 1, device="cuda")
    results = dyna_loop(env, agent, buffer, episodes=2, seed=0, **deep_pilco_loop_kwargs(config))
    assert len(results) == 2 and agent.learner.updates == 2 * config.policy_steps
    assert next(agent.model.parameters()).device.type == "cuda"
    assert next(agent.learner.policy.parameters()).device.type == "cuda"


def test_the_first_trial_acts_uniformly_at_random_until_the_first_policy_update():
    learner = make_deep_pilco(make_env(ENV), ENV, DeepPILCOConfig.for_budget("smoke"), seed=0).learner
    actions = np.array([learner.act(np.zeros(5)) for _ in range(2000)])
    assert actions.shape == (2000, 1) and np.abs(actions).max() <= 10.0
    assert abs(actions.mean()) < 4 * 10 / math.sqrt(3 * 2000)  # U(−10, 10): mean 0, std 10/√3
    assert abs(actions.std() - 10 / math.sqrt(3)) < 0.3
