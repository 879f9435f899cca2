"""PILCO's policies: deterministic controllers squashed to the action bounds, with exact moments.

PILCO (Deisenroth & Rasmussen, 2011) evaluates a policy π_θ by propagating a Gaussian over the
observation x ~ N(μ, Σ) through it, in closed form, and differentiates the expected cost with
respect to θ. Its policies are therefore built from maps whose moments are exact:

    u = π_θ(x) = u_max ⊙ sin(ũ(x))                                           (the squashing gSin)
    LinearController:  ũ(x) = W x + b
    RBFController:     ũ_a(x) = Σ_i w_ai exp(−½ (x − c_i)ᵀ Λ_a⁻¹ (x − c_i)),   Λ_a = diag(ℓ_a²)

The RBF network is the mean of a GP with unit signal variance whose "training inputs" are the
centres c_i and whose β are the weights w_a, so its moments at a Gaussian input are
:func:`~mbrl_course.models.moment_matching.gp_moments_at_gaussian_input` (no kernel inverse: a
deterministic function), chained with :func:`~mbrl_course.models.moment_matching.sin_squash` by
:func:`~mbrl_course.models.moment_matching.compose`. For the linear controller ũ is Gaussian and the
moments of u are exact; for the RBF network they are moment matching, as in PILCO: ũ's mean,
covariance and Cov[x, ũ] are exact, then ũ is replaced by the Gaussian with them and squashed
exactly. Both controllers are float64 ``nn.Module`` s:

- ``forward(obs)``: the action to take in the real env, (..., O) → (..., A);
- ``moments(mean, cov)``: :class:`~mbrl_course.models.moment_matching.PredictionMoments` of u for
  x ~ N(mean, cov), with Cov[x, u] and the input gain, differentiable w.r.t. everything;
- ``initialise(mean, std, generator)``: PILCO's reproducible start (centres drawn from the start-state
  distribution, small random weights).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mbrl_course._checks import as_tensor, check_finite, check_positive_float, check_positive_int, check_shape
from mbrl_course.models.moment_matching import (
    PredictionMoments,
    affine_moments,
    check_gaussian,
    compose,
    gp_moments_at_gaussian_input,
    se_kernel,
    sin_squash,
)

DTYPE = torch.float64


class SquashedController(nn.Module):
    """u = u_max ⊙ sin(ũ(x)): the contract PILCO's policies share. Subclasses give ũ and its moments.

    Args:
        obs_dim: O, the size of the observation x the policy reads.
        act_dim: A, the number of actions.
        action_bound: u_max, positive, a number (the same for every action) or (A,).
    """

    def __init__(self, obs_dim: int, act_dim: int, action_bound) -> None:
        super().__init__()
        self.obs_dim = check_positive_int("obs_dim", obs_dim)
        self.act_dim = check_positive_int("act_dim", act_dim)
        bound = as_tensor("action_bound", action_bound, dtype=DTYPE)
        if bound.ndim == 0:
            bound = bound.expand(self.act_dim)
        check_shape("action_bound", bound, (self.act_dim,))
        check_finite("action_bound", bound)
        if not bool((bound > 0).all()):
            raise ValueError(f"action_bound: expected u_max > 0 for every action, got {bound.tolist()}")
        self.register_buffer("action_bound", bound.clone())

    def preactivation(self, obs: torch.Tensor) -> torch.Tensor:
        """ũ(x): (..., O) → (..., A)."""
        raise NotImplementedError

    def preactivation_moments(self, mean: torch.Tensor, cov: torch.Tensor) -> PredictionMoments:
        """Moments of ũ(x) for x ~ N(mean, cov)."""
        raise NotImplementedError

    def _obs(self, obs) -> torch.Tensor:
        ref = self.action_bound
        obs = as_tensor("obs", obs, dtype=ref.dtype, device=ref.device)
        if obs.ndim == 0 or obs.shape[-1] != self.obs_dim:
            raise ValueError(f"obs: expected (..., O) with O = {self.obs_dim}, got {tuple(obs.shape)}")
        return obs

    def forward(self, obs) -> torch.Tensor:
        """u = u_max ⊙ sin(ũ(x)), the deterministic action: obs (..., O) → (..., A)."""
        return self.action_bound * torch.sin(self.preactivation(self._obs(obs)))

    def moments(self, mean: torch.Tensor, cov: torch.Tensor) -> PredictionMoments:
        """Exact moments of u = π(x) for x ~ N(mean, cov): x → ũ (``preactivation_moments``) → u (sin_squash).

        Args: mean (..., O), cov (..., O, O), both of the observation vector.
        Returns: :class:`PredictionMoments`, mean (..., A), cov (..., A, A), input_cov and input_gain (..., O, A).
        """
        ref = self.action_bound
        mean = as_tensor("mean", mean, dtype=ref.dtype, device=ref.device)
        cov = as_tensor("cov", cov, dtype=ref.dtype, device=ref.device)
        check_gaussian(mean, cov, self.obs_dim, f" with O = {self.obs_dim}")
        inner = self.preactivation_moments(mean, cov)
        return compose(inner, sin_squash(inner.mean, inner.cov, self.action_bound))

    def _start(self, mean, std) -> tuple[torch.Tensor, torch.Tensor]:
        mean = as_tensor("mean", mean, dtype=DTYPE)
        std = as_tensor("std", std, dtype=DTYPE)
        check_shape("mean", mean, (self.obs_dim,))
        check_shape("std", std, (self.obs_dim,))
        check_finite("mean", mean)
        check_finite("std", std)
        if not bool((std >= 0).all()):
            raise ValueError(f"std: expected standard deviations >= 0, got {std.tolist()}")
        return mean, std


class LinearController(SquashedController):
    """u = u_max ⊙ sin(W x + b), W (A, O), b (A,).

    Its moments: ũ = W x + b is Gaussian with E[ũ] = W μ + b, Cov[ũ] = W Σ Wᵀ, Cov[x, ũ] = Σ Wᵀ
    (:func:`~mbrl_course.models.moment_matching.affine_moments`), then the sin squashing, exactly.
    """

    def __init__(self, obs_dim: int, act_dim: int, action_bound) -> None:
        super().__init__(obs_dim, act_dim, action_bound)
        self.weight = nn.Parameter(torch.zeros(self.act_dim, self.obs_dim, dtype=DTYPE))
        self.bias = nn.Parameter(torch.zeros(self.act_dim, dtype=DTYPE))
        self.initialise(torch.zeros(self.obs_dim), torch.ones(self.obs_dim), torch.Generator().manual_seed(0))

    def preactivation(self, obs: torch.Tensor) -> torch.Tensor:
        return obs @ self.weight.T + self.bias

    def preactivation_moments(self, mean: torch.Tensor, cov: torch.Tensor) -> PredictionMoments:
        return affine_moments(mean, cov, self.weight, self.bias)

    @torch.no_grad()
    def initialise(self, mean, std, generator: torch.Generator, weight_scale: float = 0.1) -> None:
        """W_aj ~ N(0, weight_scale²), b = −W μ₀: small random gains, no action at the mean start state.

        Args: mean: μ₀ (O,), std: σ₀ (O,) of the start observation; generator: the only randomness.
        """
        mean, _ = self._start(mean, std)
        scale = check_positive_float("weight_scale", weight_scale)
        weight = scale * torch.randn(self.act_dim, self.obs_dim, generator=generator, dtype=DTYPE)
        self.weight.copy_(weight)
        self.bias.copy_(-(weight @ mean))


class RBFController(SquashedController):
    """u = u_max ⊙ sin(ũ), ũ_a(x) = Σ_i w_ai exp(−½ (x − c_i)ᵀ Λ_a⁻¹ (x − c_i)): PILCO's RBF-network policy.

    Parameters: ``centres`` c (N, O), ``weights`` w (A, N), ``log_lengthscales`` log ℓ (A, O),
    Λ_a = diag(ℓ_a²). ũ is the mean of a GP with signal variance 1, training inputs c and β = w, so
    its moments are :func:`~mbrl_course.models.moment_matching.gp_moments_at_gaussian_input`
    (``kernel_inverse=None``, ``signal_var=1``).

    Args:
        num_basis: N, the number of basis functions (PILCO's cart-pole: 50).
    """

    def __init__(self, obs_dim: int, act_dim: int, action_bound, num_basis: int = 50) -> None:
        super().__init__(obs_dim, act_dim, action_bound)
        self.num_basis = check_positive_int("num_basis", num_basis)
        self.centres = nn.Parameter(torch.zeros(self.num_basis, self.obs_dim, dtype=DTYPE))
        self.weights = nn.Parameter(torch.zeros(self.act_dim, self.num_basis, dtype=DTYPE))
        self.log_lengthscales = nn.Parameter(torch.zeros(self.act_dim, self.obs_dim, dtype=DTYPE))
        self.initialise(torch.zeros(self.obs_dim), torch.ones(self.obs_dim), torch.Generator().manual_seed(0))

    @property
    def lengthscales(self) -> torch.Tensor:
        """ℓ = exp(log ℓ), (A, O): positive whatever the optimiser does."""
        return self.log_lengthscales.exp()

    def _unit_signal(self) -> torch.Tensor:
        return torch.ones(self.act_dim, dtype=self.weights.dtype, device=self.weights.device)

    def preactivation(self, obs: torch.Tensor) -> torch.Tensor:
        flat = obs.reshape(-1, self.obs_dim)
        basis = se_kernel(flat, self.centres, self.lengthscales, self._unit_signal())  # (A, n, N)
        out = (basis * self.weights[:, None, :]).sum(-1)  # Σ_i w_ai k_a(x, c_i): (A, n)
        return out.T.reshape(*obs.shape[:-1], self.act_dim)

    def preactivation_moments(self, mean: torch.Tensor, cov: torch.Tensor) -> PredictionMoments:
        return gp_moments_at_gaussian_input(mean, cov, self.centres, self.weights, self.lengthscales,
                                            self._unit_signal(), kernel_inverse=None)

    @torch.no_grad()
    def initialise(self, mean, std, generator: torch.Generator, weight_scale: float = 0.1,
                   lengthscale: float = 1.0) -> None:
        """PILCO's start: c_i ~ N(μ₀, diag(σ₀²)), w_ai ~ N(0, weight_scale²), ℓ = lengthscale everywhere.

        Args: mean: μ₀ (O,), std: σ₀ (O,) of the start observation; generator: the only randomness.
        """
        mean, std = self._start(mean, std)
        scale = check_positive_float("weight_scale", weight_scale)
        ell = check_positive_float("lengthscale", lengthscale)
        noise = torch.randn(self.num_basis, self.obs_dim, generator=generator, dtype=DTYPE)
        self.centres.copy_(mean + std * noise)
        self.weights.copy_(scale * torch.randn(self.act_dim, self.num_basis, generator=generator, dtype=DTYPE))
        self.log_lengthscales.fill_(math.log(ell))
