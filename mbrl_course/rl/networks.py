"""Networks shared by the model-free learners: policies μ_θ, critics Q_φ and baselines V_φ.

- :class:`TanhGaussianPolicy` (SAC): u = c + s ⊙ tanh(z), z ~ N(m_θ(i), diag σ_θ(i)²), a squashed
  Gaussian whose samples always lie in the action box [u_min, u_max] (c, s its centre and half-width).
- :class:`GaussianPolicy` (REINFORCE, PPO, MBMF's behaviour cloning): ũ ~ N(m_θ(i), diag σ²) with a
  state-independent learned log σ; the env gets u = clip(c + s ⊙ ũ, u_min, u_max).
- :class:`EnsembleQ` (SAC's twin critics): Q_φ1, …, Q_φK evaluated in one batched pass, one
  ``baddbmm`` per layer as in the dynamics ensemble (:class:`mbrl_course.models.EnsembleLinear`).
- :func:`mlp`: a plain multilayer perceptron (value baselines V_φ).

Every network takes ``device`` and ``dtype`` and works on any leading batch shape where it says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from mbrl_course._checks import as_tensor, check_positive_int, resolve_device
from mbrl_course.models.ensemble import EnsembleLinear

__all__ = ["ActionBox", "EnsembleQ", "GaussianPolicy", "PolicySample", "TanhGaussianPolicy", "mlp"]

_LOG_2PI = math.log(2 * math.pi)


def mlp(in_dim: int, hidden_sizes: Sequence[int], out_dim: int, *, activation: type[nn.Module] = nn.ReLU,
        device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> nn.Sequential:
    """x ↦ W_L σ(… σ(W_1 x + b_1) …) + b_L with ``hidden_sizes`` hidden widths; ``(..., in_dim) -> (..., out_dim)``."""
    sizes = (check_positive_int("in_dim", in_dim),
             *(check_positive_int("hidden_sizes", h) for h in hidden_sizes),
             check_positive_int("out_dim", out_dim))
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b, device=device, dtype=dtype), activation()]
    return nn.Sequential(*layers[:-1])


class ActionBox(nn.Module):
    """The env's action box [u_min, u_max] as its centre c = (u_max + u_min) / 2 and half-width s = (u_max − u_min) / 2.

    Raises ``ValueError`` for bounds that are not finite or where u_min ≥ u_max.
    """

    center: torch.Tensor
    scale: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor

    def __init__(self, low, high, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        super().__init__()
        low = as_tensor("action_low", np.asarray(low, dtype=np.float64)).reshape(-1)
        high = as_tensor("action_high", np.asarray(high, dtype=np.float64)).reshape(-1)
        if low.shape != high.shape:
            raise ValueError(f"action_high: expected the shape of action_low {tuple(low.shape)}, "
                             f"got {tuple(high.shape)}")
        if not (torch.isfinite(low).all() and torch.isfinite(high).all()):
            raise ValueError(f"action_low, action_high: expected finite bounds (a bounded Box action space), "
                             f"got low={low.tolist()}, high={high.tolist()}")
        if not bool((low < high).all()):
            raise ValueError(f"action_low, action_high: expected low < high in every dimension, "
                             f"got low={low.tolist()}, high={high.tolist()}")
        device = resolve_device(device)
        self.register_buffer("low", low.to(device=device, dtype=dtype))
        self.register_buffer("high", high.to(device=device, dtype=dtype))
        self.register_buffer("center", ((high + low) / 2).to(device=device, dtype=dtype))
        self.register_buffer("scale", ((high - low) / 2).to(device=device, dtype=dtype))

    @property
    def dim(self) -> int:
        """A, the number of action dimensions."""
        return int(self.center.shape[0])

    def clip(self, action: torch.Tensor) -> torch.Tensor:
        """clip(u, u_min, u_max) over the last axis."""
        return torch.maximum(torch.minimum(action, self.high), self.low)


class PolicySample(NamedTuple):
    """What a policy hands the loops for a batch of states ``(M, O)``."""

    action: torch.Tensor
    """u, the action the environment (or the model) receives, inside the box: (M, A)"""
    raw_action: torch.Tensor
    """the sample the log-probability refers to (ũ for :class:`GaussianPolicy`, u for SAC's): (M, A)"""
    log_prob: torch.Tensor
    """log μ_θ(raw_action | i): (M,)"""


class TanhGaussianPolicy(nn.Module):
    """SAC's actor μ_θ(u | i): u = c + s ⊙ tanh(z), z ~ N(m_θ(i), diag σ_θ(i)²).

    The log-density of u follows from the change of variables u = c + s tanh(z):

        log μ_θ(u | i) = Σ_a [ log N(z_a | m_a, σ_a²) − log s_a − log(1 − tanh(z_a)²) ],
        log(1 − tanh(z)²) = 2 (log 2 − z − softplus(−2 z))          (stable for large |z|).

    log σ_θ is squashed into [log_std_min, log_std_max] by a tanh (CleanRL / SAC-v2).

    Args:
        obs_dim: O. action_low, action_high: the box, (A,) each.
        hidden_sizes: widths of the hidden layers of the network (i) ↦ (m, log σ).
    """

    def __init__(self, obs_dim: int, action_low, action_high, hidden_sizes: Sequence[int] = (256, 256), *,
                 log_std_min: float = -5.0, log_std_max: float = 2.0,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        super().__init__()
        device = resolve_device(device)
        self.box = ActionBox(action_low, action_high, device=device, dtype=dtype)
        self.obs_dim = check_positive_int("obs_dim", obs_dim)
        self.act_dim = self.box.dim
        self.net = mlp(obs_dim, hidden_sizes, 2 * self.act_dim, device=device, dtype=dtype)
        self.log_std_min, self.log_std_max = float(log_std_min), float(log_std_max)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(m_θ(i), log σ_θ(i)), each ``(..., A)``, for ``obs: (..., O)``."""
        mean, raw_log_std = self.net(obs).chunk(2, dim=-1)
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (torch.tanh(raw_log_std) + 1)
        return mean, log_std

    def sample(self, obs: torch.Tensor, generator: torch.Generator | None = None,
               deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """u = c + s tanh(m + σ ε), ε ~ N(0, I) (reparameterised: gradients flow to θ), and log μ_θ(u | i).

        ``deterministic=True`` returns the squashed mean c + s tanh(m) (and its log-density at ε = 0).
        Shapes: ``obs (..., O)`` -> action ``(..., A)``, log_prob ``(...)``.
        """
        mean, log_std = self(obs)
        if deterministic:
            noise = torch.zeros_like(mean)
        else:
            noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        z = mean + log_std.exp() * noise
        log_prob = (-0.5 * noise.square() - log_std - 0.5 * _LOG_2PI).sum(-1)
        log_one_minus_tanh_sq = 2.0 * (math.log(2.0) - z - nn.functional.softplus(-2.0 * z))
        log_prob = log_prob - (log_one_minus_tanh_sq + torch.log(self.box.scale)).sum(-1)
        return self.box.center + self.box.scale * torch.tanh(z), log_prob

    def policy_sample(self, obs: torch.Tensor, generator: torch.Generator | None = None,
                      deterministic: bool = False) -> PolicySample:
        """:meth:`sample` as a :class:`PolicySample` (the action is its own raw action)."""
        action, log_prob = self.sample(obs, generator, deterministic)
        return PolicySample(action, action, log_prob)


class GaussianPolicy(nn.Module):
    """π_θ(ũ | i) = N(ũ | m_θ(i), diag exp(2 log σ)), with a learned state-independent log σ.

    The network works in normalised action units: the env receives u = clip(c + s ⊙ ũ, u_min, u_max)
    (c, s the box's centre and half-width), and log π_θ refers to the unclipped ũ, as in PPO's
    reference implementations. The mean head is initialised small (×0.01) so a fresh policy acts
    near the box's centre.

    Args:
        obs_dim: O. action_low, action_high: the box, (A,) each.
        hidden_sizes: widths of the hidden layers of m_θ.
        init_log_std: log σ at initialisation (normalised units).
        activation: hidden activation (tanh, as PPO's reference implementations use).
    """

    def __init__(self, obs_dim: int, action_low, action_high, hidden_sizes: Sequence[int] = (64, 64), *,
                 init_log_std: float = 0.0, activation: type[nn.Module] = nn.Tanh,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        super().__init__()
        device = resolve_device(device)
        self.box = ActionBox(action_low, action_high, device=device, dtype=dtype)
        self.obs_dim = check_positive_int("obs_dim", obs_dim)
        self.act_dim = self.box.dim
        self.mean_net = mlp(obs_dim, hidden_sizes, self.act_dim, activation=activation, device=device, dtype=dtype)
        with torch.no_grad():
            self.mean_net[-1].weight.mul_(0.01)
            self.mean_net[-1].bias.zero_()
        self.log_std = nn.Parameter(torch.full((self.act_dim,), float(init_log_std), device=device, dtype=dtype))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(m_θ(i), log σ) in normalised action units: ``obs (..., O)`` -> ``(..., A)``, ``(A,)``."""
        return self.mean_net(obs), self.log_std

    def log_prob(self, obs: torch.Tensor, raw_action: torch.Tensor) -> torch.Tensor:
        """log π_θ(ũ | i) = Σ_a −½ ((ũ_a − m_a) / σ_a)² − log σ_a − ½ log 2π: ``(..., O), (..., A) -> (...)``."""
        mean, log_std = self(obs)
        return (-0.5 * ((raw_action - mean) * torch.exp(-log_std)).square() - log_std - 0.5 * _LOG_2PI).sum(-1)

    def entropy(self) -> torch.Tensor:
        """H[π_θ(· | i)] = Σ_a (log σ_a + ½ log 2πe), the same for every state (a scalar)."""
        return (self.log_std + 0.5 * (_LOG_2PI + 1.0)).sum()

    def to_env(self, raw_action: torch.Tensor) -> torch.Tensor:
        """u = clip(c + s ⊙ ũ, u_min, u_max)."""
        return self.box.clip(self.box.center + self.box.scale * raw_action)

    def to_raw(self, action: torch.Tensor) -> torch.Tensor:
        """ũ = (u − c) / s, the inverse of :meth:`to_env` inside the box (behaviour cloning's targets)."""
        return (action - self.box.center) / self.box.scale

    def policy_sample(self, obs: torch.Tensor, generator: torch.Generator | None = None,
                      deterministic: bool = False) -> PolicySample:
        """ũ ~ π_θ(· | i) (ũ = m_θ(i) when ``deterministic``), its env action and log π_θ(ũ | i)."""
        mean, log_std = self(obs)
        if deterministic:
            raw = mean
        else:
            raw = mean + log_std.exp() * torch.randn(mean.shape, generator=generator, device=mean.device,
                                                     dtype=mean.dtype)
        log_prob = (-0.5 * ((raw - mean) * torch.exp(-log_std)).square() - log_std - 0.5 * _LOG_2PI).sum(-1)
        return PolicySample(self.to_env(raw), raw, log_prob)


class EnsembleQ(nn.Module):
    """K critics Q_φ1(i, u), …, Q_φK(i, u) in one batched network (SAC's twin critics: K = 2).

    Layer ℓ of critic k computes h_k^ℓ = σ(b_k^ℓ + h_k^{ℓ−1} W_k^ℓ); all K run in one ``baddbmm`` per
    layer (:class:`~mbrl_course.models.EnsembleLinear`), the first layer as one ``matmul`` that
    broadcasts the shared input [i, u] over the critics. Initialised like ``nn.Linear``
    (W, b ~ U(−1/√in, 1/√in)), each critic independently.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden_sizes: Sequence[int] = (256, 256), *,
                 num_critics: int = 2, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        super().__init__()
        self.obs_dim = check_positive_int("obs_dim", obs_dim)
        self.act_dim = check_positive_int("act_dim", act_dim)
        self.num_critics = check_positive_int("num_critics", num_critics)
        device = resolve_device(device)
        sizes = (obs_dim + act_dim, *(check_positive_int("hidden_sizes", h) for h in hidden_sizes), 1)
        self.layers = nn.ModuleList(
            EnsembleLinear(num_critics, a, b, device=device, dtype=dtype) for a, b in zip(sizes[:-1], sizes[1:])
        )
        with torch.no_grad():
            for layer in self.layers:
                bound = 1.0 / math.sqrt(layer.in_features)
                layer.weight.uniform_(-bound, bound)
                layer.bias.uniform_(-bound, bound)

    def forward(self, obs: torch.Tensor, action: torch.Tensor, *, detach_params: bool = False) -> torch.Tensor:
        """Q_φk(i, u) for every critic k: ``obs (B, O)``, ``action (B, A)`` -> ``(K, B)``.

        ``detach_params=True`` treats φ as constants: gradients flow to the inputs only (SAC's actor
        loss differentiates Q_φ(i, u_θ(i)) with respect to θ through u, never to φ).
        """
        h = torch.cat([obs, action], dim=-1)
        last = len(self.layers) - 1
        for ell, layer in enumerate(self.layers):
            weight, bias = (layer.weight.detach(), layer.bias.detach()) if detach_params else (layer.weight, layer.bias)
            h = torch.matmul(h, weight) + bias if ell == 0 else torch.baddbmm(bias, h, weight)
            if ell < last:
                h = torch.relu(h)
        return h.squeeze(-1)
