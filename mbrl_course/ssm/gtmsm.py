"""GTM-SM: the generative temporal model with spatial memory (Fraccaro et al., 2018), the slide's "external memory".

Given a context (X_{1:τ}, A_{1:τ}) = {(x_1, a_1), …, (x_τ, a_τ)}, GTM-SM predicts X_{τ+1:τ+T} from the actions
A_{τ+1:τ+T} alone. The slide's generative process, in its notation (s_t where the agent is, z_t the frame's
embedding):

    p(X_{τ+1:τ+T}, Z, S | X_{1:τ}, A_{1:τ+T}) = Π_{t=τ+1}^{τ+T} p(x_t | z_t) p(z_t | s_t, m(X_{1:τ}, Ẑ_{1:τ}, Ŝ_{1:τ}, s_t)) p(s_t | s_{t−1}, a_t)

- **p(s_t | s_{t−1}, a_t)** = N(s_{t−1} + Δt·a_t, σ_s² I), s_0 = 0, with a learnable step Δt > 0 and noise scale
  σ_s > 0 (the paper learns the position dynamics from the actions; the world's actions are velocities, so a
  learned time step is the whole map: s_t is the agent's displacement from its start, in units of Δt pixels).
  Ancestral sampling from k = 1 to t gives p(s_t | A_{1:t}) = N(Δt Σ_{k≤t} a_k, t σ_s² I)
  (:meth:`GTMSM.sample_states`).
- **q(z_t | x_t)** = N(μ_ψ(x_t), diag σ_ψ(x_t)²): a conv encoder of the 32×32×3 frame (:class:`FrameEncoder`).
- **p(x_t | z_t)** = Π_pixels N(x; μ_θ(z_t), σ_x²): a conv decoder with a sigmoid mean and one learnable pixel
  scale σ_x (Gaussian rather than Bernoulli: the frames are continuous colours in [0, 1]) (:class:`FrameDecoder`).
- **the memory** m(X_{1:τ}, Ẑ_{1:τ}, Ŝ_{1:τ}, s_t) = {(d_k, ŝ_k, ẑ_k) | k = 1..K}, the K nearest context items
  to the query s_t with d_k = |ŝ_k − s_t|₂ (:func:`knn_memory`; K > τ or τ = 0 are refused).
- **p(z_t | s_t, M)** (:class:`MemoryPrior`): each neighbour k gives features f_k = MLP([s_t − ŝ_k, d_k, ẑ_k]);
  attention weights w = softmax_k(v·f_k) pool them, h = Σ_k w_k f_k, and
  p(z_t | s_t, M) = N(Σ_k w_k ẑ_k + Δμ(h), diag σ(h)²): a distance-aware weighted mixture of the neighbours'
  embeddings plus a learned correction (the offset s_t − ŝ_k tells the network which way the view moved).
  With ``memory=False`` (the ablation) p(z_t | s_t) = N(μ(s_t), diag σ(s_t)²) from s_t alone
  (:class:`StatePrior`): without the memory the model cannot know what it will see.

**Two-phase learning** (:meth:`GTMSM.elbo`). Memorisation (t = 1..τ): the filtering distribution is
approximated by q(s_t, z_t | X_{1:t}, A_{1:t}) = q(z_t | x_t) p(s_t | A_{1:t}): ŝ_k by ancestral sampling of the
transition, ẑ_k ~ q(z_k | x_k). Inference (t = τ+1..τ+T), the slide's first ELBO:

    log p(X_{τ+1:τ+T} | X_{1:τ}, A_{1:τ+T}) ≥ Σ_{t=τ+1}^{τ+T} { E_{q(z_t|x_t)}[log p(x_t | z_t)] − E_{p(s_t|A_{1:t})}[KL(q(z_t | x_t) || p(z_t | s_t, M))] }

with one reparameterised sample of s_{1:τ+T} (one ancestral path, so the memory's keys ŝ_k and the queries
s_t share it) and of each z; the Gaussian KL is exact. The slide's (and the paper's) second ELBO, with a state
posterior q(s_t | s_{t−1}, z_t, a_t, M) that also localises the agent from what it sees, is **not**
implemented: the world's actions are exact velocities, so p(s_t | A_{1:t}) already localises it.

:meth:`GTMSM.predict` samples s_{1:τ+T} ancestrally, fills the memory with the context's (ŝ_k, E_q[ẑ_k]) and
decodes the mean of p(z_t | s_t, M) for t > τ. :meth:`GTMSM.memory_map` decodes the memory's embeddings and
their positions ŝ_k / Δt: the map rebuilt from memory. :func:`train_gtmsm` maximises the ELBO with Adam.

The memory always returns K neighbours, however far: what p(z_t | s_t, M) does with distant ones (fall back to
a broad, average frame) it learns only from training targets far from the context. Trained only on revisits
(as in ``benchmarks/gtmsm.py``), it recalls the nearest context frames confidently even where the agent has
never been.

Frames: ``(B, T, 3, 32, 32)``, uint8 (0..255, divided by 255) or floating in [0, 1]; actions ``(B, T, 2)``.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from mbrl_course._checks import check_finite, check_positive_float, check_positive_int
from mbrl_course.budget import by_budget
from mbrl_course.ssm._gaussian import LOG_2PI, diagonal_scale, kl_divergence, rsample
from mbrl_course.ssm.training import TrainResult, ascent_steps, save_checkpoint
from mbrl_course.ssm.worlds import CROP

__all__ = [
    "FrameDecoder",
    "FrameEncoder",
    "GTMSM",
    "GTMSMConfig",
    "GTMSMELBO",
    "GTMSMTrainConfig",
    "MemoryPrior",
    "Neighbours",
    "StatePrior",
    "knn_memory",
    "train_gtmsm",
]

FRAME_SHAPE = (3, CROP, CROP)


# ------------------------------------------------------------------------------------------- the memory
@dataclass
class Neighbours:
    """m(X_{1:τ}, Ẑ_{1:τ}, Ŝ_{1:τ}, s_t) = {(d_k, ŝ_k, ẑ_k) | k = 1..K}, nearest first."""

    distances: torch.Tensor
    """d_k = |ŝ_k − s_t|₂: (..., T, K)"""
    keys: torch.Tensor
    """ŝ_k: (..., T, K, d_s)"""
    values: torch.Tensor
    """ẑ_k: (..., T, K, d_z)"""
    index: torch.Tensor
    """which context step k ∈ 0..τ−1 each neighbour is: (..., T, K) int64"""


def knn_memory(keys: torch.Tensor, values: torch.Tensor, queries: torch.Tensor, num_neighbours: int) -> Neighbours:
    """The K nearest context items (ŝ_k, ẑ_k) to each query s_t, with their distances d_k = |ŝ_k − s_t|₂.

    ``keys: (..., τ, d_s)`` Ŝ_{1:τ}, ``values: (..., τ, d_z)`` Ẑ_{1:τ}, ``queries: (..., T, d_s)`` s_t; leading
    dimensions must agree. The search itself (which k) carries no gradient; d_k, ŝ_k and ẑ_k do (d_k is
    recomputed from the gathered keys as √max(|ŝ_k − s_t|², 1e-12), so that its gradient stays finite at 0).
    Refuses an empty memory (τ = 0) and K > τ.
    """
    K = check_positive_int("num_neighbours", num_neighbours)
    for name, x in (("keys", keys), ("values", values), ("queries", queries)):
        if not isinstance(x, torch.Tensor) or x.ndim < 2:
            raise ValueError(f"{name}: expected a tensor of shape (..., n, d), got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    tau = keys.shape[-2]
    if tau == 0:
        raise ValueError("keys: the memory is empty (τ = 0 context steps); GTM-SM needs at least "
                         f"K = {K} context frames to look up")
    if K > tau:
        raise ValueError(f"num_neighbours: expected K <= τ = {tau} (the context's length), got {K}")
    if values.shape[:-1] != keys.shape[:-1]:
        raise ValueError(f"values: expected shape {tuple(keys.shape[:-1])} + (d_z,) to match keys, "
                         f"got {tuple(values.shape)}")
    if queries.shape[:-2] != keys.shape[:-2] or queries.shape[-1] != keys.shape[-1]:
        raise ValueError(f"queries: expected shape {tuple(keys.shape[:-2])} + (T, {keys.shape[-1]}), "
                         f"got {tuple(queries.shape)}")
    with torch.no_grad():
        index = torch.cdist(queries, keys).topk(K, dim=-1, largest=False, sorted=True).indices   # (..., T, K)
    T = queries.shape[-2]

    def gather(x: torch.Tensor) -> torch.Tensor:   # x: (..., τ, d) -> (..., T, K, d)
        expanded = x.unsqueeze(-3).expand(*x.shape[:-2], T, tau, x.shape[-1])
        return torch.gather(expanded, -2, index.unsqueeze(-1).expand(*index.shape, x.shape[-1]))

    near_keys, near_values = gather(keys), gather(values)
    distances = (near_keys - queries.unsqueeze(-2)).square().sum(-1).clamp_min(1e-12).sqrt()
    return Neighbours(distances=distances, keys=near_keys, values=near_values, index=index)


# ------------------------------------------------------------------------------------------- networks
class FrameEncoder(nn.Module):
    """q(z_t | x_t) = N(μ_ψ(x_t), diag σ_ψ(x_t)²): three stride-2 convolutions (32→16→8→4) and a linear head."""

    def __init__(self, latent_dim: int, channels: int = 32) -> None:
        super().__init__()
        c = channels
        self.net = nn.Sequential(
            nn.Conv2d(3, c, 4, 2, 1), nn.ReLU(), nn.Conv2d(c, 2 * c, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(2 * c, 2 * c, 4, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(2 * c * 16, 2 * latent_dim))

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``frames: (..., 3, 32, 32)`` in [0, 1] -> (μ, L = diag σ): ``(..., d_z)``, ``(..., d_z, d_z)``."""
        out = self.net(frames.reshape(-1, *FRAME_SHAPE)).reshape(*frames.shape[:-3], -1)
        mean, raw = out.chunk(2, -1)
        return mean, diagonal_scale(raw)


