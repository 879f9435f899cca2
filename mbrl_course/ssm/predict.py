"""k-step prediction p(y_{T+k} | Y_{1:T}) by ancestral sampling, as the slide.

    p(y_{T+k} | Y_{1:T}) ≈ ∫ p(y_{T+k} | s_{T+k}) Π_{t=T+1}^{T+k} p(s_t | s_{t-1}, θ_*) q(s_T | Y_{1:T}, ψ_*) ds_{T:T+k}:

sample s̃_{0:T} ~ q(s_{0:T} | Y_{1:T}, ψ) (ancestral sampling, keep s̃_T), then s̃_t ~ p(s_t | s̃_{t-1}, u_t, θ)
for t = T+1..T+K (with future actions u_t when the model takes them) and ỹ_t ~ p(y_t | s̃_t).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from mbrl_course._checks import check_positive_int
from mbrl_course.ssm._gaussian import rsample
from mbrl_course.ssm.elbo import _check_pair
from mbrl_course.ssm.generative import GenerativeModel, check_sequences
from mbrl_course.ssm.posteriors import Posterior


@dataclass
class PredictionSamples:
    """Samples of p(s_{T+k}, y_{T+k} | Y_{1:T}), k = 1..K, and summaries of the y's."""

    states: torch.Tensor
    """s̃_{T+k}: (N, B, K, dx)"""
    observations: torch.Tensor
    """ỹ_{T+k} ~ p(y_{T+k} | s̃_{T+k}): (N, B, K, dy)"""
    obs_means: torch.Tensor
    """E[y_{T+k} | s̃_{T+k}] for each sample (the emission's mean): (N, B, K, dy)"""
    mean: torch.Tensor
    """the predictive mean E[y_{T+k} | Y_{1:T}] ≈ average of ``obs_means`` over the samples: (B, K, dy)"""
    quantile_levels: torch.Tensor
    """the levels asked for: (Q,)"""
    quantiles: torch.Tensor
    """empirical quantiles of ``observations`` over the samples: (Q, B, K, dy)"""


@torch.no_grad()
def k_step_prediction(
    model: GenerativeModel,
    posterior: Posterior,
    observations: torch.Tensor,
    num_steps: int,
    mask: torch.Tensor | None = None,
    controls: torch.Tensor | None = None,
    future_controls: torch.Tensor | None = None,
    *,
    num_samples: int = 100,
    quantiles: Sequence[float] = (0.025, 0.5, 0.975),
    generator: torch.Generator | None = None,
) -> PredictionSamples:
    """p(y_{T+k} | Y_{1:T}), k = 1..K (K = ``num_steps``), by sampling q up to T and p(s_t | s_{t-1}, θ) after.

    ``observations: (B, T, dy)``, ``mask: (B, T)`` and ``controls: (B, T, du)`` as in
    :func:`~mbrl_course.ssm.estimate_elbo`; T is each sequence's *last observed step* (padding after it is
    skipped: the prediction starts from s̃_T of that step). ``future_controls: (B, K, du)`` u_{T+1..T+K}
    (needed when the model takes actions). ``quantiles``: levels in [0, 1].
    Returns :class:`PredictionSamples` with N = ``num_samples`` paths (computed without gradients: for
    evaluation and plotting).
    """
    K = check_positive_int("num_steps", num_steps)
    N = check_positive_int("num_samples", num_samples)
    _check_pair(model, posterior, observations)
    seq = check_sequences(observations, mask, controls, model.obs_dim, model.control_dim)
    B, T = seq.mask.shape
    if model.control_dim:
        if future_controls is None or tuple(future_controls.shape) != (B, K, model.control_dim):
            got = None if future_controls is None else tuple(future_controls.shape)
            raise ValueError(f"future_controls: expected shape ({B}, {K}, {model.control_dim}), got {got}")
    elif future_controls is not None:
        raise ValueError("future_controls: the model has no actions (control_dim = 0), got a tensor")
    levels = torch.as_tensor(list(quantiles), dtype=seq.observations.dtype, device=seq.observations.device)
    if levels.ndim != 1 or bool(((levels < 0) | (levels > 1)).any()):
        raise ValueError(f"quantiles: expected levels in [0, 1], got {list(quantiles)}")
    path = posterior.run(seq, N, generator).states  # s̃_{0:T} ~ q: (N, B, T+1, dx)
    # the index of s_T, each sequence's last observed step (0: none observed, start from s̃_0)
    steps = torch.arange(1, T + 1, device=seq.mask.device)
    last = torch.where(seq.mask, steps, 0).amax(-1)  # (B,)
    s = path.gather(2, last.view(1, B, 1, 1).expand(N, B, 1, model.state_dim)).squeeze(2)
    states = []
    for k in range(K):  # s̃_{T+k} ~ p(s_{T+k} | s̃_{T+k-1}, u_{T+k}, θ)
        mean, L = model.transition(s, None if future_controls is None else future_controls[:, k].to(s.dtype))
        noise = torch.randn(mean.shape, dtype=mean.dtype, device=mean.device, generator=generator)
        s = rsample(mean, L, noise)
        states.append(s)
    states = torch.stack(states, 2)  # (N, B, K, dx)
    obs = model.emission.sample(states, generator)
    obs_means = model.emission.mean(states)
    return PredictionSamples(states, obs, obs_means, obs_means.mean(0), levels, torch.quantile(obs, levels, dim=0))
