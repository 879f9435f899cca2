"""The Kalman filter, the RTS smoother and k-step prediction (sequential in time).

The slide's linear-Gaussian state-space model::

    p(s_0)           = N(s_0 | m_0, S_0)
    p(s_t | s_{t-1}) = N(s_t | E_t s_{t-1} + B u_t, F_t)        t = 1..T
    p(y_t | s_t)     = N(y_t | C s_t, D)

Argument names map to the symbols as follows: ``initial_mean`` m_0, ``initial_cov`` S_0,
``transition_matrix`` E_t, ``transition_cov`` F_t, ``emission_matrix`` C, ``emission_cov`` D,
``control_matrix`` B, ``controls`` u_t. Every y_t is preceded by a prediction step from
s_{t-1}, so y_1 is predicted from the prior p(s_0).

Shapes: ``observations: (..., T, dy)``; ``initial_mean: (..., dx)``; ``initial_cov: (..., dx, dx)``;
each of E_t, F_t, C, D, B either fixed, ``(dx, dx)`` etc., or time-varying with a T axis,
``(..., T, dx, dx)`` (a time axis of size 1 is shared by all steps); ``controls: (..., du)`` per
step, i.e. ``(..., T, du)``. Leading batch dimensions broadcast against each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mbrl_course._checks import check_positive_int
from mbrl_course.filters._gaussian import LOG_2PI, condition, mask_emission, matvec, symmetrize
from mbrl_course.filters._validate import (
    LinearGaussianArgs,
    check_covariance,
    like,
    matrix,
    prepare_linear_gaussian,
    time_matrix,
    vector,
)


@dataclass
class KalmanFilterResult:
    """Filtering and one-step predictive moments of a (linear-Gaussian or approximate) filter."""

    filtered_means: torch.Tensor
    """m_t, the mean of p(s_t | Y_{1:t}): (..., T, dx)"""
    filtered_covs: torch.Tensor
    """S_t, the covariance of p(s_t | Y_{1:t}): (..., T, dx, dx)"""
    predicted_means: torch.Tensor
    """μ_t, the mean of p(s_t | Y_{1:t-1}): (..., T, dx)"""
    predicted_covs: torch.Tensor
    """Σ_t, the covariance of p(s_t | Y_{1:t-1}): (..., T, dx, dx)"""
    predicted_obs_means: torch.Tensor
    """u_t, the mean of p(y_t | Y_{1:t-1}): (..., T, dy)"""
    predicted_obs_covs: torch.Tensor
    """V_t, the covariance of p(y_t | Y_{1:t-1}): (..., T, dy, dy)"""
    step_log_likelihoods: torch.Tensor
    """log p(y_t | Y_{1:t-1}) over the observed entries of y_t (0 when all are missing): (..., T)"""
    log_likelihood: torch.Tensor
    """log p(Y_{1:T}) = Σ_t log p(y_t | Y_{1:t-1}): (...)"""


@dataclass
class SmootherResult:
    """Smoothing moments p(s_t | Y_{1:T}) of the RTS smoother, with the filter it ran on."""

    smoothed_means: torch.Tensor
    """mean of p(s_t | Y_{1:T}), t = 1..T: (..., T, dx)"""
    smoothed_covs: torch.Tensor
    """covariance of p(s_t | Y_{1:T}): (..., T, dx, dx)"""
    smoothed_cross_covs: torch.Tensor
    """Cov(s_t, s_{t-1} | Y_{1:T}), t = 1..T (t = 1 pairs s_1 with s_0): (..., T, dx, dx)"""
    smoothed_initial_mean: torch.Tensor
    """mean of p(s_0 | Y_{1:T}): (..., dx)"""
    smoothed_initial_cov: torch.Tensor
    """covariance of p(s_0 | Y_{1:T}): (..., dx, dx)"""
    log_likelihood: torch.Tensor
    """log p(Y_{1:T}): (...)"""
    filtered: KalmanFilterResult
    """the forward pass the smoother ran on"""


@dataclass
class PredictionResult:
    """k-step predictive distributions p(s_{T+k} | Y_{1:T}) and p(y_{T+k} | Y_{1:T}), k = 1..K."""

    state_means: torch.Tensor
    """μ_{T+k}: (..., K, dx)"""
    state_covs: torch.Tensor
    """Σ_{T+k}: (..., K, dx, dx)"""
    obs_means: torch.Tensor
    """u_{T+k} = C μ_{T+k}: (..., K, dy)"""
    obs_covs: torch.Tensor
    """V_{T+k} = D + C Σ_{T+k} Cᵀ: (..., K, dy, dy)"""


def predict_step(
    filtered_mean: torch.Tensor,
    filtered_cov: torch.Tensor,
    transition_matrix: torch.Tensor,
    transition_cov: torch.Tensor,
    offset: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Marginalisation: p(s_t | Y_{1:t-1}) = ∫ p(s_t | s_{t-1}) p(s_{t-1} | Y_{1:t-1}) ds_{t-1} = N(μ, Σ).

    μ = E_t m_{t-1} (+ B u_t),   Σ = F_t + E_t S_{t-1} E_tᵀ.

    ``filtered_mean: (..., dx)`` m_{t-1}, ``filtered_cov: (..., dx, dx)`` S_{t-1},
    ``transition_matrix: (..., dx, dx)`` E_t, ``transition_cov: (..., dx, dx)`` F_t,
    ``offset: (..., dx)`` B u_t. No argument checks: this is the inner step of the filters.
    """
    E = transition_matrix
    mu = matvec(E, filtered_mean)
    if offset is not None:
        mu = mu + offset
    Sigma = symmetrize(transition_cov + E @ filtered_cov @ E.mT)
    return mu, Sigma


