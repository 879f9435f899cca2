"""Local time-varying linear-Gaussian models and controllers, and the KL trust region (Levine & Abbeel, 2014).

Guided policy search does not fit one global model f_ψ: around the current controller it samples N
trajectories and fits, for every time step t = 0 … T-1, a linear-Gaussian model (:func:`fit_dynamics`)

    p(x_{t+1} | x_t, u_t) = N(A_t x_t + B_t u_t + c_t, Σ_t),

valid near those samples only. On such a model, with the cost expanded to second order
(:func:`quadratize_cost`), iLQR's backward pass is exact and yields a linear-Gaussian controller
(:func:`lqr_controller`)

    p(u_t | x_t) = N(K_t x_t + k_t, Σ_u,t),   Σ_u,t = Q_uu,t⁻¹   (the maximum-entropy solution).

The model is trusted only near the old controller p̄, so the new one is kept close to it (:func:`trust_region_update`):

    min_p E_p[Σ_t ℓ(x_t, u_t)]   subject to   KL(p(τ) || p̄(τ)) ≤ ε,

whose Lagrangian, divided by the multiplier η, is LQR on the surrogate cost
ℓ̃_t(x, u) = ℓ_t(x, u)/η - log p̄(u | x) with the entropy bonus; η is found by bisection so that the KL
(:func:`trajectory_kl`, in closed form for linear-Gaussian p(τ)) meets ε. A large η keeps p close to p̄.

Shapes: x_t ∈ ℝⁿ (the lecture's i), u_t ∈ ℝᵐ, z_t = [x_t; u_t] ∈ ℝᵈ with d = n + m, T time steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.distributions import MultivariateNormal, kl_divergence

from mbrl_course._checks import as_tensor, check_finite, check_positive_float, check_positive_int
from mbrl_course.filters._gaussian import matvec
from mbrl_course.planning.ilqr import CostFn, ILQRResult, TerminalCostFn, linearize

__all__ = [
    "DynamicsPrior",
    "LinearGaussianController",
    "LinearGaussianDynamics",
    "QuadraticCost",
    "TrustRegionResult",
    "fit_dynamics",
    "lqr_controller",
    "quadratize_cost",
    "trajectory_kl",
    "trajectory_marginals",
    "trust_region_update",
]


def _sym(matrix: torch.Tensor) -> torch.Tensor:
    return 0.5 * (matrix + matrix.transpose(-1, -2))


# --------------------------------------------------------------------------------------------------
# Dynamics: fit by (ridge) least squares, optionally with a normal-inverse-Wishart prior
# --------------------------------------------------------------------------------------------------


@dataclass
class LinearGaussianDynamics:
    """p(x_{t+1} | x_t, u_t) = N(A_t x_t + B_t u_t + c_t, Σ_t), t = 0 … T-1."""

    A: torch.Tensor
    """(T, n, n)."""
    B: torch.Tensor
    """(T, n, m)."""
    c: torch.Tensor
    """(T, n)."""
    covariance: torch.Tensor
    """(T, n, n): Σ_t, the noise (and the fit's residual)."""

    @property
    def horizon(self) -> int:
        return self.A.shape[0]

    def mean(self, t: int, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """E[x_{t+1} | x_t, u_t] = A_t x_t + B_t u_t + c_t for ``x (..., n)``, ``u (..., m)``."""
        return matvec(self.A[t], x) + matvec(self.B[t], u) + self.c[t]


@dataclass
class DynamicsPrior:
    """A normal-inverse-Wishart prior on the joint Gaussian of z = (x_t, u_t, x_{t+1}), shared by all t.

    Levine & Abbeel (2014) fit it to *all* the data (every time step, every iteration; they use a
    Gaussian mixture, here one Gaussian): mean μ₀, scatter Φ = s·Σ₀ and pseudo-counts m = n₀ = s, where
    Σ₀ is the data's covariance and s (``strength``) says how many samples the prior is worth.
    """

    mean: torch.Tensor
    """μ₀ (2n + m,)."""
    scatter: torch.Tensor
    """Φ (2n + m, 2n + m)."""
    mean_count: float
    """m: pseudo-count of the mean."""
    covariance_count: float
    """n₀: pseudo-count of the covariance."""

    @classmethod
    def fit(cls, states, actions, strength: float = 1.0) -> DynamicsPrior:
        """The prior from trajectories ``states (N, T+1, n)``, ``actions (N, T, m)`` pooled over t."""
        states, actions = _check_samples(states, actions)
        strength = check_positive_float("strength", strength)
        joint = _joint(states, actions).reshape(-1, states.shape[-1] * 2 + actions.shape[-1])  # (N·T, d + n)
        mean = joint.mean(0)
        centred = joint - mean
        covariance = centred.T @ centred / joint.shape[0]
        return cls(mean=mean, scatter=strength * covariance, mean_count=strength, covariance_count=strength)


def _check_samples(states, actions) -> tuple[torch.Tensor, torch.Tensor]:
    states = as_tensor("states", states)
    if not states.is_floating_point():
        states = states.to(torch.get_default_dtype())
    actions = as_tensor("actions", actions, dtype=states.dtype, device=states.device)
    if states.dim() != 3 or actions.dim() != 3 or states.shape[0] != actions.shape[0] \
            or states.shape[1] != actions.shape[1] + 1:
        raise ValueError(f"states, actions: expected shapes (N, T+1, n) and (N, T, m) with the same N and T, got "
                         f"{tuple(states.shape)} and {tuple(actions.shape)}")
    if actions.shape[1] == 0:
        raise ValueError("actions: expected T >= 1 time steps, got 0")
    check_finite("states", states)
    check_finite("actions", actions)
    return states, actions


def _joint(states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """z = (x_t, u_t, x_{t+1}) of every sample and step: (N, T, 2n + m)."""
    return torch.cat([states[:, :-1], actions, states[:, 1:]], dim=-1)


def fit_dynamics(states, actions, *, ridge: float = 1e-6, prior: DynamicsPrior | None = None
                 ) -> LinearGaussianDynamics:
    """(A_t, B_t, c_t, Σ_t) by regressing x_{t+1} on (x_t, u_t) at every t, from N trajectories.

    At each t the joint Gaussian of z_t = (x_t, u_t) and x_{t+1} is estimated from the N samples,

        μ = (1/N) Σ_i (z_t, x_{t+1})_i,    S = (1/N) Σ_i ((z_t, x_{t+1})_i - μ)((z_t, x_{t+1})_i - μ)ᵀ,

    optionally combined with a normal-inverse-Wishart ``prior`` (μ₀, Φ, m, n₀) as in Levine & Abbeel's code:

        Σ = (N S + Φ + N m/(N + m) (μ - μ₀)(μ - μ₀)ᵀ) / (N + n₀),

    plus ``ridge``·I on its (x_t, u_t) block, and then conditioned on (x_t, u_t):

        [A_t B_t] = Σ_{x'z} Σ_zz⁻¹,    c_t = μ_x' - [A_t B_t] μ_z,    Σ_t = Σ_x'x' - [A_t B_t] Σ_zz [A_t B_t]ᵀ.

    Without a prior this is ridge least squares with an unpenalised intercept (ordinary least squares
    as ridge → 0), and Σ_t is the residual covariance (divided by N). With N ≤ n + m samples the
    regression is under-determined: use the prior (or a larger ridge).

    Args:
        states: x ``(N, T+1, n)``; actions: u ``(N, T, m)``.
        ridge: λ ≥ 0 added to the diagonal of Σ_zz.
        prior: a :class:`DynamicsPrior` (None: none).
    Returns:
        :class:`LinearGaussianDynamics` with T steps.
    """
    states, actions = _check_samples(states, actions)
    ridge = check_positive_float("ridge", ridge, allow_zero=True)
    n, m = states.shape[-1], actions.shape[-1]
    d = n + m
    joint = _joint(states, actions).transpose(0, 1)  # (T, N, d + n)
    samples = joint.shape[1]
    mean = joint.mean(1)  # (T, d + n)
    centred = joint - mean.unsqueeze(1)
    covariance = centred.transpose(-1, -2) @ centred / samples  # (T, d + n, d + n)
    if prior is not None:
        if prior.mean.shape != (d + n,):
            raise ValueError(f"prior: expected a prior on (x, u, x') of size {d + n}, got {tuple(prior.mean.shape)}")
        shift = mean - prior.mean.to(mean)
        count = prior.mean_count
        covariance = (samples * covariance + prior.scatter.to(mean)
                      + samples * count / (samples + count) * shift.unsqueeze(-1) * shift.unsqueeze(-2)
                      ) / (samples + prior.covariance_count)
    covariance = _sym(covariance)
    sigma_zz = covariance[:, :d, :d] + ridge * torch.eye(d, dtype=mean.dtype, device=mean.device)
    sigma_nz = covariance[:, d:, :d]  # Σ_{x'z}: (T, n, d)
    gain = torch.linalg.solve(sigma_zz, sigma_nz.transpose(-1, -2)).transpose(-1, -2)  # [A B] = Σ_x'z Σ_zz⁻¹
    offset = mean[:, d:] - matvec(gain, mean[:, :d])
    noise = _sym(covariance[:, d:, d:] - gain @ sigma_zz @ gain.transpose(-1, -2))
    return LinearGaussianDynamics(A=gain[..., :n], B=gain[..., n:], c=offset, covariance=noise)


# --------------------------------------------------------------------------------------------------
# Controllers and their trajectory distributions
# --------------------------------------------------------------------------------------------------


@dataclass
class LinearGaussianController:
    """p(u_t | x_t) = N(K_t x_t + k_t, Σ_u,t), t = 0 … T-1."""

    K: torch.Tensor
    """(T, m, n)."""
    k: torch.Tensor
    """(T, m)."""
    covariance: torch.Tensor
    """(T, m, m): Σ_u,t."""

    def mean(self, t: int, x: torch.Tensor) -> torch.Tensor:
        """K_t x + k_t for ``x (..., n)``: ``(..., m)``."""
        return matvec(self.K[t], x) + self.k[t]

    def sample(self, t: int, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """u_t ~ N(K_t x + k_t, Σ_u,t) for ``x (N, n)``: ``(N, m)``."""
        noise = torch.randn(x.shape[:-1] + (self.k.shape[-1],), dtype=x.dtype, device=x.device, generator=generator)
        return self.mean(t, x) + matvec(torch.linalg.cholesky(self.covariance[t]), noise)

    @classmethod
    def from_ilqr(cls, result: ILQRResult, index: int = 0, covariance_scale: float = 1.0
                  ) -> LinearGaussianController:
        """The controller iLQR yields around its trajectory ``index`` (no box constraints in a Gaussian):

        u_t = ū_t + k_t + K_t (x_t - x̄_t)   ⇒   K_t, k_t ← ū_t + k_t - K_t x̄_t,   Σ_u,t = s · (Q_uu,t + μ I)⁻¹,

        with s = ``covariance_scale`` (the maximum-entropy controller of the cost divided by s) and μ the
        final regularisation of that trajectory (0 at a well-posed optimum).
        """
        covariance_scale = check_positive_float("covariance_scale", covariance_scale)
        K = result.K[index]
        k = result.actions[index] + result.k[index] - matvec(K, result.states[index, :-1])
        eye = torch.eye(K.shape[-2], dtype=K.dtype, device=K.device)
        chol, info = torch.linalg.cholesky_ex(result.Q_uu[index] + result.mu[index] * eye)
        if bool((info != 0).any()):
            step = int((info != 0).nonzero()[0])
            raise ValueError(f"result: Q_uu + μI of trajectory {index} is not positive definite at step {step}, so "
                             f"it is no covariance; iLQR did not reach a local minimum there")
        return cls(K=K, k=k, covariance=covariance_scale * _sym(torch.cholesky_inverse(chol)))


def trajectory_marginals(dynamics: LinearGaussianDynamics, controller: LinearGaussianController,
                         initial_mean: torch.Tensor, initial_covariance: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """The Gaussian marginals p(z_t) = N(μ_t, Σ_t) of z_t = (x_t, u_t) under p(τ) = p(x_0) Π p(u_t|x_t) p(x_{t+1}|x_t,u_t).

        μ_t = [μ_x; K_t μ_x + k_t],     Σ_t = [[S, S K_tᵀ], [K_t S, K_t S K_tᵀ + Σ_u,t]],
        μ_x ← F_t μ_t + c_t,            S ← F_t Σ_t F_tᵀ + Σ_dyn,t,        F_t = [A_t B_t],

    from x_0 ~ N(``initial_mean`` (n,), ``initial_covariance`` (n, n)).

    Returns:
        means ``(T, n+m)`` and covariances ``(T, n+m, n+m)`` of z_0 … z_{T-1}.
    """
    mu_x, S = initial_mean, initial_covariance
    means, covariances = [], []
    for t in range(dynamics.horizon):
        K = controller.K[t]
        mu_u = matvec(K, mu_x) + controller.k[t]
        SK = S @ K.transpose(-1, -2)
        cov = torch.cat([torch.cat([S, SK], -1), torch.cat([SK.transpose(-1, -2),
                                                             K @ SK + controller.covariance[t]], -1)], -2)
        mean = torch.cat([mu_x, mu_u], -1)
        means.append(mean)
        covariances.append(_sym(cov))
        F = torch.cat([dynamics.A[t], dynamics.B[t]], -1)
        mu_x = matvec(F, mean) + dynamics.c[t]
        S = _sym(F @ cov @ F.transpose(-1, -2) + dynamics.covariance[t])
    return torch.stack(means), torch.stack(covariances)


def trajectory_kl(dynamics: LinearGaussianDynamics, new: LinearGaussianController, old: LinearGaussianController,
                  initial_mean: torch.Tensor, initial_covariance: torch.Tensor) -> torch.Tensor:
    """KL(p(τ) || p̄(τ)) of two controllers on the same dynamics and start distribution, in closed form.

    The dynamics cancel in the log ratio, so

        KL = Σ_t E_{p(x_t)} KL(N(K_t x + k_t, Σ_u,t) || N(K̄_t x + k̄_t, Σ̄_u,t))
           = Σ_t ½ [tr(Σ̄⁻¹ Σ_u) - m + log det Σ̄ - log det Σ_u + (ΔK μ_x + Δk)ᵀ Σ̄⁻¹ (ΔK μ_x + Δk)
                    + tr(ΔKᵀ Σ̄⁻¹ ΔK S_t)],   ΔK = K_t - K̄_t, Δk = k_t - k̄_t,

    with p(x_t) = N(μ_x, S_t) the new controller's state marginal (:func:`trajectory_marginals`).
    """
    n = initial_mean.shape[-1]
    means, covariances = trajectory_marginals(dynamics, new, initial_mean, initial_covariance)
    mu_x, S = means[:, :n], covariances[:, :n, :n]
    dK, dk = new.K - old.K, new.k - old.k
    L_new, L_old = torch.linalg.cholesky(new.covariance), torch.linalg.cholesky(old.covariance)
    gaussian = kl_divergence(MultivariateNormal(matvec(dK, mu_x) + dk, scale_tril=L_new),      # (T,)
                             MultivariateNormal(torch.zeros_like(dk), scale_tril=L_old))
    # E over x of the quadratic form adds ½ tr(ΔKᵀ Σ̄⁻¹ ΔK S) (S may be singular, e.g. a known x_0)
    spread = ((dK.transpose(-1, -2) @ torch.cholesky_solve(dK, L_old)) * S).sum((-2, -1))
    return (gaussian + 0.5 * spread).sum()


# --------------------------------------------------------------------------------------------------
# LQR on local models, and the KL trust region
# --------------------------------------------------------------------------------------------------


@dataclass
class QuadraticCost:
    """ℓ_t(x, u) = ½ z_tᵀ C_t z_t + c_tᵀ z_t (t < T, z = [x; u]) and ℓ_T(x) = ½ xᵀ C_T x + c_Tᵀ x (+ constants)."""

    C: torch.Tensor
    """(T, d, d)."""
    c: torch.Tensor
    """(T, d)."""
    terminal_C: torch.Tensor
    """(n, n)."""
    terminal_c: torch.Tensor
    """(n,)."""


def quadratize_cost(cost: CostFn, states: torch.Tensor, actions: torch.Tensor, *,
                    terminal_cost: TerminalCostFn | None = None, method: str = "autograd") -> QuadraticCost:
    """The second-order Taylor expansion of c around (x̄_t, ū_t), in absolute coordinates.

    ℓ(z) ≈ ℓ(z̄) + gᵀ (z - z̄) + ½ (z - z̄)ᵀ H (z - z̄)  ⇒  C_t = H,  c_t = g - H z̄  (constants dropped);
    g and H from :func:`~mbrl_course.planning.ilqr.linearize`.

    Args:
        states: x̄ ``(T+1, n)`` (e.g. the mean of the samples); actions: ū ``(T, m)``.
    """
    d = linearize(None, cost, terminal_cost, states.unsqueeze(0), actions.unsqueeze(0), method=method)
    g = torch.cat([d.c_x[0], d.c_u[0]], -1)  # (T, d)
    H = torch.cat([torch.cat([d.c_xx[0], d.c_ux[0].transpose(-1, -2)], -1), torch.cat([d.c_ux[0], d.c_uu[0]], -1)], -2)
    z = torch.cat([states[:-1], actions], -1)
    H_T, g_T = d.terminal_xx[0], d.terminal_x[0]
    return QuadraticCost(C=_sym(H), c=g - matvec(H, z), terminal_C=_sym(H_T), terminal_c=g_T - matvec(H_T, states[-1]))


def lqr_controller(dynamics: LinearGaussianDynamics, cost: QuadraticCost, *, eta: float = 1.0,
                   previous: LinearGaussianController | None = None) -> LinearGaussianController | None:
    """iLQR's backward pass on the linear-Gaussian model (exact there): the controller N(K_t x + k_t, Q_uu,t⁻¹).

    Surrogate cost (Levine & Abbeel 2014): ℓ̃_t(z) = ℓ_t(z)/η - log p̄(u | x), the second term only with a
    ``previous`` controller p̄; -log p̄(u|x) = ½ (M z - k̄)ᵀ Σ̄⁻¹ (M z - k̄) + const with M = [-K̄_t, I].
    With C̃_t, c̃_t its quadratic and linear terms and F_t = [A_t B_t], from V = C_T/η, v = c_T/η:

        Q_zz = C̃_t + F_tᵀ V F_t,     q_z = c̃_t + F_tᵀ (V c_t^dyn + v)
        K_t = -Q_uu⁻¹ Q_ux,   k_t = -Q_uu⁻¹ q_u,   Σ_u,t = Q_uu⁻¹            (maximum entropy)
        V ← Q_xx + Q_xu K_t,  v ← q_x + Q_xu k_t.

    Returns None when some Q_uu is not positive definite (η too small for the cost's curvature).
    """
    eta = check_positive_float("eta", eta)
    n = dynamics.A.shape[-1]
    V, v = cost.terminal_C / eta, cost.terminal_c / eta
    Ks, ks, covs = [], [], []
    for t in reversed(range(dynamics.horizon)):
        C, c = cost.C[t] / eta, cost.c[t] / eta
        if previous is not None:
            precision = torch.cholesky_inverse(torch.linalg.cholesky(previous.covariance[t]))  # Σ̄⁻¹
            M = torch.cat([-previous.K[t], torch.eye(previous.K.shape[-2], dtype=C.dtype, device=C.device)], -1)
            C = C + M.T @ precision @ M
            c = c - M.T @ (precision @ previous.k[t])
        F = torch.cat([dynamics.A[t], dynamics.B[t]], -1)
        Q = _sym(C + F.T @ V @ F)
        q = c + F.T @ (V @ dynamics.c[t] + v)
        L, info = torch.linalg.cholesky_ex(Q[n:, n:])
        if int(info) != 0:
            return None
        K = -torch.cholesky_solve(Q[n:, :n], L)
        k = -torch.cholesky_solve(q[n:].unsqueeze(-1), L).squeeze(-1)
        V = _sym(Q[:n, :n] + Q[:n, n:] @ K)
        v = q[:n] + Q[:n, n:] @ k
        Ks.append(K)
        ks.append(k)
        covs.append(_sym(torch.cholesky_inverse(L)))
    return LinearGaussianController(K=torch.stack(Ks[::-1]), k=torch.stack(ks[::-1]), covariance=torch.stack(covs[::-1]))


@dataclass
class TrustRegionResult:
    """The controller of the KL-bounded update and its multiplier."""

    controller: LinearGaussianController
    eta: float
    """The Lagrange multiplier η found."""
    kl: float
    """KL(p(τ) || p̄(τ)) of the returned controller (≤ ε up to the bisection's tolerance)."""


def trust_region_update(dynamics: LinearGaussianDynamics, cost: QuadraticCost, previous: LinearGaussianController,
                        initial_mean: torch.Tensor, initial_covariance: torch.Tensor, epsilon: float, *,
                        eta_min: float = 1e-6, eta_max: float = 1e16, iterations: int = 60,
                        tolerance: float = 1e-3) -> TrustRegionResult:
    """min_p E_p[Σ_t ℓ_t] s.t. KL(p(τ) || p̄(τ)) ≤ ε on local models: bisection on the multiplier η.

    For a given η the minimiser of E_p[ℓ]/η + KL(p || p̄) is :func:`lqr_controller` (``eta``,
    ``previous``); its KL falls as η grows (η → ∞ returns p̄). Dual: the smallest η with KL ≤ ε.
    Bisection on log η in [``eta_min``, ``eta_max``] keeps the upper end feasible (KL ≤ ε, or
    Q_uu positive definite at all) and stops when its KL is within ``tolerance``·ε of ε; the controller
    returned is always the feasible end's, so KL ≤ ε holds. If already η_min satisfies the bound, the
    constraint is inactive and that controller is returned.

    Raises:
        ValueError: for ε ≤ 0, or when even η_max violates the bound (the old controller is not a
            feasible point: e.g. a Σ̄ that does not match).
    """
    epsilon = check_positive_float("epsilon", epsilon)
    eta_min, eta_max = check_positive_float("eta_min", eta_min), check_positive_float("eta_max", eta_max)
    if not eta_min < eta_max:
        raise ValueError(f"eta_min: expected eta_min < eta_max, got {eta_min} >= {eta_max}")
    iterations = check_positive_int("iterations", iterations)

    def solve(eta: float) -> tuple[LinearGaussianController | None, float]:
        controller = lqr_controller(dynamics, cost, eta=eta, previous=previous)
        if controller is None:
            return None, math.inf
        return controller, float(trajectory_kl(dynamics, controller, previous, initial_mean, initial_covariance))

    low_controller, low_kl = solve(eta_min)
    if low_controller is not None and low_kl <= epsilon:
        return TrustRegionResult(low_controller, eta_min, low_kl)
    high_controller, high_kl = solve(eta_max)
    if high_controller is None or high_kl > epsilon:
        raise ValueError(f"epsilon: even η = eta_max = {eta_max:g} gives KL = {high_kl:.3g} > ε = {epsilon:g}; "
                         f"expected the previous controller to be (nearly) feasible")
    low, high = math.log(eta_min), math.log(eta_max)
    for _ in range(iterations):
        if epsilon - high_kl <= tolerance * epsilon:
            break
        middle = 0.5 * (low + high)
        controller, kl = solve(math.exp(middle))
        if controller is not None and kl <= epsilon:
            high, high_controller, high_kl = middle, controller, kl
        else:
            low = middle
    return TrustRegionResult(high_controller, math.exp(high), high_kl)
