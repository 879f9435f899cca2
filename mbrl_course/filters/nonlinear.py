"""Filters for nonlinear Gaussian state-space models: the extended Kalman filter and a bootstrap
particle filter, the baselines later variational methods are measured against.

The model::

    p(s_0)           = N(s_0 | m_0, S_0)
    p(s_t | s_{t-1}) = N(s_t | f(s_{t-1}, u_t), F_t)
    p(y_t | s_t)     = N(y_t | h(s_t), D)

``transition_fn`` f maps ``states: (..., dx)`` (and ``controls: (..., du)`` when controls are given)
to ``(..., dx)``; ``emission_fn`` h maps ``(..., dx)`` to ``(..., dy)``. Both must act row by row on
the leading dimensions (the EKF differentiates them with ``torch.func.vmap(jacrev(...))``, so they
must also accept a single unbatched state ``(dx,)``). Both filters return the field names of
:class:`~mbrl_course.filters.KalmanFilterResult`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from mbrl_course._checks import check_choice, check_positive_float, check_positive_int
from mbrl_course.filters._gaussian import (
    condition,
    gaussian_log_density,
    mask_covariance,
    mask_emission,
    psd_factor,
    symmetrize,
)
from mbrl_course.filters._validate import (
    broadcast_batch,
    check_covariance,
    like,
    matrix,
    observations_tensor,
    time_matrix,
    vector,
)
from mbrl_course.filters.kalman import KalmanFilterResult, _per_step

TransitionFn = Callable[..., torch.Tensor]
EmissionFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class ParticleFilterResult(KalmanFilterResult):
    """The Kalman-filter fields (weighted particle moments) plus the particle system's own."""

    effective_sample_sizes: torch.Tensor
    """ESS = 1 / Σ_i w_i² of the weights after conditioning on y_t, before resampling: (..., T)"""
    final_particles: torch.Tensor
    """particles s_T^i after the last step: (..., N, dx)"""
    final_log_weights: torch.Tensor
    """their normalised log-weights log w_T^i: (..., N)"""


def _prepare(observations, initial_mean, initial_cov, transition_cov, emission_cov, controls):
    y = observations_tensor(observations)
    T, dy = y.shape[-2], y.shape[-1]
    m0 = vector("initial_mean (m_0)", initial_mean, None, y)
    dx = m0.shape[-1]
    S0 = matrix("initial_cov (S_0)", initial_cov, dx, dx, y)
    F = time_matrix("transition_cov (F_t)", transition_cov, dx, dx, T, y)
    D = time_matrix("emission_cov (D)", emission_cov, dy, dy, T, y)
    check_covariance("initial_cov (S_0)", S0, definite=False)
    check_covariance("transition_cov (F_t)", F, definite=False)
    check_covariance("emission_cov (D)", D, definite=True)
    shapes = [
        ("observations", y.shape[:-2]),
        ("initial_mean (m_0)", m0.shape[:-1]),
        ("initial_cov (S_0)", S0.shape[:-2]),
        ("transition_cov (F_t)", F.shape[:-3]),
        ("emission_cov (D)", D.shape[:-3]),
    ]
    us = [None] * T
    if controls is not None:
        u = like("controls (u_t)", controls, y)
        if u.ndim < 2 or u.shape[-2] != T:
            raise ValueError(f"controls (u_t): expected shape (..., T, du) with T = {T}, got {tuple(u.shape)}")
        shapes.append(("controls (u_t)", u.shape[:-2]))
        us = list(u.unbind(-2))
    batch = broadcast_batch(shapes)
    mask = ~torch.isnan(y)
    y = torch.where(mask, y, torch.zeros((), dtype=y.dtype, device=y.device))
    return y, mask, m0, S0, F, D, us, batch


