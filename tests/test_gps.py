"""Guided policy search: the importance-sampled objective, its regulariser, the guiding samples, the CLI."""

from __future__ import annotations

import copy
import csv
import math
from dataclasses import replace

import pytest
import torch

from mbrl_course.agents.gps import (
    GPSConfig,
    GPSLearner,
    GPSLearnerConfig,
    guided_objective,
    guiding_controllers,
    make_gps,
    mixture_log_density,
    sample_guided_trajectories,
)
from mbrl_course.cli import main
from mbrl_course.envs import make_env
from mbrl_course.models import Propagator
from mbrl_course.planning.ilqr import ilqr
from mbrl_course.planning.local_models import (
    LinearGaussianController,
    LinearGaussianDynamics,
    trajectory_marginals,
)
from mbrl_course.rl.networks import GaussianPolicy
from mbrl_course.runs import make_config

F64 = torch.float64


def _normal_log_prob(u: torch.Tensor, mean, std) -> torch.Tensor:
    return torch.distributions.Normal(torch.as_tensor(mean, dtype=F64), torch.as_tensor(std, dtype=F64)).log_prob(u)


# ---------------------------------------------------------------------------------------------
# One step, x fixed, u ~ N(μ, σ²), r(u) = −(u − a)²:  E_π[r] = −((μ − a)² + σ²) in closed form
# ---------------------------------------------------------------------------------------------

A_TARGET = 0.7


def _reward(u: torch.Tensor) -> torch.Tensor:
    return -(u - A_TARGET) ** 2


def _closed_form(mu: float, sigma: float) -> float:
    return -((mu - A_TARGET) ** 2 + sigma**2)


def test_the_estimate_is_the_on_policy_average_when_the_policy_is_the_proposal():
    gen = torch.Generator().manual_seed(0)
    mu, sigma, m = 0.2, 0.5, 20000
    u = mu + sigma * torch.randn(1, m, 1, generator=gen, dtype=F64)
    log_pi = _normal_log_prob(u, mu, sigma)
    out = guided_objective(log_pi, log_pi.cumsum(-1), _reward(u))
    torch.testing.assert_close(out.weights, torch.full_like(u, 1 / m))  # π = q: every w̄ = 1/m
    torch.testing.assert_close(out.log_Z, torch.zeros(1, 1, dtype=F64))  # Z = 1
    torch.testing.assert_close(out.estimate, _reward(u).mean(-2).squeeze(-1))
    stderr = float(_reward(u).std()) / math.sqrt(m)
    assert abs(float(out.estimate) - _closed_form(mu, sigma)) < 4 * stderr
    assert float(out.effective_samples) == pytest.approx(m)


def test_importance_sampling_under_another_proposal_is_unbiased_plain_and_consistent_normalised():
    gen = torch.Generator().manual_seed(1)
    mu_pi, sigma_pi, mu_q, sigma_q = 0.3, 0.4, -0.2, 0.8
    truth = _closed_form(mu_pi, sigma_pi)
    # unbiased: the plain estimate over R = 400 replicates of m = 10 samples averages to E_π[r]
    u = mu_q + sigma_q * torch.randn(400, 10, 1, generator=gen, dtype=F64)
    log_pi, log_q = _normal_log_prob(u, mu_pi, sigma_pi), _normal_log_prob(u, mu_q, sigma_q)
    plain = guided_objective(log_pi, log_q, _reward(u), normalized=False).estimate  # (400,)
    assert abs(float(plain.mean()) - truth) < 4 * float(plain.std()) / math.sqrt(400)
    # the self-normalised estimate with m = 10 is biased, but with m = 40000 it is within Monte Carlo error
    normalised = guided_objective(log_pi, log_q, _reward(u)).estimate
    u_big = mu_q + sigma_q * torch.randn(1, 40000, 1, generator=gen, dtype=F64)
    big = guided_objective(_normal_log_prob(u_big, mu_pi, sigma_pi), _normal_log_prob(u_big, mu_q, sigma_q),
                           _reward(u_big))
    on_policy = _reward(mu_pi + sigma_pi * torch.randn(40000, generator=gen, dtype=F64))  # plain Monte Carlo under π
    assert abs(float(big.estimate) - truth) < 0.01
    assert abs(float(big.estimate) - float(on_policy.mean())) < 0.015
    assert abs(float(normalised.mean()) - truth) > abs(float(big.estimate) - truth)  # consistency: m helps


