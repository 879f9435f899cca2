"""The slide's alternative to PR-SSM: a deterministic transition f_θ with random parameters θ.

    θ ~ p(θ) = N(0, σ_p² I)
    s_0 ~ p(s_0) = N(0, I)
    s_t | s_{t−1}, θ = s_{t−1} + f_θ(s_{t−1}, u_{t−1}) + ε_t,   ε_t ~ N(0, diag q²)
    y_t | s_t = C s_t + ν_t,   C = [I_{D_y} 0],   ν_t ~ N(0, diag r²)

f_θ is a small MLP, f_θ(ŝ) = W_2 tanh(W_1 ŝ + b_1) + b_2, ŝ = (s, u). Its weights get a mean-field
Gaussian posterior q(θ) = N(μ_θ, diag σ_θ²), σ_θ = softplus(ρ_θ) (Bayes by backprop, Blundell et al.,
2015), sampled by reparameterisation θ = μ_θ + σ_θ ⊙ ε. The randomness is *global*: ONE θ is drawn per
trajectory and held fixed over all its steps, so a trajectory is the rollout of one plausible
dynamics, as a GP sample function is in PR-SSM (not new weights at every step, which would be
process noise in disguise). With the posterior q(θ) q(s_0) Π_t p(s_t | s_{t−1}, θ) (the same
structure as PR-SSM's), the ELBO is

    ELBO = E_{q(θ) q(s_0) p(s_{1:} | s_0, θ)}[Σ_t log p(y_t | s_t)] − KL(q(θ) || p(θ)) − KL(q(s_0) || p(s_0)),

estimated by the same trajectory sampler, recognition model, training loop and free-run simulation
as :class:`~mbrl_course.ssm.prssm.PRSSM` (:class:`~mbrl_course.ssm.prssm.TrajectoryModel`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mbrl_course._checks import check_positive_float, check_positive_int
from mbrl_course.ssm.prssm import TrajectoryModel, _softplus_inverse, diagonal_gaussian_kl

__all__ = ["BayesianMLP", "RandomParameterSSM"]


class BayesianMLP(nn.Module):
    """f_θ(x) = W_2 tanh(W_1 x + b_1) + b_2 with q(θ) = N(μ_θ, diag σ_θ²) over all of θ = (W_1, b_1, W_2, b_2).

    :meth:`sample` draws one θ per trajectory, :meth:`forward` applies each trajectory's own θ to its row.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 32, prior_std: float = 1.0,
                 initial_std: float = 1e-3, output_scale: float = 0.1) -> None:
        super().__init__()
        self.in_dim = check_positive_int("in_dim", in_dim)
        self.out_dim = check_positive_int("out_dim", out_dim)
        self.hidden = check_positive_int("hidden", hidden)
        self.prior_std = check_positive_float("prior_std", prior_std)
        sigma = check_positive_float("initial_std", initial_std)
        shapes = {"w1": (in_dim, hidden), "b1": (hidden,), "w2": (hidden, out_dim), "b2": (out_dim,)}
        self.shapes = shapes
        self.sizes = [math.prod(s) for s in shapes.values()]
        mean = torch.cat([
            torch.randn(in_dim * hidden) / math.sqrt(in_dim),
            torch.zeros(hidden),
            output_scale * torch.randn(hidden * out_dim) / math.sqrt(hidden),
            torch.zeros(out_dim),
        ])
        self.mean = nn.Parameter(mean)                                           # μ_θ: (P,)
        self.raw_std = nn.Parameter(_softplus_inverse(torch.full_like(mean, sigma)))   # ρ_θ: (P,)

    @property
    def std(self) -> torch.Tensor:
        """σ_θ = softplus(ρ_θ): (P,)."""
        return nn.functional.softplus(self.raw_std) + 1e-8

    def sample(self, num: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """θ_n = μ_θ + σ_θ ⊙ ε_n, n = 1..num; returns the weights with a leading axis of ``num``."""
        eps = torch.randn(num, self.mean.shape[0], generator=generator, dtype=self.mean.dtype,
                          device=self.mean.device)
        theta = self.mean + self.std * eps
        parts = torch.split(theta, self.sizes, dim=-1)
        return {name: p.reshape(num, *shape) for (name, shape), p in zip(self.shapes.items(), parts)}

    def forward(self, x: torch.Tensor, theta: dict[str, torch.Tensor]) -> torch.Tensor:
        """f_{θ_n}(x_n) for every row n: ``x: (N, in)``, θ from :meth:`sample` (N) -> ``(N, out)``."""
        h = torch.tanh(torch.einsum("ni,nih->nh", x, theta["w1"]) + theta["b1"])
        return torch.einsum("nh,nho->no", h, theta["w2"]) + theta["b2"]

    def kl(self) -> torch.Tensor:
        """KL(q(θ) || p(θ)) = Σ_i [log(σ_p / σ_i) + (σ_i² + μ_i²) / (2 σ_p²) − ½]: scalar."""
        return diagonal_gaussian_kl(self.mean, self.std, self.prior_std)


class RandomParameterSSM(TrajectoryModel):
    """The random-parameter recurrent SSM of the module docstring: f_θ a :class:`BayesianMLP`, one θ per trajectory.

    Same constructor arguments as :class:`~mbrl_course.ssm.prssm.PRSSM` where they mean the same, plus
    ``hidden`` (MLP width), ``prior_std`` σ_p, ``initial_weight_std`` (initial σ_θ).
    """

    def __init__(self, state_dim: int = 4, output_dim: int = 1, input_dim: int = 1, hidden: int = 32,
                 recognition_steps: int = 10, process_noise_std: float = 0.01,
                 observation_noise_std: float = 0.05, prior_std: float = 1.0,
                 initial_weight_std: float = 1e-3) -> None:
        super().__init__(state_dim, output_dim, input_dim, recognition_steps, process_noise_std,
                         observation_noise_std)
        self.transition = BayesianMLP(self.state_dim + self.input_dim, self.state_dim, hidden, prior_std,
                                      initial_weight_std)

    def sample_transition_globals(self, num_trajectories: int, generator: torch.Generator | None = None):
        """One θ ~ q(θ) per trajectory, held for all its steps."""
        return self.transition.sample(num_trajectories, generator)

    def tile_globals(self, globals_: dict[str, torch.Tensor], repeats: int) -> dict[str, torch.Tensor]:
        """θ_b of B sequences, repeated so that trajectory n = i · B + b uses θ_b: each weight (repeats · B, ...)."""
        return {name: w.repeat(repeats, *([1] * (w.ndim - 1))) for name, w in globals_.items()}

    def transition_moments(self, gp_inputs: torch.Tensor, globals_) -> tuple[torch.Tensor, torch.Tensor]:
        """f_θ(ŝ) is deterministic given θ: mean f_θ(ŝ), variance 0 (only the process noise q² is added)."""
        mean = self.transition(gp_inputs, globals_)
        return mean, torch.zeros_like(mean)

    def global_kl(self) -> torch.Tensor:
        """KL(q(θ) || p(θ))."""
        return self.transition.kl()
