"""The iLQR/GPS lecture's figures (mbrl_course.viz.ilqr): each draws exactly the data it is given, checked against
independent oracles (the pendulum's equations written out here, a brute-force grid for the box QP, Monte Carlo
against closed-form linear-Gaussian marginals, hand-computed predictions and rollouts), and bad input is refused."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from types import SimpleNamespace

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from mbrl_course.agents.gps import GPSConfig, GPSLearner, env_start_sampler  # noqa: E402
from mbrl_course.envs import dynamics_fn, reward_fn, termination_fn  # noqa: E402
from mbrl_course.models import TrueDynamics  # noqa: E402
from mbrl_course.planning.ilqr import ILQRConfig, cost_from_reward, ilqr, trajectory_cost  # noqa: E402
from mbrl_course.planning.local_models import (  # noqa: E402
    LinearGaussianController,
    LinearGaussianDynamics,
    fit_dynamics,
    quadratize_cost,
    trajectory_marginals,
)
from mbrl_course.rl.networks import GaussianPolicy  # noqa: E402
from mbrl_course.viz import ilqr as vi  # noqa: E402

F64 = torch.float64


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def lines(ax, label: str | None = None) -> list[Line2D]:
    return [ln for ln in ax.get_lines() if label is None or ln.get_label() == label]


def pendulum_x(theta: float, speed: float = 0.0) -> torch.Tensor:
    return torch.tensor([math.cos(theta), math.sin(theta), speed], dtype=F64)


# ------------------------------------------------------------------------------ coordinates
def test_pendulum_angle_unwraps_a_full_turn():
    theta = np.linspace(0.0, 4 * np.pi, 50)  # two full turns, steps of < π
    states = np.stack([np.cos(theta), np.sin(theta), np.zeros_like(theta)], -1)
    np.testing.assert_allclose(vi.pendulum_angle(states), theta, atol=1e-12)
    np.testing.assert_allclose(vi.pendulum_angle(np.stack([states, states])), np.stack([theta, theta]), atol=1e-12)
    with pytest.raises(ValueError, match="states"):
        vi.pendulum_angle(np.zeros((5, 2)))


def test_angle_pendulum_is_the_env_written_out():
    """θ̇' = clip(θ̇ + (3g/2 sin θ + 3 clip(u)) Δt, ±8), θ' = θ + θ̇' Δt; c = wrap(θ)² + 0.1 θ̇² + 0.001 clip(u)²."""
    f, c = vi.angle_pendulum()
    gen = torch.Generator().manual_seed(0)
    theta = 8 * torch.rand(200, generator=gen, dtype=F64) - 4  # beyond ±π: θ is not wrapped by f
    speed = 20 * torch.rand(200, generator=gen, dtype=F64) - 10
    u = 6 * torch.rand(200, 1, generator=gen, dtype=F64) - 3
    x = torch.stack([theta, speed], -1)
    torque = u[:, 0].clamp(-2, 2)
    new_speed = (speed + (15.0 * theta.sin() + 3.0 * torque) * 0.05).clamp(-8, 8)
    expected = torch.stack([theta + 0.05 * new_speed, new_speed], -1)
    assert torch.allclose(f(x, u), expected, atol=1e-10)
    wrapped = torch.atan2(theta.sin(), theta.cos())
    assert torch.allclose(c(x, u), wrapped**2 + 0.1 * speed**2 + 0.001 * torque**2, atol=1e-10)


# ------------------------------------------------------------------------------ iLQR iterations
@pytest.fixture(scope="module")
def snapshots():
    f = dynamics_fn("Pendulum-v1")
    c = cost_from_reward(reward_fn("Pendulum-v1"), f)
    u_init = torch.full((40, 1), 0.1, dtype=F64)
    return f, c, u_init, vi.ilqr_snapshots(f, c, pendulum_x(math.pi), u_init, -2.0, 2.0, ILQRConfig(iterations=4),
                                            shown=(0, 1, 2, 9))