def test_mixture_density_of_prefixes_matches_brute_force():
    gen = torch.Generator().manual_seed(2)
    steps = torch.randn(2, 3, 4, 5, generator=gen, dtype=F64)  # K = 2 components, (3, 4) samples, T = 5
    out = mixture_log_density(steps, [3, 1])
    for t in range(5):
        brute = (0.75 * steps[0, ..., :t + 1].sum(-1).exp() + 0.25 * steps[1, ..., :t + 1].sum(-1).exp()).log()
        torch.testing.assert_close(out[..., t], brute)


def test_the_regulariser_gradient_is_the_weighted_score():
    """∇_μ w_r Σ_t log Z_t = w_r Σ_t Σ_i w̄_i,t Σ_{t' ≤ t} (u_t'^i − μ)/σ² for π_θ = N(μ, σ²) at every step."""
    gen = torch.Generator().manual_seed(3)
    m, T, sigma, w_r = 30, 3, 0.6, 0.5
    u = 0.4 + 0.9 * torch.randn(m, T, generator=gen, dtype=F64)
    log_q = _normal_log_prob(u, 0.4, 0.9).cumsum(-1)
    mu = torch.tensor(0.1, dtype=F64, requires_grad=True)
    out = guided_objective(_normal_log_prob(u, mu, sigma), log_q, torch.zeros_like(u), regularizer=w_r)
    (gradient,) = torch.autograd.grad(out.objective, mu)
    with torch.no_grad():  # the oracle, by hand
        log_w = _normal_log_prob(u, 0.1, sigma).cumsum(-1) - log_q
        w_bar = torch.softmax(log_w, 0)
        score = ((u - 0.1) / sigma**2).cumsum(-1)
        expected = w_r * (w_bar * score).sum()
        h = 1e-6
        value = lambda mean: w_r * (torch.logsumexp(_normal_log_prob(u, mean, sigma).cumsum(-1) - log_q, 0)  # noqa: E731
                                    - math.log(m)).sum()
        finite_difference = (value(0.1 + h) - value(0.1 - h)) / (2 * h)
    torch.testing.assert_close(gradient, expected)
    torch.testing.assert_close(gradient, finite_difference, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Guiding samples on a linear system: their distribution is the iLQR controller's
# ---------------------------------------------------------------------------------------------

A_SYS = torch.tensor([[1.0, 0.1], [0.0, 1.0]], dtype=F64)
B_SYS = torch.tensor([[0.005], [0.1]], dtype=F64)


class _LinearStep(Propagator):
    def step(self, obs, action):
        return obs @ A_SYS.T + action @ B_SYS.T, None


class _LinearModel:
    """x' = A x + B u, a model of the contract."""

    predict_reward = False
    device = torch.device("cpu")
    dtype = F64
    obs_dim, act_dim = 2, 1

    def propagator(self, **options) -> Propagator:
        return _LinearStep()


def _lq_reward(obs, action, next_obs):
    return -(obs.square().sum(-1) + 0.1 * action.square().sum(-1))


def test_guiding_samples_have_the_ilqr_controllers_distribution():
    x0 = torch.tensor([[1.0, 0.0], [-0.5, 0.5]], dtype=F64)
    horizon = 6
    dynamics = lambda x, u: x @ A_SYS.T + u @ B_SYS.T  # noqa: E731
    cost = lambda x, u: -_lq_reward(x, u, None)  # noqa: E731
    result = ilqr(dynamics, cost, x0, torch.zeros(2, horizon, 1, dtype=F64), -50.0, 50.0)
    controllers = guiding_controllers(result, covariance_scale=0.5)
    # the covariance is s · Q_uu⁻¹ (μ = 0 at the LQ optimum)
    torch.testing.assert_close(controllers.covariance, 0.5 * torch.linalg.inv(result.Q_uu))
    policy = GaussianPolicy(2, [-50.0], [50.0], (8,), dtype=F64)
    samples = sample_guided_trajectories(_LinearModel(), controllers, policy, x0, guided=20000, on_policy=1,
                                         reward_fn=_lq_reward, generator=torch.Generator().manual_seed(4))
    assert samples.obs.shape == (2, 20001, horizon + 1, 2) and samples.action.shape == (2, 20001, horizon, 1)
    local = LinearGaussianDynamics(A=A_SYS.expand(horizon, 2, 2), B=B_SYS.expand(horizon, 2, 1),
                                   c=torch.zeros(horizon, 2, dtype=F64), covariance=torch.zeros(horizon, 2, 2, dtype=F64))
    for j in range(2):
        one = LinearGaussianController(controllers.K[j], controllers.k[j], controllers.covariance[j])
        means, covs = trajectory_marginals(local, one, x0[j], torch.zeros(2, 2, dtype=F64))
        z = torch.cat([samples.obs[j, :20000, :-1], samples.action[j, :20000]], -1)  # (m, T, 3)
        torch.testing.assert_close(z.mean(0), means, atol=0.02, rtol=0)
        centred = z - z.mean(0)
        empirical = torch.einsum("mti,mtj->tij", centred, centred) / (z.shape[0] - 1)
        torch.testing.assert_close(empirical, covs, atol=0.01, rtol=0.05)
        # the mean of the guided samples is iLQR's trajectory (ū + k ≈ ū at convergence)
        torch.testing.assert_close(z[..., 2:].mean(0), result.actions[j] + result.k[j], atol=0.02, rtol=0)
    # the proposal density of the first step is the mixture of q_j and π_θ̄, by hand
    u0, x = samples.action[:, :, 0], samples.obs[:, :, 0]
    q0 = torch.distributions.MultivariateNormal(
        (controllers.K[:, 0].unsqueeze(1) @ x.unsqueeze(-1)).squeeze(-1) + controllers.k[:, 0].unsqueeze(1),
        controllers.covariance[:, 0].unsqueeze(1)).log_prob(u0)
    with torch.no_grad():
        mean, log_std = policy(x)
    p0 = _normal_log_prob((u0 / 50.0 - mean), 0.0, log_std.exp()).sum(-1) - math.log(50.0)
    expected = torch.logsumexp(torch.stack([q0 + math.log(20000 / 20001), p0 + math.log(1 / 20001)]), 0)
    torch.testing.assert_close(samples.proposal_log_density[..., 0], expected)


# ---------------------------------------------------------------------------------------------
# The policy update on Pendulum, the CLI, bad input
# ---------------------------------------------------------------------------------------------


def test_a_policy_update_runs_on_the_pendulum_and_raises_the_objective():
    smoke = GPSConfig.for_budget("smoke")
    config = replace(smoke, learner=replace(smoke.learner, init_steps=0))  # Φ steps only
    agent = make_gps(make_env("Pendulum-v1"), "Pendulum-v1", config, seed=0)
    learner: GPSLearner = agent.learner
    before = copy.deepcopy(learner.policy)
    info = learner.policy_update(agent.model, None)
    samples = learner.last_samples
    assert samples.obs.shape == (2, 4, 16, 3) and samples.guided == 3
    assert math.isfinite(info["loss"]) and info["plan_return"] <= 0 and learner.updates == 5
    with torch.no_grad():
        after = float(learner.objective(samples).objective)
        learner.policy, trained = before, learner.policy
        start = float(learner.objective(samples).objective)
        learner.policy = trained
    assert after > start  # the Adam steps on -Φ raised Φ on the samples they were taken on
    for _ in range(2):  # Φ sums over the last keep_updates = 2 sample sets
        learner.policy_update(agent.model, None)
    assert len(learner.history) == 2 and learner.history[-1] is learner.last_samples
    assert learner.objective(learner.history).weights.shape == (4, 4, 15)


def _rows(path) -> list[dict]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_train_gps_through_the_cli_finishes_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv("MBRL_COURSE_BUDGET", "smoke")
    common = ["--env", "Pendulum-v1", "--seed", "0", "--no-render", "--quiet", "--max-episode-steps", "50"]
    assert main(["train", "gps", "--episodes", "2", "--out", str(tmp_path / "full"), *common]) == 0
    assert main(["train", "gps", "--episodes", "1", "--out", str(tmp_path / "part"), *common]) == 0
    assert main(["train", "gps", "--episodes", "2", "--out", str(tmp_path / "part"), "--resume", *common]) == 0
    full, resumed = _rows(tmp_path / "full" / "returns.csv"), _rows(tmp_path / "part" / "returns.csv")
    assert [int(r["env_steps"]) for r in full] == [50, 100]
    assert [r["return"] for r in resumed] == [r["return"] for r in full]  # every generator was checkpointed
    assert all(-50 * 16.3 <= float(r["return"]) <= 0 for r in full)
    state = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=False)["agent"]
    assert state["learner"]["updates"] == 5 + 2 * 5 and state["learner"]["optimizer"]["state"]  # init + Φ steps
    assert len(state["learner"]["history"]) == 2


