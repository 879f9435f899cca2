"""EKF and bootstrap particle filter: against the Kalman filter on linear models and the exact
grid filter on a nonlinear one."""

from __future__ import annotations

import math

import pytest
import torch

from mbrl_course.filters import (
    GridSSM,
    NonlinearGaussianSSM,
    extended_kalman_filter,
    kalman_filter,
    particle_filter,
)

F64 = torch.float64


def linear_model(seed: int, dx: int = 2, dy: int = 2, du: int = 1):
    g = torch.Generator().manual_seed(seed)

    def spd(n, s):
        A = torch.randn(n, n, generator=g, dtype=F64)
        return s * (A @ A.T / n + 0.3 * torch.eye(n, dtype=F64))

    Q, _ = torch.linalg.qr(torch.randn(dx, dx, generator=g, dtype=F64))
    return dict(
        m0=torch.randn(dx, generator=g, dtype=F64), S0=spd(dx, 1.0), E=0.9 * Q, F=spd(dx, 0.3),
        C=torch.randn(dy, dx, generator=g, dtype=F64), D=spd(dy, 0.5),
        B=torch.randn(dx, du, generator=g, dtype=F64),
    )


def test_ekf_equals_kalman_filter_on_linear_model():
    m = linear_model(0, dx=3, dy=2)
    T = 25
    g = torch.Generator().manual_seed(1)
    y = torch.randn(4, T, 2, generator=g, dtype=F64)
    y[0, 3] = float("nan")
    y[1, 5, 1] = float("nan")
    u = torch.randn(4, T, 1, generator=g, dtype=F64)
    kf = kalman_filter(y, m["m0"], m["S0"], m["E"], m["F"], m["C"], m["D"], u, m["B"])
    ekf = extended_kalman_filter(y, m["m0"], m["S0"], lambda s, c: s @ m["E"].T + c @ m["B"].T, m["F"],
                                 lambda s: s @ m["C"].T, m["D"], controls=u)
    for name in ("filtered_means", "filtered_covs", "predicted_means", "predicted_covs", "predicted_obs_means",
                 "predicted_obs_covs", "step_log_likelihoods", "log_likelihood"):
        torch.testing.assert_close(getattr(ekf, name), getattr(kf, name), rtol=1e-10, atol=1e-12, msg=name)


@pytest.mark.parametrize("resampling", ["systematic", "multinomial"])
def test_particle_filter_log_likelihood_approaches_kalman_filter(resampling):
    m = linear_model(2, du=0)
    T, R = 30, 16  # R independent particle filters, one per batch entry
    ssm = NonlinearGaussianSSM(m["m0"], m["S0"], lambda s: s @ m["E"].T, m["F"], lambda s: s @ m["C"].T, m["D"])
    _, y = ssm.sample(T, generator=torch.Generator().manual_seed(3))
    exact = kalman_filter(y, m["m0"], m["S0"], m["E"], m["F"], m["C"], m["D"])
    errors = []
    for N in (30, 300, 3000):
        res = particle_filter(y.expand(R, T, 2), m["m0"], m["S0"], ssm.transition_fn, m["F"], ssm.emission_fn,
                              m["D"], num_particles=N, resampling=resampling,
                              generator=torch.Generator().manual_seed(N))
        errors.append(float((res.log_likelihood - exact.log_likelihood).abs().mean()))
        if N == 3000:
            torch.testing.assert_close(res.filtered_means.mean(0), exact.filtered_means, rtol=0, atol=0.05)
            torch.testing.assert_close(res.predicted_covs.mean(0), exact.predicted_covs, rtol=0, atol=0.1)
    assert errors[2] < errors[1] < errors[0], errors
    assert errors[2] < 0.25, errors


