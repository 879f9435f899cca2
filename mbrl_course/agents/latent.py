"""What PlaNet and Dreamer share: the world model trained on chunks of D_real, and the filter that acts.

Both agents learn PlaNet's recurrent state-space model (:class:`~mbrl_course.ssm.rssm.RSSM`) from
pixels and act from its filtered latent state (h_t, s_t):

    h_t = f_θ(h_{t-1}, s_{t-1}, a_{t-1}),   s_t ~ q(s_t | h_t, e_t),   e_t = enc(y_t)          (the filter)

**Training on D_real** (:class:`WorldModelLearner`). Each Adam step draws B chunks of L consecutive steps
(``EpisodeBuffer.sample_sequences``) and minimises the RSSM's negative ELBO with free nats
(:meth:`~mbrl_course.ssm.rssm.RecurrentSSM.loss`). Time indexing: a buffer step t holds
(i_t, u_t, g_t, i_{t+1}); the RSSM wants each frame y with the action that led to it and the reward received
on reaching it, so a chunk becomes

    frames  y_{1:L} = next_obs_{s:s+L-1},   actions a_{0:L-1} = action_{s:s+L-1},   rewards r_{1:L} = reward_{s:s+L-1}

(the reward g_t is paid on reaching i_{t+1}, the frame it is paired with). Every chunk starts from the
model's zero state (:meth:`~mbrl_course.ssm.rssm.RecurrentSSM.initial_state`), as in PlaNet, whether or not
the chunk starts at an episode's first step: the filter learns to settle from zeros within a few frames.
Chunks of an episode shorter than L are padded (``mask`` False on a suffix); since the filter is causal the
padding cannot change the real steps' terms, and the loss averages over real steps only (a full batch, the
usual case, uses the model's own objective unchanged).

**Acting** (:class:`LatentFilter`). At an episode's start the filter is the zero state and the action before
the first frame is zero, the same as a training chunk's start; every frame then updates it by one
``observe_step`` with the action that led to it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from mbrl_course._checks import check_positive_int, resolve_device
from mbrl_course.budget import Tier, by_budget
from mbrl_course.data import EpisodeBuffer, SequenceBatch
from mbrl_course.ssm.conv import FRAME_SHAPE, postprocess_frames
from mbrl_course.ssm.rssm import (
    RSSM,
    LatentState,
    RecurrentSSM,
    WorldModelConfig,
    WorldModelTrainConfig,
    open_loop_prediction,
)

__all__ = [
    "LatentFilter",
    "WorldModelLearner",
    "WorldModelStep",
    "as_episode_buffer",
    "build_world_model",
    "world_model_for_budget",
    "check_frame",
    "check_horizon",
    "check_model_config",
    "check_pixel_env",
    "pixel_buffer",
    "reconstruct_and_imagine",
]


# ----------------------------------------------------------------------------------------------- checks
def check_frame(name: str, frame: Any) -> torch.Tensor:
    """One frame y_t as the pixel envs give it, a uint8 array (64, 64, 3), as a tensor; refuses anything else."""
    if isinstance(frame, torch.Tensor):
        shape, dtype, ok_dtype = tuple(frame.shape), frame.dtype, frame.dtype == torch.uint8
    elif isinstance(frame, np.ndarray):
        shape, dtype, ok_dtype = frame.shape, frame.dtype, frame.dtype == np.uint8
    else:
        raise TypeError(f"{name}: expected a uint8 image of shape {FRAME_SHAPE} (a pixel env's observation), "
                        f"got {type(frame).__name__}")
    if tuple(shape) != FRAME_SHAPE or not ok_dtype:
        raise ValueError(f"{name}: expected a uint8 image of shape {FRAME_SHAPE} (a pixel env's observation: "
                         f"train with --pixels / make_pixel_env), got shape {tuple(shape)} of dtype {dtype}")
    return torch.as_tensor(frame)


def check_pixel_env(env: gym.Env) -> None:
    """Refuse an env whose observations are not 64×64×3 uint8 frames (PlaNet and Dreamer learn from pixels)."""
    space = getattr(env, "observation_space", None)
    if not (isinstance(space, gym.spaces.Box) and tuple(space.shape) == FRAME_SHAPE and space.dtype == np.uint8):
        got = (f"{type(space).__name__} of shape {getattr(space, 'shape', None)} "
               f"and dtype {getattr(space, 'dtype', None)}")
        raise ValueError(f"env: expected observations that are uint8 images of shape {FRAME_SHAPE} (wrap the env "
                         f"with mbrl_course.envs.make_pixel_env, or pass --pixels), got {got}")
    if not isinstance(env.action_space, gym.spaces.Box):
        raise ValueError(f"env: expected a continuous (Box) action space, got {type(env.action_space).__name__}")


def check_horizon(name: str, horizon: int, chunk_length: int) -> int:
    """Refuse a planning or imagination horizon longer than the training chunks: the model never learned to
    predict further than L steps open loop."""
    horizon = check_positive_int(name, horizon)
    if horizon > chunk_length:
        raise ValueError(f"{name}: expected at most the training chunks' length train.chunk_length = {chunk_length} "
                         f"(the world model is trained on sequences of that length), got {horizon}")
    return horizon


def _observations(config: dict[str, Any]) -> str:
    obs_dim = config.get("obs_dim")
    return f"{FRAME_SHAPE[0]}×{FRAME_SHAPE[1]}×{FRAME_SHAPE[2]} frames" if obs_dim is None else f"vectors of {obs_dim}"


def check_model_config(saved: dict[str, Any], model: RecurrentSSM) -> None:
    """Refuse a checkpoint whose RSSM was built with other sizes than ``model`` (another observation size first)."""
    own = dataclasses.asdict(model.config)
    if saved.get("obs_dim") != own["obs_dim"]:
        raise ValueError(f"checkpoint: its RSSM was built for observations that are {_observations(saved)}, this "
                         f"agent's for {_observations(own)}; train a new run for this observation size")
    differ = {key: (saved.get(key), value) for key, value in own.items() if saved.get(key) != value}
    if differ:
        listed = ", ".join(f"{key}: checkpoint {a!r}, agent {b!r}" for key, (a, b) in differ.items())
        raise ValueError(f"checkpoint: its RSSM was built with other sizes than this agent's ({listed})")


# ----------------------------------------------------------------------------------------------- D_real
def pixel_buffer(env: gym.Env, capacity: int, device: torch.device | str = "cpu") -> EpisodeBuffer:
    """D_real for a pixel agent: whole episodes of uint8 frames (each stored once), ``capacity`` steps."""
    check_pixel_env(env)
    return EpisodeBuffer(FRAME_SHAPE, env.action_space.shape[0], capacity, device=device, obs_dtype=torch.uint8)


def as_episode_buffer(buffer: Any) -> EpisodeBuffer:
    """``buffer`` if it is an :class:`~mbrl_course.data.EpisodeBuffer` (the RSSM trains on its chunks), else a
    TypeError."""
    if not isinstance(buffer, EpisodeBuffer):
        raise TypeError(f"buffer: expected an EpisodeBuffer of frames (the RSSM trains on sequence chunks), "
                        f"got {type(buffer).__name__}")
    return buffer


# ----------------------------------------------------------------------------------------------- training
@dataclass
class WorldModelStep:
    """What one Adam step of :class:`WorldModelLearner` returns."""

    loss: torch.Tensor
    """the objective before the step (scalar, detached)"""
    posterior: LatentState
    """the batch's posterior states q(s_t | h_t, e_t), detached: (B, L, ·) (Dreamer imagines from them)"""
    mask: torch.Tensor
    """True on real steps, False on padding: (B, L) bool"""


