"""Small Gaussian building blocks shared by the filters (batched over leading dimensions)."""

from __future__ import annotations

import math

import torch

LOG_2PI = math.log(2.0 * math.pi)


def symmetrize(matrix: torch.Tensor) -> torch.Tensor:
    """(A + Aᵀ) / 2: removes the round-off asymmetry a covariance update leaves behind."""
    return 0.5 * (matrix + matrix.mT)


def matvec(matrix: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    """A x for ``matrix: (..., n, m)``, ``vector: (..., m)`` -> ``(..., n)``."""
    return (matrix @ vector.unsqueeze(-1)).squeeze(-1)


def mask_emission(
    emission_matrix: torch.Tensor, emission_cov: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Condition only on the observed entries of y_t.

    A missing entry i gets a zero row in C, a unit variance and no correlation in D, and a
    zero residual: it then carries no information on s_t, and its factor N(0; 0, 1) in the
    likelihood is cancelled by counting only observed entries in the 2π constant.

    ``emission_matrix: (..., dy, dx)``, ``emission_cov: (..., dy, dy)``, ``mask: (..., dy)``.
    """
    m = mask.to(emission_matrix.dtype)
    C = emission_matrix * m.unsqueeze(-1)
    D = emission_cov * (m.unsqueeze(-1) * m.unsqueeze(-2)) + torch.diag_embed(1.0 - m)
    return C, D


def condition(
    predicted_mean: torch.Tensor,
    predicted_cov: torch.Tensor,
    residual: torch.Tensor,
    emission_matrix: torch.Tensor,
    emission_cov: torch.Tensor,
    num_observed: torch.Tensor | int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Joseph-form Kalman update; returns (m_t, S_t, log p(y_t | Y_{1:t-1})).

    V = C Σ Cᵀ + D (Cholesky L), K = Σ Cᵀ V⁻¹, m = μ + K r,
    S = (I - K C) Σ (I - K C)ᵀ + K D Kᵀ, log N(r; 0, V) with r = y - u.
    """
    C, D = emission_matrix, emission_cov
    CS = C @ predicted_cov
    V = symmetrize(CS @ C.mT + D)
    L = torch.linalg.cholesky(V)
    gain = torch.cholesky_solve(CS, L).mT  # K = Σ Cᵀ V⁻¹, using Σ = Σᵀ
    mean = predicted_mean + matvec(gain, residual)
    eye = torch.eye(C.shape[-1], dtype=C.dtype, device=C.device)
    I_KC = eye - gain @ C
    cov = symmetrize(I_KC @ predicted_cov @ I_KC.mT + gain @ D @ gain.mT)
    z = torch.linalg.solve_triangular(L, residual.unsqueeze(-1), upper=False).squeeze(-1)
    log_lik = (
        -0.5 * (z * z).sum(-1)
        - torch.diagonal(L, dim1=-2, dim2=-1).log().sum(-1)
        - 0.5 * LOG_2PI * num_observed
    )
    return mean, cov, log_lik


def gaussian_log_density(residual: torch.Tensor, cov: torch.Tensor, num_observed=None) -> torch.Tensor:
    """log N(r; 0, V) for ``residual: (..., d)``, ``cov: (..., d, d)`` (Cholesky based)."""
    L = torch.linalg.cholesky(symmetrize(cov))
    z = torch.linalg.solve_triangular(L, residual.unsqueeze(-1), upper=False).squeeze(-1)
    n = residual.shape[-1] if num_observed is None else num_observed
    return -0.5 * (z * z).sum(-1) - torch.diagonal(L, dim1=-2, dim2=-1).log().sum(-1) - 0.5 * LOG_2PI * n


def psd_factor(cov: torch.Tensor) -> torch.Tensor:
    """A matrix A with A Aᵀ = cov for symmetric positive semi-definite ``cov`` (Cholesky, else eigh)."""
    L, info = torch.linalg.cholesky_ex(cov)
    if not bool((info != 0).any()):
        return L
    vals, vecs = torch.linalg.eigh(symmetrize(cov))
    return vecs * vals.clamp_min(0.0).sqrt().unsqueeze(-2)