def test_snapshots_are_the_run_stopped_earlier(snapshots):
    f, c, u_init, snap = snapshots
    last = snap.costs.shape[0] - 1
    assert snap.iterations == [0, 1, 2, last] and last == 4  # 9 is past the end: dropped; the final one added
    # the snapshot after i iterations has the cost the full run recorded after i iterations
    recomputed = trajectory_cost(c, None, snap.states, snap.actions)
    assert torch.allclose(recomputed, snap.costs[snap.iterations], rtol=1e-10)
    # iteration 0: the initial controls, rolled out by hand
    x = pendulum_x(math.pi)[None]
    for t in range(u_init.shape[0]):
        assert torch.allclose(snap.states[0, t], x[0])
        x = f(x, u_init[t][None])
    assert torch.equal(snap.actions[0], u_init)
    assert torch.equal(snap.states[-1], snap.result.states[0])
    assert bool((snap.costs[1:] <= snap.costs[:-1]).all())  # the line search never accepts a worse J


def test_plot_ilqr_iterations_draws_the_snapshots_and_the_costs(snapshots):
    _, _, _, snap = snapshots
    fig = vi.plot_ilqr_iterations(snap)
    left, middle, right = fig.axes
    theta = vi.pendulum_angle(snap.states)
    drawn = [ln for ln in lines(left) if ln.get_label().startswith("iteration")]
    assert len(drawn) == len(snap.iterations)
    for ln, i, th in zip(drawn, snap.iterations, theta, strict=True):
        assert ln.get_label().startswith(f"iteration {i}: J = {float(snap.costs[i]):.1f}")
        np.testing.assert_allclose(ln.get_ydata(), th)
    controls = [ln for ln in lines(middle) if ln.get_label().startswith("iteration")]
    for ln, u in zip(controls, snap.actions, strict=True):
        np.testing.assert_allclose(ln.get_ydata(), u[:, 0].numpy())
    np.testing.assert_allclose(lines(right, "J per iteration")[0].get_ydata(), snap.costs.numpy())
    np.testing.assert_allclose(lines(right, "shown")[0].get_xdata(), snap.iterations)
    with pytest.raises(TypeError, match="snapshots"):
        vi.plot_ilqr_iterations(snap.result)


def test_snapshots_refuse_a_batch():
    f = dynamics_fn("Pendulum-v1")
    c = cost_from_reward(reward_fn("Pendulum-v1"), f)
    with pytest.raises(ValueError, match="x0"):
        vi.ilqr_snapshots(f, c, pendulum_x(0.0)[None], torch.zeros(3, 1, dtype=F64), -2.0, 2.0)
    with pytest.raises(ValueError, match="u_init"):
        vi.ilqr_snapshots(f, c, pendulum_x(0.0), torch.zeros(3, dtype=F64), -2.0, 2.0)


# ------------------------------------------------------------------------------ box constraints
def test_box_qp_figure_marks_the_grid_minimum_not_the_clipped_point():
    H = np.array([[1.0, 0.9], [0.9, 1.0]])
    g = np.array([-1.55, -1.3])  # unconstrained minimiser (2, -0.5); box QP (1, 0.4), clipped (1, -0.5)
    lo, hi = np.array([-1.0, -1.0]), np.array([1.0, 1.0])
    fig = vi.plot_box_qp(torch.tensor(H), torch.tensor(g), torch.tensor(lo), torch.tensor(hi))
    ax = fig.axes[0]

    def point(name: str) -> np.ndarray:
        (ln,) = [ln for ln in lines(ax) if ln.get_label().startswith(name)]
        return np.array([ln.get_xdata()[0], ln.get_ydata()[0]])

    free = np.linalg.solve(H, -g)
    np.testing.assert_allclose(point("unconstrained"), free, atol=1e-10)
    np.testing.assert_allclose(point("clipped"), np.clip(free, lo, hi), atol=1e-10)
    grid = np.stack(np.meshgrid(np.linspace(-1, 1, 801), np.linspace(-1, 1, 801)), -1).reshape(-1, 2)
    values = 0.5 * np.einsum("ni,ij,nj->n", grid, H, grid) + grid @ g
    best = grid[values.argmin()]
    np.testing.assert_allclose(point("box QP"), best, atol=2.5e-3)

    def q(p):
        return 0.5 * p @ H @ p + g @ p

    assert q(point("box QP")) < q(point("clipped")) - 0.1  # this example is chosen so that clipping is wrong


