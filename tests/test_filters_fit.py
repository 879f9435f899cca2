"""Marginal-likelihood gradients (against finite differences) and maximum-likelihood fitting."""

from __future__ import annotations

import math

import pytest
import torch

from mbrl_course.filters import (
    FitConfig,
    LinearGaussianModel,
    LinearGaussianSSM,
    fit,
    positive_definite,
    positive_definite_inverse,
)

F64 = torch.float64


def rotation(theta: float, radius: float) -> torch.Tensor:
    c, s = math.cos(theta), math.sin(theta)
    return radius * torch.tensor([[c, -s], [s, c]], dtype=F64)


def random_model(seed: int, dx=3, dy=2, du=1) -> LinearGaussianModel:
    g = torch.Generator().manual_seed(seed)

    def spd(n, s):
        A = torch.randn(n, n, generator=g, dtype=F64)
        return s * (A @ A.T / n + 0.3 * torch.eye(n, dtype=F64))

    return LinearGaussianModel(
        torch.randn(dx, generator=g, dtype=F64), spd(dx, 1.0), 0.5 * torch.randn(dx, dx, generator=g, dtype=F64),
        spd(dx, 0.3), torch.randn(dy, dx, generator=g, dtype=F64), spd(dy, 0.5),
        torch.randn(dx, du, generator=g, dtype=F64),
    )


@pytest.mark.parametrize("parallel", [False, True])
def test_autograd_gradients_match_central_finite_differences(parallel):
    model = random_model(0)
    g = torch.Generator().manual_seed(1)
    T = 15
    y = torch.randn(2, T, 2, generator=g, dtype=F64)
    y[0, 3, 1] = float("nan")
    y[1, 7] = float("nan")
    u = torch.randn(2, T, 1, generator=g, dtype=F64)
    model.log_likelihood(y, u, parallel=parallel).sum().backward()
    h = 1e-6
    names = set()
    for name, p in model.named_parameters():
        names.add(name)
        direction = torch.randn(p.shape, generator=g, dtype=F64)
        with torch.no_grad():
            p += h * direction
            up = model.log_likelihood(y, u, parallel=parallel).sum()
            p -= 2 * h * direction
            down = model.log_likelihood(y, u, parallel=parallel).sum()
            p += h * direction
        fd = float((up - down) / (2 * h))
        auto = float((p.grad * direction).sum())
        assert math.isclose(auto, fd, rel_tol=1e-6, abs_tol=1e-7), (name, auto, fd)
    assert len(names) == 7


def test_positive_definite_parameterisation_round_trips():
    g = torch.Generator().manual_seed(2)
    A = torch.randn(4, 3, 3, generator=g, dtype=F64)
    cov = A @ A.mT + 0.1 * torch.eye(3, dtype=F64)
    torch.testing.assert_close(positive_definite(positive_definite_inverse(cov)), cov)
    raw = 3.0 * torch.randn(5, 3, 3, generator=g, dtype=F64)
    S = positive_definite(raw)
    assert torch.equal(S, S.mT) and (torch.linalg.eigvalsh(S) > 0).all()


def test_fit_recovers_true_parameters_from_2000_samples():
    """E and F from T = 2000 observations of a 2-d rotating state (C, D known): within 10%."""
    E = rotation(0.3, 0.9)
    F = torch.tensor([[1.0, 0.2], [0.2, 0.6]], dtype=F64)
    C = torch.eye(2, dtype=F64)
    D = 0.2 * torch.tensor([[1.0, -0.1], [-0.1, 0.7]], dtype=F64)
    m0, S0 = torch.zeros(2, dtype=F64), torch.eye(2, dtype=F64)
    true = LinearGaussianSSM(m0, S0, E, F, C, D)
    _, y = true.sample(2000, generator=torch.Generator().manual_seed(0))
    model = LinearGaussianModel(m0, S0, 0.5 * torch.eye(2, dtype=F64), torch.eye(2, dtype=F64), C, D)
    result = fit(model, y, trainable=["transition_matrix", "transition_cov"],
                 config=FitConfig(num_steps=60, progress=False))
    trace = result.log_likelihoods
    assert result.converged
    assert (trace[1:] >= trace[:-1] - 1e-6).all()  # L-BFGS with a strong-Wolfe line search only climbs
    with torch.no_grad():
        assert trace[-1] >= true.log_likelihood(y) - 1e-6  # the MLE beats the truth on its own data
        for name, target in (("transition_matrix", E), ("transition_cov", F)):
            est = getattr(model, name)
            rel = float(torch.linalg.norm(est - target) / torch.linalg.norm(target))
            assert rel < 0.10, (name, rel)
    # untouched: C, D, m_0, S_0
    torch.testing.assert_close(model.emission_cov.detach(), D)
    torch.testing.assert_close(model.initial_mean.detach(), m0)


