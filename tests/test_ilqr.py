"""Tests of iLQR (mbrl_course.planning.ilqr) and the local linear-Gaussian models (planning.local_models).

Oracles: the finite-horizon Riccati recursion (LQR), computed here; central finite differences written
here in numpy; brute-force grid search on a 1-D box-constrained problem; the standard error of least
squares; the closed-form KL of two joint Gaussians (torch.distributions); Monte Carlo estimates of a KL.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import MultivariateNormal, kl_divergence

from mbrl_course.envs import dynamics_fn, make_env, reward_fn
from mbrl_course.models import DeltaMLP, GaussianEnsemble, TrueDynamics
from mbrl_course.planning.ilqr import (
    ILQRConfig,
    ILQRError,
    ILQRMPCAgent,
    box_qp,
    cost_from_reward,
    ilqr,
    linearize,
    model_dynamics,
)
from mbrl_course.planning.local_models import (
    DynamicsPrior,
    LinearGaussianController,
    LinearGaussianDynamics,
    QuadraticCost,
    fit_dynamics,
    lqr_controller,
    quadratize_cost,
    trajectory_kl,
    trajectory_marginals,
    trust_region_update,
)

F64 = torch.float64


# ------------------------------------------------------------------------------------------- helpers


def linear_quadratic(seed: int = 0, n: int = 3, m: int = 2):
    """A random linear system x' = A x + B u with c = ½xᵀQx + ½uᵀRu + uᵀNx and c_H = ½xᵀQ_f x."""
    gen = torch.Generator().manual_seed(seed)
    A = torch.eye(n, dtype=F64) + 0.2 * torch.randn(n, n, generator=gen, dtype=F64)
    B = torch.randn(n, m, generator=gen, dtype=F64)
    L = torch.randn(n, n, generator=gen, dtype=F64)
    Q = L @ L.T / n + 0.1 * torch.eye(n, dtype=F64)
    R = 0.5 * torch.eye(m, dtype=F64) + 0.1 * torch.ones(m, m, dtype=F64)
    N = 0.05 * torch.randn(m, n, generator=gen, dtype=F64)
    Qf = 2.0 * torch.eye(n, dtype=F64)
    return A, B, Q, R, N, Qf


def riccati(A, B, Q, R, N, Qf, horizon):
    """Finite-horizon discrete LQR: gains K_t, value matrices P_t (P_H = Q_f) and Q_uu,t."""
    P = Qf
    Ks, Ps, Quus = [], [P], []
    for _ in range(horizon):
        Q_uu = R + B.T @ P @ B
        Q_ux = N + B.T @ P @ A
        K = -torch.linalg.solve(Q_uu, Q_ux)
        P = Q + A.T @ P @ A + Q_ux.T @ K
        P = 0.5 * (P + P.T)
        Ks.append(K)
        Ps.append(P)
        Quus.append(Q_uu)
    return torch.stack(Ks[::-1]), torch.stack(Ps[::-1]), torch.stack(Quus[::-1])


def lq_functions(A, B, Q, R, N, Qf):
    def f(x, u):
        return x @ A.T + u @ B.T

    def c(x, u):
        return 0.5 * (x * (x @ Q)).sum(-1) + 0.5 * (u * (u @ R)).sum(-1) + (u * (x @ N.T)).sum(-1)

    def c_H(x):
        return 0.5 * (x * (x @ Qf)).sum(-1)

    return f, c, c_H


# ------------------------------------------------------------------------------------------- iLQR


def test_ilqr_solves_lq_problem_in_one_iteration_like_riccati():
    A, B, Q, R, N, Qf = linear_quadratic()
    f, c, c_H = lq_functions(A, B, Q, R, N, Qf)
    H, batch = 12, 4
    gen = torch.Generator().manual_seed(1)
    x0 = torch.randn(batch, 3, generator=gen, dtype=F64)
    u_init = torch.randn(batch, H, 2, generator=gen, dtype=F64)
    result = ilqr(f, c, x0, u_init, -1e3, 1e3, ILQRConfig(mu_init=0.0), terminal_cost=c_H)

    K, P, Q_uu = riccati(A, B, Q, R, N, Qf, H)
    optimal_cost = 0.5 * torch.einsum("bi,ij,bj->b", x0, P[0], x0)
    assert result.iterations.tolist() == [1] * batch
    assert bool(result.converged.all())
    assert torch.allclose(result.costs[1], optimal_cost, rtol=0, atol=1e-8)
    assert torch.allclose(result.cost, optimal_cost, rtol=0, atol=1e-8)
    assert (result.K - K).abs().max() < 1e-8
    assert (result.Q_uu - Q_uu).abs().max() < 1e-8
    assert result.k.abs().max() < 1e-8
    # the optimal controls: u_t = K_t x_t along the closed loop
    x = x0
    for t in range(H):
        u = x @ K[t].T
        assert (result.actions[:, t] - u).abs().max() < 1e-8
        x = f(x, u)


