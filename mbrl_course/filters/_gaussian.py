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


def mask_covariance(cov: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """V with the rows and columns of missing entries replaced by those of the identity.

    ``cov: (..., d, d)``, ``observed: (..., d)`` bool. A missing entry i then has unit variance and
    no correlation: with a zero residual it adds nothing to the quadratic form nor to log det V
    (see :func:`gaussian_log_density`).
    """
    both = observed.unsqueeze(-1) & observed.unsqueeze(-2)
    return torch.where(both, cov, torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device))


def mask_emission(
    emission_matrix: torch.Tensor, emission_cov: torch.Tensor, observed: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Condition only on the observed entries of y_t: zero rows of C and identity rows/columns of D.

    A missing entry i gets a zero row in C, so it carries no information on s_t, and, in D, a
    unit variance without correlation (:func:`mask_covariance`); with its residual set to 0 its
    factor in the likelihood is N(0; 0, 1), which :func:`gaussian_log_density` leaves out.

    ``emission_matrix: (..., dy, dx)``, ``emission_cov: (..., dy, dy)``, ``observed: (..., dy)`` bool.
    """
    return torch.where(observed.unsqueeze(-1), emission_matrix, 0.0), mask_covariance(emission_cov, observed)


def gaussian_log_density(
    residual: torch.Tensor, cov_cholesky: torch.Tensor, observed: torch.Tensor | None = None
) -> torch.Tensor:
    """log N(r; 0, V) over the observed entries of r: -½ r_oᵀ V_oo⁻¹ r_o - ½ log det V_oo - ½ n_o log 2π.

    ``residual: (..., d)`` r, zero at missing entries; ``cov_cholesky: (..., d, d)`` the lower Cholesky
    factor L of V (L Lᵀ = V) with the missing rows and columns already set to the identity (see
    :func:`mask_covariance`); ``observed: (..., d)`` bool, None when every entry is observed.
    Missing entries then give z_i = (L⁻¹ r)_i = 0 and log L_ii = 0, and only the count n_o of
    observed entries enters the 2π constant. Returns ``(...)``; 0 where nothing is observed.
    """
    z = torch.linalg.solve_triangular(cov_cholesky, residual.unsqueeze(-1), upper=False)  # L⁻¹ r: (..., d, 1)
    num_observed = residual.shape[-1] if observed is None else observed.sum(-1, dtype=residual.dtype)
    half_log_det = torch.diagonal(cov_cholesky, dim1=-2, dim2=-1).log().sum(-1)  # ½ log det V = Σ_i log L_ii
    return -0.5 * z.square().sum((-2, -1)) - half_log_det - (0.5 * LOG_2PI) * num_observed


def condition(
    predicted_mean: torch.Tensor,
    predicted_cov: torch.Tensor,
    residual: torch.Tensor,
    emission_matrix: torch.Tensor,
    emission_cov: torch.Tensor,
    observed: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Joseph-form Kalman update; returns (m_t, S_t, log p(y_t | Y_{1:t-1})).

    V = C Σ Cᵀ + D (Cholesky L), K = Σ Cᵀ V⁻¹, m = μ + K r,
    S = (I - K C) Σ (I - K C)ᵀ + K D Kᵀ, log N(r; 0, V) with r = y - u.
    With missing entries, C and D come masked (:func:`mask_emission`), r is 0 there and
    ``observed`` marks the observed entries.
    """
    C, D = emission_matrix, emission_cov
    CS = C @ predicted_cov
    L = torch.linalg.cholesky(CS @ C.mT + D)  # reads the lower triangle only: V needs no symmetrising
    gain = torch.cholesky_solve(CS, L).mT  # K = Σ Cᵀ V⁻¹, using Σ = Σᵀ
    mean = predicted_mean + matvec(gain, residual)
    I_KC = torch.eye(C.shape[-1], dtype=C.dtype, device=C.device) - gain @ C
    cov = symmetrize(I_KC @ predicted_cov @ I_KC.mT + gain @ D @ gain.mT)
    return mean, cov, gaussian_log_density(residual, L, observed)


def psd_factor(cov: torch.Tensor) -> torch.Tensor:
    """A matrix A with A Aᵀ = cov for symmetric positive semi-definite ``cov`` (Cholesky, else eigh)."""
    L, info = torch.linalg.cholesky_ex(cov)
    if not bool((info != 0).any()):
        return L
    vals, vecs = torch.linalg.eigh(symmetrize(cov))
    return vecs * vals.clamp_min(0.0).sqrt().unsqueeze(-2)