def test_particle_filter_and_ekf_on_a_nonlinear_model_against_the_grid_filter():
    """1-d nonlinear SSM: the exact filter on a fine grid is the oracle."""
    f = lambda s: 0.8 * s + 1.5 * torch.sin(s)  # noqa: E731
    h = lambda s: 0.5 * s + 0.1 * s**3  # noqa: E731
    t = lambda v: torch.tensor([[v]], dtype=F64)  # noqa: E731
    m0, S0, F, D = torch.tensor([0.5], dtype=F64), t(1.0), t(0.3), t(0.2)
    ssm = NonlinearGaussianSSM(m0, S0, f, F, h, D)
    T = 20
    _, y = ssm.sample(T, generator=torch.Generator().manual_seed(4))
    grid = torch.linspace(-12, 12, 2401, dtype=F64).unsqueeze(-1)
    exact = GridSSM.from_gaussian(grid, m0, S0, f, F, h, D).filter(y)
    exact_mean = exact.filtered_probs @ grid[:, 0]
    pf = ssm.particle_filter(y.expand(8, T, 1), num_particles=4000, generator=torch.Generator().manual_seed(5))
    assert abs(float(pf.log_likelihood.mean() - exact.log_likelihood)) < 0.1
    torch.testing.assert_close(pf.filtered_means[..., 0].mean(0), exact_mean, rtol=0, atol=0.08)
    ekf = ssm.extended_kalman_filter(y)
    assert torch.isfinite(ekf.log_likelihood)
    # the EKF is an approximation: close to, but measurably off, the exact answer
    assert abs(float(ekf.log_likelihood - exact.log_likelihood)) < 0.25 * abs(float(exact.log_likelihood))


def test_particle_filter_missing_data_and_reproducibility():
    m = linear_model(6, du=0)
    T = 12
    f = lambda s: s @ m["E"].T  # noqa: E731
    h = lambda s: s @ m["C"].T  # noqa: E731
    y = torch.full((T, 2), float("nan"), dtype=F64)
    res = particle_filter(y, m["m0"], m["S0"], f, m["F"], h, m["D"], num_particles=2000,
                          generator=torch.Generator().manual_seed(0))
    assert res.log_likelihood.item() == 0.0
    torch.testing.assert_close(res.filtered_means, res.predicted_means)
    # prior predictions: E[s_t] = E^t m_0
    prior = torch.stack([torch.linalg.matrix_power(m["E"], k) @ m["m0"] for k in range(1, T + 1)])
    torch.testing.assert_close(res.predicted_means, prior, rtol=0, atol=0.1)
    torch.testing.assert_close(res.effective_sample_sizes, torch.full((T,), 2000.0, dtype=F64))
    y[3] = torch.tensor([0.5, -0.2], dtype=F64)
    y[7, 0] = 1.0
    a = particle_filter(y, m["m0"], m["S0"], f, m["F"], h, m["D"], num_particles=500,
                        generator=torch.Generator().manual_seed(1))
    b = particle_filter(y, m["m0"], m["S0"], f, m["F"], h, m["D"], num_particles=500,
                        generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a.log_likelihood, b.log_likelihood, rtol=0, atol=0)
    assert math.isfinite(a.log_likelihood.item()) and a.step_log_likelihoods[4].item() == 0.0
    assert a.final_particles.shape == (500, 2) and a.final_log_weights.shape == (500,)


def test_bad_input():
    m = linear_model(7, du=0)
    f = lambda s: s @ m["E"].T  # noqa: E731
    h = lambda s: s @ m["C"].T  # noqa: E731
    y = torch.zeros(5, 2, dtype=F64)
    with pytest.raises(ValueError, match="num_particles"):
        particle_filter(y, m["m0"], m["S0"], f, m["F"], h, m["D"], num_particles=0)
    with pytest.raises(ValueError, match="resampling"):
        particle_filter(y, m["m0"], m["S0"], f, m["F"], h, m["D"], resampling="stratified-ish")
    with pytest.raises(ValueError, match="ess_threshold"):
        particle_filter(y, m["m0"], m["S0"], f, m["F"], h, m["D"], ess_threshold=1.5)
    with pytest.raises(ValueError, match="emission_cov"):
        extended_kalman_filter(y, m["m0"], m["S0"], f, m["F"], h, -m["D"])
    with pytest.raises(ValueError, match="T = 0"):
        extended_kalman_filter(y[:0], m["m0"], m["S0"], f, m["F"], h, m["D"])
    with pytest.raises(TypeError, match="transition_cov"):
        extended_kalman_filter(y, m["m0"], m["S0"], f, m["F"].float(), h, m["D"])