def test_autograd_derivatives_match_finite_differences():
    f = dynamics_fn("Pendulum-v1")

    def c(x, u):  # a nonlinear cost with cross terms
        return (x[:, 0] - 1.0) ** 2 + torch.sin(x[:, 1] * u[:, 0]) + 0.3 * x[:, 2] ** 2 * u[:, 0] ** 2

    def c_H(x):
        return torch.exp(0.5 * x[:, 0]) * x[:, 2] ** 2

    gen = torch.Generator().manual_seed(3)
    theta = (torch.rand(2, 6, generator=gen, dtype=F64) - 0.5) * 4.0  # |θ| < 2: away from atan2's cut
    speed = torch.rand(2, 6, generator=gen, dtype=F64) - 0.5  # far from the ±8 clip
    states = torch.stack([theta.cos(), theta.sin(), speed], -1)
    actions = (torch.rand(2, 5, 1, generator=gen, dtype=F64) - 0.5) * 2.0  # inside ±2 (no torque clip)
    auto = linearize(f, c, c_H, states, actions)
    numeric = linearize(f, c, c_H, states, actions, method="finite_difference")

    # an independent oracle: central differences in numpy, one coordinate at a time
    def np_jacobian(fn, z, h=1e-6):
        cols = []
        for j in range(z.shape[-1]):
            e = np.zeros_like(z)
            e[..., j] = h
            cols.append((fn(z + e) - fn(z - e)) / (2 * h))
        return np.stack(cols, -1)

    x = states[:, :-1].reshape(-1, 3).numpy()
    u = actions.reshape(-1, 1).numpy()
    z = np.concatenate([x, u], -1)

    def f_np(zz):
        return f(torch.from_numpy(zz[:, :3]), torch.from_numpy(zz[:, 3:])).numpy()

    def c_np(zz):
        return c(torch.from_numpy(zz[:, :3]), torch.from_numpy(zz[:, 3:])).numpy()

    jac = np_jacobian(f_np, z)
    grad = np_jacobian(c_np, z)
    hess = np_jacobian(lambda zz: np_jacobian(c_np, zz, 1e-5), z, 1e-5)
    np.testing.assert_allclose(auto.f_x.reshape(-1, 3, 3), jac[..., :3], atol=1e-7)
    np.testing.assert_allclose(auto.f_u.reshape(-1, 3, 1), jac[..., 3:], atol=1e-7)
    np.testing.assert_allclose(auto.c_x.reshape(-1, 3), grad[:, :3], atol=1e-7)
    np.testing.assert_allclose(auto.c_u.reshape(-1, 1), grad[:, 3:], atol=1e-7)
    np.testing.assert_allclose(auto.c_xx.reshape(-1, 3, 3), hess[:, :3, :3], atol=1e-4)
    np.testing.assert_allclose(auto.c_uu.reshape(-1, 1, 1), hess[:, 3:, 3:], atol=1e-4)
    np.testing.assert_allclose(auto.c_ux.reshape(-1, 1, 3), hess[:, 3:, :3], atol=1e-4)
    # and the module's own finite-difference option agrees with autograd
    for name in ("f_x", "f_u", "c_x", "c_u", "terminal_x"):
        assert torch.allclose(getattr(auto, name), getattr(numeric, name), atol=1e-7), name
    for name in ("c_xx", "c_uu", "c_ux", "terminal_xx"):
        assert torch.allclose(getattr(auto, name), getattr(numeric, name), atol=1e-5), name


