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

The other maps PILCO chains through one time step have exact moments too: the trigonometric
features φ(z) that turn a state's angles into (cos, sin) pairs (:func:`trig_features`), the
policy's squashing u = u_max ⊙ sin(ũ) (:func:`sin_squash`) and affine maps (:func:`affine_moments`).
Every map returns :class:`PredictionMoments`, whose ``input_gain`` lets :func:`compose` chain them
and :func:`joint` build the Gaussian over [x, f(x)].

Moment matching replaces p(f(x)) by the Gaussian with these moments. Everything here is batched
over leading dimensions of μ and Σ and differentiable (PILCO's policy gradient is autograd
through these moments). Built for issue 12 (PILCO); the GP model that supplies X, β and
(K + σ² I)⁻¹ comes with it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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


def check_gaussian(mean: torch.Tensor, cov: torch.Tensor, dim: int | None = None, what: str = "") -> int:
    """Refuse a mean (..., D) and covariance (..., D, D) that do not fit together (or do not have D = ``dim``).

    Returns D. ``what`` ends the message, e.g. " for inputs of 3 dimensions".
    """
    dim = mean.shape[-1] if dim is None and mean.ndim > 0 else dim
    if (mean.ndim == 0 or mean.shape[-1] != dim or cov.shape[-2:] != (dim, dim)
            or cov.shape[:-2] != mean.shape[:-1]):
        raise ValueError(f"mean, cov: expected (..., {dim}) and (..., {dim}, {dim}){what}, "
                         f"got {tuple(mean.shape)} and {tuple(cov.shape)}")
    return dim


def _check(mean: torch.Tensor, cov: torch.Tensor, inputs: torch.Tensor, beta: torch.Tensor,
           lengthscales: torch.Tensor, signal_var: torch.Tensor) -> None:
    dim = inputs.shape[-1]
    check_gaussian(mean, cov, dim, f" for inputs of {dim} dimensions")
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
    # (Σ+Λ_a)⁻¹ν_i as rows: ν (Σ+Λ_a)⁻¹, both symmetric. The D × D inverse (Λ_a > 0 keeps it well conditioned)
    # is far cheaper than a solve whose n right-hand sides broadcast over the E outputs
    solved = nu[..., None, :, :] @ torch.linalg.inv(spread)  # (..., E, n, D)
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
    za_t, zb_t = za @ t, zb @ t  # z_aiᵀ R⁻¹Σ, z_bjᵀ R⁻¹Σ: (..., E, E, n, D)
    # ½ (z_ai + z_bj)ᵀ R⁻¹Σ (z_ai + z_bj) = ½ z_aiᵀ T z_ai + ½ z_bjᵀ T z_bj + z_aiᵀ T z_bj; the row and column
    # terms are summed at (..., E, E, n) before they broadcast to (..., E, E, n, n)
    rows = log_k[..., :, None, :] + 0.5 * (za_t * za).sum(-1)  # (..., E, E, n)
    cols = log_k[..., None, :, :] + 0.5 * (zb_t * zb).sum(-1) - 0.5 * torch.linalg.slogdet(r).logabsdet[..., None]
    log_q = za_t @ zb.transpose(-1, -2) + rows[..., :, None] + cols[..., None, :]  # (..., E, E, n, n)
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


def _cosine_moments(mean: torch.Tensor, cov: torch.Tensor, weights: torch.Tensor,
                    phases: torch.Tensor) -> PredictionMoments:
    """Exact moments of o_k = cos(w_kᵀ x + φ_k), k = 1..K, for x ~ N(μ, Σ) (sin x = cos(x − π/2)).

    With a_k = w_kᵀ μ + φ_k, s_k² = w_kᵀ Σ w_k, P_kl = w_kᵀ Σ w_l (the characteristic function of a Gaussian):

        E[o_k]           = e^{−s_k²/2} cos a_k
        E[o_k o_l]       = ½ (E[cos((w_k − w_l)ᵀ x + φ_k − φ_l)] + E[cos((w_k + w_l)ᵀ x + φ_k + φ_l)])
        Cov[o_k, o_l]    = ½ e^{−(s_k² + s_l²)/2} ((e^{P_kl} − 1) cos(a_k − a_l) + (e^{−P_kl} − 1) cos(a_k + a_l))
        Cov[x, o_k]      = Σ w_k E[−sin(w_kᵀ x + φ_k)] = −Σ w_k e^{−s_k²/2} sin a_k        (Stein's lemma)
        C_k              = E[∂o_k/∂x] = −w_k e^{−s_k²/2} sin a_k

    Args: mean (..., D), cov (..., D, D), weights W (K, D), phases φ (K,). Returns moments with E = K.
    """
    angle = mean @ weights.T + phases  # a_k: (..., K)
    projected = weights @ cov @ weights.T  # P = W Σ Wᵀ: (..., K, K)
    decay = torch.exp(-0.5 * torch.diagonal(projected, dim1=-2, dim2=-1))  # e^{−s_k²/2}: (..., K)
    out_mean = decay * torch.cos(angle)
    difference = angle[..., :, None] - angle[..., None, :]
    total = angle[..., :, None] + angle[..., None, :]
    out_cov = 0.5 * decay[..., :, None] * decay[..., None, :] * (
        torch.expm1(projected) * torch.cos(difference) + torch.expm1(-projected) * torch.cos(total))
    out_cov = 0.5 * (out_cov + out_cov.transpose(-1, -2))
    slope = -decay * torch.sin(angle)  # E[−sin(w_kᵀ x + φ_k)]: (..., K)
    input_gain = weights.T * slope[..., None, :]  # (..., D, K)
    return PredictionMoments(out_mean, out_cov, cov @ input_gain, input_gain)