def _value_and_jacobian(fn: Callable, x: torch.Tensor, u: torch.Tensor | None):
    """f(x) and ∂f/∂x at every row of ``x: (..., dx)`` -> ``(..., n)``, ``(..., n, dx)``."""
    lead = x.shape[:-1]
    flat_x = x.reshape(-1, x.shape[-1])
    if u is None:
        jac, val = torch.func.vmap(torch.func.jacrev(lambda s: (fn(s), fn(s)), has_aux=True))(flat_x)
    else:
        flat_u = u.expand(lead + u.shape[-1:]).reshape(-1, u.shape[-1])
        jac, val = torch.func.vmap(
            torch.func.jacrev(lambda s, c: (fn(s, c), fn(s, c)), argnums=0, has_aux=True)
        )(flat_x, flat_u)
    return val.reshape(lead + val.shape[-1:]), jac.reshape(lead + jac.shape[-2:])


def extended_kalman_filter(
    observations: torch.Tensor,
    initial_mean: torch.Tensor,
    initial_cov: torch.Tensor,
    transition_fn: TransitionFn,
    transition_cov: torch.Tensor,
    emission_fn: EmissionFn,
    emission_cov: torch.Tensor,
    controls: torch.Tensor | None = None,
) -> KalmanFilterResult:
    """Extended Kalman filter: the Kalman recursion on the first-order Taylor expansion of f and h.

    For t = 1..T, with E_t = ∂f/∂s at m_{t-1} and C_t = ∂h/∂s at μ_t:

    - p(s_t | Y_{1:t-1}) ≈ N(μ_t, Σ_t),  μ_t = f(m_{t-1}, u_t),  Σ_t = F_t + E_t S_{t-1} E_tᵀ
    - p(y_t | Y_{1:t-1}) ≈ N(u_t, V_t),  u_t = h(μ_t),  V_t = D + C_t Σ_t C_tᵀ
    - p(s_t | Y_{1:t}) ≈ N(m_t, S_t),  K = Σ_t C_tᵀ V_t⁻¹,  m_t = μ_t + K (y_t - u_t),
      S_t = (I - K C_t) Σ_t (I - K C_t)ᵀ + K D Kᵀ

    For linear f(s) = E s and h(s) = C s this is exactly :func:`~mbrl_course.filters.kalman_filter`.
    ``observations: (..., T, dy)`` (NaN = missing, as in ``kalman_filter``); ``initial_mean: (..., dx)``;
    ``initial_cov: (..., dx, dx)``; ``transition_cov`` F_t and ``emission_cov`` D fixed or with a T axis;
    ``controls: (..., T, du)`` passed to ``transition_fn(states, controls)``.
    Returns a :class:`KalmanFilterResult` whose log-likelihood is the EKF's approximation.
    """
    y, mask, m0, S0, F, D, us, batch = _prepare(
        observations, initial_mean, initial_cov, transition_cov, emission_cov, controls
    )
    T, dx = y.shape[-2], m0.shape[-1]
    Fs, Ds = _per_step(F, T), _per_step(D, T)
    ys, masks = y.unbind(-2), mask.unbind(-2)
    m = m0.expand(batch + (dx,))
    S = S0.expand(batch + (dx, dx))
    out = {k: [] for k in ("mu", "Sigma", "m", "S", "u", "V", "ll")}
    for t in range(T):
        f_val, E_t = _value_and_jacobian(transition_fn, m, us[t])
        mu = f_val
        Sigma = symmetrize(Fs[t] + E_t @ S @ E_t.mT)
        h_val, C_t = _value_and_jacobian(emission_fn, mu, None)
        Cm, Dm = mask_emission(C_t, Ds[t], masks[t])
        residual = torch.where(masks[t], ys[t] - h_val, torch.zeros_like(h_val))
        m, S, ll = condition(mu, Sigma, residual, Cm, Dm, masks[t])
        for k, v in zip(out, (mu, Sigma, m, S, h_val, symmetrize(Ds[t] + C_t @ Sigma @ C_t.mT), ll)):
            out[k].append(v)
    step = torch.stack(out["ll"], -1).expand(batch + (T,))
    return KalmanFilterResult(
        filtered_means=torch.stack(out["m"], -2),
        filtered_covs=torch.stack(out["S"], -3),
        predicted_means=torch.stack(out["mu"], -2),
        predicted_covs=torch.stack(out["Sigma"], -3),
        predicted_obs_means=torch.stack(out["u"], -2),
        predicted_obs_covs=torch.stack(out["V"], -3),
        step_log_likelihoods=step,
        log_likelihood=step.sum(-1),
    )


