"""The Bayesian Kalman filter's parameter dynamics dE = f(E) dt, dF = g(F) dt (torchdiffeq)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from mbrl_course.filters import (
    BayesianKalmanFilter,
    FitConfig,
    LinearMatrixField,
    LyapunovField,
    MLPMatrixField,
    ODEParameterDynamics,
    bayesian_kalman_filter,
    fit,
    kalman_filter,
)

F64 = torch.float64


def setup(seed=0, dx=3):
    g = torch.Generator().manual_seed(seed)
    A = 0.3 * torch.randn(dx, dx, generator=g, dtype=F64)
    Af = 0.2 * torch.randn(dx, dx, generator=g, dtype=F64) - 0.1 * torch.eye(dx, dtype=F64)
    E0 = torch.eye(dx, dtype=F64) + 0.1 * torch.randn(dx, dx, generator=g, dtype=F64)
    L = torch.randn(dx, dx, generator=g, dtype=F64)
    F0 = L @ L.T / dx + 0.2 * torch.eye(dx, dtype=F64)
    return A, Af, E0, F0


def test_linear_fields_match_matrix_exponentials():
    """f(E) = A E gives E_t = expm(A t) E_0; g(F) = A F + F Aᵀ gives F_t = expm(A t) F_0 expm(A t)ᵀ."""
    A, Af, E0, F0 = setup()
    dyn = ODEParameterDynamics(LinearMatrixField(A), LyapunovField(Af), E0, F0, rtol=1e-10, atol=1e-12)
    times = torch.tensor([0.3, 0.7, 1.5, 2.0, 4.0], dtype=F64)
    E, F = dyn(times)
    assert E.shape == F.shape == (5, 3, 3)
    for k, t in enumerate(times.tolist()):
        Et = scipy.linalg.expm(A.numpy() * t) @ E0.numpy()
        Phi = scipy.linalg.expm(Af.numpy() * t)
        Ft = Phi @ F0.numpy() @ Phi.T
        np.testing.assert_allclose(E[k].detach().numpy(), Et, rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(F[k].detach().numpy(), Ft, rtol=1e-7, atol=1e-9)
    assert torch.equal(F, F.mT)
    # a start time other than 0 shifts the clock
    E2, _ = dyn(times + 1.0, start_time=1.0)
    torch.testing.assert_close(E2, E, rtol=1e-7, atol=1e-9)


def test_noise_factor_flow_stays_symmetric_positive_definite_with_an_mlp_field():
    """A nonlinear g (mean reversion plus a random tanh network): F_t stays exactly symmetric and PD."""
    _, _, E0, F0 = setup(1)
    with torch.random.fork_rng():  # seeded network weights, the global RNG left as it was
        torch.manual_seed(0)
        mlp = MLPMatrixField(3, hidden=16, dtype=F64)
        torch.nn.init.normal_(mlp.net[2].weight, std=0.3)
        transition_field = MLPMatrixField(3, dtype=F64)
    revert = LyapunovField(-0.5 * torch.eye(3, dtype=F64), 0.5 * torch.eye(3, dtype=F64))

    def g(F):
        return revert(F) + 0.2 * mlp(F)  # not symmetric: the flow uses its symmetric part

    def g_sym(F):
        G = g(F)
        return 0.5 * (G + G.mT)

    dyn = ODEParameterDynamics(transition_field, g, E0, F0, rtol=1e-6, atol=1e-8)
    _, F = dyn(torch.linspace(0.5, 10.0, 20, dtype=F64))
    assert torch.equal(F, F.mT)
    assert (torch.linalg.eigvalsh(F.detach()) > 0).all()
    # the factor ODE integrates dF = g(F) dt itself: compare with a direct fine rk4 integration of F
    F_direct = F0.clone()
    dt = 0.005
    with torch.no_grad():
        for _ in range(100):  # to t = 0.5
            k1 = g_sym(F_direct)
            k2 = g_sym(F_direct + dt / 2 * k1)
            k3 = g_sym(F_direct + dt / 2 * k2)
            k4 = g_sym(F_direct + dt * k3)
            F_direct = F_direct + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    torch.testing.assert_close(F[0].detach(), F_direct, rtol=1e-5, atol=1e-6)


def test_bayesian_kalman_filter_equals_kalman_filter_with_closed_form_parameters():
    A, Af, E0, F0 = setup(2)
    dyn = ODEParameterDynamics(LinearMatrixField(A), LyapunovField(Af), E0, F0, rtol=1e-10, atol=1e-12)
    T, dy = 15, 2
    g = torch.Generator().manual_seed(3)
    C = torch.randn(dy, 3, generator=g, dtype=F64)
    D = 0.5 * torch.eye(dy, dtype=F64)
    m0, S0 = torch.zeros(3, dtype=F64), torch.eye(3, dtype=F64)
    y = torch.randn(2, T, dy, generator=g, dtype=F64)
    y[0, 4] = float("nan")
    times = torch.cumsum(torch.rand(T, generator=g, dtype=F64) * 0.3 + 0.05, 0)
    E_true = torch.stack([torch.linalg.matrix_exp(A * t) @ E0 for t in times])
    F_true = torch.stack([torch.linalg.matrix_exp(Af * t) @ F0 @ torch.linalg.matrix_exp(Af * t).T for t in times])
    ref = kalman_filter(y, m0, S0, E_true, F_true, C, D)
    for parallel in (False, True):
        res = bayesian_kalman_filter(y, m0, S0, dyn, C, D, times=times, parallel=parallel)
        torch.testing.assert_close(res.log_likelihood, ref.log_likelihood, rtol=1e-8, atol=1e-8)
        torch.testing.assert_close(res.filtered_means, ref.filtered_means, rtol=1e-7, atol=1e-8)
    # unit steps by default: times 1, 2, ..., T
    unit = bayesian_kalman_filter(y, m0, S0, dyn, C, D)
    ref_unit = bayesian_kalman_filter(y, m0, S0, dyn, C, D, times=torch.arange(1, T + 1, dtype=F64))
    torch.testing.assert_close(unit.log_likelihood, ref_unit.log_likelihood)


def test_gradients_flow_to_the_field_parameters_and_match_finite_differences():
    A, Af, E0, F0 = setup(4, dx=2)
    g = torch.Generator().manual_seed(5)
    C = torch.randn(2, 2, generator=g, dtype=F64)
    y = torch.randn(10, 2, generator=g, dtype=F64)
    model = BayesianKalmanFilter(
        ODEParameterDynamics(LinearMatrixField(A), LyapunovField(Af, 0.3 * torch.eye(2, dtype=F64)), E0, F0,
                             method="rk4", options={"step_size": 0.05}),
        torch.zeros(2, dtype=F64), torch.eye(2, dtype=F64), C, 0.4 * torch.eye(2, dtype=F64),
    )
    ll = model.log_likelihood(y)
    ll.backward()
    params = dict(model.named_parameters())
    assert {"dynamics.flow.transition_field.matrix", "dynamics.flow.noise_field.matrix",
            "dynamics.flow.noise_field.noise_factor", "dynamics.initial_transition_matrix"} <= set(params)
    h = 1e-6
    for name, p in params.items():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        direction = torch.randn(p.shape, generator=g, dtype=F64)
        with torch.no_grad():
            p += h * direction
            up = model.log_likelihood(y)
            p -= 2 * h * direction
            down = model.log_likelihood(y)
            p += h * direction
        fd = (up - down) / (2 * h)
        np.testing.assert_allclose(float((p.grad * direction).sum()), float(fd), rtol=1e-5, atol=1e-7, err_msg=name)


def test_fit_climbs_the_likelihood_of_the_bayesian_kalman_filter():
    A, Af, E0, F0 = setup(6, dx=2)
    true = ODEParameterDynamics(LinearMatrixField(A), LyapunovField(Af), E0, F0)
    T = 40
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        E, F = true(torch.arange(1, T + 1, dtype=F64))
        s = torch.zeros(2, dtype=F64)
        ys = []
        for t in range(T):
            s = E[t] @ s + torch.linalg.cholesky(F[t]) @ torch.randn(2, generator=g, dtype=F64)
            ys.append(s + 0.3 * torch.randn(2, generator=g, dtype=F64))
        y = torch.stack(ys)
    model = BayesianKalmanFilter(
        ODEParameterDynamics(LinearMatrixField(torch.zeros(2, 2, dtype=F64)), LyapunovField(torch.zeros(2, 2, dtype=F64)),
                             E0, F0, rtol=1e-6, atol=1e-8),
        torch.zeros(2, dtype=F64), torch.eye(2, dtype=F64), torch.eye(2, dtype=F64), 0.1 * torch.eye(2, dtype=F64),
    )
    config = FitConfig(num_steps=8, optimizer="adam", learning_rate=0.05, progress=False)
    result = fit(model, y, trainable=["dynamics.flow"], config=config)
    assert result.log_likelihoods[-1] > result.log_likelihoods[0] + 1.0
    torch.testing.assert_close(model.dynamics.initial_transition_matrix, E0)  # not trainable here


def test_bad_input():
    A, Af, E0, F0 = setup()
    with pytest.raises(ValueError, match="initial_transition_cov"):
        ODEParameterDynamics(LinearMatrixField(A), LyapunovField(Af), E0, -F0)
    with pytest.raises(ValueError, match="initial_transition_matrix"):
        ODEParameterDynamics(LinearMatrixField(A), LyapunovField(Af), E0[:2], F0)
    dyn = ODEParameterDynamics(LinearMatrixField(A), LyapunovField(Af), E0, F0)
    with pytest.raises(ValueError, match="increasing"):
        dyn(torch.tensor([1.0, 0.5], dtype=F64))
    with pytest.raises(ValueError, match="increasing"):
        dyn(torch.tensor([0.0, 0.5], dtype=F64))
    y = torch.zeros(4, 2, dtype=F64)
    C, D = torch.eye(2, 3, dtype=F64), torch.eye(2, dtype=F64)
    with pytest.raises(ValueError, match="times"):
        bayesian_kalman_filter(y, torch.zeros(3, dtype=F64), torch.eye(3, dtype=F64), dyn, C, D,
                               times=torch.arange(1.0, 4.0, dtype=F64))
    with pytest.raises(TypeError, match="dynamics"):
        bayesian_kalman_filter(y, torch.zeros(3, dtype=F64), torch.eye(3, dtype=F64), lambda t: t, C, D)
