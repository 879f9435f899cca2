"""The ELBO of a variational state-space model, as the slide writes it.

With λ = {ψ, θ}:

    L(λ) = E_q[log p(s_0) - log q(s_0 | Y_{1:T}, ψ)]
         + Σ_{t=1}^T E_{q(s_{0:t} | Y_{1:T}, ψ)} [ log p(y_t | s_t) - log q(s_t | s_{0:t-1}, Y_{1:T}, ψ) / p(s_t | s_{t-1}, θ) ]
         = Σ_t E_q[log p(y_t | s_t)] - KL(q(s_0 | Y) || p(s_0)) - Σ_t E_q[KL(q(s_t | s_{0:t-1}, Y) || p(s_t | s_{t-1}, θ))]

estimated on N reparameterised ancestral samples s̃_{0:T} ~ q (:meth:`~mbrl_course.ssm.Posterior.sample`):

- ``kl="mc"``: the slide's integrand at the sample, log q(s̃_t | ·) - log p(s̃_t | s̃_{t-1}, θ);
- ``kl="analytic"``: the Gaussian-Gaussian KL(q(s_t | s̃_{0:t-1}, Y) || p(s_t | s̃_{t-1}, θ)) in closed form,
  evaluated at the sampled past (the inner expectation over s_t done exactly, the outer one over s̃_{0:t-1}
  by the sample).

Both are unbiased; gradients w.r.t. ψ and θ flow together through s̃ (the slide's ∇_λ L̃).

Padding and missing steps: a step with ``mask`` False has no reconstruction term log p(y_t | s_t). Its KL
term still counts while t ≤ the sequence's last observed step (a missing y_t in the middle: s_t is still a
latent of the model, as the Kalman filter's prediction step still runs) and is dropped after it (padding:
the latents after the end are marginalised out, and their exact contribution is 0). So the ELBO of a padded
sequence equals the ELBO of the sequence cut at its end, and with the exact posterior the ELBO with holes
equals the Kalman filter's log p(Y) with NaN at those steps. Masked observations are replaced by 0 before
any computation: NaN there reaches neither the value nor a gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mbrl_course._checks import check_choice, check_positive_int
from mbrl_course.ssm._gaussian import kl_divergence, log_prob
from mbrl_course.ssm.generative import GenerativeModel, Sequences, check_dtype, check_sequences
from mbrl_course.ssm.posteriors import Posterior, PosteriorSample

KL_ESTIMATORS = ("analytic", "mc")


@dataclass
class ELBOResult:
    """The ELBO estimate and its per-step terms, per sample path and per sequence."""

    samples: torch.Tensor
    """the estimator on each sample path (summed over steps): (N, B)"""
    reconstruction: torch.Tensor
    """log p(y_t | s̃_t), t = 1..T, 0 where masked: (N, B, T)"""
    kl: torch.Tensor
    """the KL terms, index 0 KL(q(s_0 | Y) || p(s_0)), index t the step-t term; 0 where not counted: (N, B, T+1)"""
    mask: torch.Tensor
    """True where y_t is observed: (B, T)"""
    posterior_sample: PosteriorSample
    """the sample paths and q's parameters the estimate used"""

    @property
    def value(self) -> torch.Tensor:
        """L(λ) per sequence, the average over the N samples: (B,)."""
        return self.samples.mean(0)

    @property
    def standard_error(self) -> torch.Tensor:
        """The Monte Carlo standard error of :attr:`value` (0 for N = 1): (B,)."""
        N = self.samples.shape[0]
        return self.samples.std(0) / N ** 0.5 if N > 1 else torch.zeros_like(self.value)

    @property
    def num_observed(self) -> torch.Tensor:
        """Observed steps per sequence: (B,)."""
        return self.mask.sum(-1)

    def per_step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(E log p(y_t | s_t), E KL_t), each averaged over the samples, for plotting: (B, T) and (B, T+1)."""
        return self.reconstruction.mean(0), self.kl.mean(0)


def elbo_terms(model: GenerativeModel, sample: PosteriorSample, seq: Sequences, kl: str = "analytic") -> ELBOResult:
    """The slide's ELBO terms along given posterior samples of checked sequences (see :func:`estimate_elbo`)."""
    check_choice("kl", kl, KL_ESTIMATORS)
    s, q_mean, q_scale = sample.states, sample.means, sample.scale_trils  # (N, B, T+1, dx), ..., (..., dx, dx)
    # p(s_0) and p(s_t | s̃_{t-1}, u_t, θ) for t = 1..T, at the sampled past
    m0, L0 = model.initial()
    p_mean, p_scale = model.transition(s[:, :, :-1], seq.controls)
    p_mean = torch.cat([m0.expand_as(s[:, :, :1]), p_mean], 2)
    p_scale = torch.cat([L0.expand(s.shape[:2] + (1,) + L0.shape), p_scale.expand(s.shape[:2] + (s.shape[2] - 1,)
                                                                                     + p_scale.shape[-2:])], 2)
    if kl == "analytic":
        kl_terms = kl_divergence(q_mean, q_scale, p_mean, p_scale)  # KL(q(s_t | s̃_{0:t-1}, Y) || p(s_t | s̃_{t-1}))
    else:
        kl_terms = log_prob(s, q_mean, q_scale) - log_prob(s, p_mean, p_scale)  # log q(s̃_t | ·) - log p(s̃_t | s̃_{t-1})
    counted = torch.cat([seq.mask.any(-1, keepdim=True), seq.counted], -1)  # s_0 counts when anything is observed
    zero = torch.zeros((), dtype=s.dtype, device=s.device)
    kl_terms = torch.where(counted, kl_terms, zero)
    recon = torch.where(seq.mask, model.emission.log_prob(seq.observations, s[:, :, 1:]), zero)  # log p(y_t | s̃_t)
    return ELBOResult(recon.sum(-1) - kl_terms.sum(-1), recon, kl_terms, seq.mask, sample)