def trig_features(mean: torch.Tensor, cov: torch.Tensor, angle_dims: Sequence[int]) -> PredictionMoments:
    """Exact moments of φ(z): every angle z_d (d in ``angle_dims``) replaced in place by (cos z_d, sin z_d).

    PILCO keeps a pendulum's angle θ in its Gaussian state z but feeds the policy and the GP
    (cos θ, sin θ). For z ~ N(μ, Σ) and angles a, b among z's entries (a = b allowed):

        E[cos a] = e^{−Σ_aa/2} cos μ_a,   E[sin a] = e^{−Σ_aa/2} sin μ_a
        E[cos a cos b] = ½ (e^{−V₋/2} cos(μ_a − μ_b) + e^{−V₊/2} cos(μ_a + μ_b))
        E[sin a sin b] = ½ (e^{−V₋/2} cos(μ_a − μ_b) − e^{−V₊/2} cos(μ_a + μ_b))
        E[sin a cos b] = ½ (e^{−V₋/2} sin(μ_a − μ_b) + e^{−V₊/2} sin(μ_a + μ_b)),   V_± = Σ_aa + Σ_bb ± 2 Σ_ab
        Cov[z_j, cos a] = −Σ_ja E[sin a],   Cov[z_j, sin a] = Σ_ja E[cos a]   (Stein's lemma)

    and the other entries of z pass through (their covariance with anything is Σ's row).

    Args:
        mean: μ, (..., D). cov: Σ, (..., D, D).
        angle_dims: the indices in z of the angles, each in [0, D), no repeats (any order; the
            features follow z's order).
    Returns:
        :class:`PredictionMoments` of φ(z), E = D + len(angle_dims): ``input_gain`` (..., D, E) holds
        e_j for a passed-through z_j, −E[sin a] e_a for cos a and E[cos a] e_a for sin a.
    """
    dim = check_gaussian(mean, cov)
    angles = sorted(int(d) for d in angle_dims)
    if len(set(angles)) != len(angles) or any(not 0 <= d < dim for d in angles):
        raise ValueError(f"angle_dims: expected distinct indices in [0, {dim}) for z of {dim} dimensions, "
                         f"got {list(angle_dims)}")
    eye = torch.eye(dim, dtype=mean.dtype, device=mean.device)
    weights = eye[angles].repeat_interleave(2, dim=0)  # (2A, D): e_a twice, for cos then sin
    phases = torch.tensor([0.0, -0.5 * math.pi] * len(angles), dtype=mean.dtype, device=mean.device)
    trig = _cosine_moments(mean, cov, weights, phases)
    # all of [z, cos a₁, sin a₁, ...] then pick φ's order out of it
    full_mean = torch.cat([mean, trig.mean], -1)
    full_cov = torch.cat([torch.cat([cov, trig.input_cov], -1),
                          torch.cat([trig.input_cov.transpose(-1, -2), trig.cov], -1)], -2)
    full_gain = torch.cat([eye.expand_as(cov), trig.input_gain], -1)
    order = []
    for d in range(dim):
        order += [dim + 2 * angles.index(d), dim + 2 * angles.index(d) + 1] if d in angles else [d]
    index = torch.tensor(order, device=mean.device)
    out_cov = full_cov.index_select(-1, index).index_select(-2, index)
    input_cov = full_cov[..., :dim, :].index_select(-1, index)
    return PredictionMoments(full_mean.index_select(-1, index), out_cov, input_cov, full_gain.index_select(-1, index))


