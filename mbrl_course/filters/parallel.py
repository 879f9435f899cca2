"""Parallel-in-time Kalman filter and RTS smoother (Särkkä & García-Fernández, 2021).

The filtering recursion is rewritten as an associative operation ⊗ on per-step elements, so
an associative scan computes all T filtering distributions in O(log T) sequential depth (and
O(T) work): long sequences run as a few dozen large batched tensor operations instead of T
small ones, on CPU and GPU alike. The numbers are those of the sequential filter.

Filtering element of step t (conditional on the previous state and y_t)::

    p(s_t | s_{t-1}, y_t) = N(s_t | A_t s_{t-1} + b_t, C_t)
    p(y_t | s_{t-1})     ∝ N_I(s_{t-1} | η_t, J_t)   (information form: exp(-½ sᵀJ s + ηᵀ s))

Smoothing element of step t::

    p(s_t | s_{t+1}, Y_{1:t}) = N(s_t | G_t s_{t+1} + g_t, L_t)

Symbols and argument names as in :mod:`mbrl_course.filters.kalman`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from mbrl_course.filters._gaussian import gaussian_log_density, mask_emission, symmetrize
from mbrl_course.filters._validate import FilterInputs, prepare_filter_inputs
from mbrl_course.filters.kalman import (
    KalmanFilterResult,
    SmootherResult,
    _assemble,
    _smoother_result,
    smoother_gains,
)
from mbrl_course.filters.params import FILTER_ARGUMENTS, LinearGaussianSSM, accepts_separate_arguments

Elements = Sequence[torch.Tensor]


def _mv(matrix: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    """A x with broadcasting; einsum avoids materialising a matrix per batch entry of x."""
    return torch.einsum("...ij,...j->...i", matrix, vector)


def _interleave(even: torch.Tensor, odd: torch.Tensor) -> torch.Tensor:
    """[e0, o0, e1, o1, ...] along dim 0; ``even`` has as many or one more entries than ``odd``."""
    n_odd = odd.shape[0]
    pairs = torch.stack([even[:n_odd], odd], dim=1).reshape((2 * n_odd,) + odd.shape[1:])
    if even.shape[0] > n_odd:
        pairs = torch.cat([pairs, even[n_odd:]], dim=0)
    return pairs


def _scan(combine: Callable[[Elements, Elements], Elements], elems: Elements) -> list[torch.Tensor]:
    num = elems[0].shape[0]
    if num < 2:
        return list(elems)
    reduced = combine([e[0:-1:2] for e in elems], [e[1::2] for e in elems])
    odd = _scan(combine, reduced)
    if num % 2 == 0:
        even = combine([e[:-1] for e in odd], [e[2::2] for e in elems])
    else:
        even = combine(odd, [e[2::2] for e in elems])
    even = [torch.cat([e[:1], r], dim=0) for e, r in zip(elems, even)]
    return [_interleave(e, o) for e, o in zip(even, odd)]


def associative_scan(
    combine: Callable[[Elements, Elements], Elements], elems: Elements, reverse: bool = False
) -> list[torch.Tensor]:
    """Inclusive scan of an associative ``combine`` along dim 0 in O(log T) depth.

    out_t = a_1 ⊗ a_2 ⊗ ... ⊗ a_t (``reverse``: out_t = a_t ⊗ ... ⊗ a_T), where ``combine(x, y)``
    computes x ⊗ y elementwise for tuples of tensors whose dim 0 indexes the elements
    (the odd/even recursion of Blelloch; the same algorithm as ``jax.lax.associative_scan``).
    """
    elems = list(elems)
    if reverse:
        flipped = [e.flip(0) for e in elems]
        out = _scan(lambda x, y: combine(y, x), flipped)
        return [o.flip(0) for o in out]
    return _scan(combine, elems)


def filtering_combine(earlier: Elements, later: Elements) -> list[torch.Tensor]:
    """(A_i, b_i, C_i, η_i, J_i) ⊗ (A_j, b_j, C_j, η_j, J_j) for consecutive blocks i then j.

    With M = A_j (I + C_i J_j)⁻¹:
    A = M A_i,  b = M (b_i + C_i η_j) + b_j,  C = M C_i A_jᵀ + C_j,
    η = A_iᵀ (I + J_j C_i)⁻¹ (η_j - J_j b_i) + η_i,  J = A_iᵀ (I + J_j C_i)⁻¹ J_j A_i + J_i.
    One inverse X⁻¹ = (I + C_i J_j)⁻¹ serves both, since (I + J_j C_i)⁻¹ = X⁻ᵀ. The matrices
    (A, C, J) do not depend on the data, so they may carry fewer batch dimensions (size 1) than
    the vectors (b, η): a batch of sequences under one model then costs matrix work only once.
    """
    Ai, bi, Ci, etai, Ji = earlier
    Aj, bj, Cj, etaj, Jj = later
    eye = torch.eye(Ai.shape[-1], dtype=Ai.dtype, device=Ai.device)
    Xinv = torch.linalg.inv(eye + Ci @ Jj)
    XA = Xinv @ Ai  # X⁻¹ A_i; its transpose is A_iᵀ (I + J_j C_i)⁻¹
    A = Aj @ XA
    b = _mv(Aj @ Xinv, bi + _mv(Ci, etaj)) + bj
    C = symmetrize(Aj @ Xinv @ Ci @ Aj.mT + Cj)
    eta = _mv(XA.mT, etaj - _mv(Jj, bi)) + etai
    J = symmetrize(XA.mT @ Jj @ Ai + Ji)
    return [A, b, C, eta, J]


def smoothing_combine(earlier: Elements, later: Elements) -> list[torch.Tensor]:
    """(G_s, g_s, L_s) ⊗ (G_t, g_t, L_t) for s before t: substitute p(s_s | s_{s+1}) into the later block.

    G = G_s G_t,  g = G_s g_t + g_s,  L = G_s L_t G_sᵀ + L_s.
    """
    Gs, gs, Ls = earlier
    Gt, gt, Lt = later
    return [Gs @ Gt, _mv(Gs, gt) + gs, symmetrize(Gs @ Lt @ Gs.mT + Ls)]


def _time_first(x: torch.Tensor, event_dims: int, batch_dims: int) -> torch.Tensor:
    """``(*b, T, *event)`` -> ``(T, *b')`` with b' padded by leading 1s to ``batch_dims`` dimensions."""
    pad = batch_dims - (x.ndim - event_dims - 1)
    x = x.reshape((1,) * pad + x.shape)
    return x.movedim(x.ndim - event_dims - 1, 0)


def _time_last(x: torch.Tensor, event_dims: int) -> torch.Tensor:
    return x.movedim(0, x.ndim - event_dims - 1)


def _cat_time(parts: list[torch.Tensor], event_dims: int) -> torch.Tensor:
    """Concatenate ``(*b_k, T_k, *event)`` tensors along time, broadcasting their batch dimensions."""
    batch = torch.broadcast_shapes(*(p.shape[: p.ndim - event_dims - 1] for p in parts))
    return torch.cat([p.expand(batch + p.shape[p.ndim - event_dims - 1 :]) for p in parts], dim=-event_dims - 1)


def _observed_emission(inputs: FilterInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """C, D of every step with the missing entries of y_t masked (see :func:`mask_emission`)."""
    C, D = inputs.model.emission_matrix, inputs.model.emission_cov
    return (C, D) if inputs.mask is None else mask_emission(C, D, inputs.mask)


def _filtering_elements(inputs: FilterInputs) -> list[torch.Tensor]:
    """(A_t, b_t, C_t, η_t, J_t), t = 1..T, each ``(..., T, ...)``.

    For t > 1, with V = C F_t Cᵀ + D, K = F_t Cᵀ V⁻¹, c_t = B u_t and r = y_t - C c_t:
    A_t = (I - K C) E_t, b_t = c_t + K r, C_t = (I - K C) F_t (Joseph form),
    η_t = E_tᵀ Cᵀ V⁻¹ r, J_t = E_tᵀ Cᵀ V⁻¹ C E_t.
    For t = 1 the prior enters: the same formulas with E_1 → 0, F_1 → Σ_1 and c_1 → μ_1
    give A_1 = 0, b_1 = m_1, C_1 = S_1, η_1 = 0, J_1 = 0.
    A_t, C_t, J_t keep the batch dimensions of the model only; b_t, η_t those of the data too.
    """
    T, dx, model = inputs.num_steps, inputs.state_dim, inputs.model
    E, F = model.transition_matrix, model.transition_cov
    full = torch.broadcast_shapes(E.shape[:-3], F.shape[:-3]) + (T, dx, dx)
    E, F = E.expand(full), F.expand(full)
    E1, F1 = E[..., 0, :, :], F[..., 0, :, :]
    mu1 = _mv(E1, model.initial_mean)
    if inputs.offsets is not None:
        mu1 = mu1 + inputs.offsets[..., 0, :]
    Sigma1 = symmetrize(F1 + E1 @ model.initial_cov @ E1.mT)
    E = torch.cat([torch.zeros_like(E[..., :1, :, :]), E[..., 1:, :, :]], dim=-3)
    F = _cat_time([Sigma1.unsqueeze(-3), F[..., 1:, :, :]], event_dims=2)
    if inputs.offsets is not None:
        rest = inputs.offsets[..., 1:, :]
    else:
        rest = torch.zeros((T - 1, dx), dtype=mu1.dtype, device=mu1.device)
    c = _cat_time([mu1.unsqueeze(-2), rest], event_dims=1)
    Cm, Dm = _observed_emission(inputs)
    CF = Cm @ F
    V = symmetrize(CF @ Cm.mT + Dm)
    Lv = torch.linalg.cholesky(V)
    gain = torch.cholesky_solve(CF, Lv).mT  # K = F Cᵀ V⁻¹
    residual = inputs.observed_values - _mv(Cm, c)
    eye = torch.eye(dx, dtype=E.dtype, device=E.device)
    I_KC = eye - gain @ Cm
    A = I_KC @ E
    b = c + _mv(gain, residual)
    Cov = symmetrize(I_KC @ F @ I_KC.mT + gain @ Dm @ gain.mT)
    CE = Cm @ E
    VinvCE = torch.cholesky_solve(CE, Lv)
    eta = _mv(VinvCE.mT, residual)
    J = symmetrize(CE.mT @ VinvCE)
    return [A, b, Cov, eta, J]


def _parallel_filter_core(inputs: FilterInputs):
    """μ_t, Σ_t, m_t, S_t and log p(y_t | Y_{1:t-1}) by the associative scan (covariances unexpanded)."""
    elements = _filtering_elements(inputs)
    nb = len(inputs.batch_shape)
    dims = (2, 1, 2, 1, 2)
    scanned = associative_scan(filtering_combine, [_time_first(x, d, nb) for x, d in zip(elements, dims)])
    m = _time_last(scanned[1], 1)
    S = _time_last(scanned[2], 2)
    # the one-step predictions and log p(y_t | Y_{1:t-1}) = log N(y_t - C μ_t; 0, V_t), all t at once
    model = inputs.model
    prev_m = _cat_time([model.initial_mean.unsqueeze(-2), m[..., :-1, :]], event_dims=1)
    prev_S = _cat_time([model.initial_cov.unsqueeze(-3), S[..., :-1, :, :]], event_dims=2)
    E = model.transition_matrix
    mu = _mv(E, prev_m)
    if inputs.offsets is not None:
        mu = mu + inputs.offsets
    Sigma = symmetrize(model.transition_cov + E @ prev_S @ E.mT)
    Cm, Dm = _observed_emission(inputs)
    Lv = torch.linalg.cholesky(Cm @ Sigma @ Cm.mT + Dm)
    step_ll = gaussian_log_density(inputs.observed_values - _mv(Cm, mu), Lv, inputs.mask)
    return mu, Sigma, m, S, step_ll


def run_parallel_kalman_filter(inputs: FilterInputs) -> KalmanFilterResult:
    """The parallel-in-time filter on checked inputs (see :func:`parallel_kalman_filter`)."""
    return _assemble(inputs, *_parallel_filter_core(inputs))


@accepts_separate_arguments(FILTER_ARGUMENTS)
def parallel_kalman_filter(
    params: LinearGaussianSSM,
    observations: torch.Tensor,
    controls: torch.Tensor | None = None,
) -> KalmanFilterResult:
    """The Kalman filter of :func:`~mbrl_course.filters.kalman_filter`, parallel in time.

    Computes the same p(s_t | Y_{1:t}) = N(m_t, S_t), p(s_t | Y_{1:t-1}) = N(μ_t, Σ_t) and
    log p(Y_{1:T}) = Σ_t log N(y_t | u_t, V_t), but the recursion m_{t-1}, S_{t-1} → m_t, S_t is
    an associative scan over the elements p(s_t | s_{t-1}, y_t) = N(A_t s_{t-1} + b_t, C_t),
    p(y_t | s_{t-1}) ∝ N_I(η_t, J_t): the filtered moments are (m_t, S_t) = (b_{1:t}, C_{1:t}) of
    a_1 ⊗ ... ⊗ a_t (see :func:`filtering_combine`), in O(log T) depth. μ_t, Σ_t and the
    log-likelihood then follow for all t at once from m_{t-1}, S_{t-1}.

    Arguments (the model, or the separate ones of before), shapes, missing data and the result exactly
    as in ``kalman_filter``, which runs this scan itself with ``method="auto"`` where it is faster.
    """
    return run_parallel_kalman_filter(prepare_filter_inputs(params, observations, controls))


@accepts_separate_arguments(FILTER_ARGUMENTS)
def parallel_rts_smoother(
    params: LinearGaussianSSM,
    observations: torch.Tensor,
    controls: torch.Tensor | None = None,
) -> SmootherResult:
    """The RTS smoother of :func:`~mbrl_course.filters.rts_smoother`, parallel in time.

    After :func:`parallel_kalman_filter`, the elements p(s_t | s_{t+1}, Y_{1:t}) = N(G_t s_{t+1} + g_t, L_t),
    G_t = S_t E_{t+1}ᵀ Σ_{t+1}⁻¹, g_t = m_t - G_t μ_{t+1}, L_t = S_t - G_t Σ_{t+1} G_tᵀ
    (and G_T = 0, g_T = m_T, L_T = S_T) are combined by a reverse associative scan:
    p(s_t | Y_{1:T}) = N(g_{t:T}, L_{t:T}) of a_t ⊗ ... ⊗ a_T (see :func:`smoothing_combine`).
    Arguments and result as in ``rts_smoother``.
    """
    inputs = prepare_filter_inputs(params, observations, controls)
    mu, Sigma, m, S, step_ll = _parallel_filter_core(inputs)
    filtered = _assemble(inputs, mu, Sigma, m, S, step_ll)
    gains = smoother_gains(S, Sigma, inputs.model.transition_matrix, inputs.model.initial_cov)
    # elements for t = 1..T-1 use G_t (gains[t] in 0-based storage pairs S_t with Σ_{t+1}); t = T is the end
    G = gains[..., 1:, :, :]
    g = m[..., :-1, :] - _mv(G, mu[..., 1:, :])
    L = symmetrize(S[..., :-1, :, :] - G @ Sigma[..., 1:, :, :] @ G.mT)
    G = torch.cat([G, torch.zeros_like(G[..., :1, :, :])], dim=-3)
    g = _cat_time([g, m[..., -1:, :]], event_dims=1)
    L = _cat_time([L, S[..., -1:, :, :]], event_dims=2)
    nb = len(inputs.batch_shape)
    scanned = associative_scan(
        smoothing_combine, [_time_first(G, 2, nb), _time_first(g, 1, nb), _time_first(L, 2, nb)], reverse=True
    )
    sm = _time_last(scanned[1], 1)
    sP = _time_last(scanned[2], 2)
    return _smoother_result(inputs, filtered, gains, sm, sP)


__all__ = [
    "associative_scan",
    "filtering_combine",
    "parallel_kalman_filter",
    "parallel_rts_smoother",
    "smoothing_combine",
]