def chunk_loss(model: RecurrentSSM, batch: SequenceBatch, config: WorldModelTrainConfig,
               generator: torch.Generator | None = None):
    """The negative ELBO of a :class:`~mbrl_course.data.SequenceBatch` (the module docstring's alignment):
    ``model.loss(next_obs, action, reward, free nats, overshooting, mask)``, whose averages run over the real steps
    only where a chunk is padded (the contrastive variant's negatives are all frames of the batch, padding included).

    Returns (loss, the model's :class:`~mbrl_course.ssm.rssm.WorldModelLoss`).
    """
    mask = None if bool(batch.mask.all()) else batch.mask
    out = model.loss(batch.next_obs, batch.action, batch.reward, config.free_nats, config.overshooting_distance,
                     config.overshooting_weight, generator, mask=mask)
    return out.loss, out


class WorldModelLearner:
    """ψ := argmin L(RSSM, D_real): PlaNet's RSSM and its Adam optimiser, trained on chunks of an EpisodeBuffer.

    ``model_config``: the RSSM's sizes (``action_dim`` is the env's); ``train_config``: batch size B, chunk
    length L, Adam's step size and ε (PlaNet: 1e-3, 1e-4), gradient clipping, free nats (its ``num_steps`` is
    the number of steps per :meth:`train` call; its ``seed``, ``checkpoint_every`` are not used here: the
    agent's seed drives the generator and the run checkpoints it). ``device``: where the model lives.
    """

    def __init__(self, model_config: WorldModelConfig, train_config: WorldModelTrainConfig, *,
                 device: torch.device | str = "cpu", seed: int | None = 0) -> None:
        self.config = train_config
        self.batch_size = check_positive_int("train.batch_size", train_config.batch_size)
        self.chunk_length = check_positive_int("train.chunk_length", train_config.chunk_length)
        if train_config.overshooting_distance > self.chunk_length:
            raise ValueError(f"train.overshooting_distance: expected at most train.chunk_length = "
                             f"{self.chunk_length}, got {train_config.overshooting_distance}")
        self.device = resolve_device(device)
        self.model = RSSM(model_config).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=train_config.learning_rate,
                                          eps=train_config.adam_eps)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(0 if seed is None else int(seed))
        self.steps = 0
        """Adam steps taken so far"""

    def step(self, buffer: EpisodeBuffer) -> WorldModelStep:
        """One Adam step on B chunks of L steps drawn from ``buffer`` (D_real)."""
        batch = as_episode_buffer(buffer).sample_sequences(self.batch_size, self.chunk_length,
                                                           generator=self.generator, device=self.device)
        loss, out = chunk_loss(self.model, batch, self.config, self.generator)
        self.optimizer.zero_grad()
        loss.backward()
        if self.config.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.steps += 1
        return WorldModelStep(loss.detach(), out.posterior.detach(), batch.mask)

    def train(self, buffer: EpisodeBuffer, steps: int | None = None) -> list[float]:
        """``steps`` Adam steps (None: ``train_config.num_steps``); the loss before each, as floats."""
        steps = check_positive_int("steps", self.config.num_steps if steps is None else steps)
        bar = tqdm(range(steps), desc="world model", leave=False, disable=not self.config.progress)
        losses = torch.stack([self.step(buffer).loss for _ in bar]).tolist()  # one host sync
        if not all(np.isfinite(losses)):
            raise FloatingPointError(f"the world model's loss became non-finite ({losses[-1]}); lower "
                                     "train.learning_rate")
        return losses

    def state_dict(self) -> dict[str, Any]:
        """The RSSM (with its sizes), Adam's state, the chunk generator and the step count."""
        return {"model": self.model.state_dict(), "model_config": dataclasses.asdict(self.model.config),
                "optimizer": self.optimizer.state_dict(), "generator": self.generator.get_state(),
                "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`, refusing one whose RSSM was built for another observation size."""
        check_model_config(state["model_config"], self.model)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"].cpu())
        self.steps = int(state["steps"])


def world_model_for_budget(tier: Tier | None = None) -> WorldModelConfig:
    """The RSSM's sizes for a compute tier, shared by PlaNet and Dreamer: smoke tiny; default a conv depth of 8 and
    a recurrence of 100 (2 CPU cores); full PlaNet's (H 200, S 30, hidden 200, depth 32)."""
    return by_budget(smoke=WorldModelConfig(deterministic_size=16, stochastic_size=4, hidden_size=16, depth=4),
                     default=WorldModelConfig(deterministic_size=100, stochastic_size=16, hidden_size=100, depth=8),
                     full=WorldModelConfig(depth=32), tier=tier)


def build_world_model(env: gym.Env, model_config: WorldModelConfig, train_config: WorldModelTrainConfig,
                      horizon: tuple[str, int], *, device: torch.device | str = "cpu",
                      seed: int | None = 0) -> WorldModelLearner:
    """The RSSM of a pixel agent for ``env`` (its ``action_dim``, 64×64×3 frames) and its training, after the
    checks both agents need: frames from ``env``, and ``horizon`` = (name, H) of the planning or imagination
    horizon at most the training chunks' length. Seeds torch's global generator with ``seed`` (the weights)."""
    check_pixel_env(env)
    check_horizon(horizon[0], horizon[1], train_config.chunk_length)
    if seed is not None:
        torch.manual_seed(seed)
    config = dataclasses.replace(model_config, action_dim=env.action_space.shape[0], obs_dim=None)
    return WorldModelLearner(config, train_config, device=device, seed=seed)


# ----------------------------------------------------------------------------------------------- acting
class LatentFilter:
    """The filter state (h_t, s_t) while acting: s_t ~ q(s_t | h_t, e_t), h_t = f_θ(h_{t-1}, s_{t-1}, a_{t-1}).

    :meth:`reset` at an episode's start (the zero state); :meth:`observe` with each real frame y_t and the
    action a_{t-1} that led to it (None for the episode's first frame: the zero action, as in training).
    ``sample``: draw s_t from the posterior (PlaNet) or take its mean.
    """

    def __init__(self, model: RecurrentSSM, *, generator: torch.Generator | None = None, sample: bool = True) -> None:
        self.model = model
        self.generator = generator
        self.sample = sample
        self.state: LatentState | None = None
        """the posterior state of the last frame, batch shape (1,); None before the episode's first frame"""

    def reset(self) -> None:
        """Start of an episode: the zero state h_0 = 0, s_0 = 0, before the first frame is observed."""
        self.state = None

    @torch.no_grad()
    def observe(self, frame: Any, last_action: Any = None) -> LatentState:
        """Update the filter with ``frame`` y_t, uint8 (64, 64, 3), reached by ``last_action`` a_{t-1}, (A,)
        (None: the episode's first frame, a_{t-1} = 0). Returns the posterior state (batch shape (1,))."""
        frame = check_frame("frame", frame)
        model = self.model
        zero = model.initial_state(1)  # h_0 = 0, s_0 = 0 on the model's device and dtype
        state = zero if self.state is None else self.state
        if last_action is None:
            action = zero.s.new_zeros(1, model.action_dim)
        else:
            action = torch.as_tensor(np.asarray(last_action, dtype=np.float32)).to(zero.s)
            if tuple(action.shape) != (model.action_dim,):
                raise ValueError(f"last_action: expected shape ({model.action_dim},), got {tuple(action.shape)}")
            action = action[None]
        posterior, _ = model.observe_step(state, action, frame.to(zero.s.device)[None], generator=self.generator)
        if not self.sample:
            posterior = LatentState(posterior.h, posterior.mean, posterior.mean, posterior.std, posterior.embedding)
        self.state = posterior
        return posterior


class LatentActor:
    """Filter the frame, then choose an action from the latent state, remembering it for the next frame.

    ``choose(state, explore) -> (A,) tensor`` is the agent's decision (PlaNet: CEM; Dreamer: the actor);
    with ``explore`` Gaussian noise of std ``exploration_std`` is added and the action clipped to the box.
    """

    def __init__(self, filter_: LatentFilter, action_low: np.ndarray, action_high: np.ndarray,
                 exploration_std: float, generator: torch.Generator) -> None:
        self.filter = filter_
        self.low = np.asarray(action_low, dtype=np.float32)
        self.high = np.asarray(action_high, dtype=np.float32)
        self.exploration_std = float(exploration_std)
        self.generator = generator
        self.last_action: np.ndarray | None = None

    def reset(self) -> None:
        self.filter.reset()
        self.last_action = None

    def step(self, frame: Any, choose, explore: bool) -> np.ndarray:
        """a_t = clip(choose(filter(y_t, a_{t-1})) + ε), ε ~ N(0, σ²) when exploring: (A,) float32."""
        state = self.filter.observe(frame, self.last_action)
        action = choose(state, explore)
        if explore and self.exploration_std > 0:
            noise = torch.randn(action.shape, generator=self.generator, device=action.device, dtype=action.dtype)
            action = action + self.exploration_std * noise
        action = np.clip(action.detach().cpu().numpy().astype(np.float32), self.low, self.high)
        self.last_action = action
        return action


# ----------------------------------------------------------------------------------------------- figures
@torch.no_grad()
def reconstruct_and_imagine(model: RecurrentSSM, frames: torch.Tensor, actions: torch.Tensor,
                            context: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's view of one recorded episode: reconstructions and an open-loop imagination.

    ``frames: (T, 64, 64, 3)`` uint8 y_{1:T}, ``actions: (T, A)`` the action before each (zero before the first).
    Reconstruction: dec(h_t, s_t) of the filtered posterior means at every t. Imagination: the first ``context``
    frames C are filtered (and shown reconstructed), then the prior follows the recorded actions open loop with
    its means for t > C. Returns (reconstruction, imagination), each ``(T, 64, 64, 3)`` uint8.
    """
    T = frames.shape[0]
    C = min(check_positive_int("context", context), T)
    device = model.initial_state(1).s.device
    frames, actions = frames.to(device)[None], actions.to(device)[None]
    generator = torch.Generator(device=device).manual_seed(0)
    posterior, _ = model.observe(frames, actions, generator=generator)
    reconstruction = postprocess_frames(model.decode(torch.cat([posterior.h, posterior.mean], -1)))[0]
    if C == T:
        return reconstruction, reconstruction.clone()
    imagined, _ = open_loop_prediction(model, frames, actions, C, T - C, generator=generator)
    return reconstruction, torch.cat([reconstruction[:C], postprocess_frames(imagined)[0]])