def test_box_qp_figure_refuses_bad_input():
    eye = torch.eye(2)
    with pytest.raises(ValueError, match="lower"):
        vi.plot_box_qp(eye, torch.zeros(2), torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="positive definite"):
        vi.plot_box_qp(-eye, torch.zeros(2), -torch.ones(2), torch.ones(2))
    with pytest.raises(ValueError, match="shapes"):
        vi.plot_box_qp(torch.eye(3), torch.zeros(3), -torch.ones(3), torch.ones(3))


def test_plot_plans_marks_exactly_the_clamped_controls():
    f = dynamics_fn("Pendulum-v1")
    c = cost_from_reward(reward_fn("Pendulum-v1"), f)
    result = ilqr(f, c, pendulum_x(math.pi - 0.1)[None], torch.zeros(1, 20, 1, dtype=F64), -1.0, 1.0,
                  ILQRConfig(iterations=20))
    plan = vi.Plan.from_ilqr(result)
    assert plan.cost == pytest.approx(float(result.cost[0]))
    fig = vi.plot_plans({"iLQR": plan}, low=-1.0, high=1.0)
    left, right = fig.axes
    (theta,) = [ln for ln in lines(left) if ln.get_label().startswith("iLQR: J = ")]
    np.testing.assert_allclose(theta.get_ydata(), vi.pendulum_angle(result.states[0]))
    (marks,) = lines(right, "iLQR clamped")
    clamped = (~result.free[0, :, 0]).numpy()
    assert clamped.any()
    np.testing.assert_array_equal(marks.get_xdata(), np.flatnonzero(clamped))
    # a clamped control of the last backward pass sits at a bound
    np.testing.assert_allclose(np.abs(marks.get_ydata()), 1.0, atol=1e-9)
    with pytest.raises(ValueError, match="plans"):
        vi.plot_plans({})
    with pytest.raises(ValueError, match="H\\+1 states"):
        vi.plot_plans({"bad": vi.Plan(result.states[0, :-2], result.actions[0], 0.0)})


# ------------------------------------------------------------------------------ local models
def _linear_system(T: int = 4, noise: float = 0.0):
    gen = torch.Generator().manual_seed(3)
    A = torch.eye(2, dtype=F64) + 0.1 * torch.randn(T, 2, 2, generator=gen, dtype=F64)
    B = torch.randn(T, 2, 1, generator=gen, dtype=F64)
    c = 0.1 * torch.randn(T, 2, generator=gen, dtype=F64)
    cov = (noise**2 + 1e-30) * torch.eye(2, dtype=F64).expand(T, 2, 2).clone()
    return LinearGaussianDynamics(A=A, B=B, c=c, covariance=cov)


def _controller(T: int = 4, std: float = 0.5) -> LinearGaussianController:
    gen = torch.Generator().manual_seed(4)
    return LinearGaussianController(K=0.3 * torch.randn(T, 1, 2, generator=gen, dtype=F64),
                                    k=torch.randn(T, 1, generator=gen, dtype=F64),
                                    covariance=torch.full((T, 1, 1), std**2, dtype=F64))


