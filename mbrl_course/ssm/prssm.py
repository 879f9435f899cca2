"""PR-SSM: the probabilistic recurrent state-space model (Doerr et al., 2018), the slide's "global random function".

The slide's recurrent SSM with a Gaussian-process transition, in the notation of the lecture
(time steps t = 0..T−1 on the tensors' time axis; u_t the input, y_t the output):

    f_a ~ GP(0, k_a),  a = 1..D_s                     (one GP per latent dimension, SE-ARD kernel)
    s_0 ~ p(s_0) = N(0, I)
    s_t | s_{t−1}, f = s_{t−1} + f(s_{t−1}, u_{t−1}) + ε_t,   ε_t ~ N(0, diag q²)     (process noise Q)
    y_t | s_t = C s_t + ν_t,   C = [I_{D_y} 0],   ν_t ~ N(0, diag r²)                 (observation noise R)

The paper writes s_t = f(s_{t−1}, u_{t−1}) + ε_t; we write the transition as an increment,
s_{t−1} + f: a zero-mean GP on the increment is the paper's GP on the next state with the identity
as its prior mean function (a common choice for GP-SSMs). Far from the data the model then keeps its
state instead of decaying to 0, and short training runs start from a stable model. As in the paper,
the first D_y latent dimensions are the output (C is fixed, not learned).

**Sparse GP.** Each f_a gets M inducing inputs Z_a (M, D_s + D_u) and inducing outputs
z_a = f_a(Z_a). We whiten them (z_a = L_a v_a, L_a L_aᵀ = K_a(Z_a, Z_a)) and use q(v_a) = N(m_a, S_a),
S_a = L_S L_Sᵀ, against p(v_a) = N(0, I) (the paper parameterises q(z) directly; whitening is a
reparameterisation of the same family that optimises better). Given a GP input x̂ (state and input):

    A_a = L_a⁻¹ k_a(Z_a, x̂)                                   (M,)
    q(f_a(x̂)) = ∫ p(f_a(x̂) | z_a) q(z_a) dz_a = N(μ_a, σ_a²)
    μ_a = A_aᵀ m_a,    σ_a² = k_a(x̂, x̂) − A_aᵀ A_a + A_aᵀ S_a A_a                 (:func:`sparse_gp_conditional`)

**Variational posterior and ELBO** (as in the paper). The posterior keeps the model's
transition structure, q(s_{0:T−1}, f, z) = q(s_0) q(z) Π_t p(s_t | f_t, s_{t−1}) p(f_t | s_{t−1}, z), with
q(s_0) = N(m_0, diag σ_0²) from a recognition model (an MLP) on the first L steps of (y, u). The
transition and GP-conditional factors cancel in the ELBO:

    ELBO = Σ_t E_q[log p(y_t | s_t)] − KL(q(z) || p(z)) − KL(q(s_0) || p(s_0))

The expectation is estimated by sampling whole latent trajectories: s_0 ~ q(s_0), then one step at a
time f_t ~ q(f(ŝ_{t−1})) at the *sampled* ŝ_{t−1} = (s_{t−1}, u_{t−1}) and s_t = s_{t−1} + f_t + ε_t,
all reparameterised ("doubly stochastic": samples of the trajectory and minibatches of short
sub-sequences). Sampling f at the sampled state, instead of propagating moments, keeps the temporal
correlation of the trajectory (the paper's point). :meth:`TrajectoryModel.simulate` runs the same
sampler without data beyond the recognition window: free-run simulation, mean and 95 % interval.

The shared machinery (recognition model, noises, ELBO, simulation, training loop) lives in
:class:`TrajectoryModel` and :func:`train_trajectory_model`; :mod:`.random_params` plugs in the slide's
alternative (a deterministic f_θ with random weights θ).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from mbrl_course._checks import check_choice, check_finite, check_positive_float, check_positive_int
from mbrl_course.budget import by_budget
from mbrl_course.ssm.training import ascent_steps, save_checkpoint

__all__ = [
    "ELBOTerms",
    "InitialStateEncoder",
    "PRSSM",
    "SimulationResult",
    "SparseGPTransition",
    "TrajectoryModel",
    "TrajectoryTrainConfig",
    "TrajectoryTrainResult",
    "diagonal_gaussian_kl",
    "free_run_scores",
    "prior_cholesky_factor",
    "se_ard_kernel",
    "sparse_gp_conditional",
    "train_trajectory_model",
    "whitened_kl",
]

_LOG_2PI = math.log(2 * math.pi)
BOUNDS = ("elbo", "iwae")
"""What :meth:`TrajectoryModel.elbo` can estimate: the doubly stochastic ELBO or its importance-weighted version"""


# ------------------------------------------------------------------------------------- GP pieces
def se_ard_kernel(x1: torch.Tensor, x2: torch.Tensor, lengthscales: torch.Tensor,
                  signal_var: torch.Tensor) -> torch.Tensor:
    """k_a(x, x') = α_a² exp(−½ Σ_d (x_d − x'_d)² / ℓ_ad²) for every output a.

    ``x1: (E, n, D)`` or ``(n, D)``, ``x2: (E, m, D)`` or ``(m, D)``, ``lengthscales: (E, D)`` ℓ,
    ``signal_var: (E,)`` α². Returns ``(E, n, m)``.
    """
    scaled1 = x1 / lengthscales[:, None, :]
    scaled2 = x2 / lengthscales[:, None, :]
    squared = (scaled1.pow(2).sum(-1)[..., :, None] + scaled2.pow(2).sum(-1)[..., None, :]
               - 2 * scaled1 @ scaled2.mT).clamp(min=0.0)
    return signal_var[:, None, None] * torch.exp(-0.5 * squared)


def sparse_gp_conditional(
    inputs: torch.Tensor,
    inducing_inputs: torch.Tensor,
    lengthscales: torch.Tensor,
    signal_var: torch.Tensor,
    q_mean: torch.Tensor,
    q_scale_tril: torch.Tensor,
    prior_cholesky: torch.Tensor | None = None,
    jitter: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The marginal q(f_a(x̂)) = N(μ_a, σ_a²) of the whitened sparse GP, for every output a.

    L_a L_aᵀ = K_a(Z_a, Z_a) + jitter α_a² I,  A_a = L_a⁻¹ k_a(Z_a, x̂),
    μ_a = A_aᵀ m_a,  σ_a² = α_a² − A_aᵀ A_a + A_aᵀ S_a A_a,  S_a = L_S,a L_S,aᵀ.

    ``inputs: (N, D)`` x̂; ``inducing_inputs: (E, M, D)`` Z; ``lengthscales: (E, D)``; ``signal_var: (E,)``;
    ``q_mean: (E, M)`` m; ``q_scale_tril: (E, M, M)`` L_S (lower triangular); ``prior_cholesky: (E, M, M)``
    L (computed when None). Returns ``(mean: (N, E), var: (N, E))``.
    """
    if prior_cholesky is None:
        prior_cholesky = prior_cholesky_factor(inducing_inputs, lengthscales, signal_var, jitter)
    k_zx = se_ard_kernel(inducing_inputs, inputs, lengthscales, signal_var)          # (E, M, N)
    A = torch.linalg.solve_triangular(prior_cholesky, k_zx, upper=False)            # (E, M, N)
    mean = (A * q_mean[..., None]).sum(-2)                                           # (E, N)
    SA = q_scale_tril.mT @ A                                                         # L_Sᵀ A: (E, M, N)
    var = signal_var[:, None] - A.pow(2).sum(-2) + SA.pow(2).sum(-2)
    return mean.mT, var.clamp(min=1e-10).mT