def test_train_gps_on_the_cart_pole_swing_up(tmp_path, monkeypatch):
    monkeypatch.setenv("MBRL_COURSE_BUDGET", "smoke")
    assert main(["train", "gps", "--env", "mbrl_course/CartPoleSwingUp-v0", "--episodes", "1", "--seed", "0",
                 "--no-render", "--quiet", "--max-episode-steps", "20", "--out", str(tmp_path),
                 "--set", "learner.ilqr.iterations=1", "--set", "learner.horizon=5"]) == 0
    rows = _rows(tmp_path / "returns.csv")
    assert [int(r["env_steps"]) for r in rows] == [20] and (tmp_path / "checkpoint.pt").stat().st_size > 0


def test_train_gps_with_a_learned_model_refits_it_on_the_real_episodes(tmp_path, monkeypatch):
    monkeypatch.setenv("MBRL_COURSE_BUDGET", "smoke")
    assert main(["train", "gps", "--env", "Pendulum-v1", "--episodes", "2", "--seed", "0", "--no-render", "--quiet",
                 "--max-episode-steps", "30", "--out", str(tmp_path), "--set", "model=mlp"]) == 0
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)["agent"]
    assert state["model"] and state["fitted_at"] == 60  # f_ψ (a DeltaMLP) was refit after the last episode


