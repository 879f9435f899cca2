"""The Kalman filter, the RTS smoother and k-step prediction.

The slide's linear-Gaussian state-space model::

    p(s_0)           = N(s_0 | m_0, S_0)
    p(s_t | s_{t-1}) = N(s_t | E_t s_{t-1} + B u_t, F_t)        t = 1..T
    p(y_t | s_t)     = N(y_t | C s_t, D)

θ = {m_0, S_0, E_t, F_t, C, D, B} is one :class:`~mbrl_course.filters.LinearGaussianSSM` ``params``
whose fields map to the symbols as follows: ``initial_mean`` m_0, ``initial_cov`` S_0,
``transition_matrix`` E_t, ``transition_cov`` F_t, ``emission_matrix`` C, ``emission_cov`` D,
``control_matrix`` B; ``controls`` u_t come with the data. The predicted observation mean, which the
slides also call u_t, is ŷ_t here: u is the control (docs/notation.md). Every y_t is preceded by a prediction
step from s_{t-1}, so y_1 is predicted from the prior p(s_0).

Shapes: ``observations: (..., T, dy)``; ``controls: (..., T, du)``; the model's fields as in
:class:`~mbrl_course.filters.LinearGaussianSSM` (fixed or time-varying, with batch dimensions).
Leading batch dimensions of the model and the data broadcast against each other.

:func:`kalman_filter` is the loop :func:`predict_step` -> :func:`update_step` the lecture shows;
with ``method="auto"`` (the default) it runs the parallel-in-time scan of :mod:`.parallel`
instead where that is faster, with the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mbrl_course._checks import check_choice, check_positive_int
from mbrl_course.filters._gaussian import condition, mask_emission, matvec, symmetrize
from mbrl_course.filters._validate import (
    FilterInputs,
    check_covariance,
    control_offsets,
    matrix,
    prepare_filter_inputs,
    vector,
)
from mbrl_course.filters.params import (
    FILTER_ARGUMENTS,
    PREDICT_ARGUMENTS,
    LinearGaussianSSM,
    accepts_separate_arguments,
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
    """ŷ_t, the mean of p(y_t | Y_{1:t-1}) (the slides' u_t): (..., T, dy)"""
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
    """ŷ_{T+k} = C μ_{T+k}: (..., K, dy)"""
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

    V_t = D + C Σ Cᵀ,  ŷ_t = C μ,  K = Σ Cᵀ V_t⁻¹,
    m_t = μ + K (y_t - ŷ_t),  S_t = (I - K C) Σ (I - K C)ᵀ + K D Kᵀ  (Joseph form),

    and returns also log p(y_t | Y_{1:t-1}) = log N(y_t | ŷ_t, V_t). NaN entries of ``observation``
    are missing: the update conditions on the observed entries only (none observed: m_t = μ,
    S_t = Σ, log-likelihood 0).

    ``predicted_mean: (..., dx)`` μ, ``predicted_cov: (..., dx, dx)`` Σ, ``observation: (..., dy)``
    y_t, ``emission_matrix: (..., dy, dx)`` C, ``emission_cov: (..., dy, dy)`` D.
    Returns ``(m_t: (..., dx), S_t: (..., dx, dx), log_lik: (...))``. No argument checks (an inner step).
    """
    observed = ~torch.isnan(observation)
    C, D = mask_emission(emission_matrix, emission_cov, observed)
    residual = torch.where(observed, observation - matvec(C, predicted_mean), 0.0)  # y_t - ŷ_t, 0 where missing
    return condition(predicted_mean, predicted_cov, residual, C, D, observed)


def _per_step(x: torch.Tensor, num_steps: int) -> list[torch.Tensor]:
    """Split ``(..., T|1, r, c)`` into T views ``(..., r, c)``."""
    if x.shape[-3] == 1:
        return [x[..., 0, :, :]] * num_steps
    return list(x.unbind(-3))


def _expand(x: torch.Tensor, batch_shape: torch.Size, event_dims: int) -> torch.Tensor:
    return x.expand(batch_shape + x.shape[x.ndim - event_dims :])


def run_kalman_filter(inputs: FilterInputs) -> KalmanFilterResult:
    """The sequential filter on checked inputs (see :func:`kalman_filter`): the lecture's loop.

    For t = 1..T: (μ_t, Σ_t) = :func:`predict_step` (m_{t-1}, S_{t-1}), then
    (m_t, S_t, log p(y_t | Y_{1:t-1})) = :func:`update_step` (μ_t, Σ_t, y_t).
    """
    model, T = inputs.model, inputs.num_steps
    Es, Fs = _per_step(model.transition_matrix, T), _per_step(model.transition_cov, T)
    Cs, Ds = _per_step(model.emission_matrix, T), _per_step(model.emission_cov, T)
    ys = inputs.observations.unbind(-2)
    offsets = inputs.offsets.unbind(-2) if inputs.offsets is not None else [None] * T
    m, S = model.initial_mean, model.initial_cov
    mus, Sigmas, ms, Ss, step_ll = [], [], [], [], []
    for t in range(T):
        mu, Sigma = predict_step(m, S, Es[t], Fs[t], offsets[t])
        m, S, log_lik = update_step(mu, Sigma, ys[t], Cs[t], Ds[t])
        mus.append(mu)
        Sigmas.append(Sigma)
        ms.append(m)
        Ss.append(S)
        step_ll.append(log_lik)
    # the first steps may carry fewer batch dimensions (the model's) than the later ones (the data's)
    return _assemble(inputs, *(torch.stack(torch.broadcast_tensors(*xs), -d - 1)
                               for xs, d in ((mus, 1), (Sigmas, 2), (ms, 1), (Ss, 2), (step_ll, 0))))


def _assemble(inputs: FilterInputs, mu, Sigma, m, S, step_ll) -> KalmanFilterResult:
    """The result from μ_t, Σ_t, m_t, S_t and log p(y_t | Y_{1:t-1}), with ŷ_t = C μ_t, V_t = D + C Σ_t Cᵀ."""
    bs, C, D = inputs.batch_shape, inputs.model.emission_matrix, inputs.model.emission_cov
    u, V = matvec(C, mu), symmetrize(D + C @ Sigma @ C.mT)
    step_ll = _expand(step_ll, bs + (inputs.num_steps,), 0)
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


METHODS = ("auto", "sequential", "parallel")
PARALLEL_MIN_STEPS = 16
"""``method="auto"`` runs the parallel scan from this many time steps T on (see :func:`choose_method`)"""
PARALLEL_MIN_STEPS_LARGE_BATCH = 4
"""... and from this many for a batch of at least :data:`LARGE_BATCH` sequences"""
LARGE_BATCH = 256


def choose_method(inputs: FilterInputs, method: str = "auto") -> str:
    """``"sequential"`` or ``"parallel"``: ``method`` itself, or for ``"auto"`` the faster of the two.

    The rule, from ``benchmarks/filtering.py --sweep`` (CPU, float64, dx = 4, dy = 2, 1 thread): the
    parallel scan from T >= 16 steps on (T >= 4 for a batch of B >= 256 sequences), the sequential
    loop below. Measured sequential / parallel time: B = 1: 0.7 at T = 8, 1.2 at T = 16, 17 at T = 1000;
    B = 16: 1.0 at T = 8, 1.5 at T = 16, 16 at T = 1000; B = 256: 1.0 at T = 2, 1.4 at T = 4, 8 at
    T = 1000; with two threads on a loaded 2-core machine the scan won by more. Below the thresholds
    both take about a millisecond. The same rule holds on a GPU (not measured here): each step of the
    loop launches dozens of small kernels, so the scan pays off at least as early there.

    Nothing else enters: the scan handles everything the loop does (batches of models and data,
    time-varying matrices, controls, NaN-masked observations, singular F_t and S_0, autograd), and
    both compute the same numbers up to round-off (tests: agreement to 1e-8 in float64).
    """
    if method != "auto":
        return method
    batch = math.prod(inputs.batch_shape)
    min_steps = PARALLEL_MIN_STEPS_LARGE_BATCH if batch >= LARGE_BATCH else PARALLEL_MIN_STEPS
    return "parallel" if inputs.num_steps >= min_steps else "sequential"


def method_from_parallel(parallel: bool | None) -> str:
    """The ``method`` of :func:`kalman_filter` for the models' ``parallel`` flag: None -> "auto"."""
    return "auto" if parallel is None else ("parallel" if parallel else "sequential")


@accepts_separate_arguments(FILTER_ARGUMENTS)
def kalman_filter(
    params: LinearGaussianSSM,
    observations: torch.Tensor,
    controls: torch.Tensor | None = None,
    *,
    method: str = "auto",
) -> KalmanFilterResult:
    """The Kalman filter: the slide's Bayesian filtering recursion for the linear-Gaussian SSM.

    For t = 1..T, starting from p(s_0) = N(m_0, S_0):

    - marginalisation  p(s_t | Y_{1:t-1}) = N(μ_t, Σ_t),  μ_t = E_t m_{t-1} (+ B u_t),  Σ_t = F_t + E_t S_{t-1} E_tᵀ
    - marginalisation  p(y_t | Y_{1:t-1}) = N(ŷ_t, V_t),  ŷ_t = C μ_t,  V_t = D + C Σ_t Cᵀ
    - inference        p(s_t | Y_{1:t}) = N(m_t, S_t),  S_t = (Σ_t⁻¹ + Cᵀ D⁻¹ C)⁻¹,  m_t = S_t (Cᵀ D⁻¹ y_t + Σ_t⁻¹ μ_t)

    and log p(Y_{1:T}) = Σ_t log N(y_t | ŷ_t, V_t). ``method="sequential"`` runs exactly this loop,
    :func:`predict_step` then :func:`update_step` for t = 1..T (the inference step in the equivalent
    Joseph-form gain update, which keeps S_t symmetric positive definite in float32 and float64).
    ``method="parallel"`` computes the same numbers with the associative scan of
    :func:`~mbrl_course.filters.parallel_kalman_filter`: O(log T) sequential depth instead of T.
    ``method="auto"`` (the default) picks the faster of the two by :func:`choose_method`: the scan
    from T >= 16 steps on (T >= 4 for a batch of 256 or more sequences), the loop for shorter ones.

    Arguments: ``params`` θ, a :class:`~mbrl_course.filters.LinearGaussianSSM` (symbols as on the
    slide: m_0, S_0, E_t, F_t, C, D, B; fixed or time-varying matrices, batch dimensions);
    ``observations: (..., T, dy)`` Y_{1:T}; optional ``controls: (..., T, du)`` u_t (the model needs
    a ``control_matrix`` B). Batch dimensions of the model and the data broadcast.
    The separate-argument call of before, ``kalman_filter(observations, initial_mean, initial_cov,
    transition_matrix, transition_cov, emission_matrix, emission_cov, controls=None,
    control_matrix=None)``, still works (see :func:`~mbrl_course.filters.params.accepts_separate_arguments`).

    Missing data: NaN entries of y_t are not observed and the update conditions on the observed
    entries only; an entirely NaN y_t skips the update (m_t = μ_t, S_t = Σ_t) and adds 0 to the
    log-likelihood. An all-NaN sequence therefore returns the prior predictions and log-likelihood 0.

    Returns a :class:`KalmanFilterResult`; ``log_likelihood: (...)`` is Σ_t log p(y_t | Y_{1:t-1}).
    """
    check_choice("method", method, METHODS)
    return _run_filter(prepare_filter_inputs(params, observations, controls), method)


def _run_filter(inputs: FilterInputs, method: str) -> KalmanFilterResult:
    if choose_method(inputs, method) == "parallel":
        from mbrl_course.filters.parallel import run_parallel_kalman_filter  # parallel.py imports this module

        return run_parallel_kalman_filter(inputs)
    return run_kalman_filter(inputs)


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


@accepts_separate_arguments(FILTER_ARGUMENTS)
def rts_smoother(
    params: LinearGaussianSSM,
    observations: torch.Tensor,
    controls: torch.Tensor | None = None,
) -> SmootherResult:
    """Rauch–Tung–Striebel smoother: p(s_t | Y_{1:T}) = N(m^s_t, P^s_t) after a Kalman filter pass.

    Backwards from m^s_T = m_T, P^s_T = S_T, for t = T-1..0:

    G_t = S_t E_{t+1}ᵀ Σ_{t+1}⁻¹,
    m^s_t = m_t + G_t (m^s_{t+1} - μ_{t+1}),
    P^s_t = S_t + G_t (P^s_{t+1} - Σ_{t+1}) G_tᵀ,
    Cov(s_{t+1}, s_t | Y_{1:T}) = P^s_{t+1} G_tᵀ,

    where m_t, S_t, μ_t, Σ_t are the filter's moments (m_0, S_0 the prior), from :func:`kalman_filter`
    with ``method="auto"``. The backward pass is this sequential loop;
    :func:`~mbrl_course.filters.parallel_rts_smoother` runs it as a parallel scan too.
    Arguments (the model or the separate ones), shapes and missing data as in :func:`kalman_filter`;
    the Σ_t must be invertible (e.g. F_t positive definite).
    """
    inputs = prepare_filter_inputs(params, observations, controls)
    filtered = _run_filter(inputs, "auto")
    gains = smoother_gains(filtered.filtered_covs, filtered.predicted_covs, inputs.model.transition_matrix,
                           inputs.model.initial_cov)
    m, S = filtered.filtered_means, filtered.filtered_covs
    mu, Sigma = filtered.predicted_means, filtered.predicted_covs
    T = inputs.num_steps
    ms, Ps = [m[..., T - 1, :]], [S[..., T - 1, :, :]]
    for t in range(T - 2, -1, -1):  # 0-based index t is time t+1
        G = gains[..., t + 1, :, :]
        ms.append(m[..., t, :] + matvec(G, ms[-1] - mu[..., t + 1, :]))
        Ps.append(symmetrize(S[..., t, :, :] + G @ (Ps[-1] - Sigma[..., t + 1, :, :]) @ G.mT))
    ms.reverse()
    Ps.reverse()
    return _smoother_result(inputs, filtered, gains, torch.stack(ms, -2), torch.stack(Ps, -3))


def _smoother_result(inputs: FilterInputs, filtered, gains, sm, sP) -> SmootherResult:
    """Add s_0 and the lag-one cross-covariances to smoothed moments of s_{1:T}."""
    G0 = gains[..., 0, :, :]
    m0, S0 = inputs.model.initial_mean, inputs.model.initial_cov
    init_mean = m0 + matvec(G0, sm[..., 0, :] - filtered.predicted_means[..., 0, :])
    init_cov = symmetrize(S0 + G0 @ (sP[..., 0, :, :] - filtered.predicted_covs[..., 0, :, :]) @ G0.mT)
    cross = sP @ gains.mT
    bs = inputs.batch_shape
    return SmootherResult(
        smoothed_means=_expand(sm, bs, 2),
        smoothed_covs=_expand(sP, bs, 3),
        smoothed_cross_covs=_expand(cross, bs, 3),
        smoothed_initial_mean=_expand(init_mean, bs, 1),
        smoothed_initial_cov=_expand(init_cov, bs, 2),
        log_likelihood=filtered.log_likelihood,
        filtered=filtered,
    )


@accepts_separate_arguments(PREDICT_ARGUMENTS)
def predict(
    params: LinearGaussianSSM,
    filtered_mean: torch.Tensor,
    filtered_cov: torch.Tensor,
    num_steps: int,
    controls: torch.Tensor | None = None,
) -> PredictionResult:
    """k-step prediction in closed form, k = 1..K (K = ``num_steps``).

    p(y_{T+k} | Y_{1:T}) = ∫ p(y_{T+k} | s_{T+k}) Π_{t=T+1}^{T+k} p(s_t | s_{t-1}) p(s_T | Y_{1:T}) ds_{T:T+k}
                         = N(ŷ_{T+k}, V_{T+k}),

    with μ_T = m_T, Σ_T = S_T and, for k = 1..K, (μ_{T+k}, Σ_{T+k}) = :func:`predict_step` (μ_{T+k-1}, Σ_{T+k-1}):
    μ_{T+k} = E μ_{T+k-1} (+ B u_{T+k}), Σ_{T+k} = F + E Σ_{T+k-1} Eᵀ, ŷ_{T+k} = C μ_{T+k},
    V_{T+k} = D + C Σ_{T+k} Cᵀ.

    ``params``: the model (its E, F, C, D, B; m_0 and S_0 are not used), matrices fixed or with a time
    axis of size K for the future steps; ``filtered_mean: (..., dx)`` m_T, ``filtered_cov: (..., dx, dx)``
    S_T (e.g. the last entries of a :class:`KalmanFilterResult`); ``controls: (..., K, du)``.
    The call of before, ``predict(filtered_mean, filtered_cov, transition_matrix, transition_cov,
    emission_matrix, emission_cov, num_steps, controls=None, control_matrix=None)``, still works.
    Returns a :class:`PredictionResult`.
    """
    K = check_positive_int("num_steps", num_steps)
    ref = params.initial_mean
    m = vector("filtered_mean (m_T)", filtered_mean, params.state_dim, ref)
    dx = m.shape[-1]
    S = matrix("filtered_cov (S_T)", filtered_cov, dx, dx, ref)
    check_covariance("filtered_cov (S_T)", S, definite=False)
    model = params.for_steps(K)
    offsets = control_offsets(model, controls, K)
    offsets = [None] * K if offsets is None else list(offsets.unbind(-2))
    Es, Fs = _per_step(model.transition_matrix, K), _per_step(model.transition_cov, K)
    mus, Sigmas = [], []
    mu, Sigma = m, symmetrize(S)
    for k in range(K):
        mu, Sigma = predict_step(mu, Sigma, Es[k], Fs[k], offsets[k])
        mus.append(mu)
        Sigmas.append(Sigma)
    mu_all, Sigma_all = torch.stack(mus, -2), torch.stack(Sigmas, -3)
    C, D = model.emission_matrix, model.emission_cov
    return PredictionResult(state_means=mu_all, state_covs=Sigma_all, obs_means=matvec(C, mu_all),
                            obs_covs=symmetrize(D + C @ Sigma_all @ C.mT))


__all__ = [
    "KalmanFilterResult",
    "PredictionResult",
    "SmootherResult",
    "choose_method",
    "kalman_filter",
    "predict",
    "predict_step",
    "rts_smoother",
    "update_step",
]