class LinearStepper:
    """A time-varying linear system's mean as a dynamics function f(x, u): a dynamics function has no time index,
    so this one counts its calls, restarting after T steps."""

    def __init__(self, system: LinearGaussianDynamics) -> None:
        self.system, self.t = system, 0

    def __call__(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        s, t = self.system, self.t
        self.t = (t + 1) % s.horizon
        return x @ s.A[t].T + u @ s.B[t].T + s.c[t]


def test_sampled_trajectories_match_the_closed_form_marginals():
    model, controller = _linear_system(noise=0.3), _controller()
    x0 = torch.tensor([0.5, -1.0], dtype=F64)
    states, actions = vi.sample_trajectories(model, controller, x0, 20000, torch.Generator().manual_seed(0))
    assert states.shape == (20000, 5, 2) and actions.shape == (20000, 4, 1)
    means, covs = trajectory_marginals(model, controller, x0, torch.zeros(2, 2, dtype=F64))
    z = torch.cat([states[:, :-1], actions], -1)  # (N, T, 3)
    assert torch.allclose(z.mean(0), means, atol=0.05)
    empirical = torch.einsum("nti,ntj->tij", z - z.mean(0), z - z.mean(0)) / z.shape[0]
    assert torch.allclose(empirical, covs, atol=0.08)


def test_samples_share_the_controllers_noise_on_a_model_and_on_a_function():
    model, controller = _linear_system(noise=0.0), _controller()

    x0 = torch.tensor([0.5, -1.0], dtype=F64)
    on_model = vi.sample_trajectories(model, controller, x0, 7, torch.Generator().manual_seed(5))
    on_function = vi.sample_trajectories(LinearStepper(model), controller, x0, 7, torch.Generator().manual_seed(5))
    assert torch.allclose(on_model[1], on_function[1], atol=1e-9)
    assert torch.allclose(on_model[0], on_function[0], atol=1e-9)
    with pytest.raises(ValueError, match="x0"):
        vi.sample_trajectories(model, controller, torch.zeros(3, dtype=F64), 2)
    with pytest.raises(TypeError, match="model"):
        vi.sample_trajectories("f", controller, x0, 2)


def test_plot_local_models_draws_the_fit_the_truth_and_the_predictions():
    truth, controller = _linear_system(T=5), _controller(T=5)
    x0 = torch.tensor([0.2, 0.1], dtype=F64)
    states, actions = vi.sample_trajectories(truth, controller, x0, 40, torch.Generator().manual_seed(1))
    fit = fit_dynamics(states, actions, ridge=1e-10)  # a ridge: x_0 is the same in every sample
    held_states, held_actions = vi.sample_trajectories(truth, controller, x0, 3, torch.Generator().manual_seed(2))
    fig = vi.plot_local_models(fit, truth.A, truth.B, held_states, held_actions, state_names=["a", "b"])
    true_ab = torch.cat([truth.A, truth.B], -1).numpy()
    fit_ab = torch.cat([fit.A, fit.B], -1).numpy()
    names = ["a", "b", "u0"]
    for i, ax in enumerate(fig.axes[:2]):
        for j in range(3):
            (line,) = lines(ax, f"∂{'ab'[i]}'/∂{names[j]} true")
            np.testing.assert_allclose(line.get_ydata(), true_ab[:, i, j])
        dots = lines(ax, "fitted")
        np.testing.assert_allclose(np.stack([d.get_ydata() for d in dots], -1), fit_ab[:, i, :])
    # A_0 is not identifiable (every sample starts at x0), nor A_1 (x_1 varies only along B_0, one direction);
    # from t = 2 on the samples span the state space and a noise-free linear system is fitted exactly
    np.testing.assert_allclose(fit_ab[2:], true_ab[2:], atol=1e-6)
    assert np.abs(fit_ab[0, :, :2] - true_ab[0, :, :2]).max() > 0.1  # the figure shows a real discrepancy there
    # the predictions, by hand: A_t x_t + B_t u_t + c_t in the last state dimension of held-out sample 0
    A, B, c = fit.A.numpy(), fit.B.numpy(), fit.c.numpy()
    xs, us = held_states[0].numpy(), held_actions[0].numpy()
    by_hand = np.array([A[t] @ xs[t] + B[t] @ us[t] + c[t] for t in range(5)])[:, -1]
    (pred,) = lines(fig.axes[2], "A_t x_t + B_t u_t + c_t")
    np.testing.assert_allclose(pred.get_ydata(), by_hand, atol=1e-10)
    (true_next,) = lines(fig.axes[2], "true x_{t+1}")
    np.testing.assert_allclose(true_next.get_ydata(), xs[1:, -1])
    with pytest.raises(ValueError, match="f_x, f_u"):
        vi.plot_local_models(fit, truth.A[:3], truth.B, held_states, held_actions)
    with pytest.raises(ValueError, match="states, actions"):
        vi.plot_local_models(fit, truth.A, truth.B, held_states[:, :3], held_actions)


def test_trust_region_sweep_on_an_exact_local_model():
    """When the true dynamics are the local model (noise-free, linear), prediction and truth coincide, and KL ≤ ε."""
    truth, previous = _linear_system(T=4), _controller(T=4)

    def cost(x, u):
        return (x**2).sum(-1) + 0.1 * (u**2).sum(-1)

    x0 = torch.tensor([1.0, -0.5], dtype=F64)
    states, actions = vi.sample_trajectories(truth, previous, x0, 30, torch.Generator().manual_seed(0))
    quadratic = quadratize_cost(cost, states.mean(0), actions.mean(0))
    sweep = vi.trust_region_sweep(LinearStepper(truth), cost, truth, quadratic, previous, x0, [0.5, 5.0], samples=200, seed=1)
    assert sweep.model_states.shape == (3, 200, 5, 2) and sweep.true_states.shape == (3, 200, 5, 2)
    assert all(kl <= eps * (1 + 1e-6) for kl, eps in zip(sweep.kls, sweep.epsilons, strict=True))
    assert torch.allclose(sweep.model_states, sweep.true_states, atol=1e-8)
    assert torch.allclose(sweep.model_costs, sweep.true_costs, atol=1e-8)
    # a wider bound lets the update lower the cost more (on an exact model), and both improve on p̄
    assert float(sweep.true_costs[2]) < float(sweep.true_costs[1]) < float(sweep.true_costs[0])
    fig = vi.plot_trust_region(sweep, dim=0)
    left, right = fig.axes
    (prev_line,) = lines(left, "p̄ (previous)")
    np.testing.assert_allclose(prev_line.get_ydata(), sweep.true_states[0, :, :, 0].mean(0).numpy())
    (measured,) = lines(right, "measured on the true dynamics")
    np.testing.assert_allclose(measured.get_xdata(), [0.5, 5.0])
    np.testing.assert_allclose(measured.get_ydata(), sweep.true_costs[1:].numpy())
    with pytest.raises(ValueError, match="epsilons"):
        vi.trust_region_sweep(LinearStepper(truth), cost, truth, quadratic, previous, x0, [])
    with pytest.raises(TypeError, match="sweep"):
        vi.plot_trust_region(None)


# ------------------------------------------------------------------------------ guided policy search
@pytest.fixture(scope="module")
def gps_update():
    env_id = "Pendulum-v1"
    config = GPSConfig.for_budget("smoke").learner
    torch.manual_seed(0)
    policy = GaussianPolicy(3, np.array([-2.0]), np.array([2.0]), config.hidden_sizes,
                            init_log_std=config.init_log_std, dtype=F64)
    learner = GPSLearner(policy, reward_fn=reward_fn(env_id), termination_fn=termination_fn(env_id),
                         start_sampler=env_start_sampler(env_id), config=config, seed=0)
    model = TrueDynamics(env_id, dtype=F64)
    return learner, vi.record_gps_update(learner, model), config


def test_record_gps_update_rolls_out_the_policy_and_scores_the_plans(gps_update):
    learner, update, config = gps_update
    C, T = config.conditions, config.horizon
    m = config.guided_samples + config.policy_samples
    assert update.sample_states.shape == (C, m, T + 1, 3) and update.weights.shape == (C, m, T)
    assert update.guided == config.guided_samples
    assert torch.allclose(update.weights.sum(1), torch.ones(C, T, dtype=update.weights.dtype))
    # the policy's mean rollout, by hand through the env's equations
    f, g = dynamics_fn("Pendulum-v1"), reward_fn("Pendulum-v1")
    x = update.sample_states[:, 0, 0]
    total = torch.zeros(C, dtype=F64)
    for t in range(T):
        assert torch.allclose(update.policy_states[:, t], x, atol=1e-9)
        with torch.no_grad():
            u = learner.policy.policy_sample(x, deterministic=True).action
        nxt = f(x, u)
        total += g(x, u, nxt)
        x = nxt
    assert torch.allclose(update.policy_return, total, atol=1e-8)
    # the plans' return is minus iLQR's J, recomputed from its trajectory
    plan = learner.last_plan
    J = trajectory_cost(cost_from_reward(g, f), None, plan.states, plan.actions)
    assert torch.allclose(update.plan_return, -J, atol=1e-8)
    ess = 1.0 / update.weights[..., -1].square().sum(1)
    assert torch.allclose(update.effective_samples, ess.to(update.effective_samples.dtype), atol=1e-8)


def test_gps_figures_draw_the_samples_weights_and_progress(gps_update):
    _, update, config = gps_update
    fig = vi.plot_guiding_samples(update, condition=1)
    left, right = fig.axes
    sample_lines = [ln for ln in lines(left) if ln.get_color() in ("tab:blue", "tab:orange")]
    m = config.guided_samples + config.policy_samples
    assert len(sample_lines) == m
    theta = vi.pendulum_angle(update.sample_states[1])
    for i, ln in enumerate(sample_lines):
        assert ln.get_color() == ("tab:blue" if i < config.guided_samples else "tab:orange")
        np.testing.assert_allclose(ln.get_ydata(), theta[i])
    weight_lines = [ln for ln in lines(right) if ln.get_color() in ("tab:blue", "tab:orange")]
    np.testing.assert_allclose(np.stack([ln.get_ydata() for ln in weight_lines]), update.weights[1].numpy())
    (plan_line,) = lines(left, "iLQR trajectory x̄")
    np.testing.assert_allclose(plan_line.get_ydata(), vi.pendulum_angle(update.plan_states[1]))
    with pytest.raises(ValueError, match="condition"):
        vi.plot_guiding_samples(update, condition=config.conditions)

    fig = vi.plot_gps_progress([update, update])
    np.testing.assert_allclose(lines(fig.axes[0], "μ_θ's mean rollout, same starts")[0].get_ydata(),
                               [float(update.policy_return.mean())] * 2)
    diff = vi.pendulum_angle(update.policy_states) - vi.pendulum_angle(update.plan_states)
    gap = np.abs((diff + np.pi) % (2 * np.pi) - np.pi).mean()  # the distance on the circle
    np.testing.assert_allclose(lines(fig.axes[1])[0].get_ydata(), [gap, gap])
    with pytest.raises(ValueError, match="updates"):
        vi.plot_gps_progress([])


def test_gps_distance_is_the_angle_gap_on_the_circle(gps_update):
    _, update, _ = gps_update
    C, T1 = update.plan_states.shape[:2]
    theta_plan = torch.linspace(0.0, 3.0, T1, dtype=F64).expand(C, T1)
    gap = torch.tensor([0.3, -0.5], dtype=F64)[:C, None] + 2 * math.pi  # a full turn more counts for nothing
    theta_policy = theta_plan + gap
    speed = torch.zeros_like(theta_plan)
    as_states = lambda th: torch.stack([th.cos(), th.sin(), speed], -1)  # noqa: E731
    fake = vi.GPSUpdate(**{**vars(update), "plan_states": as_states(theta_plan),
                           "policy_states": as_states(theta_policy)})
    np.testing.assert_allclose(vi.gps_distance(fake), [0.3, 0.5][:C], atol=1e-9)
    np.testing.assert_allclose(vi.wrapped_angle_distance(np.array([3.0]), np.array([-3.0])), [2 * np.pi - 6.0])
    with pytest.raises(ValueError, match="theta, reference"):
        vi.wrapped_angle_distance(np.zeros(3), np.zeros(4))
    with pytest.raises(TypeError, match="update"):
        vi.gps_distance(None)


def test_describe_gps_update_draws_no_random_numbers(gps_update):
    learner, update, _ = gps_update
    states = [g.get_state() for g in (learner.generator, learner.start_generator, learner.act_generator)]
    torch_state = torch.get_rng_state()
    again = vi.describe_gps_update(learner, TrueDynamics("Pendulum-v1", dtype=F64))
    assert all(torch.equal(a, g.get_state()) for a, g in
               zip(states, (learner.generator, learner.start_generator, learner.act_generator), strict=True))
    assert torch.equal(torch_state, torch.get_rng_state())
    assert torch.equal(again.policy_states, update.policy_states) and torch.equal(again.weights, update.weights)
    fresh = GPSLearner(learner.policy, reward_fn=learner.reward_fn, start_sampler=learner.start_sampler,
                       config=learner.config)
    with pytest.raises(ValueError, match="learner"):
        vi.describe_gps_update(fresh, TrueDynamics("Pendulum-v1", dtype=F64))


# ------------------------------------------------------------------------------ GPS: the benchmark's shipped curves
SHIPPED_GPS = Path(__file__).resolve().parents[1] / "mbrl_course" / "viz" / "data" / "gps_Pendulum-v1.json"


def _benchmark_module():
    spec = importlib.util.spec_from_file_location("gps_benchmark",
                                                  Path(__file__).resolve().parents[1] / "benchmarks" / "gps.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_writes_what_the_loader_reads(tmp_path):
    """A smoke-sized run of benchmarks/gps.py --save-curves, read back: ~3 s."""
    bench = _benchmark_module()
    config = GPSConfig.for_budget("smoke")
    rows, snapshots = bench.run_gps(config, seed=0, iterations=3, eval_episodes=2)
    args = SimpleNamespace(tier="smoke", iterations=3, eval_episodes=2)
    path = tmp_path / "curves.json"
    bench.save_curves(path, "benchmarks/gps.py --test", config, args, {0: rows}, {0: snapshots}, {0: 1.0})
    curves = vi.gps_benchmark_curves(path=path)
    (run,) = curves["seeds"].values()
    assert [r["update"] for r in run["rows"]] == [0, 1, 2, 3]
    assert [s["update"] for s in run["snapshots"]] == [1, 2, 3]  # first, middle, last
    for row, original in zip(run["rows"], rows, strict=True):
        returns = original["eval_returns"]
        assert row["eval_return"] == pytest.approx(np.mean(returns), abs=1e-3)
        assert row["eval_se"] == pytest.approx(np.std(returns, ddof=1) / math.sqrt(len(returns)), abs=1e-3)
        np.testing.assert_allclose(row["eval_returns"], returns, atol=0.005)  # stored to 2 decimals
    snap = run["snapshots"][-1]
    starts, kept = min(3, config.learner.conditions), min(4, config.learner.guided_samples) + \
        min(2, config.learner.policy_samples)
    steps = len(range(0, config.learner.horizon + 1, 2))
    assert np.asarray(snap["plan"]).shape == (starts, steps)
    assert np.asarray(snap["samples"]).shape == (starts, kept, steps)
    assert np.all((np.asarray(snap["final_weights"]) >= 0) & (np.asarray(snap["final_weights"]) <= 1))
    fig = vi.plot_gps_benchmark_curves(curves)
    np.testing.assert_allclose(lines(fig.axes[0])[0].get_ydata(), [r["distance"] for r in run["rows"][1:]])
    with pytest.raises(SystemExit):  # --save-curves records a run: not with --gps-from
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("sys.argv", ["gps.py", "--save-curves", "--gps-from", str(path)])
            bench.main()


def test_gps_benchmark_curves_returns_the_shipped_file():
    curves = vi.gps_benchmark_curves()
    assert curves == json.loads(SHIPPED_GPS.read_text())
    assert SHIPPED_GPS.stat().st_size < 200_000
    assert "benchmarks/gps.py" in curves["command"] and "--save-curves" in curves["command"]
    assert sorted(curves["seeds"]) == ["0", "1", "2"] and curves["iterations"] == 12
    assert curves["setting"]["model"] == "true"  # the lecture says iLQR used the true dynamics
    for run in curves["seeds"].values():
        rows = run["rows"]
        for row in rows:  # the standard errors, recomputed from the episodes' returns
            returns = row["eval_returns"]
            assert len(returns) == curves["eval_episodes"]
            assert row["eval_return"] == pytest.approx(np.mean(returns), abs=0.01)
            assert row["eval_se"] == pytest.approx(np.std(returns, ddof=1) / math.sqrt(len(returns)), abs=0.01)
        assert [s["update"] for s in run["snapshots"]] == [1, 6, 12]
        # what lecture 5 says of the shipped run: the policy alone swings up on every evaluation episode after
        # the last update, and its rollout ends closer to the guiding trajectories than after the first
        assert rows[-1]["upright"] == 1.0
        assert rows[-1]["distance"] < rows[1]["distance"]
        # ... the policy's return on f follows its guide's more closely over the last six updates than the first six
        gap = [abs(r["policy_return"] - r["plan_return"]) for r in rows[1:]]
        assert np.mean(gap[6:]) < np.mean(gap[:6])
        assert max(r["ess"] for r in rows[1:]) < 1.5  # ... the ESS stays near 1 of m = 12
        assert rows[-1]["samples"] == 12
    # ... and the policy scores above its guide on some updates
    assert any(r["policy_return"] > r["plan_return"] for run in curves["seeds"].values() for r in run["rows"][1:])


def test_gps_benchmark_curves_refuse_bad_input(tmp_path):
    with pytest.raises(ValueError, match="name: expected one of the shipped GPS curves"):
        vi.gps_benchmark_curves("nonexistent")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        vi.gps_benchmark_curves(path=bad)
    curves = vi.gps_benchmark_curves()
    broken = json.loads(json.dumps(curves))
    del broken["seeds"]["1"]["rows"][-1]
    with pytest.raises(ValueError, match="seed 1: expected 12 \\+ 1 rows"):
        vi.plot_gps_benchmark_curves(broken)
    broken = json.loads(json.dumps(curves))
    del broken["seeds"]["0"]["rows"][3]["distance"]
    with pytest.raises(ValueError, match="row 3.*missing \\['distance'\\]"):
        vi.plot_gps_benchmark_rollouts(broken)
    broken = json.loads(json.dumps(curves))
    broken["seeds"]["2"]["snapshots"][0]["policy"] = broken["seeds"]["2"]["snapshots"][0]["policy"][:1]
    with pytest.raises(ValueError, match="seed 2, update 1: expected plan and policy"):
        vi.plot_gps_benchmark_rollouts(broken, seed=2)
    with pytest.raises(ValueError, match="expected the keys command"):
        vi.plot_gps_benchmark_curves({"seeds": {}})
    with pytest.raises(ValueError, match="seed: expected one of the file's seeds"):
        vi.plot_gps_benchmark_rollouts(curves, seed=7)


def test_gps_benchmark_figures_draw_the_shipped_numbers():
    curves = vi.gps_benchmark_curves()
    fig = vi.plot_gps_benchmark_rollouts(curves, seed=1)
    snapshots = curves["seeds"]["1"]["snapshots"]
    assert len(fig.axes) == len(snapshots)
    for ax, snap in zip(fig.axes, snapshots, strict=True):
        solid = [ln for ln in lines(ax) if ln.get_linewidth() == 2 and ln.get_linestyle() == "-"]
        dashed = [ln for ln in lines(ax) if ln.get_linestyle() == "--"]
        np.testing.assert_allclose(np.stack([ln.get_ydata() for ln in solid]), snap["plan"])
        np.testing.assert_allclose(np.stack([ln.get_ydata() for ln in dashed]), snap["policy"])
        np.testing.assert_allclose(solid[0].get_xdata(), np.arange(len(snap["plan"][0])) * snap["step_every"])
        assert f"update {snap['update']}" in ax.get_title()
    fig = vi.plot_gps_benchmark_curves(curves)
    distance, returns, evaluation, ess = fig.axes
    for k, (seed, run) in enumerate(curves["seeds"].items()):
        rows = run["rows"]
        np.testing.assert_allclose(lines(distance, f"seed {seed}")[0].get_ydata(), [r["distance"] for r in rows[1:]])
        np.testing.assert_allclose(lines(returns, f"seed {seed}: μ_θ")[0].get_ydata(),
                                   [r["policy_return"] for r in rows[1:]])
        np.testing.assert_allclose(lines(returns, f"seed {seed}: guiding x̄")[0].get_ydata(),
                                   [r["plan_return"] for r in rows[1:]])
        np.testing.assert_allclose(lines(ess, f"seed {seed}")[0].get_ydata(), [r["ess"] for r in rows[1:]])
        np.testing.assert_allclose(evaluation.containers[k].lines[0].get_ydata(), [r["eval_return"] for r in rows])
