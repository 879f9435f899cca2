"""Pixel sequences for the recurrent SSMs: episodes of the pixel envs under an exploration policy.

Each sequence is one episode from a seeded reset, T agent steps (each action repeated R env steps, see
:mod:`mbrl_course.envs.pixels`), aligned as the world models of :mod:`mbrl_course.ssm.rssm` read them:

    frames[:, t] = y_t,  the frame after the action actions[:, t] (= a_{t-1} in the slide's indexing),
    rewards[:, t] = r,   the reward received with that frame (summed over the R repeats),
    states[:, t]         the env's own low-dimensional observation of the state shown in frames[:, t].

Two exploration policies:

- ``"random"``: a_t uniform in the action space, independent over time.
- ``"gentle"``: a smooth random force, an Ornstein–Uhlenbeck process ξ_t = ρ ξ_{t-1} + √(1 − ρ²) ε_t
  (ε_t ~ N(0, 1)) scaled to ``scale`` × the largest action, and, on the cart-pole, a weak spring and damper
  on the cart, −k_x x − k_v ẋ, using the true state: under uniformly random forces the unbounded track lets
  the cart drift out of the 3.2 m view within an episode (see :mod:`mbrl_course.envs.pixels`), and a frame
  without the cart teaches a model nothing.

Everything is seeded: sequence i runs the env reset with ``seed + i`` and draws its actions from
``numpy.random.default_rng(seed + i)``, so the same call gives the same frames bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mbrl_course._checks import check_choice, check_positive_float, check_positive_int
from mbrl_course.budget import by_budget
from mbrl_course.envs.pixels import CARTPOLE_SWINGUP_ID, DEFAULT_ACTION_REPEAT, PIXEL_ENV_IDS, make_pixel_env

POLICIES = ("random", "gentle")
CART_SPRING = 5.0
"""k_x [N/m] of the gentle policy's spring pulling the cart to the track's origin"""
CART_DAMPER = 5.0
"""k_v [N s/m] of the gentle policy's damper on the cart's velocity"""


@dataclass
class PixelSequences:
    """A batch of pixel episodes, aligned as in the module docstring."""

    frames: torch.Tensor
    """y_{1:T}: (B, T, 64, 64, 3) uint8"""
    actions: torch.Tensor
    """the action before each frame: (B, T, A) float32"""
    rewards: torch.Tensor
    """the reward received with each frame: (B, T) float32"""
    states: torch.Tensor
    """the env's low-dimensional observation of each frame's state: (B, T, obs_dim) float32"""
    env_id: str
    """the env the sequences come from"""

    def __len__(self) -> int:
        return self.frames.shape[0]

    def subset(self, index) -> PixelSequences:
        """The sequences at ``index`` (a slice or an index tensor)."""
        return PixelSequences(self.frames[index], self.actions[index], self.rewards[index], self.states[index],
                              self.env_id)


def collect_pixel_sequences(env_id: str = "Pendulum-v1", num_sequences: int | None = None, length: int | None = None,
                            *, policy: str = "gentle", scale: float = 0.5, correlation: float = 0.8,
                            action_repeat: int | None = None, seed: int = 0, progress: bool = False) -> PixelSequences:
    """``num_sequences`` episodes of ``length`` agent steps of a pixel env under an exploration ``policy``.

    ``env_id`` one of ``PIXEL_ENV_IDS``; ``num_sequences`` B (default by tier: smoke 8, default 96, full 500);
    ``length`` T (default by tier: smoke 8, default 50, full 100); ``policy`` "random" or "gentle" (see the module
    docstring), with ``scale`` the OU force's standard deviation as a fraction of the largest action and
    ``correlation`` its ρ; ``action_repeat`` R (None: the env's default). The episode's time limit is raised to
    fit T steps. Returns :class:`PixelSequences`.
    """
    check_choice("env_id", env_id, PIXEL_ENV_IDS)
    B = check_positive_int("num_sequences", by_budget(8, 96, 500) if num_sequences is None else num_sequences)
    T = check_positive_int("length", by_budget(8, 50, 100) if length is None else length)
    check_choice("policy", policy, POLICIES)
    scale = check_positive_float("scale", scale)
    rho = float(correlation)
    if not 0.0 <= rho < 1.0:
        raise ValueError(f"correlation: expected ρ in [0, 1), got {correlation!r}")
    R = check_positive_int("action_repeat", DEFAULT_ACTION_REPEAT[env_id] if action_repeat is None else action_repeat)
    frames, actions, rewards, states = [], [], [], []
    iterator = range(B)
    if progress:
        from tqdm.auto import tqdm
        iterator = tqdm(iterator, desc=f"collect {env_id}")
    for i in iterator:
        env = make_pixel_env(env_id, action_repeat=R, max_episode_steps=T * R + 1)
        rng = np.random.default_rng(seed + i)
        _, info = env.reset(seed=seed + i)
        low, high = env.action_space.low.astype(np.float64), env.action_space.high.astype(np.float64)
        xi = rng.standard_normal(low.shape)
        ep = ([], [], [], [])
        state = info["state"]
        for _ in range(T):
            if policy == "random":
                a = rng.uniform(low, high)
            else:
                xi = rho * xi + np.sqrt(1.0 - rho ** 2) * rng.standard_normal(low.shape)
                a = scale * high * xi
                if env_id == CARTPOLE_SWINGUP_ID:  # keep the cart in view: a weak spring and damper on x
                    a = a - CART_SPRING * state[0] - CART_DAMPER * state[1]
                a = np.clip(a, low, high)
            frame, reward, terminated, truncated, info = env.step(a.astype(np.float32))
            state = info["state"]
            for store, value in zip(ep, (frame, a, reward, state)):
                store.append(value)
            if terminated or truncated:
                raise RuntimeError(f"collect_pixel_sequences: the {env_id} episode ended after {len(ep[0])} of "
                                   f"{T} steps (seed {seed + i}); ask for shorter sequences")
        env.close()
        for store, values in zip((frames, actions, rewards, states), ep):
            store.append(np.stack(values))
    return PixelSequences(torch.from_numpy(np.stack(frames)), torch.as_tensor(np.stack(actions), dtype=torch.float32),
                          torch.as_tensor(np.stack(rewards), dtype=torch.float32),
                          torch.as_tensor(np.stack(states), dtype=torch.float32), env_id)
