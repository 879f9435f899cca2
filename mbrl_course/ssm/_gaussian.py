"""Gaussians as (mean, scale_tril) pairs: sampling, log-density and KL, batched over leading dimensions.

Every Gaussian of :mod:`mbrl_course.ssm` is N(μ, Σ) with Σ = L Lᵀ, ``mean: (..., d)`` μ and
``scale_tril: (..., d, d)`` L lower triangular with a positive diagonal (a diagonal Gaussian has a
diagonal L). Leading dimensions broadcast.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as nnf

from mbrl_course.filters._gaussian import matvec

LOG_2PI = math.log(2.0 * math.pi)
MIN_SCALE = 1e-4
"""smallest standard deviation a network head produces (softplus(x) + MIN_SCALE)"""


def rsample(mean: torch.Tensor, scale_tril: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Reparameterised sample s = μ + L ε for standard normal ``noise`` ε: (..., d)."""
    return mean + matvec(scale_tril, noise)


def log_prob(x: torch.Tensor, mean: torch.Tensor, scale_tril: torch.Tensor) -> torch.Tensor:
    """log N(x | μ, L Lᵀ) = -½ |L⁻¹ (x - μ)|² - Σ_i log L_ii - ½ d log 2π: (...)."""
    residual = (x - mean).unsqueeze(-1)
    shape = torch.broadcast_shapes(residual.shape, scale_tril.shape[:-1] + (1,))
    z = torch.linalg.solve_triangular(scale_tril.expand(shape[:-1] + scale_tril.shape[-1:]),
                                      residual.expand(shape), upper=False)
    half_log_det = torch.diagonal(scale_tril, dim1=-2, dim2=-1).log().sum(-1)
    return -0.5 * z.square().sum((-2, -1)) - half_log_det - 0.5 * x.shape[-1] * LOG_2PI


def kl_divergence(mean_q: torch.Tensor, scale_tril_q: torch.Tensor,
                  mean_p: torch.Tensor, scale_tril_p: torch.Tensor) -> torch.Tensor:
    """KL(N(μ_q, Σ_q) || N(μ_p, Σ_p)) in closed form: (...).

    KL = ½ [tr(Σ_p⁻¹ Σ_q) + (μ_p - μ_q)ᵀ Σ_p⁻¹ (μ_p - μ_q) - d + log det Σ_p - log det Σ_q],
    with tr(Σ_p⁻¹ Σ_q) = |L_p⁻¹ L_q|²_F and the quadratic form |L_p⁻¹ (μ_p - μ_q)|².
    """
    d = mean_q.shape[-1]
    batch = torch.broadcast_shapes(mean_q.shape[:-1], mean_p.shape[:-1], scale_tril_q.shape[:-2],
                                   scale_tril_p.shape[:-2])
    Lp = scale_tril_p.expand(batch + (d, d))
    M = torch.linalg.solve_triangular(Lp, scale_tril_q.expand(batch + (d, d)), upper=False)
    z = torch.linalg.solve_triangular(Lp, (mean_p - mean_q).expand(batch + (d,)).unsqueeze(-1), upper=False)
    log_det_p = 2.0 * torch.diagonal(scale_tril_p, dim1=-2, dim2=-1).log().sum(-1)
    log_det_q = 2.0 * torch.diagonal(scale_tril_q, dim1=-2, dim2=-1).log().sum(-1)
    return 0.5 * (M.square().sum((-2, -1)) + z.square().sum((-2, -1)) - d + log_det_p - log_det_q)


def cholesky_from_unconstrained(unconstrained: torch.Tensor) -> torch.Tensor:
    """L = tril(X, -1) + diag(exp(diag X)), the Cholesky factor of ``filters.positive_definite(X)``."""
    return torch.tril(unconstrained, -1) + torch.diag_embed(torch.diagonal(unconstrained, dim1=-2, dim2=-1).exp())


def diagonal_scale(raw: torch.Tensor) -> torch.Tensor:
    """A diagonal L from a network's raw output: diag(softplus(raw) + MIN_SCALE): (..., d) -> (..., d, d)."""
    return torch.diag_embed(nnf.softplus(raw) + MIN_SCALE)