def test_finite_difference_ilqr_reaches_the_autograd_solution_on_the_pendulum():
    f = dynamics_fn("Pendulum-v1")
    cost = cost_from_reward(reward_fn("Pendulum-v1"), f)
    theta = torch.tensor([2.5, -2.0], dtype=F64)
    x0 = torch.stack([theta.cos(), theta.sin(), torch.zeros(2, dtype=F64)], -1)
    u_init = torch.zeros(2, 10, 1, dtype=F64)
    auto = ilqr(f, cost, x0, u_init, -2.0, 2.0, ILQRConfig(iterations=30))
    numeric = ilqr(f, cost, x0, u_init, -2.0, 2.0, ILQRConfig(iterations=30, derivatives="finite_difference"))
    assert bool(auto.converged.all()) and bool(numeric.converged.all())
    assert torch.allclose(auto.cost, numeric.cost, rtol=1e-6)
    assert auto.cost.max() < auto.costs[0].min()  # it improved on u = 0
    assert bool(((auto.actions >= -2.0) & (auto.actions <= 2.0)).all())


def test_box_constrained_1d_problem_matches_grid_search():
    def f(x, u):
        return x + 0.3 * torch.sin(x) + u

    def c(x, u):
        return (x[:, 0] - 1.0) ** 2 + 2.0 * u[:, 0] ** 2

    def c_H(x):
        return 4.0 * (x[:, 0] - 1.0) ** 2

    low, high = -0.2, 0.25
    x0 = torch.tensor([[-0.5], [0.75], [1.6]], dtype=F64)
    result = ilqr(f, c, x0, torch.zeros(3, 2, 1, dtype=F64), low, high, ILQRConfig(tolerance=1e-12),
                  terminal_cost=c_H)
    assert bool(((result.actions >= low) & (result.actions <= high)).all())

    grid = torch.linspace(low, high, 901, dtype=F64)  # step 5e-4
    u0, u1 = torch.meshgrid(grid, grid, indexing="ij")
    u0, u1 = u0.reshape(-1, 1), u1.reshape(-1, 1)
    clamped_any = free_any = False
    for b in range(3):
        x = x0[b].expand(u0.shape[0], 1)
        total = c(x, u0)
        x = f(x, u0)
        total = total + c(x, u1)
        total = total + c_H(f(x, u1))
        best = int(total.argmin())
        grid_u = torch.stack([u0[best, 0], u1[best, 0]])
        assert result.cost[b] <= total[best] + 1e-12  # iLQR is at least as good as the grid
        assert (result.actions[b, :, 0] - grid_u).abs().max() <= 2 * (grid[1] - grid[0])
        at_bound = (grid_u == low) | (grid_u == high)
        clamped_any |= bool(at_bound.any())
        free_any |= bool((~at_bound).any())
    assert clamped_any and free_any  # the problem has both active and inactive constraints


