"""Exact moments of a Gaussian pushed through a GP with the SE kernel, and of PILCO's saturating cost.

PILCO (Deisenroth & Rasmussen, 2011) propagates a Gaussian state distribution through its GP
dynamics without sampling: for a test input x ~ N(μ, Σ) and E independent GPs with the squared
exponential kernel k_a(x, x') = α_a² exp(−½ (x − x')ᵀ Λ_a⁻¹ (x − x')), Λ_a = diag(ℓ_a²), trained on
inputs X (n, D), the predictive distribution p(f(x)) is not Gaussian, but its mean, covariance
and the input-output covariance Cov[x, f(x)] have closed forms (Deisenroth's thesis, §2.3):

    ν_i = x_i − μ,   q_ai = α_a² |Σ Λ_a⁻¹ + I|^{-1/2} exp(−½ ν_iᵀ (Σ + Λ_a)⁻¹ ν_i)
    E[f_a]           = β_aᵀ q_a,                         β_a = (K_a + σ_a² I)⁻¹ y_a
    Cov[x, f_a]      = Σ C_a,   C_a = (Σ + Λ_a)⁻¹ Σ_i β_ai q_ai ν_i   (the input gain E[∂f_a/∂x])
    E[f_a f_b]       = β_aᵀ Q_ab β_b  (+ α_a² − tr((K_a + σ_a² I)⁻¹ Q_aa) when a = b)
    Q_ab,ij          = k_a(x_i, μ) k_b(x_j, μ) |R|^{-1/2} exp(½ z_ijᵀ R⁻¹ Σ z_ij),
                       R = Σ (Λ_a⁻¹ + Λ_b⁻¹) + I,   z_ij = Λ_a⁻¹ ν_i + Λ_b⁻¹ ν_j

Moment matching replaces p(f(x)) by the Gaussian with these moments. Everything here is batched
over leading dimensions of μ and Σ and differentiable (PILCO's policy gradient is autograd
through these moments). Built for issue 12 (PILCO); the GP model that supplies X, β and
(K + σ² I)⁻¹ comes with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class PredictionMoments:
    """The moments of f(x) for x ~ N(μ, Σ): ``mean`` (..., E), ``cov`` (..., E, E), ``input_cov`` (..., D, E),
    ``input_gain`` (..., D, E)."""

    mean: torch.Tensor
    cov: torch.Tensor
    input_cov: torch.Tensor
    """Cov[x, f(x)]: how the outputs co-vary with the input (PILCO's joint of state and change)."""
    input_gain: torch.Tensor
    """C = Σ⁻¹ Cov[x, f(x)] = E[∂f/∂x]ᵀ (Stein's lemma), computed without inverting Σ. Chaining
    x → y → z: Cov[x, z] = Cov[x, y] C_{y→z} and C_{x→z} = C_{x→y} C_{y→z} (see :func:`compose`)."""


def se_kernel(x1: torch.Tensor, x2: torch.Tensor, lengthscales: torch.Tensor, signal_var: torch.Tensor) -> torch.Tensor:
    """k_a(x, x') = α_a² exp(−½ Σ_d (x_d − x'_d)² / ℓ_ad²) for every output a: (E, n, m).

    Args:
        x1: (n, D); x2: (m, D); lengthscales: ℓ, (E, D); signal_var: α², (E,).
    """
    scaled1 = x1[None] / lengthscales[:, None]  # (E, n, D)
    scaled2 = x2[None] / lengthscales[:, None]  # (E, m, D)
    squared = torch.cdist(scaled1, scaled2).pow(2)
    return signal_var[:, None, None] * torch.exp(-0.5 * squared)


def _check(mean: torch.Tensor, cov: torch.Tensor, inputs: torch.Tensor, beta: torch.Tensor,
           lengthscales: torch.Tensor, signal_var: torch.Tensor) -> None:
    dim = inputs.shape[-1]
    if mean.shape[-1] != dim or cov.shape[-2:] != (dim, dim) or cov.shape[:-2] != mean.shape[:-1]:
        raise ValueError(f"mean, cov: expected (..., {dim}) and (..., {dim}, {dim}) for inputs of {dim} dimensions, "
                         f"got {tuple(mean.shape)} and {tuple(cov.shape)}")
    outputs = beta.shape[0]
    if beta.shape != (outputs, inputs.shape[0]):
        raise ValueError(f"beta: expected (E, n) = (E, {inputs.shape[0]}), got {tuple(beta.shape)}")
    if lengthscales.shape != (outputs, dim) or signal_var.shape != (outputs,):
        raise ValueError(f"lengthscales, signal_var: expected ({outputs}, {dim}) and ({outputs},), "
                         f"got {tuple(lengthscales.shape)} and {tuple(signal_var.shape)}")


def gp_moments_at_gaussian_input(mean: torch.Tensor, cov: torch.Tensor, inputs: torch.Tensor, beta: torch.Tensor,
                                 lengthscales: torch.Tensor, signal_var: torch.Tensor,
                                 kernel_inverse: torch.Tensor | None = None) -> PredictionMoments:
    """Exact mean, covariance and input-output covariance of E SE-kernel GPs at x ~ N(mean, cov).

    Args:
        mean: μ, (..., D). cov: Σ, (..., D, D), symmetric positive semi-definite.
        inputs: the training inputs X, (n, D).
        beta: β_a = (K_a + σ_a² I)⁻¹ y_a for every output, (E, n).
        lengthscales: ℓ_a, (E, D). signal_var: α_a², (E,).
        kernel_inverse: (K_a + σ_a² I)⁻¹, (E, n, n): adds the GP's own variance
            α_a² − tr((K_a + σ_a² I)⁻¹ Q_aa) to the diagonal. ``None``: the posterior mean only
            (a deterministic function, e.g. PILCO's RBF-network policy).
    Returns:
        :class:`PredictionMoments` of f(x) (the latent function; add the noise variances σ_a² for y).
    """
    _check(mean, cov, inputs, beta, lengthscales, signal_var)
    inv_scale = lengthscales.pow(-2)  # Λ_a⁻¹ as a vector, (E, D)
    eye = torch.eye(mean.shape[-1], dtype=mean.dtype, device=mean.device)
    nu = inputs - mean[..., None, :]  # ν_i = x_i − μ: (..., n, D)
    sigma = cov[..., None, :, :]  # (..., 1, D, D)

    # mean: q_ai with (Σ + Λ_a)⁻¹ and |Σ Λ_a⁻¹ + I|
    spread = sigma + torch.diag_embed(lengthscales.pow(2))  # Σ + Λ_a: (..., E, D, D)
    solved = torch.linalg.solve(spread, nu[..., None, :, :].transpose(-1, -2)).transpose(-1, -2)  # (Σ+Λ)⁻¹ν: (..., E, n, D)
    exponent = -0.5 * (nu[..., None, :, :] * solved).sum(-1)  # (..., E, n)
    logdet = torch.linalg.slogdet(sigma * inv_scale[..., None, :] + eye).logabsdet  # |Σ Λ_a⁻¹ + I|: (..., E)
    q = signal_var[:, None] * torch.exp(exponent - 0.5 * logdet[..., None])  # (..., E, n)
    weighted = beta * q  # β_ai q_ai
    out_mean = weighted.sum(-1)  # (..., E)
    input_gain = (weighted[..., None] * solved).sum(-2).transpose(-1, -2)  # C_a = (Σ+Λ_a)⁻¹ Σ_i β q ν: (..., D, E)
    input_cov = cov @ input_gain  # Cov[x, f_a] = Σ C_a

    # second moments: Q_ab
    log_k = torch.log(signal_var)[:, None] - 0.5 * (nu[..., None, :, :].pow(2) * inv_scale[:, None, :]).sum(-1)  # (..., E, n)
    z = nu[..., None, :, :] * inv_scale[:, None, :]  # Λ_a⁻¹ ν_i: (..., E, n, D)
    pair = inv_scale[:, None, :] + inv_scale[None, :, :]  # Λ_a⁻¹ + Λ_b⁻¹: (E, E, D)
    r = cov[..., None, None, :, :] * pair[..., None, :] + eye  # R = Σ (Λ_a⁻¹ + Λ_b⁻¹) + I: (..., E, E, D, D)
    t = torch.linalg.solve(r, cov[..., None, None, :, :].expand_as(r))  # R⁻¹ Σ (symmetric): (..., E, E, D, D)
    za, zb = z[..., :, None, :, :], z[..., None, :, :, :]  # (..., E, 1, n, D), (..., 1, E, n, D)
    quad_a = torch.einsum("...abid,...abde,...abie->...abi", za.expand(*t.shape[:-2], -1, -1), t,
                          za.expand(*t.shape[:-2], -1, -1))
    quad_b = torch.einsum("...abjd,...abde,...abje->...abj", zb.expand(*t.shape[:-2], -1, -1), t,
                          zb.expand(*t.shape[:-2], -1, -1))
    cross = torch.einsum("...abid,...abde,...abje->...abij", za.expand(*t.shape[:-2], -1, -1), t,
                         zb.expand(*t.shape[:-2], -1, -1))
    log_q = (log_k[..., :, None, :, None] + log_k[..., None, :, None, :]
             - 0.5 * torch.linalg.slogdet(r).logabsdet[..., None, None]
             + 0.5 * (quad_a[..., :, None] + quad_b[..., None, :] + 2 * cross))
    big_q = torch.exp(log_q)  # (..., E, E, n, n)
    second = torch.einsum("ai,...abij,bj->...ab", beta, big_q, beta)  # β_aᵀ Q_ab β_b
    if kernel_inverse is not None:
        diagonal = torch.diagonal(big_q, dim1=-4, dim2=-3).movedim(-1, -3)  # Q_aa: (..., E, n, n)
        trace = (kernel_inverse * diagonal).sum((-1, -2))  # tr((K_a+σ²I)⁻¹ Q_aa), K⁻¹ symmetric
        second = second + torch.diag_embed(signal_var - trace)
    out_cov = second - out_mean[..., :, None] * out_mean[..., None, :]
    out_cov = 0.5 * (out_cov + out_cov.transpose(-1, -2))
    return PredictionMoments(out_mean, out_cov, input_cov, input_gain)


def expected_saturating_cost(mean: torch.Tensor, cov: torch.Tensor, target: torch.Tensor,
                             weight: torch.Tensor) -> torch.Tensor:
    """E[1 − exp(−½ (x − x*)ᵀ W (x − x*))] for x ~ N(μ, Σ), exactly: (...,).

    = 1 − |I + Σ W|^{-1/2} exp(−½ (μ − x*)ᵀ W (I + Σ W)⁻¹ (μ − x*)).

    Args:
        mean: μ, (..., D); cov: Σ, (..., D, D); target: x*, (D,); weight: W, (D, D) symmetric PSD
            (PILCO's cart-pole: W = Tᵀ T / σ_c², T mapping the state to the pole tip's offset).
    """
    dim = mean.shape[-1]
    if target.shape != (dim,) or weight.shape != (dim, dim):
        raise ValueError(f"target, weight: expected ({dim},) and ({dim}, {dim}), got {tuple(target.shape)} "
                         f"and {tuple(weight.shape)}")
    eye = torch.eye(dim, dtype=mean.dtype, device=mean.device)
    spread = eye + cov @ weight  # I + Σ W
    offset = (mean - target)[..., None]  # (..., D, 1)
    quad = (offset.transpose(-1, -2) @ weight @ torch.linalg.solve(spread, offset))[..., 0, 0]
    return 1.0 - torch.exp(-0.5 * quad - 0.5 * torch.linalg.slogdet(spread).logabsdet)