def prior_cholesky_factor(inducing_inputs: torch.Tensor, lengthscales: torch.Tensor, signal_var: torch.Tensor,
                          jitter: float = 1e-6) -> torch.Tensor:
    """L_a = chol(K_a(Z_a, Z_a) + jitter α_a² I): (E, M, M)."""
    K = se_ard_kernel(inducing_inputs, inducing_inputs, lengthscales, signal_var)
    eye = torch.eye(K.shape[-1], dtype=K.dtype, device=K.device)
    return torch.linalg.cholesky(K + jitter * signal_var[:, None, None] * eye)


def whitened_kl(q_mean: torch.Tensor, q_scale_tril: torch.Tensor) -> torch.Tensor:
    """KL(N(m, S) || N(0, I)) = ½ [tr S + mᵀm − M − log|S|], log|S| = 2 Σ log|diag L_S|, summed over outputs.

    ``q_mean: (E, M)``, ``q_scale_tril: (E, M, M)``. Returns a scalar.
    """
    M = q_mean.shape[-1]
    trace = q_scale_tril.pow(2).sum((-2, -1))
    logdet = 2 * torch.diagonal(q_scale_tril, dim1=-2, dim2=-1).abs().log().sum(-1)
    return 0.5 * (trace + q_mean.pow(2).sum(-1) - M - logdet).sum()


def diagonal_gaussian_kl(mean: torch.Tensor, std: torch.Tensor, prior_std: float | torch.Tensor = 1.0) -> torch.Tensor:
    """KL(N(μ, diag σ²) || N(0, σ_p² I)) = Σ [log(σ_p / σ) + (σ² + μ²) / (2 σ_p²) − ½] over the last axis: (...)."""
    prior_var = torch.as_tensor(prior_std, dtype=mean.dtype, device=mean.device) ** 2
    return (0.5 * torch.log(prior_var) - torch.log(std) + (std.pow(2) + mean.pow(2)) / (2 * prior_var) - 0.5).sum(-1)