def estimate_elbo(
    model: GenerativeModel,
    posterior: Posterior,
    observations: torch.Tensor,
    mask: torch.Tensor | None = None,
    controls: torch.Tensor | None = None,
    *,
    num_samples: int = 1,
    kl: str = "analytic",
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
) -> ELBOResult:
    """The ELBO L(λ) = Σ_t E_q[log p(y_t | s_t) - log q(s_t | s_{0:t-1}, Y_{1:T}, ψ) / p(s_t | s_{t-1}, θ)], with s_0.

    ``model`` p_θ, ``posterior`` q_ψ (any family: the estimate uses only its samples and Gaussian parameters);
    ``observations: (B, T, dy)`` Y_{1:T}; ``mask: (B, T)`` bool, True where y_t is observed (None: the
    all-NaN steps are masked); ``controls: (B, T, du)`` u_t; ``num_samples`` N paths; ``kl`` "analytic" or
    "mc" (see the module docstring); ``generator`` for the ε_t, or ``noise: (N, B, T+1, dx)`` the ε_t themselves.

    Returns an :class:`ELBOResult`: ``.value`` (B,) the estimate per sequence, ``.samples`` (N, B), the
    per-step ``.reconstruction`` and ``.kl``. Differentiable w.r.t. ψ and θ.
    """
    check_positive_int("num_samples", num_samples)
    check_choice("kl", kl, KL_ESTIMATORS)
    _check_pair(model, posterior, observations)
    seq = check_sequences(observations, mask, controls, model.obs_dim, model.control_dim)
    sample = posterior.run(seq, num_samples, generator, noise)
    return elbo_terms(model, sample, seq, kl)


def _check_pair(model: GenerativeModel, posterior: Posterior, observations: torch.Tensor) -> None:
    """The model and the posterior fit each other (sizes) and the data (dtype)."""
    check_dtype(observations, model=model, posterior=posterior)
    for name in ("state_dim", "obs_dim", "control_dim"):
        if getattr(model, name) != getattr(posterior, name):
            raise ValueError(f"posterior: expected {name} = {getattr(model, name)} (the model's), "
                             f"got {getattr(posterior, name)}")