def _weighted_moments(particles: torch.Tensor, weights: torch.Tensor):
    """Σ_i w_i x_i and Σ_i w_i (x_i - x̄)(x_i - x̄)ᵀ for ``particles: (..., N, d)``, ``weights: (..., N)``."""
    mean = (weights.unsqueeze(-1) * particles).sum(-2)
    centred = particles - mean.unsqueeze(-2)
    cov = torch.einsum("...n,...ni,...nj->...ij", weights, centred, centred)
    return mean, symmetrize(cov)


def _systematic_indices(weights: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Systematic resampling: one uniform offset, N evenly spaced points through the weights' CDF."""
    N = weights.shape[-1]
    cdf = weights.cumsum(-1)
    cdf = torch.cat([cdf[..., :-1], torch.ones_like(cdf[..., -1:])], dim=-1)
    offset = torch.rand(weights.shape[:-1] + (1,), generator=generator, dtype=weights.dtype, device=weights.device)
    points = (offset + torch.arange(N, dtype=weights.dtype, device=weights.device)) / N
    return torch.searchsorted(cdf.contiguous(), points.contiguous()).clamp_max(N - 1)


def _multinomial_indices(weights: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    N = weights.shape[-1]
    flat = weights.reshape(-1, N)
    idx = torch.multinomial(flat, N, replacement=True, generator=generator)
    return idx.reshape(weights.shape)


def particle_filter(
    observations: torch.Tensor,
    initial_mean: torch.Tensor,
    initial_cov: torch.Tensor,
    transition_fn: TransitionFn,
    transition_cov: torch.Tensor,
    emission_fn: EmissionFn,
    emission_cov: torch.Tensor,
    num_particles: int = 1000,
    controls: torch.Tensor | None = None,
    resampling: str = "systematic",
    ess_threshold: float = 0.5,
    generator: torch.Generator | None = None,
) -> ParticleFilterResult:
    """Bootstrap particle filter: the Bayesian filter's integrals as weighted sums over N particles.

    With s_0^i ~ p(s_0) and normalised weights w_{t-1}^i, for t = 1..T:

    - marginalisation  s_t^i ~ p(s_t | s_{t-1}^i) = N(f(s_{t-1}^i, u_t), F_t)
      (p(s_t | Y_{1:t-1}) ≈ Σ_i w_{t-1}^i δ(s_t - s_t^i))
    - marginalisation  p(y_t | Y_{1:t-1}) ≈ Σ_i w_{t-1}^i p(y_t | s_t^i),  p(y_t | s_t) = N(h(s_t), D)
    - inference        w_t^i = w_{t-1}^i p(y_t | s_t^i) / p(y_t | Y_{1:t-1})
    - resampling       when ESS = 1/Σ_i (w_t^i)² < ``ess_threshold`` · N, draw N particles from the
      weights (``"systematic"`` or ``"multinomial"``) and reset w_t^i = 1/N.

    The estimate of p(Y_{1:T}) = Π_t p(y_t | Y_{1:t-1}) is unbiased, so log_likelihood approaches
    the exact one (the Kalman filter's on a linear model) as N grows. The moment fields are
    the particles' weighted means and covariances (predicted_obs_covs includes D). NaN entries of
    y_t are missing and the weights use the observed entries only.

    Arguments as in :func:`extended_kalman_filter`, plus ``num_particles`` N, ``resampling``,
    ``ess_threshold`` in (0, 1] (1 resamples at every step) and a ``generator`` for reproducible draws.
    Batch dimensions of the model and the observations broadcast; particles add an N axis.
    """
    N = check_positive_int("num_particles", num_particles)
    check_choice("resampling", resampling, ("systematic", "multinomial"))
    thr = check_positive_float("ess_threshold", ess_threshold)
    if thr > 1:
        raise ValueError(f"ess_threshold: expected a number in (0, 1], got {ess_threshold!r}")
    y, mask, m0, S0, F, D, us, batch = _prepare(
        observations, initial_mean, initial_cov, transition_cov, emission_cov, controls
    )
    T, dx = y.shape[-2], m0.shape[-1]
    dtype, device = y.dtype, y.device
    noise_F = [psd_factor(f) for f in _per_step(F, T)] if F.shape[-3] == T else [psd_factor(F[..., 0, :, :])] * T
    Ds = _per_step(D, T)
    resample = _systematic_indices if resampling == "systematic" else _multinomial_indices

    def randn(*shape):
        return torch.randn(shape, generator=generator, dtype=dtype, device=device)

    factor0 = psd_factor(S0)
    particles = m0.unsqueeze(-2) + (factor0.unsqueeze(-3) @ randn(*batch, N, dx, 1)).squeeze(-1)
    particles = particles.expand(batch + (N, dx))
    log_w = torch.full(batch + (N,), -math.log(N), dtype=dtype, device=device)
    out = {k: [] for k in ("mu", "Sigma", "m", "S", "u", "V", "ll", "ess")}
    for t in range(T):
        # marginalisation: propagate every particle through p(s_t | s_{t-1})
        if us[t] is None:
            mean_next = transition_fn(particles)
        else:
            mean_next = transition_fn(particles, us[t].unsqueeze(-2).expand(particles.shape[:-1] + us[t].shape[-1:]))
        particles = mean_next + (noise_F[t].unsqueeze(-3) @ randn(*batch, N, dx, 1)).squeeze(-1)
        w = log_w.exp()
        mu, Sigma = _weighted_moments(particles, w)
        obs_pred = emission_fn(particles)
        u, V = _weighted_moments(obs_pred, w)
        # p(y_t | s_t^i) on the observed entries of y_t
        mask_t = mask[..., t, :]
        L = torch.linalg.cholesky(mask_covariance(Ds[t], mask_t)).unsqueeze(-3)
        residual = torch.where(mask_t.unsqueeze(-2), y[..., t, :].unsqueeze(-2) - obs_pred, torch.zeros_like(obs_pred))
        log_lik_i = gaussian_log_density(residual, L, mask_t.unsqueeze(-2))
        # inference: reweight, log p(y_t | Y_{1:t-1}) = log Σ_i w_{t-1}^i p(y_t | s_t^i)
        joint = log_w + log_lik_i
        ll = torch.logsumexp(joint, dim=-1)
        log_w = joint - ll.unsqueeze(-1)
        w = log_w.exp()
        m, S = _weighted_moments(particles, w)
        ess = 1.0 / (w * w).sum(-1)
        # resampling where the weights degenerated
        idx = resample(w, generator)
        resampled = torch.gather(particles, -2, idx.unsqueeze(-1).expand(idx.shape + (dx,)))
        do = (ess < thr * N).unsqueeze(-1)
        particles = torch.where(do.unsqueeze(-1), resampled, particles)
        log_w = torch.where(do, torch.full_like(log_w, -math.log(N)), log_w)
        for k, v in zip(out, (mu, Sigma, m, S, u, V + Ds[t], ll, ess)):
            out[k].append(v)
    step = torch.stack(out["ll"], -1).expand(batch + (T,))
    return ParticleFilterResult(
        filtered_means=torch.stack(out["m"], -2),
        filtered_covs=torch.stack(out["S"], -3),
        predicted_means=torch.stack(out["mu"], -2),
        predicted_covs=torch.stack(out["Sigma"], -3),
        predicted_obs_means=torch.stack(out["u"], -2),
        predicted_obs_covs=torch.stack(out["V"], -3),
        step_log_likelihoods=step,
        log_likelihood=step.sum(-1),
        effective_sample_sizes=torch.stack(out["ess"], -1),
        final_particles=particles,
        final_log_weights=log_w,
    )


__all__ = ["ParticleFilterResult", "extended_kalman_filter", "particle_filter"]