def test_box_qp_matches_enumeration_of_active_sets():
    gen = torch.Generator().manual_seed(5)
    batch, m = 64, 3
    L = torch.randn(batch, m, m, generator=gen, dtype=F64)
    H = L @ L.transpose(-1, -2) + 0.1 * torch.eye(m, dtype=F64)
    g = 3.0 * torch.randn(batch, m, generator=gen, dtype=F64)
    lower, upper = -torch.ones(batch, m, dtype=F64), 0.5 * torch.ones(batch, m, dtype=F64)
    result = box_qp(H, g, lower, upper)
    assert bool(result.ok.all())

    def value(x):
        return (g * x).sum(-1) + 0.5 * (x * (x.unsqueeze(-2) @ H.transpose(-1, -2)).squeeze(-2)).sum(-1)

    # brute force: every assignment of each coordinate to {lower, free, upper}; keep the feasible best
    best = torch.full((batch,), math.inf, dtype=F64)
    for code in range(3**m):
        pattern = [(code // 3**i) % 3 for i in range(m)]
        fixed = torch.tensor([p != 1 for p in pattern])
        x = torch.where(torch.tensor([p == 0 for p in pattern]), lower, upper) * fixed
        if (~fixed).any():
            free = (~fixed).nonzero().flatten()
            rhs = -(g[:, free] + (H[:, free][:, :, fixed] @ x[:, fixed].unsqueeze(-1)).squeeze(-1))
            x[:, free] = torch.linalg.solve(H[:, free][:, :, free], rhs)
        feasible = ((x >= lower - 1e-12) & (x <= upper + 1e-12)).all(-1)
        best = torch.where(feasible, torch.minimum(best, value(x)), best)
    assert torch.allclose(value(result.x), best, atol=1e-10)


def test_ilqr_mpc_agent_runs_pendulum_and_warm_starts():
    model = TrueDynamics("Pendulum-v1", dtype=F64)
    agent = ILQRMPCAgent(model, reward_fn("Pendulum-v1"), 8, -2.0, 2.0, config=ILQRConfig(iterations=10))
    env = make_env("Pendulum-v1")
    obs, _ = env.reset(seed=0)
    agent.reset()
    for _ in range(3):
        action = agent.act(obs)
        assert action.shape == (1,) and action.dtype == np.float32 and -2.0 <= action[0] <= 2.0
        previous = agent.planner.last.actions[0]
        shifted = agent.planner.initial_controls()
        assert torch.equal(shifted[:-1], previous[1:]) and torch.equal(shifted[-1], previous[-1])
        obs, *_ = env.step(action)
    agent.reset()
    assert torch.equal(agent.planner.initial_controls(), torch.zeros(8, 1, dtype=F64))
    # the adapter gives the env's own step
    x = torch.tensor([[0.6, 0.8, 0.3]], dtype=F64)
    u = torch.tensor([[0.5]], dtype=F64)
    assert torch.allclose(model_dynamics(model)(x, u), dynamics_fn("Pendulum-v1")(x, u))
    assert ILQRConfig.for_budget("smoke").iterations < ILQRConfig.for_budget("default").iterations


def test_model_adapter_differentiates_learned_models():
    torch.manual_seed(0)
    mlp = DeltaMLP(3, 1, hidden_sizes=(16,), activation="tanh", dtype=F64)
    f = model_dynamics(mlp)

    def c(x, u):
        return (x**2).sum(-1) + (u**2).sum(-1)

    gen = torch.Generator().manual_seed(0)
    states, actions = torch.randn(2, 4, 3, generator=gen, dtype=F64), torch.randn(2, 3, 1, generator=gen, dtype=F64)
    auto = linearize(f, c, None, states, actions)
    numeric = linearize(f, c, None, states, actions, method="finite_difference")
    assert torch.allclose(auto.f_x, numeric.f_x, atol=1e-7) and torch.allclose(auto.f_u, numeric.f_u, atol=1e-7)
    with pytest.raises(ValueError, match="use propagation='expectation'"):
        model_dynamics(GaussianEnsemble(3, 1, ensemble_size=2, hidden_size=8, num_layers=2), propagation="ts_inf")


# ------------------------------------------------------------------------------------------- bad input


def _simple():
    def f(x, u):
        return x + u

    def c(x, u):
        return (x**2).sum(-1) + (u**2).sum(-1)

    return f, c, torch.zeros(2, 1, dtype=F64), torch.zeros(2, 3, 1, dtype=F64)


def test_bad_inputs_raise_clear_errors():
    f, c, x0, u0 = _simple()
    with pytest.raises(TypeError, match="cost: its output has no autograd graph"):
        ilqr(f, lambda x, u: c(x, u).detach(), x0, u0, -1, 1)
    with pytest.raises(TypeError, match="cost: expected it to return a torch.Tensor"):
        ilqr(f, lambda x, u: float(c(x, u).sum()), x0, u0, -1, 1)
    with pytest.raises(ValueError, match=r"cost\(...\): expected shape \(2,\)"):
        ilqr(f, lambda x, u: c(x, u).unsqueeze(-1), x0, u0, -1, 1)
    with pytest.raises(ValueError, match="low: expected low < high"):
        ilqr(f, c, x0, u0, 1.0, 1.0)
    with pytest.raises(ValueError, match="low: expected low < high"):
        ilqr(f, c, x0, u0, 2.0, -1.0)
    with pytest.raises(ValueError, match="horizon H >= 1, got H = 0"):
        ilqr(f, c, x0, torch.zeros(2, 0, 1, dtype=F64), -1, 1)
    with pytest.raises(ValueError, match="x0: expected start states of shape"):
        ilqr(f, c, torch.zeros(2, 1, 1), u0, -1, 1)
    with pytest.raises(ValueError, match="cost: returned NaN"):
        ilqr(f, lambda x, u: c(x, u) * math.nan, x0, u0, -1, 1)
    with pytest.raises(ValueError, match="u_init: the cost J of the initial trajectory is NaN"):
        ilqr(f, lambda x, u: c(x, u) + torch.where(x[:, 0] > 0.5, math.nan, 0.0), x0, torch.ones(2, 3, 1), -1, 1)
    with pytest.raises(ValueError, match="derivatives: expected one of"):
        ILQRConfig(derivatives="symbolic")
    with pytest.raises(ValueError, match="mu_factor: expected a number > 1"):
        ILQRConfig(mu_factor=1.0)
    with pytest.raises(ValueError, match="alphas"):
        ILQRConfig(alphas=())
    with pytest.raises(TypeError, match="torch.func could not differentiate"):
        ilqr(f, lambda x, u: c(x, u) + float(u.sum()), x0, u0, -1, 1)
    # divergence: every trial step gives a NaN cost, μ climbs past μ_max and iLQR gives up, saying so
    def nan_off_start(x, u):
        return c(x - 1.0, u) + torch.where(u[:, 0] != 0, math.nan, 0.0)

    config = ILQRConfig(tolerance=0.0, mu_max=1e6)
    with pytest.raises(ILQRError, match="no step size α reduced the cost.*mu_max=1e\\+06"):
        ilqr(f, nan_off_start, x0, u0, -1, 1, config)
    quiet = ilqr(f, nan_off_start, x0, u0, -1, 1, ILQRConfig(tolerance=0.0, mu_max=1e6, raise_on_failure=False))
    assert not bool(quiet.converged.any()) and bool(quiet.mu.gt(1e6).all())


# ------------------------------------------------------------------------------------------- local models


def linear_gaussian_system(seed: int, T: int = 4, n: int = 3, m: int = 2):
    gen = torch.Generator().manual_seed(seed)
    A = torch.eye(n, dtype=F64) + 0.3 * torch.randn(T, n, n, generator=gen, dtype=F64)
    B = torch.randn(T, n, m, generator=gen, dtype=F64)
    c = torch.randn(T, n, generator=gen, dtype=F64)
    L = 0.1 * torch.randn(T, n, n, generator=gen, dtype=F64)
    Sigma = L @ L.transpose(-1, -2) + 0.01 * torch.eye(n, dtype=F64)
    return LinearGaussianDynamics(A, B, c, Sigma)


def sample(system: LinearGaussianDynamics, samples: int, seed: int, noise: bool = True):
    """N trajectories with x_0 ~ N(0, I) and exploratory controls u_t ~ N(0.5 x_t[:m], I)."""
    gen = torch.Generator().manual_seed(seed)
    n, m = system.B.shape[-2:]
    x = torch.randn(samples, n, generator=gen, dtype=F64)
    states, actions = [x], []
    for t in range(system.horizon):
        u = 0.5 * x[:, :m] + torch.randn(samples, m, generator=gen, dtype=F64)
        w = torch.randn(samples, n, generator=gen, dtype=F64) @ torch.linalg.cholesky(system.covariance[t]).T
        x = system.mean(t, x, u) + (w if noise else 0.0)
        states.append(x)
        actions.append(u)
    return torch.stack(states, 1), torch.stack(actions, 1)


def test_fit_recovers_linear_system_within_sampling_error():
    system = linear_gaussian_system(0)
    errors, ratios = [], []
    sizes = (100, 400, 1600, 6400)
    for size in sizes:
        per_seed = []
        for seed in range(3):
            states, actions = sample(system, size, seed=10 * size + seed)
            fit = fit_dynamics(states, actions, ridge=0.0)
            W = torch.cat([fit.A, fit.B], -1)
            W_true = torch.cat([system.A, system.B], -1)
            squared = (W - W_true).square().sum((-2, -1))  # (T,)
            # least squares' standard error: E|Ŵ_t - W_t|²_F = tr(Σ_t) tr((Z_cᵀ Z_c)⁻¹), Z_c the centred regressors
            Z = torch.cat([states[:, :-1], actions], -1).transpose(0, 1)
            Z = Z - Z.mean(1, keepdim=True)
            expected = torch.diagonal(system.covariance, dim1=-2, dim2=-1).sum(-1) * torch.diagonal(
                torch.linalg.inv(Z.transpose(-1, -2) @ Z), dim1=-2, dim2=-1).sum(-1)
            ratios.append(float(squared.sum() / expected.sum()))
            per_seed.append(float(squared.sum().sqrt()))
        errors.append(np.mean(per_seed))
    # 60 coefficients: the ratio is ≈ χ²_60 / 60 (sd ≈ 0.18)
    assert 0.5 < min(ratios) and max(ratios) < 1.7, ratios
    slope = np.polyfit(np.log(sizes), np.log(errors), 1)[0]
    assert -0.62 < slope < -0.38, (slope, errors)  # error ∝ 1/√N
    # the noise covariance and the offsets too, at the largest N
    assert (fit.covariance - system.covariance).abs().max() < 0.1 * system.covariance.abs().max()
    assert (fit.c - system.c).abs().max() < 0.05


def test_fit_is_exact_without_noise_and_the_prior_helps_with_few_samples():
    system = linear_gaussian_system(1)
    states, actions = sample(system, 30, seed=0, noise=False)
    fit = fit_dynamics(states, actions, ridge=0.0)
    assert (fit.A - system.A).abs().max() < 1e-8 and (fit.B - system.B).abs().max() < 1e-8
    assert (fit.c - system.c).abs().max() < 1e-8

    # a time-invariant system: the prior fitted on plenty of data pooled over t helps a fit from 4 samples
    invariant = LinearGaussianDynamics(system.A[:1].expand(4, -1, -1), system.B[:1].expand(4, -1, -1),
                                       system.c[:1].expand(4, -1), system.covariance[:1].expand(4, -1, -1))
    many_states, many_actions = sample(invariant, 500, seed=1)
    prior = DynamicsPrior.fit(many_states, many_actions, strength=20.0)
    few_states, few_actions = sample(invariant, 4, seed=2)
    with_prior = fit_dynamics(few_states, few_actions, prior=prior)
    without = fit_dynamics(few_states, few_actions, ridge=1e-3)
    truth = torch.cat([invariant.A, invariant.B], -1)

    def error(fit):
        return float((torch.cat([fit.A, fit.B], -1) - truth).norm())

    assert error(with_prior) < 0.5 * error(without)
    assert error(with_prior) < 0.5


def test_prior_worth_m_samples_is_m_more_samples():
    """With strength M = the prior's own sample count, the NIW posterior covariance is the covariance of
    the union of the prior's data and the new samples (the pooled-scatter identity), so (A, B, Σ) equal
    a plain fit on the union."""
    system = linear_gaussian_system(3, T=1)
    pool_states, pool_actions = sample(system, 40, seed=3)
    shifted = LinearGaussianDynamics(system.A, system.B, system.c + 2.0, system.covariance)  # a different mean
    new_states, new_actions = sample(shifted, 6, seed=4)
    prior = DynamicsPrior.fit(pool_states, pool_actions, strength=40.0)
    with_prior = fit_dynamics(new_states, new_actions, ridge=0.0, prior=prior)
    union = fit_dynamics(torch.cat([new_states, pool_states]), torch.cat([new_actions, pool_actions]), ridge=0.0)
    assert (with_prior.A - union.A).abs().max() < 1e-10 and (with_prior.B - union.B).abs().max() < 1e-10
    assert (with_prior.covariance - union.covariance).abs().max() < 1e-10


def lq_local_problem(seed: int = 0, T: int = 5):
    """Exact linear-Gaussian local models of an LQ problem and its quadratic cost (as QuadraticCost)."""
    A, B, Q, R, N, Qf = linear_quadratic(seed)
    n, m = B.shape
    gen = torch.Generator().manual_seed(seed + 7)
    L = 0.1 * torch.randn(n, n, generator=gen, dtype=F64)
    dyn = LinearGaussianDynamics(A.expand(T, n, n), B.expand(T, n, m), torch.zeros(T, n, dtype=F64),
                                 (L @ L.T + 0.01 * torch.eye(n, dtype=F64)).expand(T, n, n))
    C = torch.cat([torch.cat([Q, N.T], -1), torch.cat([N, R], -1)], -2)
    cost = QuadraticCost(C.expand(T, n + m, n + m), torch.zeros(T, n + m, dtype=F64), Qf, torch.zeros(n, dtype=F64))
    return (A, B, Q, R, N, Qf), dyn, cost


def test_lqr_controller_on_local_models_is_riccati_and_quadratize_is_exact_on_lq():
    (A, B, Q, R, N, Qf), dyn, cost = lq_local_problem()
    T = dyn.horizon
    controller = lqr_controller(dyn, cost)
    K, P, Q_uu = riccati(A, B, Q, R, N, Qf, T)
    assert (controller.K - K).abs().max() < 1e-10
    assert controller.k.abs().max() < 1e-10
    assert (controller.covariance - torch.linalg.inv(Q_uu)).abs().max() < 1e-10
    # iLQR's own controller agrees (u = ū + k + K(x - x̄) rewritten as K x + k')
    f, c, c_H = lq_functions(A, B, Q, R, N, Qf)
    x0 = torch.tensor([[1.0, -0.5, 0.3]], dtype=F64)
    result = ilqr(f, c, x0, torch.zeros(1, T, 2, dtype=F64), -1e3, 1e3, terminal_cost=c_H)
    from_ilqr = LinearGaussianController.from_ilqr(result)
    assert (from_ilqr.K - K).abs().max() < 1e-8 and from_ilqr.k.abs().max() < 1e-8
    assert (from_ilqr.covariance - controller.covariance).abs().max() < 1e-8
    # the Taylor expansion of a quadratic cost is the cost itself, about any trajectory
    expansion = quadratize_cost(c, result.states[0], result.actions[0] + 0.3, terminal_cost=c_H)
    assert (expansion.C - cost.C).abs().max() < 1e-10 and expansion.c.abs().max() < 1e-10
    assert (expansion.terminal_C - Qf).abs().max() < 1e-10


def random_controller(seed: int, T: int, n: int = 3, m: int = 2) -> LinearGaussianController:
    gen = torch.Generator().manual_seed(seed)
    L = 0.5 * torch.randn(T, m, m, generator=gen, dtype=F64)
    return LinearGaussianController(0.3 * torch.randn(T, m, n, generator=gen, dtype=F64),
                                    torch.randn(T, m, generator=gen, dtype=F64),
                                    L @ L.transpose(-1, -2) + 0.2 * torch.eye(m, dtype=F64))


def test_trajectory_kl_is_the_gaussian_closed_form_on_one_step():
    dyn = linear_gaussian_system(2, T=1)
    new, old = random_controller(3, 1), random_controller(4, 1)
    mu0 = torch.tensor([0.2, -0.1, 0.4], dtype=F64)
    S0 = torch.tensor([[1.0, 0.2, 0.0], [0.2, 0.5, 0.1], [0.0, 0.1, 0.3]], dtype=F64)

    def joint(controller):
        """(x_0, u_0, x_1) as one Gaussian, built by hand."""
        K, k, Su = controller.K[0], controller.k[0], controller.covariance[0]
        F = torch.cat([dyn.A[0], dyn.B[0]], -1)
        mean_xu = torch.cat([mu0, K @ mu0 + k])
        cov_xu = torch.cat([torch.cat([S0, S0 @ K.T], -1), torch.cat([K @ S0, K @ S0 @ K.T + Su], -1)], -2)
        mean = torch.cat([mean_xu, F @ mean_xu + dyn.c[0]])
        cov = torch.cat([torch.cat([cov_xu, cov_xu @ F.T], -1),
                         torch.cat([F @ cov_xu, F @ cov_xu @ F.T + dyn.covariance[0]], -1)], -2)
        return MultivariateNormal(mean, 0.5 * (cov + cov.T))

    expected = kl_divergence(joint(new), joint(old))
    assert torch.allclose(trajectory_kl(dyn, new, old, mu0, S0), expected, rtol=1e-10)
    assert float(trajectory_kl(dyn, old, old, mu0, S0)) == pytest.approx(0.0, abs=1e-12)


def test_trajectory_kl_matches_monte_carlo_on_several_steps():
    T = 4
    dyn = linear_gaussian_system(5, T=T)
    new, old = random_controller(6, T), random_controller(7, T)
    mu0, S0 = torch.zeros(3, dtype=F64), 0.5 * torch.eye(3, dtype=F64)
    gen = torch.Generator().manual_seed(0)
    samples = 20000
    x = mu0 + torch.randn(samples, 3, generator=gen, dtype=F64) @ torch.linalg.cholesky(S0).T
    log_ratio = torch.zeros(samples, dtype=F64)
    for t in range(T):
        u = new.sample(t, x, gen)
        log_ratio += (MultivariateNormal(new.mean(t, x), new.covariance[t]).log_prob(u)
                      - MultivariateNormal(old.mean(t, x), old.covariance[t]).log_prob(u))
        w = torch.randn(samples, 3, generator=gen, dtype=F64) @ torch.linalg.cholesky(dyn.covariance[t]).T
        x = dyn.mean(t, x, u) + w
    estimate, error = float(log_ratio.mean()), float(log_ratio.std() / math.sqrt(samples))
    assert abs(float(trajectory_kl(dyn, new, old, mu0, S0)) - estimate) < 4 * error


def expected_cost(dyn, cost, controller, mu0, S0) -> float:
    """E_p[Σ_t ℓ_t(z_t)] from the marginals (terminal term left out: it is the same kind of sum)."""
    means, covs = trajectory_marginals(dyn, controller, mu0, S0)
    quad = 0.5 * (torch.einsum("tij,tji->t", cost.C, covs) + torch.einsum("ti,tij,tj->t", means, cost.C, means))
    return float((quad + (cost.c * means).sum(-1)).sum())


def test_trust_region_update_keeps_kl_below_epsilon():
    _, dyn, cost = lq_local_problem(1, T=5)
    previous = random_controller(8, 5)
    mu0, S0 = torch.tensor([1.0, -1.0, 0.5], dtype=F64), 0.1 * torch.eye(3, dtype=F64)
    costs = []
    for epsilon in (0.1, 1.0, 5.0):
        update = trust_region_update(dyn, cost, previous, mu0, S0, epsilon)
        kl = float(trajectory_kl(dyn, update.controller, previous, mu0, S0))
        assert kl == pytest.approx(update.kl, rel=1e-12)
        assert kl <= epsilon + 1e-9 and kl >= (1 - 2e-3) * epsilon  # the bound holds, and is active
        costs.append(expected_cost(dyn, cost, update.controller, mu0, S0))
    assert costs[0] > costs[1] > costs[2]  # a wider trust region buys a lower expected cost
    # a loose bound: the constraint is inactive and the LQR controller (η → 0) comes back
    loose = trust_region_update(dyn, cost, previous, mu0, S0, 1e6, eta_min=1e-8)
    unconstrained = lqr_controller(dyn, cost)
    assert loose.eta == 1e-8 and (loose.controller.K - unconstrained.K).abs().max() < 1e-5
    with pytest.raises(ValueError, match="epsilon: expected a finite number > 0"):
        trust_region_update(dyn, cost, previous, mu0, S0, 0.0)


def test_local_model_bad_inputs():
    states, actions = torch.zeros(5, 4, 3), torch.zeros(5, 4, 2)
    with pytest.raises(ValueError, match=r"states, actions: expected shapes \(N, T\+1, n\)"):
        fit_dynamics(states, actions)
    with pytest.raises(ValueError, match="actions: expected T >= 1"):
        fit_dynamics(torch.zeros(5, 1, 3), torch.zeros(5, 0, 2))
    with pytest.raises(ValueError, match="ridge: expected a finite number >= 0"):
        fit_dynamics(torch.zeros(5, 5, 3), actions, ridge=-1.0)
    with pytest.raises(ValueError, match="states: expected finite values"):
        fit_dynamics(torch.full((5, 5, 3), math.nan), actions)
    prior = DynamicsPrior.fit(torch.randn(5, 5, 2), torch.randn(5, 4, 1))
    with pytest.raises(ValueError, match="prior: expected a prior on"):
        fit_dynamics(torch.randn(5, 5, 3), actions, prior=prior)