def update_step(
    predicted_mean: torch.Tensor,
    predicted_cov: torch.Tensor,
    observation: torch.Tensor,
    emission_matrix: torch.Tensor,
    emission_cov: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inference: p(s_t | Y_{1:t}) = p(y_t | s_t) p(s_t | Y_{1:t-1}) / p(y_t | Y_{1:t-1}) = N(m_t, S_t).

    The slide's form S_t = (Σ⁻¹ + Cᵀ D⁻¹ C)⁻¹, m_t = S_t (Cᵀ D⁻¹ y_t + Σ⁻¹ μ) is computed in the
    equivalent gain form (matrix-inversion lemma), which needs no Σ⁻¹ and stays positive definite:

    V_t = D + C Σ Cᵀ,  u_t = C μ,  K = Σ Cᵀ V_t⁻¹,
    m_t = μ + K (y_t - u_t),  S_t = (I - K C) Σ (I - K C)ᵀ + K D Kᵀ  (Joseph form),

    and returns also log p(y_t | Y_{1:t-1}) = log N(y_t | u_t, V_t). NaN entries of ``observation``
    are missing: the update conditions on the observed entries only (none observed: m_t = μ,
    S_t = Σ, log-likelihood 0).

    ``predicted_mean: (..., dx)`` μ, ``predicted_cov: (..., dx, dx)`` Σ, ``observation: (..., dy)``
    y_t, ``emission_matrix: (..., dy, dx)`` C, ``emission_cov: (..., dy, dy)`` D.
    Returns ``(m_t: (..., dx), S_t: (..., dx, dx), log_lik: (...))``. No argument checks (an inner step).
    """
    mask = ~torch.isnan(observation)
    C, D = mask_emission(emission_matrix, emission_cov, mask)
    y = torch.where(mask, observation, torch.zeros_like(observation))
    residual = y - matvec(C, predicted_mean)
    return condition(predicted_mean, predicted_cov, residual, C, D, mask.sum(-1).to(predicted_mean.dtype))


def _per_step(x: torch.Tensor, num_steps: int) -> list[torch.Tensor]:
    """Split ``(..., T|1, r, c)`` into T views ``(..., r, c)``."""
    if x.shape[-3] == 1:
        return [x[..., 0, :, :]] * num_steps
    return list(x.unbind(-3))


def _observed_emission(args: LinearGaussianArgs):
    """C, D per step with missing entries masked, and the number of observed entries per step."""
    C, D = args.emission_matrix, args.emission_cov
    if args.mask is None:
        return C, D, args.obs_dim
    Cm, Dm = mask_emission(C, D, args.mask)
    return Cm, Dm, args.mask.sum(-1).to(args.observations.dtype)


def _predictive_obs(C: torch.Tensor, D: torch.Tensor, mu: torch.Tensor, Sigma: torch.Tensor):
    """u_t = C μ_t, V_t = D + C Σ_t Cᵀ for all t at once."""
    return matvec(C, mu), symmetrize(D + C @ Sigma @ C.mT)


def _expand(x: torch.Tensor, batch_shape: torch.Size, event_dims: int) -> torch.Tensor:
    return x.expand(batch_shape + x.shape[x.ndim - event_dims :])


def run_kalman_filter(args: LinearGaussianArgs) -> KalmanFilterResult:
    """The sequential filter on checked arguments (see :func:`kalman_filter`).

    The loop is :func:`predict_step` followed by :func:`update_step`, written out with column
    vectors and with log N(y_t | u_t, V_t) evaluated for all t after the loop: the per-step work
    is then a dozen small tensor operations, which is what bounds a sequential filter's speed.
    """
    T, dx = args.num_steps, args.state_dim
    Es = _per_step(args.transition_matrix, T)
    Fs = _per_step(args.transition_cov, T)
    Cm, Dm, n_obs = _observed_emission(args)
    Cs, Ds = _per_step(Cm, T), _per_step(Dm, T)
    ys = list(args.observations.unsqueeze(-1).unbind(-3))
    offsets = list(args.offsets.unsqueeze(-1).unbind(-3)) if args.offsets is not None else [None] * T
    eye = torch.eye(dx, dtype=args.observations.dtype, device=args.observations.device)

    bs = args.batch_shape
    m, S = _expand(args.initial_mean, bs, 1).unsqueeze(-1), _expand(args.initial_cov, bs, 2)
    mus, Sigmas, ms, Ss, residuals, chols = [], [], [], [], [], []
    for t in range(T):
        E, F, C, D = Es[t], Fs[t], Cs[t], Ds[t]
        # marginalisation: μ = E_t m_{t-1} (+ B u_t),  Σ = F_t + E_t S_{t-1} E_tᵀ
        mu = E @ m if offsets[t] is None else E @ m + offsets[t]
        Sigma = F + E @ S @ E.mT
        # p(y_t | Y_{1:t-1}): V_t = D + C Σ Cᵀ through its Cholesky factor (which reads the lower triangle)
        CS = C @ Sigma
        L = torch.linalg.cholesky(CS @ C.mT + D)
        # inference, Joseph form: K = Σ Cᵀ V⁻¹, m = μ + K (y - C μ), S = (I - K C) Σ (I - K C)ᵀ + K D Kᵀ
        K = torch.cholesky_solve(CS, L).mT
        r = ys[t] - C @ mu
        m = mu + K @ r
        I_KC = eye - K @ C
        S = I_KC @ Sigma @ I_KC.mT + K @ D @ K.mT
        S = 0.5 * (S + S.mT)
        mus.append(mu)
        Sigmas.append(Sigma)
        ms.append(m)
        Ss.append(S)
        residuals.append(r)
        chols.append(L)
    # log p(y_t | Y_{1:t-1}) = log N(r_t; 0, V_t) for all t at once
    L = torch.stack(chols, -3)
    z = torch.linalg.solve_triangular(L, torch.stack(residuals, -3), upper=False).squeeze(-1)
    step_ll = (-0.5 * (z * z).sum(-1) - torch.diagonal(L, dim1=-2, dim2=-1).log().sum(-1)
               - 0.5 * LOG_2PI * n_obs)
    return _assemble(args, torch.stack(mus, -3).squeeze(-1), symmetrize(torch.stack(Sigmas, -3)),
                     torch.stack(ms, -3).squeeze(-1), torch.stack(Ss, -3), step_ll)


def _assemble(args, mu, Sigma, m, S, step_ll) -> KalmanFilterResult:
    bs = args.batch_shape
    u, V = _predictive_obs(args.emission_matrix, args.emission_cov, mu, Sigma)
    step_ll = _expand(step_ll, bs + (args.num_steps,), 0) if step_ll.shape != bs + (args.num_steps,) else step_ll
    return KalmanFilterResult(
        filtered_means=_expand(m, bs, 2),
        filtered_covs=_expand(S, bs, 3),
        predicted_means=_expand(mu, bs, 2),
        predicted_covs=_expand(Sigma, bs, 3),
        predicted_obs_means=_expand(u, bs, 2),
        predicted_obs_covs=_expand(V, bs, 3),
        step_log_likelihoods=step_ll,
        log_likelihood=step_ll.sum(-1),
    )


def kalman_filter(
    observations: torch.Tensor,
    initial_mean: torch.Tensor,
    initial_cov: torch.Tensor,
    transition_matrix: torch.Tensor,
    transition_cov: torch.Tensor,
    emission_matrix: torch.Tensor,
    emission_cov: torch.Tensor,
    controls: torch.Tensor | None = None,
    control_matrix: torch.Tensor | None = None,
) -> KalmanFilterResult:
    """The Kalman filter: the slide's Bayesian filtering recursion for the linear-Gaussian SSM.

    For t = 1..T, starting from p(s_0) = N(m_0, S_0):

    - marginalisation  p(s_t | Y_{1:t-1}) = N(μ_t, Σ_t),  μ_t = E_t m_{t-1} (+ B u_t),  Σ_t = F_t + E_t S_{t-1} E_tᵀ
    - marginalisation  p(y_t | Y_{1:t-1}) = N(u_t, V_t),  u_t = C μ_t,  V_t = D + C Σ_t Cᵀ
    - inference        p(s_t | Y_{1:t}) = N(m_t, S_t),  S_t = (Σ_t⁻¹ + Cᵀ D⁻¹ C)⁻¹,  m_t = S_t (Cᵀ D⁻¹ y_t + Σ_t⁻¹ μ_t)

    and log p(Y_{1:T}) = Σ_t log N(y_t | u_t, V_t). The inference step runs in the equivalent
    Joseph-form gain update (see :func:`update_step`), which keeps S_t symmetric positive definite
    over long sequences in float32 and float64.

    Arguments (symbols as on the slide): ``observations: (..., T, dy)`` Y_{1:T};
    ``initial_mean: (..., dx)`` m_0; ``initial_cov: (..., dx, dx)`` S_0;
    ``transition_matrix`` E_t and ``transition_cov`` F_t: ``(dx, dx)`` or ``(..., T, dx, dx)``;
    ``emission_matrix`` C: ``(dy, dx)`` or ``(..., T, dy, dx)``; ``emission_cov`` D: ``(dy, dy)`` or
    ``(..., T, dy, dy)``; optional ``controls: (..., T, du)`` u_t with ``control_matrix`` B:
    ``(dx, du)`` or ``(..., T, dx, du)``. Batch dimensions broadcast. D must be positive definite,
    S_0 and F_t positive semi-definite; all must be symmetric.

    Missing data: NaN entries of y_t are not observed and the update conditions on the observed
    entries only; an entirely NaN y_t skips the update (m_t = μ_t, S_t = Σ_t) and adds 0 to the
    log-likelihood. An all-NaN sequence therefore returns the prior predictions and log-likelihood 0.

    Returns a :class:`KalmanFilterResult`; ``log_likelihood: (...)`` is Σ_t log p(y_t | Y_{1:t-1}).
    """
    args = prepare_linear_gaussian(
        observations, initial_mean, initial_cov, transition_matrix, transition_cov,
        emission_matrix, emission_cov, controls, control_matrix,
    )
    return run_kalman_filter(args)


def smoother_gains(
    filtered_covs: torch.Tensor,
    predicted_covs: torch.Tensor,
    transition_matrix: torch.Tensor,
    initial_cov: torch.Tensor,
) -> torch.Tensor:
    """RTS gains G_{t-1} = S_{t-1} E_tᵀ Σ_t⁻¹ for t = 1..T (G_0 uses the prior S_0): (..., T, dx, dx).

    ``filtered_covs: (..., T, dx, dx)`` S_{1:T}, ``predicted_covs`` Σ_{1:T}, ``transition_matrix``
    E_t ``(..., T|1, dx, dx)``, ``initial_cov: (..., dx, dx)`` S_0.
    """
    prev_S = torch.cat([initial_cov.unsqueeze(-3).expand(filtered_covs.shape[:-3] + (1,) + filtered_covs.shape[-2:]),
                        filtered_covs[..., :-1, :, :]], dim=-3)
    L, info = torch.linalg.cholesky_ex(predicted_covs)
    if bool((info != 0).any()):
        raise ValueError(
            "transition_cov (F_t): the smoother needs invertible predictive covariances "
            "Σ_t = F_t + E_t S_{t-1} E_tᵀ, but some Σ_t is singular; use a positive-definite F_t"
        )
    # G_{t-1}ᵀ = Σ_t⁻¹ E_t S_{t-1}
    return torch.cholesky_solve(transition_matrix @ prev_S, L).mT


def rts_smoother(
    observations: torch.Tensor,
    initial_mean: torch.Tensor,
    initial_cov: torch.Tensor,
    transition_matrix: torch.Tensor,
    transition_cov: torch.Tensor,
    emission_matrix: torch.Tensor,
    emission_cov: torch.Tensor,
    controls: torch.Tensor | None = None,
    control_matrix: torch.Tensor | None = None,
) -> SmootherResult:
    """Rauch–Tung–Striebel smoother: p(s_t | Y_{1:T}) = N(m^s_t, P^s_t) after a Kalman filter pass.

    Backwards from m^s_T = m_T, P^s_T = S_T, for t = T-1..0:

    G_t = S_t E_{t+1}ᵀ Σ_{t+1}⁻¹,
    m^s_t = m_t + G_t (m^s_{t+1} - μ_{t+1}),
    P^s_t = S_t + G_t (P^s_{t+1} - Σ_{t+1}) G_tᵀ,
    Cov(s_{t+1}, s_t | Y_{1:T}) = P^s_{t+1} G_tᵀ,

    where m_t, S_t, μ_t, Σ_t are the filter's moments (m_0, S_0 the prior). Arguments, shapes and
    missing data as in :func:`kalman_filter`; the Σ_t must be invertible (e.g. F_t positive definite).
    """
    args = prepare_linear_gaussian(
        observations, initial_mean, initial_cov, transition_matrix, transition_cov,
        emission_matrix, emission_cov, controls, control_matrix,
    )
    filtered = run_kalman_filter(args)
    gains = smoother_gains(filtered.filtered_covs, filtered.predicted_covs, args.transition_matrix,
                           args.initial_cov)
    m, S = filtered.filtered_means, filtered.filtered_covs
    mu, Sigma = filtered.predicted_means, filtered.predicted_covs
    T = args.num_steps
    ms, Ps = [m[..., T - 1, :]], [S[..., T - 1, :, :]]
    for t in range(T - 2, -1, -1):  # 0-based index t is time t+1
        G = gains[..., t + 1, :, :]
        ms.append(m[..., t, :] + matvec(G, ms[-1] - mu[..., t + 1, :]))
        Ps.append(symmetrize(S[..., t, :, :] + G @ (Ps[-1] - Sigma[..., t + 1, :, :]) @ G.mT))
    ms.reverse()
    Ps.reverse()
    return _smoother_result(args, filtered, gains, torch.stack(ms, -2), torch.stack(Ps, -3))


def _smoother_result(args, filtered, gains, sm, sP) -> SmootherResult:
    """Add s_0 and the lag-one cross-covariances to smoothed moments of s_{1:T}."""
    G0 = gains[..., 0, :, :]
    m0 = args.initial_mean
    S0 = args.initial_cov
    init_mean = m0 + matvec(G0, sm[..., 0, :] - filtered.predicted_means[..., 0, :])
    init_cov = symmetrize(S0 + G0 @ (sP[..., 0, :, :] - filtered.predicted_covs[..., 0, :, :]) @ G0.mT)
    cross = sP @ gains.mT
    bs = args.batch_shape
    return SmootherResult(
        smoothed_means=_expand(sm, bs, 2),
        smoothed_covs=_expand(sP, bs, 3),
        smoothed_cross_covs=_expand(cross, bs, 3),
        smoothed_initial_mean=_expand(init_mean, bs, 1),
        smoothed_initial_cov=_expand(init_cov, bs, 2),
        log_likelihood=filtered.log_likelihood,
        filtered=filtered,
    )


def predict(
    filtered_mean: torch.Tensor,
    filtered_cov: torch.Tensor,
    transition_matrix: torch.Tensor,
    transition_cov: torch.Tensor,
    emission_matrix: torch.Tensor,
    emission_cov: torch.Tensor,
    num_steps: int,
    controls: torch.Tensor | None = None,
    control_matrix: torch.Tensor | None = None,
) -> PredictionResult:
    """k-step prediction in closed form, k = 1..K (K = ``num_steps``).

    p(y_{T+k} | Y_{1:T}) = ∫ p(y_{T+k} | s_{T+k}) Π_{t=T+1}^{T+k} p(s_t | s_{t-1}) p(s_T | Y_{1:T}) ds_{T:T+k}
                         = N(u_{T+k}, V_{T+k}),

    with μ_T = m_T, Σ_T = S_T and, for k = 1..K,
    μ_{T+k} = E μ_{T+k-1} (+ B u_{T+k}), Σ_{T+k} = F + E Σ_{T+k-1} Eᵀ, u_{T+k} = C μ_{T+k},
    V_{T+k} = D + C Σ_{T+k} Cᵀ.

    ``filtered_mean: (..., dx)`` m_T, ``filtered_cov: (..., dx, dx)`` S_T (e.g. the last entries of a
    :class:`KalmanFilterResult`); E, F, C, D (and B) fixed or with a time axis of size K for the
    future steps; ``controls: (..., K, du)``. Returns a :class:`PredictionResult`.
    """
    K = check_positive_int("num_steps", num_steps)
    if not isinstance(filtered_mean, torch.Tensor):
        raise TypeError(f"filtered_mean: expected a tensor, got {type(filtered_mean).__name__}")
    if filtered_mean.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"filtered_mean: expected dtype float32 or float64, got {filtered_mean.dtype}")
    ref = filtered_mean
    m = vector("filtered_mean (m_T)", filtered_mean, None, ref)
    dx = m.shape[-1]
    S = matrix("filtered_cov (S_T)", filtered_cov, dx, dx, ref)
    check_covariance("filtered_cov (S_T)", S, definite=False)
    E = time_matrix("transition_matrix (E)", transition_matrix, dx, dx, K, ref)
    F = time_matrix("transition_cov (F)", transition_cov, dx, dx, K, ref)
    check_covariance("transition_cov (F)", F, definite=False)
    C = like("emission_matrix (C)", emission_matrix, ref)
    if C.ndim < 2 or C.shape[-1] != dx:
        raise ValueError(f"emission_matrix (C): expected shape (dy, {dx}) or (..., K, dy, {dx}), got {tuple(C.shape)}")
    dy = C.shape[-2]
    C = time_matrix("emission_matrix (C)", C, dy, dx, K, ref)
    D = time_matrix("emission_cov (D)", emission_cov, dy, dy, K, ref)
    check_covariance("emission_cov (D)", D, definite=False)
    offsets = [None] * K
    if (controls is None) != (control_matrix is None):
        raise ValueError("controls, control_matrix: give both or neither (the control term is B u_t)")
    if controls is not None:
        u = like("controls (u_t)", controls, ref)
        if u.ndim < 2 or u.shape[-2] != K:
            raise ValueError(f"controls (u_t): expected shape (..., K, du) with K = {K}, got {tuple(u.shape)}")
        B = time_matrix("control_matrix (B)", control_matrix, dx, u.shape[-1], K, ref)
        offsets = list(matvec(B, u).unbind(-2))
    Es, Fs = _per_step(E, K), _per_step(F, K)
    mus, Sigmas = [], []
    mu, Sigma = m, symmetrize(S)
    for k in range(K):
        mu, Sigma = predict_step(mu, Sigma, Es[k], Fs[k], offsets[k])
        mus.append(mu)
        Sigmas.append(Sigma)
    mu_all, Sigma_all = torch.stack(mus, -2), torch.stack(Sigmas, -3)
    u_all, V_all = _predictive_obs(C, D, mu_all, Sigma_all)
    return PredictionResult(state_means=mu_all, state_covs=Sigma_all, obs_means=u_all, obs_covs=V_all)


__all__ = [
    "KalmanFilterResult",
    "PredictionResult",
    "SmootherResult",
    "kalman_filter",
    "predict",
    "predict_step",
    "rts_smoother",
    "update_step",
]