def test_bad_input_is_refused_with_clear_errors():
    for overrides, match in [({"model": "gp"}, "model"), ({"learner.conditions": 0}, "conditions"),
                             ({"learner.guided_samples": 0}, "guided_samples"),
                             ({"learner.guided_samples": 1, "learner.policy_samples": 0}, "m = m_g"),
                             ({"learner.regularizer": -1}, "regularizer"), ({"learner.lr": "fast"}, "lr")]:
        with pytest.raises(ValueError, match=match):
            make_config("gps", tier="smoke", overrides=overrides)
    with pytest.raises(ValueError, match="same shape"):
        guided_objective(torch.zeros(3, 4), torch.zeros(3, 5), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="counts"):
        mixture_log_density(torch.zeros(2, 3, 4), [1, 2, 3])
    with pytest.raises(ValueError, match="regularizer"):
        guided_objective(torch.zeros(3, 4), torch.zeros(3, 4), torch.zeros(3, 4), regularizer=-0.1)
    policy = GaussianPolicy(3, [-2.0], [2.0], (8,), dtype=F64)
    learner = GPSLearner(policy, reward_fn=_lq_reward, start_sampler=lambda n, g: torch.zeros(n, 3),
                         config=GPSLearnerConfig(conditions=2, horizon=3, policy_steps=1))
    with pytest.raises(ValueError, match="model: GPS runs iLQR"):
        learner.policy_update(None, None)
    with pytest.raises(TypeError, match="policy: expected a GaussianPolicy"):
        GPSLearner(torch.nn.Linear(3, 1), reward_fn=_lq_reward, start_sampler=lambda n, g: torch.zeros(n, 3))
