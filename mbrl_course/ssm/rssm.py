"""Recurrent state-space models: the slide's "deterministic transition with random state input" (VRNN, PlaNet's RSSM),
with its two ablations, a deterministic RNN and a Markovian stochastic SSM, as one model with switches.

The slide's design (Chung et al., 2015; Hafner et al., 2019), with actions a_{t-1} and an image encoder e_t = enc(y_t):

    h_t = f_θ(h_{t-1}, s_{t-1}, a_{t-1})              deterministic path, a GRU
    s_t ~ p(s_t | h_t)                                 prior (transition), a diagonal Gaussian
    s_t ~ q(s_t | h_t, e_t)                            posterior (filter), a diagonal Gaussian
    y_t ~ p(y_t | s_t, h_t) = N(dec([h_t, s_t]), I)    decoder (:class:`~mbrl_course.ssm.conv.ConvDecoder` for frames)
    r_t ~ p(r_t | s_t, h_t) = N(rew([h_t, s_t]), 1)    reward head

and its ELBO with PlaNet's free nats (the clamp on each step's KL, summed over the latent dimensions):

    L = Σ_t E_q[log p(y_t | s_t, h_t) + log p(r_t | s_t, h_t)] − Σ_t max(KL(q(s_t | h_t, e_t) || p(s_t | h_t)), free nats)

One class, :class:`RecurrentSSM`, with three switches:

- :class:`RSSM` (PlaNet): as above.
- :class:`VRNN` (the slide's "early example", Chung et al., 2015): the recurrence also reads the previous observation,
  h_t = f_θ(h_{t-1}, s_{t-1}, φ(y_{t-1}), a_{t-1}) with φ the encoder (in open loop, φ of the decoded prediction).
- ``stochastic=False``: the Gaussians collapse to their means, s_t = μ_q(h_t, e_t) when a frame is seen and
  s_t = μ_p(h_t) in open loop: a deterministic RNN (PlaNet's "RNN" ablation). Its KL term becomes the limit of
  the KL between two Gaussians of equal fixed unit variance, ½ |μ_q − μ_p|², which trains μ_p to predict the
  filtered state; there is no information to bound, so free nats are not applied.
- ``deterministic_size=0``: no h; the transition reads s_{t-1} and a_{t-1} only, p(s_t | s_{t-1}, a_{t-1}),
  q(s_t | s_{t-1}, a_{t-1}, e_t), p(y_t | s_t): :class:`StochasticSSM`, PlaNet's "SSM" ablation and the Markovian
  SSM of :mod:`mbrl_course.ssm.elbo` (the tests check that the two ELBOs agree on the same weights and samples).

**Time indexing.** ``frames[:, t]`` is y_t, the frame seen after the action ``actions[:, t]`` (= a_{t-1} in the
slide's indexing) was taken and the reward ``rewards[:, t]`` received. The state before the first frame is
:meth:`~RecurrentSSM.initial_state` (zeros), so ``actions[:, 0]`` is the action that led to the first frame
(zero when there was none).

**Interface for PlaNet and Dreamer.** A :class:`LatentState` (h, s) with ``features`` = [h, s];
``observe(frames, actions) -> (posterior states, prior states)`` over whole sequences; ``observe_step(state,
action, frame)`` for acting online; ``imagine(initial_state, actions=... | policy=..., horizon=...)`` open loop and
differentiable (reparameterised samples); ``reward(features)``; ``decode(features)``. Latent overshooting
(PlaNet section 4) is ``loss(..., overshooting_distance=D)``. ``WorldModelConfig(representation="contrastive")``
is Dreamer's contrastive variant: a noise-contrastive bound (:func:`contrastive_bound`) replaces the reconstruction
term, the decoder learning on stop-gradient features for the pictures only. :func:`train_world_model` fits any of them;
:func:`open_loop_prediction` is the video-prediction benchmark's predictor. Everything is batched over leading
dimensions and runs on the device of the model's parameters.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch
import torch.nn.functional as nnf
from torch import nn
from tqdm.auto import tqdm

from mbrl_course._checks import (
    check_choice,
    check_positive_float,
    check_positive_int,
    resolve_device,
)
from mbrl_course.budget import by_budget
from mbrl_course.ssm.conv import ConvDecoder, ConvEncoder, as_images, check_frames
from mbrl_course.ssm.generative import mlp
from mbrl_course.ssm.training import save_checkpoint

LOG_2PI = math.log(2.0 * math.pi)
KINDS = ("rnn", "ssm", "vrnn", "rssm")
REPRESENTATIONS = ("reconstruction", "contrastive")


# ----------------------------------------------------------------------------------------------- the latent state
@dataclass
class LatentState:
    """The latent state (h_t, s_t) of a batch (leading dimensions ``...``, e.g. (B,) or (B, T)).

    ``mean``, ``std``: the diagonal Gaussian s_t was drawn from (prior or posterior); ``embedding``: VRNN only,
    φ(y_t) of the frame seen at t (or of the predicted frame in open loop), which the next step's recurrence reads.
    """

    h: torch.Tensor
    """h_t, the deterministic state: (..., H) (H = 0 for a model without recurrence)"""
    s: torch.Tensor
    """s_t, the stochastic state: (..., S)"""
    mean: torch.Tensor
    """μ_t of the Gaussian over s_t: (..., S)"""
    std: torch.Tensor
    """σ_t of the Gaussian over s_t: (..., S)"""
    embedding: torch.Tensor | None = None
    """φ(y_t): (..., E), VRNN only"""

    @property
    def features(self) -> torch.Tensor:
        """[h_t, s_t]: (..., H + S), what the decoder, the reward head and a policy read."""
        return torch.cat([self.h, self.s], -1)

    def __getitem__(self, index) -> LatentState:
        """The same index applied to every tensor (e.g. ``states[:, t]``)."""
        return LatentState(*(None if v is None else v[index] for v in self._values()))

    def _values(self) -> tuple:
        return tuple(getattr(self, f.name) for f in fields(self))

    def repeat(self, n: int) -> LatentState:
        """The state of a single batch element (leading shape () or (1,)) copied ``n`` times: leading shape (n,)."""
        n = check_positive_int("n", n)
        if self.s.ndim > 2 or (self.s.ndim == 2 and self.s.shape[0] != 1):
            raise ValueError(f"state: expected one state (s of shape (S,) or (1, S)), got s of shape {tuple(self.s.shape)}")
        return LatentState(*(None if v is None else v.reshape(-1).expand(n, v.shape[-1])
                             for v in self._values()))

    def detach(self) -> LatentState:
        """A copy cut from the graph (e.g. Dreamer's starting states)."""
        return LatentState(*(None if v is None else v.detach() for v in self._values()))

    @staticmethod
    def stack(states: list[LatentState], dim: int = 1) -> LatentState:
        """Stack states of equal shapes along a new dimension ``dim`` (time: 1)."""
        first = states[0]
        return LatentState(*(None if getattr(first, f.name) is None
                             else torch.stack([getattr(x, f.name) for x in states], dim) for f in fields(first)))

    @staticmethod
    def cat(states: list[LatentState], dim: int = 1) -> LatentState:
        """Concatenate states along an existing dimension ``dim``."""
        first = states[0]
        return LatentState(*(None if getattr(first, f.name) is None
                             else torch.cat([getattr(x, f.name) for x in states], dim) for f in fields(first)))


def gaussian_kl(mean_q: torch.Tensor, std_q: torch.Tensor, mean_p: torch.Tensor, std_p: torch.Tensor) -> torch.Tensor:
    """KL(N(μ_q, diag σ_q²) || N(μ_p, diag σ_p²)) = Σ_i [log σ_p,i/σ_q,i + (σ_q,i² + (μ_q,i − μ_p,i)²) / (2σ_p,i²) − ½]: (...)."""
    var_ratio = (std_q / std_p).square()
    return 0.5 * (var_ratio + ((mean_q - mean_p) / std_p).square() - 1.0 - var_ratio.log()).sum(-1)


def contrastive_bound(samples: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """The InfoNCE bound of each pair n of a batch, the other N − 1 pairs as negatives:

        log q(x_n | y_n) − log (1/N) Σ_{m=1}^N q(x_n | y_m),   log q(x_n | y_m) = log N(x_n | μ_m, diag σ_m²),

    ≤ log N (the positive is among the N terms of the mean), and log N + E[·] bounds the mutual information
    I(x; y) from below, tighter with larger batches. The N × N log-densities come from matrix products,
    Σ_i (x_ni − μ_mi)² / σ_mi² = Σ_i x_ni² P_mi − 2 Σ_i x_ni μ_mi P_mi + Σ_i μ_mi² P_mi with P = 1/σ²,
    so memory is O(N² + N d), not O(N² d). ``samples: (N, d)`` x_n, ``mean, std: (N, d)`` (μ_m, σ_m) of q(· | y_m).
    Returns (N,).
    """
    if samples.ndim != 2 or tuple(mean.shape) != tuple(samples.shape) or tuple(std.shape) != tuple(samples.shape):
        raise ValueError(f"samples, mean, std: expected three tensors of one shape (N, d), got "
                         f"{tuple(samples.shape)}, {tuple(mean.shape)}, {tuple(std.shape)}")
    N, d = samples.shape
    precision = std.square().reciprocal()  # P_m: (N, d)
    squared = (samples.square() @ precision.T - 2.0 * samples @ (mean * precision).T
               + (mean.square() * precision).sum(-1))  # [n, m] = Σ_i (x_ni − μ_mi)² / σ_mi²: (N, N)
    log_q = -0.5 * squared - std.log().sum(-1) - 0.5 * d * LOG_2PI  # [n, m] = log q(x_n | y_m)
    return log_q.diagonal() - torch.logsumexp(log_q, -1) + math.log(N)


def unit_gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, event_dims: int) -> torch.Tensor:
    """log N(x | μ, I) summed over the last ``event_dims`` dimensions: −½ |x − μ|² − ½ n log 2π."""
    dims = tuple(range(-event_dims, 0))
    n = math.prod(x.shape[-event_dims:])
    return -0.5 * (x - mean).square().sum(dims) - 0.5 * n * LOG_2PI


# ----------------------------------------------------------------------------------------------- the model
@dataclass
class WorldModelConfig:
    """The sizes and switches of a :class:`RecurrentSSM` (PlaNet's values as defaults, except the conv depth)."""

    action_dim: int = 1
    """A, the size of a_t (0: no actions)"""
    obs_dim: int | None = None
    """None: 64×64×3 frames through the conv encoder/decoder; an int: vector observations y_t ∈ R^obs_dim"""
    deterministic_size: int = 200
    """H, the size of h_t (0: no recurrence, the Markovian SSM)"""
    stochastic_size: int = 30
    """S, the size of s_t"""
    hidden_size: int = 200
    """width of the MLPs (transition input, prior, posterior, reward head, vector encoder/decoder)"""
    depth: int = 32
    """d of the conv encoder/decoder (PlaNet: 32; 8 trains on a CPU)"""
    embed_size: int = 64
    """E of the vector observations' encoder φ (frames: 32 d, fixed by the convolutions)"""
    min_std: float = 0.1
    """σ = softplus(·) + min_std for the prior and the posterior (PlaNet: 0.1)"""
    stochastic: bool = True
    """False: s_t is the Gaussian's mean, a deterministic RNN"""
    observation_input: bool = False
    """True (VRNN): the recurrence reads φ(y_{t-1})"""
    reward_head: bool = True
    """learn p(r_t | s_t, h_t)"""
    representation: str = "reconstruction"
    """what trains the representation: "reconstruction", the ELBO's log p(y_t | s_t, h_t); "contrastive", Dreamer's
    noise-contrastive bound (:func:`contrastive_bound`), the decoder then learning on stop-gradient features"""


class RecurrentSSM(nn.Module):
    """The slide's recurrent SSM; see the module docstring. Build one with :class:`RSSM`, :class:`VRNN`,
    :class:`StochasticSSM` or :func:`make_world_model`.

    Networks (PlaNet's, with ELU): x_t = ELU(W [s_{t-1}, a_{t-1} (, φ(y_{t-1}))]); h_t = GRU(x_t, h_{t-1})
    (without recurrence the context is c_t = x_t, else c_t = h_t); prior (μ, σ) = MLP(c_t); posterior
    (μ, σ) = MLP([c_t, e_t]); σ = softplus(·) + min_std.
    """

    def __init__(self, config: WorldModelConfig | None = None, **overrides) -> None:
        super().__init__()
        cfg = replace(config or WorldModelConfig(), **overrides)
        self.config = cfg
        self.action_dim = check_positive_int("action_dim", cfg.action_dim, allow_zero=True)
        self.deterministic_size = check_positive_int("deterministic_size", cfg.deterministic_size, allow_zero=True)
        self.stochastic_size = check_positive_int("stochastic_size", cfg.stochastic_size)
        hidden = check_positive_int("hidden_size", cfg.hidden_size)
        self.min_std = check_positive_float("min_std", cfg.min_std)
        self.stochastic = bool(cfg.stochastic)
        self.observation_input = bool(cfg.observation_input)
        self.pixels = cfg.obs_dim is None
        S, H, A = self.stochastic_size, self.deterministic_size, self.action_dim
        if self.pixels:
            self.encoder: nn.Module = ConvEncoder(cfg.depth)
            self.embed_size = self.encoder.embed_dim
            self.decoder: nn.Module = ConvDecoder(H + S, cfg.depth)
            self.obs_dim = None
        else:
            self.obs_dim = check_positive_int("obs_dim", cfg.obs_dim)
            self.embed_size = check_positive_int("embed_size", cfg.embed_size)
            self.encoder = nn.Sequential(mlp(self.obs_dim, self.embed_size, (hidden,), nn.ELU), nn.ELU())
            self.decoder = mlp(H + S, self.obs_dim, (hidden, hidden), nn.ELU)
        E = self.embed_size
        self.transition_in = nn.Linear(S + A + (E if self.observation_input else 0), hidden)
        self.cell = nn.GRUCell(hidden, H) if H else None
        context = H if H else hidden
        self.prior_net = mlp(context, 2 * S, (hidden,), nn.ELU)
        self.posterior_net = mlp(context + E, 2 * S, (hidden,), nn.ELU)
        self.reward_net = mlp(H + S, 1, (hidden, hidden), nn.ELU) if cfg.reward_head else None
        self.representation = check_choice("representation", cfg.representation, REPRESENTATIONS)
        # q(x_t | y_t) = N(μ(e_t), diag σ(e_t)²) over the features x_t = [h_t, s_t]: the contrastive variant's state model
        self.contrastive_net = mlp(E, 2 * (H + S), (hidden,), nn.ELU) if self.representation == "contrastive" else None

    # ------------------------------------------------------------------ pieces
    @property
    def feature_size(self) -> int:
        """H + S, the size of ``features``."""
        return self.deterministic_size + self.stochastic_size

    def _param(self) -> torch.Tensor:
        return next(self.parameters())

    def initial_state(self, batch_shape: tuple[int, ...] | int) -> LatentState:
        """h_0 = 0, s_0 = 0 (and φ(y_0) = 0 for the VRNN) on the model's device and dtype: leading ``batch_shape``."""
        shape = (batch_shape,) if isinstance(batch_shape, int) else tuple(batch_shape)
        p = self._param()
        zeros = p.new_zeros(shape + (self.stochastic_size,))
        emb = p.new_zeros(shape + (self.embed_size,)) if self.observation_input else None
        return LatentState(p.new_zeros(shape + (self.deterministic_size,)), zeros, zeros, torch.ones_like(zeros), emb)

    def embed(self, observations: torch.Tensor) -> torch.Tensor:
        """e_t = enc(y_t): frames ``(..., 64, 64, 3)`` uint8 (or ``(..., 3, 64, 64)`` floats) or vectors ``(..., dy)``
        -> ``(..., E)``."""
        return self.encoder(observations)

    def decode(self, features: torch.Tensor) -> torch.Tensor:
        """E[y_t | s_t, h_t] = dec([h_t, s_t]): ``(..., H+S)`` -> frames ``(..., 3, 64, 64)`` in [-0.5, 0.5] or ``(..., dy)``."""
        return self.decoder(features)

    def reward(self, features: torch.Tensor) -> torch.Tensor:
        """E[r_t | s_t, h_t] = rew([h_t, s_t]): ``(..., H+S)`` -> ``(...)``."""
        if self.reward_net is None:
            raise ValueError("reward: this model was built with reward_head=False")
        return self.reward_net(features).squeeze(-1)

    def _gaussian(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, σ = softplus(ρ) + min_std) from a head's output [μ, ρ]."""
        mean, raw_std = raw.chunk(2, -1)
        return mean, nnf.softplus(raw_std) + self.min_std

    def _draw(self, mean: torch.Tensor, std: torch.Tensor, generator: torch.Generator | None,
              sample: bool = True) -> torch.Tensor:
        """s = μ + σ ε (reparameterised); s = μ for a deterministic model or with ``sample=False``."""
        if not (self.stochastic and sample):
            return mean
        return mean + std * torch.randn(mean.shape, dtype=mean.dtype, device=mean.device, generator=generator)

    def _transition(self, state: LatentState, action: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """h_t = GRU(ELU(W [s_{t-1}, a_{t-1} (, φ(y_{t-1}))]), h_{t-1}) -> (h_t, the context c_t of the two heads)."""
        parts = [state.s]
        if self.action_dim:
            parts.append(action.expand(state.s.shape[:-1] + action.shape[-1:]))
        if self.observation_input:
            parts.append(state.embedding)
        x = nnf.elu(self.transition_in(torch.cat(parts, -1)))
        if self.cell is None:
            return state.h, x
        lead = x.shape[:-1]
        h = self.cell(x.reshape(-1, x.shape[-1]), state.h.reshape(-1, self.deterministic_size)).reshape(
            lead + (self.deterministic_size,))
        return h, h

    def prior(self, state: LatentState, action: torch.Tensor | None, generator: torch.Generator | None = None,
              sample: bool = True) -> LatentState:
        """One open-loop step: h_t = f_θ(h_{t-1}, s_{t-1}, a_{t-1}), s_t ~ p(s_t | h_t).

        ``state`` (h_{t-1}, s_{t-1}) with leading dims ``...``, ``action: (..., A)`` a_{t-1}. The VRNN's φ(y_t) is
        that of its own prediction, φ(dec([h_t, s_t])).
        """
        h, c = self._transition(state, action)
        mean, std = self._gaussian(self.prior_net(c))
        s = self._draw(mean, std, generator, sample)
        emb = self.embed(self.decode(torch.cat([h, s], -1))) if self.observation_input else None
        return LatentState(h, s, mean, std, emb)

    def _filter(self, state: LatentState, action: torch.Tensor | None, embedding: torch.Tensor,
                generator: torch.Generator | None) -> tuple[LatentState, LatentState]:
        """(q(s_t | h_t, e_t), p(s_t | h_t)) from the same h_t; s_t drawn from each."""
        h, c = self._transition(state, action)
        p_mean, p_std = self._gaussian(self.prior_net(c))
        q_mean, q_std = self._gaussian(self.posterior_net(torch.cat([c, embedding], -1)))
        prior = LatentState(h, self._draw(p_mean, p_std, generator), p_mean, p_std, None)
        post = LatentState(h, self._draw(q_mean, q_std, generator), q_mean, q_std,
                           embedding if self.observation_input else None)
        return post, prior

    # ------------------------------------------------------------------ checks
    def check_observations(self, name: str, observations: torch.Tensor, lead: int) -> None:
        """Frames ``(*lead, 64, 64, 3)`` uint8 (or preprocessed floats) or vectors ``(*lead, dy)`` in the model's dtype."""
        if self.pixels:
            if isinstance(observations, torch.Tensor) and observations.is_floating_point():
                as_images(observations)
                ok = observations.ndim == lead + 3
            else:
                check_frames(name, observations)
                ok = observations.ndim == lead + 3
            if not ok:
                raise ValueError(f"{name}: expected {lead} leading dimension(s) before the frame's (64, 64, 3), "
                                 f"got shape {tuple(observations.shape)}")
            return
        if not isinstance(observations, torch.Tensor) or not observations.is_floating_point():
            got = observations.dtype if isinstance(observations, torch.Tensor) else type(observations).__name__
            raise TypeError(f"{name}: expected a floating-point tensor (..., {self.obs_dim}), got {got}")
        if observations.ndim != lead + 1 or observations.shape[-1] != self.obs_dim:
            raise ValueError(f"{name}: expected {lead} leading dimension(s) and obs_dim {self.obs_dim}, "
                             f"got shape {tuple(observations.shape)}")
        if observations.dtype != self._param().dtype:
            raise ValueError(f"{name}: expected dtype {self._param().dtype} (the model's), got {observations.dtype}")

    def _check_actions(self, actions: torch.Tensor | None, lead: tuple[int, ...]) -> torch.Tensor | None:
        if not self.action_dim:
            if actions is not None and actions.shape[-1] != 0:
                raise ValueError("actions: the model has action_dim = 0, got a tensor; build it with action_dim")
            return None
        want = lead + (self.action_dim,)
        if not isinstance(actions, torch.Tensor) or tuple(actions.shape) != want:
            got = tuple(actions.shape) if isinstance(actions, torch.Tensor) else type(actions).__name__
            raise ValueError(f"actions: expected shape {want} (a_{{t-1}} before each y_t), got {got}")
        return actions.to(self._param().dtype)

    # ------------------------------------------------------------------ the interface
    def observe_step(self, state: LatentState, action: torch.Tensor | None, frame: torch.Tensor,
                     generator: torch.Generator | None = None) -> tuple[LatentState, LatentState]:
        """The filter update from one real frame: h_t = f_θ(h_{t-1}, s_{t-1}, a_{t-1}), s_t ~ q(s_t | h_t, e_t).

        ``state`` (B, ·) the posterior at t-1 (or :meth:`initial_state`), ``action: (B, A)`` a_{t-1},
        ``frame: (B, 64, 64, 3)`` uint8 y_t (or ``(B, dy)``). Returns (posterior, prior) at t, each (B, ·).
        """
        self.check_observations("frame", frame, 1)
        action = self._check_actions(action, (frame.shape[0],))
        return self._filter(state, action, self.embed(frame), generator)

    def observe(self, frames: torch.Tensor, actions: torch.Tensor | None,
                initial_state: LatentState | None = None,
                generator: torch.Generator | None = None,
                embeddings: torch.Tensor | None = None) -> tuple[LatentState, LatentState]:
        """Filter a batch of sequences: q(s_t | h_t, e_t) and p(s_t | h_t) for t = 1..T.

        ``frames: (B, T, 64, 64, 3)`` uint8 (or vectors ``(B, T, dy)``), ``actions: (B, T, A)`` (``actions[:, t]`` led to
        ``frames[:, t]``), ``initial_state`` (B, ·) (None: zeros), ``embeddings: (B, T, E)`` e_{1:T} = enc(frames) when
        the caller has them already (None: computed here). Returns (posterior states, prior states), each
        (B, T, ·); the prior at t is the one-step prediction from the posterior at t-1.
        """
        self.check_observations("frames", frames, 2)
        B, T = frames.shape[:2]
        actions = self._check_actions(actions, (B, T))
        state = self.initial_state(B) if initial_state is None else initial_state
        if embeddings is None:
            embeddings = self.embed(frames)  # e_{1:T}, all frames at once
        elif tuple(embeddings.shape) != (B, T, self.embed_size):
            raise ValueError(f"embeddings: expected shape {(B, T, self.embed_size)} (enc of frames), "
                             f"got {tuple(embeddings.shape)}")
        posts, priors = [], []
        for t in range(T):
            state, prior = self._filter(state, None if actions is None else actions[:, t], embeddings[:, t], generator)
            posts.append(state)
            priors.append(prior)
        return LatentState.stack(posts), LatentState.stack(priors)

    def imagine(self, initial_state: LatentState, actions: torch.Tensor | None = None,
                policy: Callable[[torch.Tensor], torch.Tensor] | None = None, horizon: int | None = None,
                generator: torch.Generator | None = None, sample: bool = True) -> Imagination:
        """Open loop: s_{t+k} ~ p(s_{t+k} | h_{t+k}), h_{t+k} = f_θ(h_{t+k-1}, s_{t+k-1}, a_{t+k-1}), k = 1..H.

        ``initial_state`` with leading dims ``...`` (e.g. (B,), or Dreamer's (B, T) posteriors); either
        ``actions: (..., H, A)`` or ``policy``, a function features ``(..., H+S)`` -> action ``(..., A)`` called on
        each state to choose the next action (its gradients flow: every s is a reparameterised sample);
        ``horizon`` H (with a policy; with actions it defaults to theirs); ``sample=False`` follows the means.
        Returns an :class:`Imagination` (states and actions ``(..., H, ·)``, predicted rewards ``(..., H)``).
        """
        lead = initial_state.s.shape[:-1]
        if self.observation_input and initial_state.embedding is None:
            raise ValueError("initial_state: the VRNN's recurrence reads φ(y_t), expected a state with an embedding "
                             "(a posterior state of observe/observe_step, or initial_state()), got embedding=None")
        if (actions is None) == (policy is None) and self.action_dim:
            raise ValueError("imagine: expected exactly one of actions and policy, got "
                             f"{'both' if actions is not None else 'neither'}")
        if actions is not None:
            if horizon is None:
                horizon = actions.shape[-2] if actions.ndim >= 2 else 0
            want = lead + (horizon, self.action_dim)
            if tuple(actions.shape) != want:
                raise ValueError(f"actions: expected shape {want} (initial state's leading dims, horizon, A), "
                                 f"got {tuple(actions.shape)}")
            actions = actions.to(self._param().dtype)
        H = check_positive_int("horizon", horizon)
        state, states, taken = initial_state, [], []
        for k in range(H):
            if not self.action_dim:
                a = None
            else:
                a = actions[..., k, :] if actions is not None else policy(state.features)
                taken.append(a)
            state = self.prior(state, a, generator, sample)
            states.append(state)
        dim = len(lead)
        stacked = LatentState.stack(states, dim)
        acts = torch.stack(taken, dim) if taken else None
        rewards = self.reward(stacked.features) if self.reward_net is not None else None
        return Imagination(stacked, acts, rewards)

    # ------------------------------------------------------------------ the objective
    def kl(self, posterior: LatentState, prior: LatentState) -> torch.Tensor:
        """KL(q(s_t | ·) || p(s_t | ·)) summed over the S latent dimensions: (...); deterministic: ½ |μ_q − μ_p|²."""
        if not self.stochastic:
            return 0.5 * (posterior.mean - prior.mean).square().sum(-1)
        return gaussian_kl(posterior.mean, posterior.std, prior.mean, prior.std)

    def overshooting_kl(self, posterior: LatentState, actions: torch.Tensor | None, distance: int,
                        generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent overshooting (PlaNet section 4): KL(q(s_t | ·) || p(s_t | s_{t-d})) for d = 1..D.

        p(s_t | s_{t-d}) is the d-step open-loop prior from the posterior sample at t-d (the initial state at t = 0,
        index -1), under the actions between. For d ≥ 2 the posterior is held fixed (gradients stopped, as in
        PlaNet): the multi-step prior moves towards it, not it towards the prior. ``posterior`` (B, T, ·),
        ``actions: (B, T, A)``. Returns (kl: (D, B, T), valid: (D, T) bool), valid where t ≥ d - 1.
        """
        D = check_positive_int("overshooting_distance", distance)
        B, T = posterior.s.shape[:2]
        if T < D:
            raise ValueError(f"overshooting_distance: expected at most the sequence length T = {T}, got {D}")
        init = self.initial_state(B)
        starts = LatentState.cat([LatentState(*(None if v is None else v.unsqueeze(1) for v in init._values())),
                                  posterior[:, :T - 1]])  # the states at t = -1..T-2: (B, T, ·)
        padded = None
        if self.action_dim:
            padded = torch.cat([actions, actions.new_zeros(B, D - 1, self.action_dim)], 1)  # (B, T+D-1, A)
        kls, valid = [], []
        state = starts
        steps = torch.arange(T, device=posterior.s.device)
        for d in range(1, D + 1):
            state = self.prior(state, None if padded is None else padded[:, d - 1:d - 1 + T], generator)
            # start j (time j-1) reaches time τ = j + d - 1 after d steps
            target = posterior[:, d - 1:] if d == 1 else posterior.detach()[:, d - 1:]
            kl = self.kl(target, state[:, :T - d + 1])
            kls.append(torch.cat([kl.new_zeros(B, d - 1), kl], 1))
            valid.append(steps >= d - 1)
        return torch.stack(kls), torch.stack(valid)

    def loss(self, frames: torch.Tensor, actions: torch.Tensor | None, rewards: torch.Tensor | None = None,
             free_nats: float = 3.0, overshooting_distance: int = 0, overshooting_weight: float = 1.0,
             generator: torch.Generator | None = None, mask: torch.Tensor | None = None) -> WorldModelLoss:
        """The negative ELBO per step, PlaNet's objective (eq. 7 with latent overshooting):

            −(1/BT) Σ_{b,t} [ log p(y_t | s_t, h_t) + log p(r_t | s_t, h_t)
                               − (1/D) Σ_{d=1}^D β_d max(KL(q(s_t | ·) || p(s_t | s_{t-d})), free nats) ]

        with β_1 = 1, β_{d≥2} = ``overshooting_weight``; ``overshooting_distance`` D = 0 (or 1): the one-step KL only.
        The multi-step terms average over their valid steps (t ≥ d − 1). ``frames: (B, T, 64, 64, 3)`` uint8 (or
        ``(B, T, dy)``), ``actions: (B, T, A)``, ``rewards: (B, T)`` (None: no reward term). Free nats clamp each
        step's KL summed over the latent dimensions (not applied to a deterministic model). ``mask: (B, T)`` bool
        (None: every step is real): padded steps (False, e.g. the end of a chunk longer than its episode) are left out
        of every average, the sums over (b, t) then running over the real steps only.

        With ``representation="contrastive"`` (Dreamer's appendix) the reconstruction term is replaced by the
        noise-contrastive bound of :meth:`contrastive` (the other B·T − 1 frames of the batch are the negatives), and
        the decoder is still fitted, but on sg([h_t, s_t]) (stop-gradient): its term reaches the decoder only, so the
        representation is learned from the NCE bound, the rewards and the KL alone, and the decoder is there for the
        pictures (reconstructions, imagined frames). ``reconstruction`` then holds that decoder's log-likelihood.
        """
        free = check_positive_float("free_nats", free_nats, allow_zero=True) if self.stochastic else 0.0
        D = check_positive_int("overshooting_distance", overshooting_distance, allow_zero=True)
        beta = check_positive_float("overshooting_weight", overshooting_weight, allow_zero=True)
        self.check_observations("frames", frames, 2)
        B, T = frames.shape[:2]
        if D > T:
            raise ValueError(f"overshooting_distance: expected at most the sequence length T = {T} "
                             f"(frames has {T} steps), got {D}")
        contrastive = self.contrastive_net is not None
        embeddings = self.embed(frames) if contrastive else None  # e_{1:T}, shared by the filter and the NCE head
        posterior, prior = self.observe(frames, actions, generator=generator, embeddings=embeddings)
        features = posterior.features
        target = as_images(frames).to(features.dtype) if self.pixels else frames
        decoded = self.decode(features.detach() if contrastive else features)
        reconstruction = unit_gaussian_log_prob(target, decoded, 3 if self.pixels else 1)
        reward_ll = torch.zeros_like(reconstruction)
        if rewards is not None:
            if tuple(rewards.shape) != (B, T):
                raise ValueError(f"rewards: expected shape ({B}, {T}), got {tuple(rewards.shape)}")
            reward_ll = unit_gaussian_log_prob(rewards.to(features.dtype).unsqueeze(-1),
                                               self.reward(features).unsqueeze(-1), 1)
        if mask is not None and tuple(mask.shape) != (B, T):
            raise ValueError(f"mask: expected shape ({B}, {T}), got {tuple(mask.shape)}")
        real = None if mask is None else mask.to(features.dtype)

        def average(x: torch.Tensor) -> torch.Tensor:  # over (b, t), the real steps only
            return x.mean() if real is None else (x * real).sum() / real.sum()

        kl = self.kl(posterior, prior)  # (B, T)
        overshooting = None
        if D >= 2:
            overshooting, valid = self.overshooting_kl(posterior, actions if self.action_dim else None, D, generator)
            weights = [1.0] + [beta] * (D - 1)
            counted = valid[:, None, :] if real is None else valid[:, None, :] * real  # (D, B|1, T)
            clamped = overshooting.clamp_min(free) * counted  # (D, B, T), 0 where t < d - 1 (or padding)
            count = B * valid.sum(-1) if real is None else counted.sum((1, 2))
            per_d = clamped.sum((1, 2)) / count  # the mean over each distance's valid steps
            kl_loss = (per_d * per_d.new_tensor(weights)).sum() / D
        else:
            kl_loss = average(kl.clamp_min(free))
        nce = None
        if contrastive:
            # E[log q(x_t | y_t) − log (1/BT) Σ_{y'} q(x_t | y')] replaces E[log p(y_t | x_t)] for the representation;
            # the decoder's term (on sg(x_t)) trains the decoder alone
            nce = self.contrastive(features, embeddings)
            total = -(average(nce) + average(reconstruction) + average(reward_ll)) + kl_loss
        else:
            total = -(average(reconstruction) + average(reward_ll)) + kl_loss
        return WorldModelLoss(total, reconstruction, reward_ll, kl, overshooting, posterior, prior, nce)

    def contrastive(self, features: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        """Dreamer's noise-contrastive bound per step, the other frames of the batch as negatives:

            log q(x_t | y_t) − log (1/N) Σ_{y'} q(x_t | y'),   q(x | y) = N(x | μ(e), diag σ(e)²), e = enc(y),

        x_t = [h_t, s_t] the posterior features, the sum over all N = B·T frames y' of the batch (y_t among them).
        ``features: (B, T, H+S)``, ``embeddings: (B, T, E)``. Returns (B, T), each ≤ log N
        (:func:`contrastive_bound`). Needs a model built with ``representation="contrastive"``.
        """
        if self.contrastive_net is None:
            raise ValueError("contrastive: this model was built with representation='reconstruction'; build it with "
                             "representation='contrastive'")
        mean, std = self._gaussian(self.contrastive_net(embeddings))
        lead = features.shape[:-1]
        d = features.shape[-1]
        return contrastive_bound(features.reshape(-1, d), mean.reshape(-1, d), std.reshape(-1, d)).reshape(lead)


@dataclass
class Imagination:
    """What :meth:`RecurrentSSM.imagine` returns."""

    states: LatentState
    """the imagined states (..., H, ·)"""
    actions: torch.Tensor | None
    """the actions that led to them (..., H, A) (the policy's, when one chose them)"""
    rewards: torch.Tensor | None
    """E[r | s, h] of each imagined state: (..., H) (None without a reward head)"""


@dataclass
class WorldModelLoss:
    """The terms of :meth:`RecurrentSSM.loss`."""

    loss: torch.Tensor
    """the objective to minimise (scalar)"""
    reconstruction: torch.Tensor
    """log p(y_t | s_t, h_t): (B, T)"""
    reward: torch.Tensor
    """log p(r_t | s_t, h_t): (B, T) (0 without rewards)"""
    kl: torch.Tensor
    """KL(q(s_t | h_t, e_t) || p(s_t | h_t)) per step, summed over the latent dimensions, before the clamp: (B, T)"""
    overshooting: torch.Tensor | None
    """the d-step KLs, (D, B, T) (0 where t < d − 1), when overshooting_distance ≥ 2"""
    posterior: LatentState
    """the posterior states (B, T, ·)"""
    prior: LatentState
    """the one-step prior states (B, T, ·)"""
    contrastive: torch.Tensor | None = None
    """the noise-contrastive bound log q(x_t | y_t) − log (1/BT) Σ_{y'} q(x_t | y'): (B, T) (contrastive models only)"""

    @property
    def elbo(self) -> torch.Tensor:
        """Σ_t [log p(y_t | ·) + log p(r_t | ·) − KL_t] per sequence, no free nats, no overshooting: (B,).

        (For a contrastive model this is the ELBO of its visualisation decoder, which the representation ignores.)"""
        return (self.reconstruction + self.reward - self.kl).sum(-1)


class RSSM(RecurrentSSM):
    """PlaNet's recurrent state-space model: h_t = GRU(h_{t-1}, s_{t-1}, a_{t-1}), p(s_t | h_t), q(s_t | h_t, e_t).

    ``stochastic=False``: the deterministic RNN. Keyword arguments override :class:`WorldModelConfig`'s fields.
    """

    def __init__(self, config: WorldModelConfig | None = None, **overrides) -> None:
        super().__init__(config, **_switch(overrides, observation_input=False))


class VRNN(RecurrentSSM):
    """The VRNN (Chung et al., 2015) in the slide's form: h_t = GRU(h_{t-1}, s_{t-1}, φ(y_{t-1}), a_{t-1}),
    p(s_t | h_t), q(s_t | h_t, e_t), p(y_t | s_t, h_t); φ = the encoder (e_t = φ(y_t)).

    Works on vector observations (``obs_dim``) and on frames. ``stochastic=False``: a deterministic RNN fed its
    observations.
    """

    def __init__(self, config: WorldModelConfig | None = None, **overrides) -> None:
        super().__init__(config, **_switch(overrides, observation_input=True))


class StochasticSSM(RecurrentSSM):
    """PlaNet's "SSM" ablation, no deterministic path: p(s_t | s_{t-1}, a_{t-1}), q(s_t | s_{t-1}, a_{t-1}, e_t),
    p(y_t | s_t), p(r_t | s_t)."""

    def __init__(self, config: WorldModelConfig | None = None, **overrides) -> None:
        super().__init__(config, **_switch(overrides, deterministic_size=0, observation_input=False))


def _switch(overrides: dict, **fixed) -> dict:
    """The overrides with a class's defining switches set, refusing an override that contradicts one."""
    for name, value in fixed.items():
        if name in overrides and overrides[name] != value:
            raise ValueError(f"{name}: this model has {name} = {value!r} by definition, got {overrides[name]!r}")
    return {**overrides, **fixed}


def make_world_model(kind: str, config: WorldModelConfig | None = None, **overrides) -> RecurrentSSM:
    """A world model by name: ``kind`` "rnn" (RSSM, stochastic=False) | "ssm" | "vrnn" | "rssm"; keyword
    arguments override :class:`WorldModelConfig`'s fields (e.g. ``action_dim=1, depth=8``); "ssm" ignores
    ``deterministic_size`` (it has no h), so one set of sizes builds all four."""
    check_choice("kind", kind, KINDS)
    if kind == "ssm":
        overrides.pop("deterministic_size", None)
    if kind == "rnn":
        return RSSM(config, **{**overrides, "stochastic": False})
    return {"ssm": StochasticSSM, "vrnn": VRNN, "rssm": RSSM}[kind](config, **overrides)


# ----------------------------------------------------------------------------------------------- training
@dataclass
class WorldModelTrainConfig:
    """How :func:`train_world_model` fits a world model; sizes default to the compute tier's."""

    num_steps: int = field(default_factory=lambda: by_budget(smoke=5, default=400, full=100_000))
    """Adam steps (smoke 5, default 400, full 100000)"""
    batch_size: int = field(default_factory=lambda: by_budget(smoke=4, default=16, full=50))
    """sequences per step (PlaNet: 50)"""
    chunk_length: int = field(default_factory=lambda: by_budget(smoke=8, default=20, full=50))
    """steps per sequence chunk (PlaNet: 50)"""
    learning_rate: float = 1e-3
    """Adam's step size (PlaNet: 1e-3)"""
    adam_eps: float = 1e-4
    """Adam's ε (PlaNet: 1e-4)"""
    grad_clip: float | None = 100.0
    """clip the gradient's global norm (PlaNet: 1000; None: no clipping)"""
    free_nats: float = 3.0
    """the clamp of each step's KL"""
    overshooting_distance: int = 0
    """D of latent overshooting (0: the one-step KL only)"""
    overshooting_weight: float = 1.0
    """β_{d≥2} of the overshooting terms"""
    checkpoint_every: int = 100
    """write the checkpoint every this many steps (and at the end)"""
    progress: bool = True
    """show a tqdm progress bar"""
    log_every: int = 10
    """update the progress bar's loss every this many steps (each update waits for the device)"""
    seed: int = 0
    """seed of the generator for the chunks and the samples"""


@dataclass
class WorldModelTrainResult:
    """What :func:`train_world_model` returns."""

    history: list[float]
    """the loss before each Adam step, all steps so far"""
    steps: int
    """Adam steps done in total (including those before a resume)"""
    resumed_from: int
    """the step the run resumed from (0: a fresh run)"""


def train_world_model(model: RecurrentSSM, frames: torch.Tensor, actions: torch.Tensor | None,
                      rewards: torch.Tensor | None = None, config: WorldModelTrainConfig | None = None, *,
                      device: torch.device | str | None = None,
                      checkpoint_path: str | os.PathLike | None = None, resume: bool = True) -> WorldModelTrainResult:
    """Minimise :meth:`RecurrentSSM.loss` with Adam on random chunks of the sequences.

    ``frames: (N, T, 64, 64, 3)`` uint8 (or ``(N, T, dy)``), ``actions: (N, T, A)``, ``rewards: (N, T)`` (None: no
    reward term), all moved once to ``device`` with the model (None: where the model is; "auto": CUDA when
    available). Each step draws
    ``batch_size`` sequences and a chunk of ``chunk_length`` steps from each. ``checkpoint_path``: written every
    ``checkpoint_every`` steps and at the end; with ``resume`` and the file there, the run continues from it.
    """
    cfg = config or WorldModelTrainConfig()
    num_steps = check_positive_int("config.num_steps", cfg.num_steps)
    batch_size = check_positive_int("config.batch_size", cfg.batch_size)
    L = check_positive_int("config.chunk_length", cfg.chunk_length)
    every = check_positive_int("config.checkpoint_every", cfg.checkpoint_every)
    log_every = check_positive_int("config.log_every", cfg.log_every)
    dev = model._param().device if device is None else resolve_device(device)
    model.to(dev)
    model.check_observations("frames", frames, 2)
    N, T = frames.shape[:2]
    if L > T:
        raise ValueError(f"config.chunk_length: expected at most the sequences' length T = {T}, got {L}")
    if cfg.overshooting_distance > L:
        raise ValueError(f"config.overshooting_distance: expected at most config.chunk_length = {L}, "
                         f"got {cfg.overshooting_distance}")
    frames = frames.to(dev)
    actions = model._check_actions(None if actions is None else actions.to(dev), (N, T))
    if rewards is not None:
        if tuple(rewards.shape) != (N, T):
            raise ValueError(f"rewards: expected shape ({N}, {T}), got {tuple(rewards.shape)}")
        rewards = rewards.to(dev, model._param().dtype)
    optimizer = torch.optim.Adam(model.parameters(), lr=check_positive_float("config.learning_rate", cfg.learning_rate),
                                 eps=cfg.adam_eps)
    generator = torch.Generator(device=dev).manual_seed(cfg.seed)
    history: list[float] = []
    start = 0
    path = Path(checkpoint_path) if checkpoint_path is not None else None
    if path is not None and resume and path.exists():
        ckpt = torch.load(path, map_location=dev, weights_only=False)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        generator.set_state(ckpt["generator"].cpu())
        history, start = list(ckpt["history"]), int(ckpt["step"])
    pending: list[torch.Tensor] = []

    def flush() -> None:
        if pending:
            history.extend(torch.stack(pending).tolist())
            pending.clear()

    def checkpoint(step: int) -> None:
        flush()
        if path is not None:
            save_checkpoint(path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "generator": generator.get_state(), "history": history, "step": step,
                         "config": asdict(cfg), "model_config": asdict(model.config)})

    offsets = torch.arange(L, device=dev)
    bar = tqdm(range(start, num_steps), desc=type(model).__name__, disable=not cfg.progress, initial=start,
               total=num_steps)
    for step in bar:
        idx = torch.randint(N, (batch_size,), generator=generator, device=dev)
        t0 = torch.randint(T - L + 1, (batch_size,), generator=generator, device=dev)
        rows, cols = idx[:, None], t0[:, None] + offsets  # (B, L) chunk indices
        out = model.loss(frames[rows, cols], None if actions is None else actions[rows, cols],
                         None if rewards is None else rewards[rows, cols], cfg.free_nats,
                         cfg.overshooting_distance, cfg.overshooting_weight, generator)
        optimizer.zero_grad()
        out.loss.backward()
        if cfg.grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        pending.append(out.loss.detach())
        if (step + 1) % log_every == 0 or step + 1 == num_steps:
            flush()
            if not math.isfinite(history[-1]):
                raise FloatingPointError(f"train_world_model: the loss became non-finite at step {step}; lower "
                                         f"config.learning_rate (the last checkpoint is at {path})")
            bar.set_postfix(loss=f"{history[-1]:.4g}")
        if (step + 1) % every == 0:
            checkpoint(step + 1)
    checkpoint(num_steps)
    return WorldModelTrainResult(history, num_steps, start)


@torch.no_grad()
def open_loop_prediction(model: RecurrentSSM, frames: torch.Tensor, actions: torch.Tensor | None, context: int,
                         horizon: int, sample: bool = False,
                         generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Video prediction: observe y_{1:C}, then imagine C+1..C+H under the recorded actions and decode.

    ``frames: (B, T, 64, 64, 3)`` uint8 (or ``(B, T, dy)``), ``actions: (B, T, A)``, T ≥ ``context`` C +
    ``horizon`` H. ``sample=False`` follows the prior means (the mode path; True: one sampled path). Returns
    (predicted observations ``(B, H, 3, 64, 64)`` in [-0.5, 0.5] (compare with ``preprocess_frames``) or
    ``(B, H, dy)``, predicted rewards ``(B, H)`` or None).
    """
    C = check_positive_int("context", context)
    H = check_positive_int("horizon", horizon)
    model.check_observations("frames", frames, 2)
    B, T = frames.shape[:2]
    if C + H > T:
        raise ValueError(f"horizon: expected context + horizon <= T = {T} (the frames' length), got {C} + {H}")
    dev = model._param().device
    frames = frames.to(dev)
    actions = model._check_actions(None if actions is None else actions.to(dev), (B, T))
    posterior, _ = model.observe(frames[:, :C], None if actions is None else actions[:, :C], generator=generator)
    out = model.imagine(posterior[:, -1], actions=None if actions is None else actions[:, C:C + H], horizon=H,
                        generator=generator, sample=sample)
    return model.decode(out.states.features), out.rewards


__all__ = [
    "Imagination",
    "LatentState",
    "RSSM",
    "RecurrentSSM",
    "StochasticSSM",
    "VRNN",
    "WorldModelConfig",
    "WorldModelLoss",
    "WorldModelTrainConfig",
    "WorldModelTrainResult",
    "contrastive_bound",
    "gaussian_kl",
    "make_world_model",
    "open_loop_prediction",
    "train_world_model",
]
