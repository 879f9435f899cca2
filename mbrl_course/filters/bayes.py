"""The slide's Bayesian filter, literally, on a finite (or discretised) state space.

With K states the integrals of the recursion become sums and every distribution is a
probability vector, so the filter is exact:

    p(s_t | Y_{1:t-1}) = Σ_{s_{t-1}} p(s_t | s_{t-1}) p(s_{t-1} | Y_{1:t-1})      (marginalisation)
    p(y_t | Y_{1:t-1}) = Σ_{s_t} p(y_t | s_t) p(s_t | Y_{1:t-1})                (marginalisation)
    p(s_t | Y_{1:t})   = p(y_t | s_t) p(s_t | Y_{1:t-1}) / p(y_t | Y_{1:t-1})   (inference)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mbrl_course._checks import as_tensor
from mbrl_course.filters._validate import SUPPORTED_DTYPES, broadcast_batch


@dataclass
class BayesianFilterResult:
    """Filtering and predictive distributions S_f, S_p of the Bayesian filter on K states."""

    filtered_probs: torch.Tensor
    """S_f: p(s_t = k | Y_{1:t}), t = 1..T: (..., T, K)"""
    predicted_probs: torch.Tensor
    """S_p: p(s_t = k | Y_{1:t-1}): (..., T, K)"""
    step_log_likelihoods: torch.Tensor
    """log p(y_t | Y_{1:t-1}): (..., T)"""
    log_likelihood: torch.Tensor
    """log p(Y_{1:T}) = Σ_t log p(y_t | Y_{1:t-1}): (...)"""


def _check_probabilities(name: str, probs: torch.Tensor) -> None:
    tol = 1e-5 if probs.dtype == torch.float32 else 1e-9
    if bool((probs < 0).any()) or not bool(torch.isfinite(probs).all()):
        raise ValueError(f"{name}: expected finite non-negative probabilities, got negative or NaN entries")
    total = probs.sum(-1)
    if bool(((total - 1.0).abs() > tol).any()):
        worst = float((total - 1.0).abs().max())
        raise ValueError(f"{name}: expected rows that sum to 1 over the last axis, off by up to {worst:.3g}")


def bayesian_filter(
    initial_probs: torch.Tensor,
    transition_probs: torch.Tensor,
    emission_log_probs: torch.Tensor,
) -> BayesianFilterResult:
    """The slide's Bayesian filtering recursion on K discrete states, exact.

    For t = 1..T, from p(s_0) = ``initial_probs``:

    - p(s_t | Y_{1:t-1}) = Σ_{s_{t-1}} p(s_t | s_{t-1}) p(s_{t-1} | Y_{1:t-1})   appended to S_p
    - p(y_t | Y_{1:t-1}) = Σ_{s_t} p(y_t | s_t) p(s_t | Y_{1:t-1})
    - p(s_t | Y_{1:t}) = p(y_t | s_t) p(s_t | Y_{1:t-1}) / p(y_t | Y_{1:t-1})     appended to S_f

    The update runs in log space (log-sum-exp), so long sequences and peaked likelihoods do not
    underflow.

    ``initial_probs: (..., K)`` p(s_0 = k); ``transition_probs``: p(s_t = j | s_{t-1} = i) at
    ``[i, j]``, fixed ``(K, K)`` or time-varying ``(..., T, K, K)`` (rows sum to 1);
    ``emission_log_probs: (..., T, K)`` log p(y_t | s_t = k) of the observed y_t (e.g. from
    :meth:`HiddenMarkovModel.emission_log_probs` or :meth:`GridSSM.emission_log_probs`). A missing
    y_t is a row of zeros (p(y_t | s_t) = 1): no update, and 0 (up to round-off) added to the
    log-likelihood.
    Batch dimensions broadcast. Raises if some y_t has probability 0 under the model.
    """
    logp = as_tensor("emission_log_probs", emission_log_probs)
    if logp.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"emission_log_probs: expected dtype float32 or float64, got {logp.dtype}")
    if logp.ndim < 2 or logp.shape[-2] == 0:
        raise ValueError(
            f"emission_log_probs: expected shape (..., T, K) with T >= 1, got {tuple(logp.shape)}"
        )
    if bool(torch.isnan(logp).any()) or bool((logp == float("inf")).any()):
        raise ValueError("emission_log_probs: expected log-probabilities (finite or -inf), got NaN or +inf")
    T, K = logp.shape[-2], logp.shape[-1]
    p0 = as_tensor("initial_probs", initial_probs, dtype=logp.dtype, device=logp.device)
    P = as_tensor("transition_probs", transition_probs, dtype=logp.dtype, device=logp.device)
    if p0.ndim < 1 or p0.shape[-1] != K:
        raise ValueError(f"initial_probs: expected shape (..., {K}), got {tuple(p0.shape)}")
    if P.ndim < 2 or tuple(P.shape[-2:]) != (K, K):
        raise ValueError(f"transition_probs: expected shape ({K}, {K}) or (..., T, {K}, {K}), got {tuple(P.shape)}")
    if P.ndim == 2:
        P = P.unsqueeze(0)
    elif P.shape[-3] not in (T, 1):
        raise ValueError(
            f"transition_probs: expected ({K}, {K}) or (..., T, {K}, {K}) with T = {T} (or 1), got {tuple(P.shape)}"
        )
    _check_probabilities("initial_probs", p0)
    _check_probabilities("transition_probs", P)
    batch = broadcast_batch(
        [("emission_log_probs", logp.shape[:-2]), ("initial_probs", p0.shape[:-1]), ("transition_probs", P.shape[:-3])]
    )
    Ps = [P[..., 0, :, :]] * T if P.shape[-3] == 1 else list(P.unbind(-3))
    filt = p0.expand(batch + (K,))
    filtered, predicted, step_ll = [], [], []
    for t, logp_t in enumerate(logp.unbind(-2)):
        pred = (filt.unsqueeze(-2) @ Ps[t]).squeeze(-2)  # Σ_i p(s_{t-1}=i | Y) P[i, j]
        log_joint = pred.log() + logp_t  # log p(y_t | s_t) p(s_t | Y_{1:t-1})
        ll = torch.logsumexp(log_joint, dim=-1)  # log p(y_t | Y_{1:t-1})
        filt = (log_joint - ll.unsqueeze(-1)).exp()
        predicted.append(pred)
        filtered.append(filt)
        step_ll.append(ll)
    step = torch.stack(step_ll, -1).expand(batch + (T,))
    if bool(torch.isneginf(step).any()):
        t = int(torch.isneginf(step).nonzero()[0, -1])
        raise ValueError(
            f"emission_log_probs: the observation at step t = {t + 1} has probability 0 under every state "
            f"the model can reach (p(y_t | Y_{{1:t-1}}) = 0)"
        )
    return BayesianFilterResult(
        filtered_probs=torch.stack(filtered, -2).expand(batch + (T, K)),
        predicted_probs=torch.stack(predicted, -2).expand(batch + (T, K)),
        step_log_likelihoods=step,
        log_likelihood=step.sum(-1),
    )


__all__ = ["BayesianFilterResult", "bayesian_filter"]
