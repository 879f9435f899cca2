"""PILCO's policies: deterministic controllers squashed to the action bounds, with exact moments.

PILCO (Deisenroth & Rasmussen, 2011) evaluates a policy π_θ by propagating a Gaussian over the
observation x ~ N(μ, Σ) through it, in closed form, and differentiates the expected cost with
respect to θ. Its policies are therefore built from maps whose moments are exact:

    u = π_θ(x) = u_max ⊙ sin(ũ(x))                                           (the squashing gSin)
    LinearController:  ũ(x) = W x + b
    RBFController:     ũ_a(x) = Σ_i β_ai exp(−½ (x − c_i)ᵀ Λ_a⁻¹ (x − c_i)),   Λ_a = diag(ℓ_a²)

The RBF network is the mean of a GP with unit signal variance whose "training inputs" are the
centres c_i with pseudo-targets y_a, β_a = (K_a + σ_π² I)⁻¹ y_a, so its moments at a Gaussian input are
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
  distribution, small random pseudo-targets).
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
LOG_LENGTHSCALE_BOUNDS = (-5.0, 5.0)
"""log ℓ of the RBF controller is kept in [−5, 5] (ℓ ∈ [0.0067, 148]): left free, PILCO's optimisation drove
some length-scales to 1e14–1e53 (the policy "ignores" that input), where (Σ + Λ)⁻¹ loses every digit of Σ and
the gradient of J(θ) points uphill (measured on the cart-pole: the directional derivative along −∇J was +0.23)."""


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

    def parameter_bounds(self) -> dict[str, tuple[float, float]]:
        """Box constraints of parameters, by name (those not named are free): for L-BFGS-B and :meth:`project_`."""
        return {}

    @torch.no_grad()
    def project_(self) -> None:
        """Clamp every bounded parameter into its box (after a step of an unconstrained optimiser such as Adam)."""
        for name, (low, high) in self.parameter_bounds().items():
            self.get_parameter(name).clamp_(low, high)

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
    """u = u_max ⊙ sin(ũ), ũ_a(x) = Σ_i β_ai exp(−½ (x − c_i)ᵀ Λ_a⁻¹ (x − c_i)): PILCO's RBF-network policy.

    ũ_a is the posterior mean of a GP (signal variance 1, noise variance σ_π² = ``NOISE_VAR``) trained on a
    pseudo data set: inputs c_i, targets y_ai. So β_a = (K_a + σ_π² I)⁻¹ y_a with K_a = k_a(c, c), and
    ũ_a(c_i) ≈ y_ai. Parameters: ``centres`` c (N, O), ``targets`` y (A, N), ``log_lengthscales`` log ℓ
    (A, O) (bounded, see ``LOG_LENGTHSCALE_BOUNDS``), Λ_a = diag(ℓ_a²). Its moments at a Gaussian input are
    :func:`~mbrl_course.models.moment_matching.gp_moments_at_gaussian_input` with β
    (``kernel_inverse=None``, ``signal_var=1``).

    PILCO's parameterisation, not the plainer one with β itself as the parameter: the two describe the same
    functions, but (c, y) is far better conditioned for the optimiser (y moves the action at a centre, β moves
    it everywhere at once), and from PILCO's start (centres within σ₀ of each other, y ~ N(0, 0.1²)) the
    interpolating policy already varies sharply near the start state, so the action's predicted distribution
    is wide and J(θ) has a slope from the first trial on. Measured on the cart-pole swing-up (default tier):
    with β as the parameter PILCO solved neither seed 0 nor seed 1 within 10 trials; with (c, y) it solved
    seeds 0, 1, 2 at trials 5, 7, 4 (``benchmarks/RESULTS.md``).

    Args:
        num_basis: N, the number of basis functions (PILCO's cart-pole: 50).
    """

    NOISE_VAR = 0.01**2
    """σ_π², the pseudo data's noise variance (PILCO's: a noise std of 0.01 against a signal std of 1)."""

    def __init__(self, obs_dim: int, act_dim: int, action_bound, num_basis: int = 50) -> None:
        super().__init__(obs_dim, act_dim, action_bound)
        self.num_basis = check_positive_int("num_basis", num_basis)
        self.centres = nn.Parameter(torch.zeros(self.num_basis, self.obs_dim, dtype=DTYPE))
        self.targets = nn.Parameter(torch.zeros(self.act_dim, self.num_basis, dtype=DTYPE))
        self.log_lengthscales = nn.Parameter(torch.zeros(self.act_dim, self.obs_dim, dtype=DTYPE))
        self.initialise(torch.zeros(self.obs_dim), torch.ones(self.obs_dim), torch.Generator().manual_seed(0))

    @property
    def lengthscales(self) -> torch.Tensor:
        """ℓ = exp(log ℓ), (A, O): positive whatever the optimiser does."""
        return self.log_lengthscales.exp()

    @property
    def weights(self) -> torch.Tensor:
        """β_a = (K_a + σ_π² I)⁻¹ y_a, (A, N), by Cholesky (σ_π² I bounds the condition number by 1 + N/σ_π²)."""
        gram = se_kernel(self.centres, self.centres, self.lengthscales, self._unit_signal())  # (A, N, N)
        eye = torch.eye(self.num_basis, dtype=gram.dtype, device=gram.device)
        chol = torch.linalg.cholesky(gram + self.NOISE_VAR * eye)
        return torch.cholesky_solve(self.targets[..., None], chol)[..., 0]

    def parameter_bounds(self) -> dict[str, tuple[float, float]]:
        """log ℓ ∈ ``LOG_LENGTHSCALE_BOUNDS``: a length-scale of 148 already makes the basis flat along an input."""
        return {"log_lengthscales": LOG_LENGTHSCALE_BOUNDS}

    def _unit_signal(self) -> torch.Tensor:
        return torch.ones(self.act_dim, dtype=self.centres.dtype, device=self.centres.device)

    def preactivation(self, obs: torch.Tensor) -> torch.Tensor:
        flat = obs.reshape(-1, self.obs_dim)
        basis = se_kernel(flat, self.centres, self.lengthscales, self._unit_signal())  # (A, n, N)
        out = (basis * self.weights[:, None, :]).sum(-1)  # Σ_i β_ai k_a(x, c_i): (A, n)
        return out.T.reshape(*obs.shape[:-1], self.act_dim)

    def preactivation_moments(self, mean: torch.Tensor, cov: torch.Tensor) -> PredictionMoments:
        return gp_moments_at_gaussian_input(mean, cov, self.centres, self.weights, self.lengthscales,
                                            self._unit_signal(), kernel_inverse=None)

    @torch.no_grad()
    def initialise(self, mean, std, generator: torch.Generator, weight_scale: float = 0.1,
                   lengthscale=1.0) -> None:
        """PILCO's start: c_i ~ N(μ₀, diag(σ₀²)), y_ai ~ N(0, weight_scale²), ℓ_a = ``lengthscale``.

        Args:
            mean: μ₀ (O,), std: σ₀ (O,) of the start observation; generator: the only randomness.
            weight_scale: the pseudo-targets' standard deviation (PILCO's 0.1: actions near 0 at the centres).
            lengthscale: a number (every input) or (O,) (PILCO's cart-pole: 1, except 0.7 on cos θ, sin θ),
                within ``LOG_LENGTHSCALE_BOUNDS``.
        """
        mean, std = self._start(mean, std)
        scale = check_positive_float("weight_scale", weight_scale)
        ell = as_tensor("lengthscale", lengthscale, dtype=DTYPE)
        if ell.ndim == 0:
            ell = ell.expand(self.obs_dim)
        check_shape("lengthscale", ell, (self.obs_dim,))
        low, high = (math.exp(b) for b in LOG_LENGTHSCALE_BOUNDS)
        if not bool(((ell >= low) & (ell <= high)).all()):
            raise ValueError(f"lengthscale: expected numbers in [{low:.3g}, {high:.3g}] (LOG_LENGTHSCALE_BOUNDS), "
                             f"got {ell.tolist()}")
        noise = torch.randn(self.num_basis, self.obs_dim, generator=generator, dtype=DTYPE)
        self.centres.copy_(mean + std * noise)
        self.targets.copy_(scale * torch.randn(self.act_dim, self.num_basis, generator=generator, dtype=DTYPE))
        self.log_lengthscales.copy_(ell.log().expand_as(self.log_lengthscales))
