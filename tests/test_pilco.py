"""PILCO: the moment-matched step against Monte Carlo, the analytic policy gradient against finite
differences, the loop through the runs layer (train, resume), and clear errors."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from mbrl_course.agents.pilco import (
    TASKS,
    MomentMatchedGP,
    PILCOConfig,
    PILCOLearner,
    make_pilco,
    pack,
    predict_trajectory,
    unpack,
)
from mbrl_course.data import ReplayBuffer
from mbrl_course.envs import make_env
from mbrl_course.models import GPDynamics
from mbrl_course.models.gp import obs_from_state
from mbrl_course.rl import RBFController
from mbrl_course.rl.controllers import LOG_LENGTHSCALE_BOUNDS

ENV = "mbrl_course/CartPoleSwingUp-v0"


def random_transitions(steps: int = 60, seed: int = 0) -> ReplayBuffer:
    """D_real of ``steps`` random-action steps of the cart-pole, in float64."""
    env = make_env(ENV, max_episode_steps=steps)
    rng = np.random.default_rng(seed)
    buffer = ReplayBuffer(5, 1, capacity=steps, dtype=torch.float64)
    obs, _ = env.reset(seed=seed)
    for _ in range(steps):
        action = rng.uniform(-10, 10, size=1)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        buffer.add(obs, action, reward, next_obs, terminated)
        obs = next_obs
    return buffer


@pytest.fixture(scope="module")
def fitted():
    """A GP fitted on 60 random steps and a small RBF controller, with the cart-pole's task."""
    env = make_env(ENV)
    task = TASKS[ENV](env)
    model = GPDynamics(5, 1, angles=task.angles)
    model.fit(random_transitions(), iterations=30)
    controller = RBFController(5, 1, torch.tensor([10.0], dtype=torch.float64), num_basis=4)
    controller.initialise(torch.tensor([0.0, 0.0, -1.0, 0.0, 0.0], dtype=torch.float64),
                          torch.tensor([0.3, 0.3, 0.1, 0.3, 0.5], dtype=torch.float64),
                          torch.Generator().manual_seed(1), weight_scale=2.0)
    return model, controller, task


def test_moment_step_matches_monte_carlo_for_a_narrow_belief(fitted):
    """One step p(z_t) -> p(z_{t+1}) against sampling z, x = φ(z), u = π(x), Δ ~ GP(x, u) (latent + noise).

    For a narrow belief the Gaussian approximations of p(x, u) are accurate, so the matched mean and
    covariance agree with 4·10^5 samples within their standard errors plus a small slack.
    """
    model, controller, _ = fitted
    mean = torch.tensor([0.1, 0.3, math.pi - 0.2, -0.4], dtype=torch.float64)
    cov = torch.diag(torch.tensor([0.05, 0.08, 0.04, 0.1], dtype=torch.float64) ** 2)
    cov[0, 2] = cov[2, 0] = 0.5 * 0.05 * 0.04
    mm_model = MomentMatchedGP(model)
    from mbrl_course.agents.pilco import BeliefPolicy

    policy = BeliefPolicy(controller, model.state_dim, model.angles)
    with torch.no_grad():
        belief = pack(mean, cov)[None]
        next_mean, next_cov = unpack(mm_model.propagator().step(belief, policy(belief))[0][0], 4)

        gen = torch.Generator().manual_seed(5)
        n = 400_000
        z = mean + torch.randn(n, 4, generator=gen, dtype=torch.float64) @ torch.linalg.cholesky(cov).T
        x = obs_from_state(z, model.angles)
        u = controller(x)
        f_mean, f_var = model.gp.posterior(torch.cat([x, u], -1), include_noise=True)
        z_next = z + f_mean + f_var.sqrt() * torch.randn(n, 4, generator=gen, dtype=torch.float64)
    mc_mean, mc_cov = z_next.mean(0), torch.cov(z_next.T)
    se = (mc_cov.diagonal() / n).sqrt()
    assert torch.all((next_mean - mc_mean).abs() < 4 * se + 2e-3 * mc_cov.diagonal().sqrt()), (next_mean, mc_mean)
    rel = torch.linalg.matrix_norm(next_cov - mc_cov) / torch.linalg.matrix_norm(mc_cov)
    assert rel < 0.05, (next_cov, mc_cov)
    assert torch.allclose(next_cov, next_cov.T)
    assert torch.linalg.eigvalsh(next_cov).min() > 0