class FrameDecoder(nn.Module):
    """p(x_t | z_t) = Π_pixels N(x; μ_θ(z_t), σ_x²): a linear layer to 4×4 maps, three transposed convolutions, sigmoid."""

    def __init__(self, latent_dim: int, channels: int = 32, pixel_std: float = 0.1) -> None:
        super().__init__()
        c = channels
        self.net = nn.Sequential(
            nn.Linear(latent_dim, 2 * c * 16), nn.ReLU(), nn.Unflatten(-1, (2 * c, 4, 4)),
            nn.ConvTranspose2d(2 * c, 2 * c, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(2 * c, c, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(c, 3, 4, 2, 1), nn.Sigmoid())
        self.log_pixel_std = nn.Parameter(torch.tensor(math.log(pixel_std)))

    @property
    def pixel_std(self) -> torch.Tensor:
        """σ_x"""
        return self.log_pixel_std.exp()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """μ_θ(z): ``z: (..., d_z)`` -> ``(..., 3, 32, 32)`` in (0, 1)."""
        return self.net(z.reshape(-1, z.shape[-1])).reshape(*z.shape[:-1], *FRAME_SHAPE)

    def log_prob(self, frames: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x | z) = Σ_pixels −½ ((x − μ_θ(z)) / σ_x)² − log σ_x − ½ log 2π: (...)."""
        residual = (frames - self(z)) / self.pixel_std
        return (-0.5 * residual.square() - self.log_pixel_std - 0.5 * LOG_2PI).sum((-3, -2, -1))


class MemoryPrior(nn.Module):
    """p(z_t | s_t, M) = N(Σ_k w_k ẑ_k + Δμ(h), diag σ(h)²), h = Σ_k w_k f_k, f_k = MLP([s_t − ŝ_k, d_k, ẑ_k]), w = softmax(v·f)."""

    def __init__(self, state_dim: int, latent_dim: int, hidden: int = 128) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Linear(state_dim + 1 + latent_dim, hidden), nn.ReLU(),
                                      nn.Linear(hidden, hidden), nn.ReLU())
        self.attention = nn.Linear(hidden, 1)
        self.head = nn.Linear(hidden, 2 * latent_dim)

    def forward(self, states: torch.Tensor, memory: Neighbours) -> tuple[torch.Tensor, torch.Tensor]:
        """``states: (..., T, d_s)`` s_t, ``memory`` its K neighbours -> (μ, L): ``(..., T, d_z)``, ``(..., T, d_z, d_z)``."""
        offsets = states.unsqueeze(-2) - memory.keys                                    # s_t − ŝ_k: (..., T, K, d_s)
        f = self.features(torch.cat([offsets, memory.distances.unsqueeze(-1), memory.values], -1))
        w = torch.softmax(self.attention(f), dim=-2)                                    # (..., T, K, 1)
        h = (w * f).sum(-2)
        correction, raw = self.head(h).chunk(2, -1)
        return (w * memory.values).sum(-2) + correction, diagonal_scale(raw)


class StatePrior(nn.Module):
    """p(z_t | s_t) = N(μ(s_t), diag σ(s_t)²): the ``memory=False`` ablation, z_t from the position alone."""

    def __init__(self, state_dim: int, latent_dim: int, hidden: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(state_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 2 * latent_dim))

    def forward(self, states: torch.Tensor, memory: Neighbours | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``states: (..., T, d_s)`` -> (μ, L); ``memory`` is ignored."""
        mean, raw = self.net(states).chunk(2, -1)
        return mean, diagonal_scale(raw)


# ------------------------------------------------------------------------------------------- the model
@dataclass
class GTMSMConfig:
    """The sizes and initial values of a :class:`GTMSM`."""

    latent_dim: int = 32
    """d_z, the frame embedding's dimension"""
    action_dim: int = 2
    """d_a = d_s: the state is a position, moved by velocity actions"""
    num_neighbours: int = 8
    """K, the neighbours the memory returns"""
    hidden: int = 128
    """width of the prior's MLPs"""
    channels: int = 16
    """channels of the encoder's first convolution (then twice that)"""
    memory: bool = True
    """False: the ablation p(z_t | s_t) without memory"""
    step_size: float = 0.1
    """initial Δt of p(s_t | s_{t−1}, a_t)"""
    state_noise: float = 0.01
    """initial σ_s of p(s_t | s_{t−1}, a_t)"""
    pixel_std: float = 0.1
    """initial σ_x of p(x_t | z_t)"""


@dataclass
class GTMSMELBO:
    """The inference phase's ELBO, per step t = τ+1..τ+T, and the Gaussians it used."""

    reconstruction: torch.Tensor
    """log p(x_t | z̃_t), z̃_t ~ q(z_t | x_t): (B, T)"""
    kl: torch.Tensor
    """KL(q(z_t | x_t) || p(z_t | s̃_t, M)) at the sampled s̃_t: (B, T)"""
    posterior_mean: torch.Tensor
    """μ of q(z_t | x_t): (B, T, d_z)"""
    posterior_std: torch.Tensor
    """σ of q(z_t | x_t): (B, T, d_z)"""
    prior_mean: torch.Tensor
    """μ of p(z_t | s_t, M): (B, T, d_z)"""
    prior_std: torch.Tensor
    """σ of p(z_t | s_t, M): (B, T, d_z)"""
    states: torch.Tensor
    """the sampled path s̃_{1:τ+T}: (B, τ+T, d_s)"""

    @property
    def value(self) -> torch.Tensor:
        """E[log p(x_t | z_t)] − E[KL(q(z_t | x_t) || p(z_t | s_t, M))] per step: (B, T)."""
        return self.reconstruction - self.kl


def _std(scale_tril: torch.Tensor) -> torch.Tensor:
    return torch.diagonal(scale_tril, dim1=-2, dim2=-1)


class GTMSM(nn.Module):
    """The generative temporal model with spatial memory (see the module's docstring for the equations)."""

    def __init__(self, config: GTMSMConfig | None = None) -> None:
        super().__init__()
        cfg = self.config = config or GTMSMConfig()
        dz = check_positive_int("config.latent_dim", cfg.latent_dim)
        da = check_positive_int("config.action_dim", cfg.action_dim)
        hidden = check_positive_int("config.hidden", cfg.hidden)
        check_positive_int("config.num_neighbours", cfg.num_neighbours)
        self.encoder = FrameEncoder(dz, check_positive_int("config.channels", cfg.channels))
        self.decoder = FrameDecoder(dz, cfg.channels, check_positive_float("config.pixel_std", cfg.pixel_std))
        self.prior = MemoryPrior(da, dz, hidden) if cfg.memory else StatePrior(da, dz, hidden)
        self.log_step = nn.Parameter(torch.tensor(math.log(check_positive_float("config.step_size", cfg.step_size))))
        self.log_state_noise = nn.Parameter(torch.tensor(math.log(
            check_positive_float("config.state_noise", cfg.state_noise))))

    @property
    def step_size(self) -> torch.Tensor:
        """Δt"""
        return self.log_step.exp()

    @property
    def state_noise(self) -> torch.Tensor:
        """σ_s"""
        return self.log_state_noise.exp()

    # ----------------------------------------------------------------------------------- checks
    def check_frames(self, name: str, frames, length: int | None = None, convert: bool = True) -> torch.Tensor:
        """Refuse frames that are not ``(B, T, 3, 32, 32)`` uint8 or floating in [0, 1]; return them as floats in [0, 1].

        With ``convert`` False only check, and return ``frames`` as they came.
        """
        if not isinstance(frames, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor (B, T, 3, 32, 32), got {type(frames).__name__}")
        if frames.ndim != 5 or tuple(frames.shape[2:]) != FRAME_SHAPE:
            raise ValueError(f"{name}: expected shape (B, T, 3, {CROP}, {CROP}) (32×32 RGB crops), "
                             f"got {tuple(frames.shape)}")
        if length is not None and frames.shape[1] != length:
            raise ValueError(f"{name}: expected {length} steps, got {frames.shape[1]}")
        if frames.dtype != torch.uint8:
            if not frames.is_floating_point():
                raise TypeError(f"{name}: expected dtype torch.uint8 (0..255) or a floating dtype with values in "
                                f"[0, 1], got {frames.dtype}")
            check_finite(name, frames)
            if frames.numel() and (float(frames.min()) < 0.0 or float(frames.max()) > 1.0):
                raise ValueError(f"{name}: expected floating values in [0, 1] (or uint8 0..255), got "
                                 f"[{float(frames.min()):.3g}, {float(frames.max()):.3g}]")
        if not convert:
            return frames
        out = frames.to(device=self.log_step.device, dtype=self.log_step.dtype)
        return out / 255.0 if frames.dtype == torch.uint8 else out

    def check_actions(self, name: str, actions, batch: int, length: int | None = None) -> torch.Tensor:
        """Refuse actions that are not floating ``(B, T, d_a)``."""
        if not isinstance(actions, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor (B, T, {self.config.action_dim}), "
                            f"got {type(actions).__name__}")
        if not actions.is_floating_point():
            raise TypeError(f"{name}: expected a floating dtype, got {actions.dtype}")
        T = "T" if length is None else length
        if actions.ndim != 3 or actions.shape[0] != batch or actions.shape[2] != self.config.action_dim or (
                length is not None and actions.shape[1] != length):
            raise ValueError(f"{name}: expected shape ({batch}, {T}, {self.config.action_dim}), "
                             f"got {tuple(actions.shape)}")
        check_finite(name, actions)
        return actions.to(device=self.log_step.device, dtype=self.log_step.dtype)

    def _check_context(self, context_frames, context_actions) -> tuple[torch.Tensor, torch.Tensor]:
        xc = self.check_frames("context_frames", context_frames)
        B, tau = xc.shape[:2]
        if self.config.memory and tau == 0:
            raise ValueError("context_frames: the memory is empty (τ = 0 context steps); GTM-SM memorises "
                             f"the context, give it at least K = {self.config.num_neighbours} frames")
        if self.config.memory and tau < self.config.num_neighbours:
            raise ValueError(f"context_frames: expected at least K = {self.config.num_neighbours} context "
                             f"steps (config.num_neighbours), got τ = {tau}")
        return xc, self.check_actions("context_actions", context_actions, B, tau)

    # ----------------------------------------------------------------------------------- the pieces
    def sample_states(self, actions: torch.Tensor, generator: torch.Generator | None = None,
                      num_samples: int | None = None) -> torch.Tensor:
        """Ancestral sampling of s_t ~ p(s_t | s_{t−1}, a_t) = N(s_{t−1} + Δt a_t, σ_s² I) from s_0 = 0, k = 1..t.

        s_t = Σ_{k≤t} (Δt a_k + σ_s ε_k), ε_k ~ N(0, I), reparameterised. ``actions: (B, T, d_a)`` ->
        ``(B, T, d_s)`` (or ``(N, B, T, d_s)`` with ``num_samples`` N).
        """
        shape = actions.shape if num_samples is None else (num_samples, *actions.shape)
        eps = torch.randn(shape, generator=generator, device=actions.device, dtype=actions.dtype)
        return torch.cumsum(self.step_size * actions + self.state_noise * eps, dim=-2)

    def memorise(self, context_frames: torch.Tensor, context_states: torch.Tensor,
                 generator: torch.Generator | None = None, sample: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """The memory's contents (Ŝ_{1:τ}, Ẑ_{1:τ}): ŝ_k the given states, ẑ_k ~ q(z_k | x_k) (its mean with ``sample`` False).

        ``context_frames: (B, τ, 3, 32, 32)`` floats, ``context_states: (B, τ, d_s)``.
        """
        mean, scale = self.encoder(context_frames)
        if not sample:
            return context_states, mean
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return context_states, rsample(mean, scale, eps)

    def state_prior(self, states: torch.Tensor, keys: torch.Tensor | None, values: torch.Tensor | None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """p(z_t | s_t, M) (or p(z_t | s_t) with ``memory=False``): (μ, L), ``(B, T, d_z)``, ``(B, T, d_z, d_z)``."""
        memory = knn_memory(keys, values, states, self.config.num_neighbours) if self.config.memory else None
        return self.prior(states, memory)

    # ----------------------------------------------------------------------------------- ELBO
    def elbo(self, context_frames: torch.Tensor, context_actions: torch.Tensor, target_frames: torch.Tensor,
             target_actions: torch.Tensor, generator: torch.Generator | None = None) -> GTMSMELBO:
        """The two-phase ELBO: memorise t = 1..τ, then Σ_{t=τ+1}^{τ+T} E[log p(x_t | z_t)] − E[KL(q(z_t | x_t) || p(z_t | s_t, M))].

        ``context_frames: (B, τ, 3, 32, 32)``, ``context_actions: (B, τ, d_a)``, ``target_frames: (B, T, 3, 32, 32)``,
        ``target_actions: (B, T, d_a)``. One ancestral path s̃_{1:τ+T} ~ p(s | A_{1:τ+T}) gives the memory's keys
        ŝ_{1:τ} and the queries s̃_{τ+1:τ+T}; ẑ_k ~ q(z_k | x_k); z̃_t ~ q(z_t | x_t). Returns :class:`GTMSMELBO`.
        """
        xc, ac = self._check_context(context_frames, context_actions)
        B, tau = xc.shape[:2]
        xt = self.check_frames("target_frames", target_frames)
        if xt.shape[0] != B:
            raise ValueError(f"target_frames: expected batch size {B} (as context_frames), got {xt.shape[0]}")
        T = xt.shape[1]
        if T == 0:
            raise ValueError("target_frames: expected at least one target step, got T = 0")
        at = self.check_actions("target_actions", target_actions, B, T)
        states = self.sample_states(torch.cat([ac, at], 1), generator)                 # s̃_{1:τ+T}
        q_mean, q_scale = self.encoder(torch.cat([xc, xt], 1))                           # q(z | x) for all frames
        eps = torch.randn(q_mean.shape, generator=generator, device=q_mean.device, dtype=q_mean.dtype)
        z = rsample(q_mean, q_scale, eps)                                               # ẑ_{1:τ}, z̃_{τ+1:τ+T}
        p_mean, p_scale = self.state_prior(states[:, tau:], states[:, :tau], z[:, :tau])  # p(z_t | s̃_t, M)
        q_mean_t, q_scale_t = q_mean[:, tau:], q_scale[:, tau:]
        kl = kl_divergence(q_mean_t, q_scale_t, p_mean, p_scale)                        # KL(q(z_t|x_t) || p(z_t|s_t,M))
        reconstruction = self.decoder.log_prob(xt, z[:, tau:])                          # log p(x_t | z̃_t)
        return GTMSMELBO(reconstruction=reconstruction, kl=kl, posterior_mean=q_mean_t,
                         posterior_std=_std(q_scale_t), prior_mean=p_mean, prior_std=_std(p_scale), states=states)

    # ----------------------------------------------------------------------------------- prediction
    @torch.no_grad()
    def predict(self, context_frames: torch.Tensor, context_actions: torch.Tensor, future_actions: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Predicted crops x̂_t = μ_θ(E[z_t | s̃_t, M]) for t = τ+1..τ+T from the actions and the memory.

        s̃_{1:τ+T} by ancestral sampling of p(s_t | s_{t−1}, a_t); the memory holds (ŝ_k, E_q[ẑ_k | x_k]);
        z_t is the mean of p(z_t | s̃_t, M) and the crop the decoder's mean. ``context_frames: (B, τ, 3, 32, 32)``,
        ``context_actions: (B, τ, d_a)``, ``future_actions: (B, T, d_a)`` -> ``(B, T, 3, 32, 32)`` in [0, 1].
        """
        xc, ac = self._check_context(context_frames, context_actions)
        tau = xc.shape[1]
        af = self.check_actions("future_actions", future_actions, xc.shape[0])
        states = self.sample_states(torch.cat([ac, af], 1), generator)
        keys, values = self.memorise(xc, states[:, :tau], sample=False) if self.config.memory else (None, None)
        mean, _ = self.state_prior(states[:, tau:], keys, values)
        return self.decoder(mean)

    @torch.no_grad()
    def memory_map(self, context_frames: torch.Tensor, context_actions: torch.Tensor,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The map rebuilt from memory: each item's inferred position ŝ_k / Δt (pixels from p_0) and decoded crop μ_θ(E[ẑ_k]).

        ``context_frames: (B, τ, 3, 32, 32)``, ``context_actions: (B, τ, d_a)`` -> positions ``(B, τ, d_s)`` and
        crops ``(B, τ, 3, 32, 32)``.
        """
        xc, ac = self._check_context(context_frames, context_actions)
        keys, values = self.memorise(xc, self.sample_states(ac, generator), sample=False)
        return keys / self.step_size, self.decoder(values)


# ------------------------------------------------------------------------------------------- training
@dataclass
class GTMSMTrainConfig:
    """How :func:`train_gtmsm` climbs the two-phase ELBO; ``num_steps`` defaults to the compute tier's."""

    num_steps: int = field(default_factory=lambda: by_budget(smoke=10, default=900, full=5000))
    """Adam steps (smoke 10, default 900 ≈ 2 min on one idle core, full 5000)"""
    batch_size: int = 16
    """sequences per step, drawn without replacement"""
    learning_rate: float = 3e-3
    """Adam's step size"""
    grad_clip: float | None = 10.0
    """clip the gradient's global norm (of the loss per pixel) to this (None: no clipping)"""
    checkpoint_every: int = 100
    """write the checkpoint every this many steps (and at the end)"""
    progress: bool = True
    """show a tqdm progress bar"""
    seed: int = 0
    """seed of the generator for the mini-batches and the reparameterisation noise"""


def train_gtmsm(model: GTMSM, frames: torch.Tensor, actions: torch.Tensor, context_steps: int,
                config: GTMSMTrainConfig | None = None, *, checkpoint_path: str | os.PathLike | None = None,
                resume: bool = True) -> TrainResult:
    """Maximise the two-phase ELBO with Adam: each step, a mini-batch of sequences split into context 1..τ and target τ+1..L.

    ``frames: (B, L, 3, 32, 32)`` (uint8 or floats in [0, 1]), ``actions: (B, L, d_a)``, ``context_steps`` τ < L.
    Each step's loss is −ELBO / (T · 3 · 32 · 32), the negative ELBO per target step and pixel.
    ``checkpoint_path``: the model, Adam's state, the generator and the history are written there every
    ``config.checkpoint_every`` steps and at the end; with ``resume`` and the file there, the run continues from
    it up to ``config.num_steps`` in total. The model is trained in place; returns a
    :class:`~mbrl_course.ssm.TrainResult` whose ``history`` is the ELBO per target step and pixel before each step.
    """
    cfg = config or GTMSMTrainConfig()
    num_steps = check_positive_int("config.num_steps", cfg.num_steps)
    lr = check_positive_float("config.learning_rate", cfg.learning_rate)
    every = check_positive_int("config.checkpoint_every", cfg.checkpoint_every)
    model.check_frames("frames", frames, convert=False)  # batches are converted as drawn
    B, L = frames.shape[:2]
    model.check_actions("actions", actions, B, L)
    tau = check_positive_int("context_steps", context_steps, allow_zero=True)
    if not tau < L:
        raise ValueError(f"context_steps: expected τ < the sequence length {L}, got {tau}")
    batch_size = min(check_positive_int("config.batch_size", cfg.batch_size), B)
    device = model.log_step.device
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    pixels = (L - tau) * math.prod(FRAME_SHAPE)
    history: list[float] = []
    start = 0
    path = Path(checkpoint_path) if checkpoint_path is not None else None
    if path is not None and resume and path.exists():
        ckpt = torch.load(path, map_location=device, weights_only=False)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        generator.set_state(ckpt["generator"])
        history, start = list(ckpt["history"]), int(ckpt["step"])

    def checkpoint(step: int) -> None:
        if path is not None:
            save_checkpoint(path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "generator": generator.get_state(), "history": history, "step": step,
                         "config": asdict(cfg), "model_config": asdict(model.config)})

    def objective(step: int) -> torch.Tensor:
        idx = torch.randperm(B, generator=generator, device=device)[:batch_size].to(frames.device)
        x, a = frames[idx], actions[idx]
        terms = model.elbo(x[:, :tau], a[:, :tau], x[:, tau:], a[:, tau:], generator)
        return terms.value.sum(1).mean() / pixels  # the ELBO per target step and pixel

    ascent_steps(objective, list(model.parameters()), optimizer, range(start, num_steps), history,
                 grad_clip=cfg.grad_clip, progress=cfg.progress, desc="train_gtmsm", postfix="elbo_per_pixel",
                 checkpoint=checkpoint, checkpoint_every=every, checkpoint_path=path)
    checkpoint(num_steps)
    return TrainResult(history, num_steps, start)