def sin_squash(mean: torch.Tensor, cov: torch.Tensor, bound: torch.Tensor) -> PredictionMoments:
    """Exact moments of u = u_max ⊙ sin(ũ) for ũ ~ N(μ, Σ): PILCO's squashing of actions to [−u_max, u_max].

        E[u_a]          = u_max,a e^{−Σ_aa/2} sin μ_a
        Cov[u_a, u_b]   = ½ u_max,a u_max,b (e^{−V₋/2} cos(μ_a − μ_b) − e^{−V₊/2} cos(μ_a + μ_b)) − E[u_a] E[u_b],
                          V_± = Σ_aa + Σ_bb ± 2 Σ_ab
        Cov[ũ, u_a]     = Σ_{:,a} u_max,a e^{−Σ_aa/2} cos μ_a,   C = diag(u_max,a e^{−Σ_aa/2} cos μ_a)

    Args:
        mean: μ, (..., A). cov: Σ, (..., A, A). bound: u_max, (A,).
    Returns:
        :class:`PredictionMoments` of u (E = D = A).
    """
    dim = check_gaussian(mean, cov)
    if bound.shape != (dim,):
        raise ValueError(f"bound: expected shape ({dim},) for actions of {dim} dimensions, got {tuple(bound.shape)}")
    weights = torch.eye(dim, dtype=mean.dtype, device=mean.device)
    phases = torch.full((dim,), -0.5 * math.pi, dtype=mean.dtype, device=mean.device)
    unit = _cosine_moments(mean, cov, weights, phases)  # moments of sin(ũ)
    return PredictionMoments(unit.mean * bound, unit.cov * bound[:, None] * bound, unit.input_cov * bound,
                             unit.input_gain * bound)


def affine_moments(mean: torch.Tensor, cov: torch.Tensor, matrix: torch.Tensor,
                   offset: torch.Tensor) -> PredictionMoments:
    """Exact moments of y = M x + b for x ~ N(μ, Σ): E[y] = M μ + b, Cov[y] = M Σ Mᵀ, Cov[x, y] = Σ Mᵀ, C = Mᵀ.

    Args: mean (..., D), cov (..., D, D), matrix M (E, D), offset b (E,).
    """
    dim = check_gaussian(mean, cov)
    outputs = matrix.shape[0] if matrix.ndim == 2 else None
    if matrix.shape != (outputs, dim) or offset.shape != (outputs,):
        raise ValueError(f"matrix, offset: expected (E, {dim}) and (E,), got {tuple(matrix.shape)} "
                         f"and {tuple(offset.shape)}")
    input_cov = cov @ matrix.T
    out_cov = matrix @ input_cov
    return PredictionMoments(mean @ matrix.T + offset, 0.5 * (out_cov + out_cov.transpose(-1, -2)), input_cov,
                             matrix.T.expand_as(input_cov))


def compose(first: PredictionMoments, second: PredictionMoments) -> PredictionMoments:
    """Chain x → y → z under moment matching, ``second`` computed at y ~ N(first.mean, first.cov).

        E[z], Cov[z]: second's;   Cov[x, z] = Cov[x, y] C_{y→z};   C_{x→z} = C_{x→y} C_{y→z}

    Args:
        first: moments of y = f(x), E = Y. second: moments of z = g(y) with input dimension Y.
    """
    inner = first.mean.shape[-1]
    if second.input_gain.shape[-2] != inner:
        raise ValueError(f"second: expected moments of a map from {inner} dimensions (first's output), got "
                         f"input_gain of shape {tuple(second.input_gain.shape)}")
    return PredictionMoments(second.mean, second.cov, first.input_cov @ second.input_gain,
                             first.input_gain @ second.input_gain)


def joint(mean: torch.Tensor, cov: torch.Tensor, moments: PredictionMoments) -> tuple[torch.Tensor, torch.Tensor]:
    """The Gaussian over [x, f(x)] (PILCO's state-action joint): mean (..., D + E), cov (..., D + E, D + E).

        [x; f(x)] ~ N([μ; E[f]], [[Σ, Cov[x, f]], [Cov[x, f]ᵀ, Cov[f]]])

    Args: mean: μ, (..., D). cov: Σ, (..., D, D). moments: of f(x) at x ~ N(μ, Σ).
    """
    dim = check_gaussian(mean, cov)
    outputs = moments.mean.shape[-1]
    if moments.input_cov.shape[-2:] != (dim, outputs):
        raise ValueError(f"moments: expected input_cov (..., {dim}, {outputs}) for an input of {dim} dimensions, "
                         f"got {tuple(moments.input_cov.shape)}")
    top = torch.cat([cov, moments.input_cov], -1)
    bottom = torch.cat([moments.input_cov.transpose(-1, -2), moments.cov], -1)
    return torch.cat([mean, moments.mean], -1), torch.cat([top, bottom], -2)