def test_policy_gradient_matches_finite_differences(fitted):
    """dJ/dθ by autograd through every moment equals central differences of J(θ) (float64)."""
    model, controller, task = fitted
    controller = RBFController(5, 1, controller.action_bound, num_basis=4)
    controller.load_state_dict(fitted[1].state_dict())
    learner = PILCOLearner(controller, task, PILCOConfig(horizon=4))
    params = list(controller.parameters())
    loss = learner.objective(model)
    grads = torch.autograd.grad(loss, params)
    eps = 1e-6
    checked = 0
    for param, grad in zip(params, grads):
        flat, gflat = param.data.view(-1), grad.view(-1)
        for i in range(0, flat.numel(), max(1, flat.numel() // 4)):
            old = flat[i].item()
            with torch.no_grad():
                flat[i] = old + eps
                up = learner.objective(model).item()
                flat[i] = old - eps
                down = learner.objective(model).item()
                flat[i] = old
            numeric = (up - down) / (2 * eps)
            assert abs(numeric - gflat[i].item()) <= 1e-5 + 1e-4 * abs(numeric), (param.shape, i, numeric, gflat[i])
            checked += 1
    assert checked >= 8


def test_belief_rollout_returns_horizon_minus_expected_costs(fitted):
    """The rollout primitive on beliefs: returns = H − J, beliefs stay symmetric PSD, the start is p(z_1)."""
    model, controller, task = fitted
    with torch.no_grad():
        out = predict_trajectory(model, controller, task, 6)
    mean, cov = unpack(out.obs[:, 0], 4)
    assert torch.allclose(mean[0], torch.tensor(task.start_mean, dtype=torch.float64))
    assert torch.allclose(cov[0], torch.diag(torch.tensor(task.start_std, dtype=torch.float64) ** 2))
    assert torch.allclose(cov, cov.transpose(-1, -2))
    assert torch.linalg.eigvalsh(cov).min() > 0
    assert (cov[-1].diagonal() > cov[0].diagonal()).any()  # uncertainty grows away from the data
    costs = 1 - out.reward[:, 0]
    assert torch.all((costs >= 0) & (costs <= 1))
    assert math.isclose(float(out.returns()[0]), 6 - float(costs.sum()), abs_tol=1e-12)


def test_policy_update_lowers_the_expected_cost(fitted):
    model, controller, task = fitted
    learner = PILCOLearner(controller, task, PILCOConfig(horizon=5, policy_iterations=15))
    with torch.no_grad():
        before = float(learner.objective(model))
    info = learner.policy_update(model, ReplayBuffer(5, 1))
    assert info["J"] < before
    assert learner.prediction.mean.shape == (6, 4) and learner.prediction.expected_cost.shape == (5,)


def test_policy_update_keeps_the_length_scales_in_their_box(fitted):
    # left free, the optimiser drove log ℓ to ~100 on the cart-pole, where (Σ + Λ)⁻¹ and ∇J break down
    model, controller, task = fitted
    controller = copy.deepcopy(controller)
    low, high = LOG_LENGTHSCALE_BOUNDS
    with torch.no_grad():
        controller.log_lengthscales[0, 1] = 80.0  # as a checkpoint from before the bounds could hold
    learner = PILCOLearner(controller, task, PILCOConfig(horizon=5, policy_iterations=5))
    learner.policy_update(model, ReplayBuffer(5, 1))
    log_ell = controller.log_lengthscales
    assert bool(((log_ell >= low) & (log_ell <= high)).all()), log_ell


def test_train_pilco_smoke_run_resumes(tmp_path):
    from mbrl_course.runs import load_run, train

    rows = train("pilco", ENV, episodes=2, out=tmp_path, tier="smoke", record=False, progress=False)
    assert len(rows) == 2 and rows[-1]["env_steps"] == 80  # PILCO's 4 s trials on the cart-pole
    _, agent, buffer, _ = load_run(tmp_path)
    assert len(agent.learner.history) == 2 and len(buffer) == 80  # a policy after each trial
    rows = train("pilco", ENV, episodes=3, out=tmp_path, resume=True, record=False, progress=False)
    assert [r["episode"] for r in rows] == [0, 1, 2]


def test_first_trial_is_random_and_later_ones_follow_the_controller(fitted):
    model, controller, task = fitted
    learner = PILCOLearner(controller, task, PILCOConfig(horizon=3, policy_iterations=1), seed=3)
    obs = np.array([0.0, 0.0, -1.0, 0.0, 0.0])
    random_actions = {float(learner.act(obs)[0]) for _ in range(5)}
    assert len(random_actions) == 5 and all(abs(a) <= 10 for a in random_actions)
    learner.policy_update(model, ReplayBuffer(5, 1))
    expected = controller(torch.as_tensor(obs)).detach().numpy()
    assert np.allclose(learner.act(obs), expected, atol=1e-6)


def test_bad_input_names_the_argument(fitted):
    model, _, task = fitted
    with pytest.raises(ValueError, match="env_id"):
        make_pilco(make_env("MountainCarContinuous-v0"), "MountainCarContinuous-v0", PILCOConfig.for_budget("smoke"))
    wrong = RBFController(5, 2, torch.tensor([1.0, 1.0], dtype=torch.float64), num_basis=3)
    with pytest.raises(ValueError, match="controller"):
        PILCOLearner(wrong, task, PILCOConfig(horizon=2)).policy_update(model, ReplayBuffer(5, 1))
    with pytest.raises(TypeError, match="model"):
        PILCOLearner(wrong, task, PILCOConfig(horizon=2)).policy_update(object(), ReplayBuffer(5, 1))
    with pytest.raises(ValueError, match="horizon"):
        PILCOConfig(horizon=0)
    with pytest.raises(ValueError, match="controller"):
        PILCOConfig(controller="mlp")