def test_fit_all_of_e_f_d_climbs_above_the_truth_and_finds_e():
    E = rotation(0.2, 0.95)
    F = torch.tensor([[1.0, 0.2], [0.2, 0.6]], dtype=F64)
    C = torch.eye(2, dtype=F64)
    D = 0.5 * torch.tensor([[1.0, -0.1], [-0.1, 0.7]], dtype=F64)
    m0, S0 = torch.zeros(2, dtype=F64), torch.eye(2, dtype=F64)
    true = LinearGaussianSSM(m0, S0, E, F, C, D)
    _, y = true.sample(2000, generator=torch.Generator().manual_seed(1))
    model = LinearGaussianModel(m0, S0, 0.5 * torch.eye(2, dtype=F64), torch.eye(2, dtype=F64), C,
                                torch.eye(2, dtype=F64))
    result = fit(model, y, trainable=["transition_matrix", "transition_cov", "emission_cov"],
                 config=FitConfig(num_steps=60, progress=False))
    with torch.no_grad():
        assert result.log_likelihoods[-1] >= true.log_likelihood(y) - 1e-6
        assert float(torch.linalg.norm(model.transition_matrix - E) / torch.linalg.norm(E)) < 0.10
        # the gradient vanishes at the optimum
        model.zero_grad()
    ll = model.log_likelihood(y) / y.shape[-2]
    ll.backward()
    for name in ("transition_matrix", "transition_cov_unconstrained", "emission_cov_unconstrained"):
        assert getattr(model, name).grad.abs().max() < 1e-4, name


def test_adam_trainable_subset_and_errors():
    model = random_model(3, du=0)
    ssm = model.ssm()
    with torch.no_grad():
        _, y = LinearGaussianSSM(*(t.detach() for t in (ssm.initial_mean, ssm.initial_cov, ssm.transition_matrix,
                                                          ssm.transition_cov, ssm.emission_matrix,
                                                          ssm.emission_cov))).sample(
            50, sample_shape=(3,), generator=torch.Generator().manual_seed(4))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        model.transition_matrix.mul_(0.3)
    start = model.transition_matrix.detach().clone()
    result = fit(model, y, trainable="transition_matrix",
                 config=FitConfig(num_steps=25, optimizer="adam", learning_rate=0.05, progress=True))
    assert result.log_likelihoods.shape[0] <= 26 and result.log_likelihoods[-1] > result.log_likelihoods[0]
    assert not torch.equal(model.transition_matrix.detach(), start)
    for name, value in before.items():
        if name != "transition_matrix":
            assert torch.equal(getattr(model, name).detach(), value), name
    assert all(p.requires_grad for p in model.parameters())  # restored after the fit
    with pytest.raises(ValueError, match="trainable"):
        fit(model, y, trainable=["observation_matrix"], config=FitConfig(num_steps=1, progress=False))
    with pytest.raises(ValueError, match="optimizer"):
        fit(model, y, config=FitConfig(optimizer="sgd", progress=False))
    with pytest.raises(TypeError, match="log_likelihood"):
        fit(torch.nn.Linear(2, 2), y, config=FitConfig(num_steps=1, progress=False))
    with pytest.raises(ValueError, match="emission_cov"):
        LinearGaussianModel(torch.zeros(2), torch.eye(2), torch.eye(2), torch.eye(2), torch.eye(2), -torch.eye(2))