class SparseGPTransition(nn.Module):
    """f(s, u) ~ sparse GP, one output per latent dimension: q(f_a(x̂)) of :func:`sparse_gp_conditional`.

    Parameters: inducing inputs Z (D_s, M, D_s + D_u), ARD length-scales ℓ and signal variances α²
    (positive through softplus), whitened q(v) = N(m, L_S L_Sᵀ) (L_S's diagonal positive through softplus).
    """

    def __init__(self, state_dim: int, input_dim: int, num_inducing: int = 20, lengthscale: float = 1.0,
                 signal_std: float = 0.1, q_std: float = 0.3, jitter: float = 1e-5) -> None:
        super().__init__()
        E = check_positive_int("state_dim", state_dim)
        Du = check_positive_int("input_dim", input_dim, allow_zero=True)
        M = check_positive_int("num_inducing", num_inducing)
        D = E + Du
        self.jitter = jitter
        self.inducing_inputs = nn.Parameter(2 * torch.rand(E, M, D) - 1)
        self.raw_lengthscales = nn.Parameter(_softplus_inverse(torch.full((E, D), lengthscale)))
        self.raw_signal_var = nn.Parameter(_softplus_inverse(torch.full((E,), signal_std ** 2)))
        self.q_mean = nn.Parameter(torch.zeros(E, M))
        self.raw_q_diag = nn.Parameter(_softplus_inverse(torch.full((E, M), q_std)))
        self.q_offdiag = nn.Parameter(torch.zeros(E, M, M))

    @property
    def lengthscales(self) -> torch.Tensor:
        """ℓ: (D_s, D)."""
        return nn.functional.softplus(self.raw_lengthscales) + 1e-6

    @property
    def signal_var(self) -> torch.Tensor:
        """α²: (D_s,)."""
        return nn.functional.softplus(self.raw_signal_var) + 1e-8

    @property
    def q_scale_tril(self) -> torch.Tensor:
        """L_S: (D_s, M, M), lower triangular with a positive diagonal."""
        diag = nn.functional.softplus(self.raw_q_diag) + 1e-6
        return torch.tril(self.q_offdiag, -1) + torch.diag_embed(diag)

    def prior_cholesky(self) -> torch.Tensor:
        """L = chol(K(Z, Z) + jitter α² I): (D_s, M, M); compute once per trajectory batch."""
        return prior_cholesky_factor(self.inducing_inputs, self.lengthscales, self.signal_var, self.jitter)

    def forward(self, inputs: torch.Tensor, prior_cholesky: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """q(f(x̂)) = N(μ, diag σ²) at ``inputs: (N, D_s + D_u)``; returns ``(mean, var)``, each ``(N, D_s)``."""
        L = self.prior_cholesky() if prior_cholesky is None else prior_cholesky
        return sparse_gp_conditional(inputs, self.inducing_inputs, self.lengthscales, self.signal_var,
                                     self.q_mean, self.q_scale_tril, L)

    def kl(self) -> torch.Tensor:
        """KL(q(z) || p(z)) = Σ_a KL(q(v_a) || N(0, I)) (whitening leaves the KL unchanged): scalar."""
        return whitened_kl(self.q_mean, self.q_scale_tril)


def _softplus_inverse(x: torch.Tensor) -> torch.Tensor:
    return x + torch.log(-torch.expm1(-x))


# ------------------------------------------------------------------------------- shared machinery
class InitialStateEncoder(nn.Module):
    """Recognition model q(s_0 | y_{0:L−1}, u_{0:L−1}) = N(m_0, diag σ_0²): an MLP on the flattened window.

    ``observations: (B, ≥L, D_y)``, ``inputs: (B, ≥L, D_u)`` (the first L steps are used).
    Returns ``(mean: (B, D_s), std: (B, D_s))``.
    """

    def __init__(self, state_dim: int, output_dim: int, input_dim: int, window: int, hidden: int = 32) -> None:
        super().__init__()
        self.window = check_positive_int("recognition_steps", window)
        self.state_dim = state_dim
        size = window * (output_dim + input_dim)
        self.net = nn.Sequential(nn.Linear(size, hidden), nn.Tanh(), nn.Linear(hidden, 2 * state_dim))
        with torch.no_grad():  # start near s_0 = (y_0, 0, ..), σ_0 ≈ 0.05
            self.net[-1].weight.mul_(0.1)
            self.net[-1].bias.zero_()
            self.net[-1].bias[state_dim:] = _softplus_inverse(torch.tensor(0.05))
        self.output_dim = output_dim

    def forward(self, observations: torch.Tensor, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        L = self.window
        window = torch.cat([observations[:, :L], inputs[:, :L]], -1).flatten(1)
        out = self.net(window)
        mean, raw = out[:, :self.state_dim], out[:, self.state_dim:]
        first = torch.zeros_like(mean)
        first[:, :self.output_dim] = observations[:, 0]        # skip connection: C m_0 starts at y_0
        return mean + first, nn.functional.softplus(raw) + 1e-4


@dataclass
class ELBOTerms:
    """One Monte Carlo estimate of the ELBO per sequence and its parts (each a scalar tensor)."""

    elbo: torch.Tensor
    """(1/B) Σ_b [Σ_t E log p(y_t | s_t) − KL(q(s_0^b) || p(s_0))] − KL_global / dataset_size"""
    log_likelihood: torch.Tensor
    """(1/B) Σ_b Σ_t E log p(y_t | s_t)"""
    kl_initial: torch.Tensor
    """(1/B) Σ_b KL(q(s_0^b) || p(s_0))"""
    kl_global: torch.Tensor
    """KL(q(z) || p(z)) for PR-SSM, KL(q(θ) || p(θ)) for the random-parameter model (not divided)"""


@dataclass
class SimulationResult:
    """Free-run simulation: sampled outputs and their summaries, t = 0..T−1."""

    samples: torch.Tensor
    """y samples (with observation noise): (S, B, T, D_y)"""
    state_samples: torch.Tensor
    """s samples: (S, B, T, D_s)"""
    mean: torch.Tensor
    """sample mean of y: (B, T, D_y)"""
    lower: torch.Tensor
    """2.5 % sample quantile of y: (B, T, D_y)"""
    upper: torch.Tensor
    """97.5 % sample quantile of y: (B, T, D_y)"""


class TrajectoryModel(nn.Module):
    """The recurrent SSM s_t = s_{t−1} + f(s_{t−1}, u_{t−1}) + ε_t, y_t = C s_t + ν_t with a random f.

    Subclasses say what f is: :meth:`sample_transition_globals` draws what is shared along a trajectory
    (PR-SSM: nothing random, the Cholesky factor of K_zz; random parameters: one θ per trajectory),
    :meth:`transition_moments` gives the distribution N(μ, diag σ²) of f at a batch of states, and
    :meth:`global_kl` the KL of the global variables. Everything else (recognition, noises, ELBO,
    simulation) is here.
    """

    def __init__(self, state_dim: int, output_dim: int, input_dim: int, recognition_steps: int = 10,
                 process_noise_std: float = 0.01, observation_noise_std: float = 0.05,
                 recognition_hidden: int = 32) -> None:
        super().__init__()
        self.state_dim = check_positive_int("state_dim", state_dim)
        self.output_dim = check_positive_int("output_dim", output_dim)
        self.input_dim = check_positive_int("input_dim", input_dim, allow_zero=True)
        if self.output_dim > self.state_dim:
            raise ValueError(f"output_dim: expected <= state_dim = {self.state_dim} (y is the first output_dim "
                             f"latent dimensions), got {self.output_dim}")
        self.recognition_steps = check_positive_int("recognition_steps", recognition_steps)
        q = check_positive_float("process_noise_std", process_noise_std)
        r = check_positive_float("observation_noise_std", observation_noise_std)
        self.raw_process_std = nn.Parameter(_softplus_inverse(torch.full((self.state_dim,), q)))
        self.raw_observation_std = nn.Parameter(_softplus_inverse(torch.full((self.output_dim,), r)))
        self.encoder = InitialStateEncoder(self.state_dim, self.output_dim, self.input_dim, self.recognition_steps,
                                           recognition_hidden)

    # --- what a subclass provides
    def sample_transition_globals(self, num_trajectories: int, generator: torch.Generator | None = None):
        """What stays fixed along each of ``num_trajectories`` trajectories (passed to transition_moments)."""
        raise NotImplementedError

    def transition_moments(self, gp_inputs: torch.Tensor, globals_) -> tuple[torch.Tensor, torch.Tensor]:
        """f(ŝ) ~ N(mean, diag var) at ``gp_inputs: (N, D_s + D_u)``; returns ``(mean, var)``, each ``(N, D_s)``."""
        raise NotImplementedError

    def global_kl(self) -> torch.Tensor:
        """KL of the global random variables (inducing outputs or weights) against their prior: scalar."""
        raise NotImplementedError

    def tile_globals(self, globals_, repeats: int):
        """Globals drawn for B trajectories, repeated for ``repeats`` samples each (trajectory n = i · B + b uses
        those of b). The default suits globals that are not per trajectory (PR-SSM's chol(K_zz))."""
        return globals_

    # --- shared
    @property
    def process_std(self) -> torch.Tensor:
        """q: (D_s,)."""
        return nn.functional.softplus(self.raw_process_std) + 1e-5

    @property
    def observation_std(self) -> torch.Tensor:
        """r: (D_y,)."""
        return nn.functional.softplus(self.raw_observation_std) + 1e-5

    def _cast(self, x: torch.Tensor) -> torch.Tensor:
        """Data to the model's dtype and device."""
        ref = self.raw_process_std
        return x.to(dtype=ref.dtype, device=ref.device)

    def check_data(self, inputs: torch.Tensor, observations: torch.Tensor | None = None,
                   full_length: bool = False) -> None:
        """Refuse inputs (B, T, D_u) and observations (B, T_obs, D_y) of the wrong shape, too short, or not finite.

        T_obs must be ≥ L = ``recognition_steps`` (and = T when ``full_length``); T ≥ L.
        """
        if not isinstance(inputs, torch.Tensor) or inputs.ndim != 3 or inputs.shape[-1] != self.input_dim:
            got = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
            raise ValueError(f"inputs: expected shape (B, T, {self.input_dim}), got {got}")
        check_finite("inputs", inputs)
        if observations is None:
            return
        B, T = inputs.shape[:2]
        if not isinstance(observations, torch.Tensor) or observations.ndim != 3 or (
                observations.shape[0] != B or observations.shape[-1] != self.output_dim):
            got = tuple(observations.shape) if isinstance(observations, torch.Tensor) else type(observations).__name__
            raise ValueError(f"observations: expected shape ({B}, T, {self.output_dim}), got {got}")
        if T < self.recognition_steps or observations.shape[1] < self.recognition_steps:
            raise ValueError(f"observations: expected at least {self.recognition_steps} time steps (recognition_steps), "
                             f"got {observations.shape[1]} observed and {T} inputs")
        if full_length and observations.shape[1] != T:
            raise ValueError(f"observations: expected shape ({B}, {T}, {self.output_dim}) (as long as inputs), "
                             f"got {tuple(observations.shape)}")
        check_finite("observations", observations)

    def sample_trajectories(self, inputs: torch.Tensor, observations: torch.Tensor, num_samples: int,
                            generator: torch.Generator | None = None, shared_globals: bool = False
                            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reparameterised ancestral samples of s_{0:T−1} from q (= free-run simulation after s_0).

        s_0 = m_0 + σ_0 ⊙ ε_0,   then for t = 1..T−1 with ŝ = (s_{t−1}, u_{t−1}):
        (μ, σ²) = moments of f(ŝ),   s_t = s_{t−1} + μ + √(σ² + q²) ⊙ ε_t   (one draw of f_t + ε_t).

        ``inputs: (B, T, D_u)``, ``observations: (B, ≥L, D_y)`` (only the recognition window is used);
        ``shared_globals``: the S samples of one sequence share its draw of the global variables (one θ per
        sequence instead of per trajectory), as the importance-weighted bound needs.
        Returns ``(states: (S, B, T, D_s), initial_mean: (B, D_s), initial_std: (B, D_s))``.
        """
        S = check_positive_int("num_samples", num_samples)
        self.check_data(inputs, observations)
        inputs, observations = self._cast(inputs), self._cast(observations)
        B, T, _ = inputs.shape
        m0, sd0 = self.encoder(observations, inputs)
        ref = m0
        eps0 = torch.randn(S, B, self.state_dim, generator=generator, dtype=ref.dtype, device=ref.device)
        s = (m0 + sd0 * eps0).reshape(S * B, self.state_dim)          # trajectory n = i * B + b
        u = inputs.unsqueeze(0).expand(S, B, T, self.input_dim).reshape(S * B, T, self.input_dim)
        globals_ = (self.tile_globals(self.sample_transition_globals(B, generator), S) if shared_globals
                    else self.sample_transition_globals(S * B, generator))
        q2 = self.process_std.pow(2)
        states = [s]
        for t in range(1, T):
            mean, var = self.transition_moments(torch.cat([s, u[:, t - 1]], -1), globals_)
            eps = torch.randn(s.shape, generator=generator, dtype=ref.dtype, device=ref.device)
            s = s + mean + torch.sqrt(var + q2) * eps
            states.append(s)
        return torch.stack(states, 1).reshape(S, B, T, self.state_dim), m0, sd0

    def elbo(self, inputs: torch.Tensor, observations: torch.Tensor, num_samples: int = 8,
             dataset_size: float = 1.0, generator: torch.Generator | None = None, bound: str = "elbo") -> ELBOTerms:
        """The doubly stochastic ELBO (``bound="elbo"``) or its importance-weighted version (``"iwae"``), per sequence.

        ``"elbo"`` (PR-SSM's): Σ_t E_q[log p(y_t | s_t)] − KL(q(s_0) || p(s_0)) − KL_global / dataset_size, with
        log p(y_t | s_t) = log N(y_t; C s_t, diag r²) averaged over ``num_samples`` trajectories per sequence.
        Jensen charges *every* sampled trajectory for its whole error, so the learned r grows until it covers
        the spread of the trajectories too, and the predictive (trajectory spread + r) counts that spread twice.

        ``"iwae"``: with S = ``num_samples`` trajectories s^i ~ q(s_0) p(s_{1:T} | s_0, f) (sharing the sequence's
        globals) and weights w_i = p(Y | s^i) p(s_0^i) / q(s_0^i),
        log (1/S) Σ_i w_i − KL_global / dataset_size, a lower bound on log p(Y) that is at least the ELBO in
        expectation and equals it (in expectation) at S = 1 (Burda et al., 2016): only the trajectories that
        explain the data need to, so r no longer pays for every sample's error. Here ``kl_initial`` is 0: the
        initial state's term is inside the weights.

        ``dataset_size``: how many sequences like these the full data set holds (the global KL is paid once
        for all of them). ``inputs: (B, T, D_u)``, ``observations: (B, T, D_y)``. Returns :class:`ELBOTerms`.
        """
        check_choice("bound", bound, BOUNDS)
        self.check_data(inputs, observations, full_length=True)
        inputs, observations = self._cast(inputs), self._cast(observations)
        states, m0, sd0 = self.sample_trajectories(inputs, observations, num_samples, generator,
                                                   shared_globals=bound == "iwae")
        y_mean = states[..., :self.output_dim]                                  # C s_t: (S, B, T, D_y)
        r = self.observation_std
        log_p = (-0.5 * ((observations - y_mean) / r).pow(2) - torch.log(r) - 0.5 * _LOG_2PI).sum((-2, -1))
        if bound == "iwae":
            s0 = states[:, :, 0]                                                # (S, B, D_s)
            log_prior = (-0.5 * s0.pow(2) - 0.5 * _LOG_2PI).sum(-1)             # p(s_0) = N(0, I)
            log_q = (-0.5 * ((s0 - m0) / sd0).pow(2) - torch.log(sd0) - 0.5 * _LOG_2PI).sum(-1)
            log_w = log_p + log_prior - log_q                                   # (S, B)
            log_likelihood = (torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])).mean()
            kl_initial = torch.zeros((), dtype=log_w.dtype, device=log_w.device)
        else:
            log_likelihood = log_p.mean()                                       # over samples and sequences
            kl_initial = diagonal_gaussian_kl(m0, sd0).mean()
        kl_global = self.global_kl()
        elbo = log_likelihood - kl_initial - kl_global / dataset_size
        return ELBOTerms(elbo=elbo, log_likelihood=log_likelihood, kl_initial=kl_initial, kl_global=kl_global)

    @torch.no_grad()
    def simulate(self, inputs: torch.Tensor, observations: torch.Tensor, num_samples: int = 100,
                 generator: torch.Generator | None = None) -> SimulationResult:
        """Free-run simulation: s_0 from the recognition model on the first L steps of (y, u), then the model
        alone driven by ``inputs`` for all T steps; y_t = C s_t + ν_t.

        ``inputs: (B, T, D_u)``; ``observations: (B, ≥L, D_y)`` (only the first L = ``recognition_steps`` are
        read). Returns a :class:`SimulationResult` (samples, mean, 95 % interval from the 2.5 / 97.5 % quantiles).
        """
        self.check_data(inputs, observations)
        states, _, _ = self.sample_trajectories(inputs, observations, num_samples, generator)
        y = states[..., :self.output_dim]
        y = y + self.observation_std * torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
        q = torch.tensor([0.025, 0.975], dtype=y.dtype, device=y.device)
        lower, upper = torch.quantile(y, q, dim=0)
        return SimulationResult(samples=y, state_samples=states, mean=y.mean(0), lower=lower, upper=upper)


    def calibrate_observation_noise(self, inputs: torch.Tensor, observations: torch.Tensor, num_samples: int = 100,
                                    generator: torch.Generator | None = None, max_iter: int = 50) -> torch.Tensor:
        """Refit the observation noise r to the free-run predictive of (training) sequences; returns the new r.

        The doubly stochastic ELBO charges every sampled trajectory for its whole error, so the r it learns
        also covers the spread of the trajectories, and the free-run predictive (spread + r) counts that spread
        twice: intervals too wide. This step keeps everything else and chooses r (one per output) to maximise
        the predictive the model is used for, Σ_{b, t ≥ L} log (1/S) Σ_i N(y_t^b; C s_t^{b,i}, diag r²), with
        S = ``num_samples`` free runs per sequence from the recognised s_0 (as :meth:`simulate`) held fixed.
        That is maximum likelihood of one parameter per output on the data the model was trained on; call it
        with the training sequences, never with the ones you score. ``inputs: (B, T, D_u)``,
        ``observations: (B, T, D_y)``; ``max_iter``: L-BFGS iterations on log r.
        """
        self.check_data(inputs, observations, full_length=True)
        check_positive_int("max_iter", max_iter)
        observations = self._cast(observations)
        L = self.recognition_steps
        if observations.shape[1] <= L:
            raise ValueError(f"observations: expected more than recognition_steps = {L} time steps, "
                             f"got {observations.shape[1]}")
        with torch.no_grad():
            states, _, _ = self.sample_trajectories(inputs, observations, num_samples, generator)
        residual = (observations[:, L:] - states[:, :, L:, :self.output_dim]).detach()   # (S, B, T−L, D_y)
        log_r = self.observation_std.detach().log().clone().requires_grad_(True)
        optimizer = torch.optim.LBFGS([log_r], max_iter=max_iter, line_search_fn="strong_wolfe")
        log_s = math.log(residual.shape[0])

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            log_n = -0.5 * (residual / log_r.exp()).pow(2) - log_r - 0.5 * _LOG_2PI
            loss = -(torch.logsumexp(log_n, 0) - log_s).mean()
            loss.backward()
            return loss

        optimizer.step(closure)
        r = log_r.detach().exp()
        check_finite("the calibrated observation noise", r)
        with torch.no_grad():
            self.raw_observation_std.copy_(_softplus_inverse((r - 1e-5).clamp(min=1e-8)))   # observation_std adds 1e-5
        return self.observation_std.detach()


class PRSSM(TrajectoryModel):
    """PR-SSM: f ~ sparse GP (:class:`SparseGPTransition`), the module docstring's model and ELBO.

    ``state_dim`` D_s (the paper uses 4), ``output_dim`` D_y ≤ D_s, ``input_dim`` D_u, ``num_inducing`` M per
    latent dimension, ``recognition_steps`` L; the other arguments set the initial values.
    """

    def __init__(self, state_dim: int = 4, output_dim: int = 1, input_dim: int = 1, num_inducing: int = 20,
                 recognition_steps: int = 10, process_noise_std: float = 0.01,
                 observation_noise_std: float = 0.05, lengthscale: float = 1.0, signal_std: float = 0.1,
                 q_std: float = 0.3) -> None:
        super().__init__(state_dim, output_dim, input_dim, recognition_steps, process_noise_std,
                         observation_noise_std)
        self.transition = SparseGPTransition(self.state_dim, self.input_dim, num_inducing, lengthscale,
                                             signal_std, q_std)

    def sample_transition_globals(self, num_trajectories: int, generator: torch.Generator | None = None):
        """Nothing is sampled: z is integrated out analytically in q(f(ŝ)); returns L = chol(K_zz)."""
        return self.transition.prior_cholesky()

    def transition_moments(self, gp_inputs: torch.Tensor, globals_) -> tuple[torch.Tensor, torch.Tensor]:
        """q(f(ŝ)) = N(μ, σ²) of the sparse GP at the sampled ŝ: ``(N, D_s)`` each."""
        return self.transition(gp_inputs, globals_)

    def global_kl(self) -> torch.Tensor:
        """KL(q(z) || p(z))."""
        return self.transition.kl()


# ---------------------------------------------------------------------------------------- training
@dataclass
class TrajectoryTrainConfig:
    """How :func:`train_trajectory_model` climbs the ELBO (Adam on random sub-sequences)."""

    num_steps: int | None = None
    """Adam steps; None: by_budget(smoke=50, default=800, full=3000) (default ≈ 1–2 min on one CPU core)"""
    subsequence_length: int | None = None
    """T of each training window (≥ the model's recognition_steps); None: min(60, sequence length).
    The ELBO scores free runs of this length from the recognised s_0, and the learned observation noise r
    absorbs their average error: too short a window (40) under-trains the long free run, too long a one lets
    r grow with the free run's drift and widens every interval (on the two tanks, 190-step free runs,
    800 steps: windows of 60 / 100 / 200 gave r = 0.037 / 0.041 / 0.055 against the true 0.02, RMSE
    0.030 / 0.033 / 0.039, 95 % coverage 0.986 / 0.990 / 0.996; see benchmarks/RESULTS.md)"""
    batch_size: int = 16
    """windows per step"""
    num_samples: int = 4
    """latent trajectories per window"""
    bound: str = "elbo"
    """"elbo" (PR-SSM's doubly stochastic ELBO) or "iwae" (importance-weighted over the trajectories: calibrated
    intervals, see :meth:`TrajectoryModel.elbo` and benchmarks/RESULTS.md)"""
    learning_rate: float = 0.01
    """Adam step size"""
    seed: int = 0
    """seeds the windows and the reparameterisation noise"""
    progress: bool = True
    """show a tqdm progress bar"""
    checkpoint_every: int = 100
    """with a checkpoint path: write the checkpoint every this many steps (and at the end)"""


@dataclass
class TrajectoryTrainResult:
    """What :func:`train_trajectory_model` returns."""

    model: TrajectoryModel
    """the same model, trained"""
    elbos: torch.Tensor
    """ELBO per time step of each step's minibatch: (num_steps,)"""
    resumed_from: int = 0
    """the step the run continued from (0: a fresh run)"""


def train_trajectory_model(model: TrajectoryModel, inputs: torch.Tensor, observations: torch.Tensor,
                           config: TrajectoryTrainConfig | None = None, *,
                           checkpoint_path: str | os.PathLike | None = None,
                           resume: bool = True) -> TrajectoryTrainResult:
    """Maximise the doubly stochastic ELBO over random windows of the training sequences.

    Each step draws ``batch_size`` windows of ``subsequence_length`` steps (sequence and start uniform),
    estimates :meth:`TrajectoryModel.elbo` with ``num_samples`` trajectories per window and
    dataset_size = (Σ sequence lengths) / window length, and takes an Adam step on −ELBO / T.
    ``inputs: (B, T, D_u)``, ``observations: (B, T, D_y)``.

    With the ELBO, the learned r also covers the spread between the sampled trajectories, so the free-run
    intervals come out too wide: follow training with :meth:`TrajectoryModel.calibrate_observation_noise` on the
    same training sequences (benchmarks/RESULTS.md: coverage 0.98–0.99 → 0.91–0.94 on the two tanks).

    ``checkpoint_path``: the model, Adam's state, the generator and the ELBO trace are written there every
    ``config.checkpoint_every`` steps and at the end (atomically: a crash keeps the last one); with ``resume``
    and the file there, the run continues from it up to ``num_steps`` in total, as if never interrupted.
    """
    cfg = config or TrajectoryTrainConfig()
    steps = check_positive_int("config.num_steps", cfg.num_steps if cfg.num_steps is not None
                               else by_budget(smoke=50, default=800, full=3000))
    model.check_data(inputs, observations, full_length=True)
    B, T = inputs.shape[:2]
    window = check_positive_int("config.subsequence_length", cfg.subsequence_length
                                if cfg.subsequence_length is not None else min(60, T))
    batch = check_positive_int("config.batch_size", cfg.batch_size)
    check_positive_int("config.num_samples", cfg.num_samples)
    check_choice("config.bound", cfg.bound, BOUNDS)
    lr = check_positive_float("config.learning_rate", cfg.learning_rate)
    if window < model.recognition_steps or window > T:
        raise ValueError(f"config.subsequence_length: expected between recognition_steps = "
                         f"{model.recognition_steps} and the sequence length {T}, got {window}")
    dtype = next(model.parameters()).dtype
    inputs, observations = inputs.to(dtype), observations.to(dtype)
    gen = torch.Generator().manual_seed(cfg.seed)
    dataset_size = B * T / window
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    every = check_positive_int("config.checkpoint_every", cfg.checkpoint_every)
    offsets = torch.arange(window)
    trace: list[float] = []
    first = 0
    path = Path(checkpoint_path) if checkpoint_path is not None else None
    if path is not None and resume and path.exists():
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        gen.set_state(ckpt["generator"])
        trace, first = list(ckpt["elbos"]), int(ckpt["step"])

    def checkpoint(step: int) -> None:
        if path is not None:
            save_checkpoint(path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "generator": gen.get_state(),
                         "elbos": trace, "step": step, "config": asdict(cfg)})

    def objective(step: int) -> torch.Tensor:
        seq = torch.randint(0, B, (batch,), generator=gen)
        start = torch.randint(0, T - window + 1, (batch,), generator=gen)
        idx = start[:, None] + offsets                                        # (batch, window)
        u = inputs[seq[:, None], idx]
        y = observations[seq[:, None], idx]
        return model.elbo(u, y, cfg.num_samples, dataset_size, gen, cfg.bound).elbo / window  # per time step

    ascent_steps(objective, list(model.parameters()), optimizer, range(first, steps), trace, grad_clip=None,
                 progress=cfg.progress, desc=type(model).__name__, checkpoint=checkpoint, checkpoint_every=every,
                 checkpoint_path=path)
    checkpoint(steps)
    return TrajectoryTrainResult(model=model, elbos=torch.tensor(trace), resumed_from=first)


def free_run_scores(samples: torch.Tensor, targets: torch.Tensor, start: int = 0) -> dict[str, float]:
    """Free-run RMSE, Gaussian NLL per step and coverage of the 95 % interval, over steps t ≥ ``start``.

    RMSE = √mean (ȳ_t − y_t)²  with ȳ_t the sample mean; NLL = −mean log N(y_t; ȳ_t, v_t) with v_t the
    sample variance; coverage = fraction of y_t inside the [2.5 %, 97.5 %] sample quantiles.
    ``samples: (S, B, T, D_y)``, ``targets: (B, T, D_y)``.
    """
    if samples.ndim != 4 or samples.shape[1:] != targets.shape:
        raise ValueError(f"samples: expected shape (S, *{tuple(targets.shape)}), got {tuple(samples.shape)}")
    if not 0 <= start < targets.shape[1]:
        raise ValueError(f"start: expected 0 <= start < T = {targets.shape[1]}, got {start}")
    s, y = samples[:, :, start:], targets[:, start:]
    mean, var = s.mean(0), s.var(0).clamp(min=1e-12)
    q = torch.tensor([0.025, 0.975], dtype=s.dtype, device=s.device)
    lower, upper = torch.quantile(s, q, dim=0)
    nll = 0.5 * ((y - mean).pow(2) / var + var.log() + _LOG_2PI)
    return {"rmse": float((mean - y).pow(2).mean().sqrt()), "nll": float(nll.mean()),
            "coverage": float(((y >= lower) & (y <= upper)).to(s.dtype).mean())}
