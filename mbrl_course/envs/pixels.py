"""Pixel observations for PlaNet and Dreamer: small RGB frames, action repeat, the true state aside.

PlaNet (Hafner et al., 2019) and Dreamer (Hafner et al., 2020) learn from images o_t ∈ {0..255}^{64×64×3}
and repeat each action R times: the agent sees one frame and one summed reward per R env steps,

    o_{k+1} = render(s_{(k+1)R}),   r_k = Σ_{j=0}^{R-1} r(s_{kR+j}, a_k, s_{kR+j+1}),

so a planning horizon of H agent steps covers H·R env steps and the model is unrolled R times less.
The episode ends within a repeat as soon as the env terminates or is truncated (the remaining
repeats are skipped). ``info["state"]`` and ``PixelObservation.state`` hold the wrapped env's own
low-dimensional observation after the last env step, so tests and lectures can compare what a
latent model infers from pixels with the truth.

Frames are drawn with numpy only (no OpenGL, no pygame, no display), 4 × 4 supersampled for
anti-aliasing, and are a deterministic function of the env's state: the same seed and actions give
the same frames bit for bit.

- ``mbrl_course/CartPoleSwingUp-v0``: the env's own ``draw_cartpole`` with a square camera of
  x, y ∈ [-1.6, 1.6] m around the track's origin (the pole, l = 0.6 m, fits whether up or down;
  a cart beyond |x| ≈ 1.85 m leaves the view). At 64 px one pixel is 5 cm: the pole is one pixel
  wide, the cart 10 × 5 pixels. The track is unbounded and nearly frictionless: under uniformly random
  forces the cart drifts away (median |x| ≈ 5 m over 100-step episodes, only about a quarter of the
  states inside the view), so seed episodes for a pixel model want gentler exploration forces.
- ``Pendulum-v1``: gymnasium draws it with pygame; ``draw_pendulum`` draws the same picture (a red
  rod of width 0.2 with rounded ends, a black pivot, white background) with numpy, in a view of
  x, y ∈ [-1.2, 1.2] m. As in gymnasium's picture the tip is at l (-sin θ, cos θ) (θ = 0 up,
  θ > 0 counter-clockwise), which is the direction its dynamics θ̈ = 3g/(2l) sin θ + 3u/(ml²) turn.
  Gymnasium's arrow for the last torque is left out: the frame shows the state only.

Action repeat, ``DEFAULT_ACTION_REPEAT``. PlaNet's values are for the DeepMind Control Suite, whose
control step is 0.01 s: cartpole swing-up R = 8 (0.08 s per decision), reacher 4, cheetah 4,
finger 2, cup 4, walker 2; Dreamer uses R = 2 on every task (0.02 s). What carries over is the
time between decisions, R · Δt, not R. Our cart-pole's step is already Δt = 0.1 s, so R = 8 would
decide every 0.8 s, too seldom to balance a pole whose upright instability grows as e^{t / 0.2 s};
the default R = 2 decides every 0.2 s (50 decisions per 10 s episode). CEM on the true dynamics
(horizon 2 s, 300 samples, 5 iterations, seed 0) returns 89.0, 89.1, 87.4 and 14.7 of 100 at
R = 1, 2, 4 and 8: R = 8 never balances. Pendulum-v1 (not in PlaNet) has Δt = 0.05 s; the default
R = 2 decides every 0.1 s, 100 decisions per 200-step episode (CEM, horizon 1.5 s: returns -122,
-122, -123, -126 at R = 1, 2, 4, 8, all swung up and held).
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.classic_control.pendulum import PendulumEnv

from mbrl_course._checks import check_positive_int
from mbrl_course.envs.cartpole_swingup import ENV_ID as CARTPOLE_SWINGUP_ID
from mbrl_course.envs.cartpole_swingup import CartPoleSwingUpEnv, draw_cartpole
from mbrl_course.envs.registry import check_env_id, make_env

PIXEL_ENV_IDS: tuple[str, ...] = ("Pendulum-v1", CARTPOLE_SWINGUP_ID)
"""The env ids that ``make_pixel_env`` accepts (those with a numpy renderer of their state)."""

DEFAULT_ACTION_REPEAT: dict[str, int] = {"Pendulum-v1": 2, CARTPOLE_SWINGUP_ID: 2}
"""R per env id when ``make_pixel_env`` gets ``action_repeat=None`` (see the module docstring)."""

MIN_SIZE = 16
"""Smallest frame side [pixels]: below it the cart-pole's pole is thinner than a third of a pixel."""

SUPERSAMPLE = 4
"""Frames are drawn at SUPERSAMPLE × the size and averaged over SUPERSAMPLE² blocks (anti-aliasing)."""

CARTPOLE_VIEW = 3.2
"""Side of the cart-pole's square view [m], centred on the track's origin."""

PENDULUM_VIEW = 2.4
"""Side of the pendulum's square view [m], centred on the pivot."""

_PENDULUM_COLOURS = {"background": (255, 255, 255), "rod": (204, 77, 77), "pivot": (0, 0, 0)}
_PENDULUM_ROD_HALF_WIDTH = 0.1  # [m], gymnasium's rod width 0.2
_PENDULUM_PIVOT_RADIUS = 0.05  # [m], gymnasium's axle


def check_size(size) -> int:
    """Return the frame side as an int, refusing non-integers and sides below ``MIN_SIZE``."""
    size = check_positive_int("size", size)
    if size < MIN_SIZE:
        raise ValueError(f"size: expected a frame side >= {MIN_SIZE} pixels, got {size}")
    return size


def downsample(image: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor`` × ``factor`` blocks of pixels: the box filter behind the anti-aliasing.

    Args:
        image: (factor·H, factor·W, C) uint8.
    Returns:
        (H, W, C) uint8, each pixel the rounded mean of its block.
    """
    big_h, big_w, channels = image.shape
    if big_h % factor or big_w % factor:
        raise ValueError(f"image: expected height and width divisible by factor={factor}, got {image.shape}")
    blocks = image.reshape(big_h // factor, factor, big_w // factor, factor, channels)
    return np.rint(blocks.mean(axis=(1, 3))).astype(np.uint8)


def draw_cartpole_frame(x: float, theta: float, pole_length: float, *, size: int = 64) -> np.ndarray:
    """The cart-pole as a small square frame: ``draw_cartpole`` with a ``CARTPOLE_VIEW`` m camera.

    The track (y = 0) runs through the middle of the frame; world point (u, v) [m] falls on pixel
    column size/2 + u·size/CARTPOLE_VIEW, row size/2 - v·size/CARTPOLE_VIEW (continuous coordinates,
    pixel i covers [i, i+1)).

    Args:
        x: cart position [m]; theta: pole angle from upright [rad]; pole_length: l [m].
    Returns:
        frame: (size, size, 3) uint8.
    """
    size = check_size(size)
    big = SUPERSAMPLE * size
    image = draw_cartpole(
        x, theta, pole_length, width=big, height=big, pixels_per_metre=big / CARTPOLE_VIEW, track_row=big // 2
    )
    return downsample(image, SUPERSAMPLE)


def draw_pendulum(theta: float, *, size: int = 64, length: float = 1.0) -> np.ndarray:
    """Pendulum-v1 as a small square frame: gymnasium's picture, drawn with numpy.

    The rod runs from the pivot (0, 0) to the tip l (-sin θ, cos θ) (θ = 0 up, θ > 0 counter-clockwise),
    a capsule of half width 0.1 m; the pivot is a black disc of radius 0.05 m. World point (u, v) [m]
    falls on pixel column size/2 + u·size/PENDULUM_VIEW, row size/2 - v·size/PENDULUM_VIEW.

    Args:
        theta: angle from upright [rad]; length: l, the rod's length [m] (Pendulum-v1: 1).
    Returns:
        frame: (size, size, 3) uint8.
    """
    size = check_size(size)
    big = SUPERSAMPLE * size
    centres = (np.arange(big) + 0.5 - big / 2) * (PENDULUM_VIEW / big)
    u, v = centres[None, :], -centres[:, None]  # u to the right, v upwards
    tip_u, tip_v = -length * math.sin(theta), length * math.cos(theta)
    # distance from each pixel centre to the segment pivot -> tip
    along = np.clip((u * tip_u + v * tip_v) / length**2, 0.0, 1.0)
    rod = np.hypot(u - along * tip_u, v - along * tip_v) <= _PENDULUM_ROD_HALF_WIDTH
    pivot = np.hypot(u, v) <= _PENDULUM_PIVOT_RADIUS
    image = np.empty((big, big, 3), dtype=np.uint8)
    image[:] = _PENDULUM_COLOURS["background"]
    image[rod] = _PENDULUM_COLOURS["rod"]
    image[pivot] = _PENDULUM_COLOURS["pivot"]
    return downsample(image, SUPERSAMPLE)


def render_frame(env: gym.Env, size: int = 64) -> np.ndarray:
    """Draw the current state of a supported env (wrapped or not) as a (size, size, 3) uint8 frame."""
    base = env.unwrapped
    if base.state is None:
        raise RuntimeError(f"render_frame: {type(base).__name__} has no state yet; call reset() first")
    if isinstance(base, CartPoleSwingUpEnv):
        x, _, theta, _ = base.state
        return draw_cartpole_frame(float(x), float(theta), base.params.pole_length, size=size)
    if isinstance(base, PendulumEnv):
        return draw_pendulum(float(base.state[0]), size=size, length=float(base.l))
    raise ValueError(
        f"env: expected one of {', '.join(PIXEL_ENV_IDS)} (CartPoleSwingUpEnv or PendulumEnv), "
        f"got {type(base).__name__}"
    )


class PixelObservation(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Observe (size, size, 3) uint8 frames of a supported env, each action repeated R times.

    - ``observation_space``: ``Box(0, 255, (size, size, 3), uint8)``; the action space is the env's.
    - ``step(a)``: steps the env with a up to R times, sums the rewards, stops after the first env step
      that terminates or truncates, and returns the frame of the state reached.
    - ``info["state"]`` after ``reset`` and ``step``, and ``state``: the wrapped env's own observation
      of that state (cart-pole: (x, ẋ, cos θ, sin θ, θ̇); Pendulum-v1: (cos θ, sin θ, θ̇)).
      ``info["env_steps"]`` after ``step``: how many env steps the repeat took (R, or fewer at the end).
    - ``render()``: the last observed frame (render mode ``"rgb_array"``).

    A ``max_episode_steps`` of the wrapped env counts env steps: a 100-step cart-pole episode is
    50 agent steps at R = 2.
    """

    def __init__(self, env: gym.Env, *, size: int = 64, action_repeat: int = 1) -> None:
        # recorded so that gymnasium can remake the wrapped env from ``env.spec`` (as check_env does)
        gym.utils.RecordConstructorArgs.__init__(self, size=size, action_repeat=action_repeat)
        gym.Wrapper.__init__(self, env)
        self.size = check_size(size)
        self.action_repeat = check_positive_int("action_repeat", action_repeat)
        base = env.unwrapped
        if not isinstance(base, (CartPoleSwingUpEnv, PendulumEnv)):
            raise ValueError(f"env: expected one of {', '.join(PIXEL_ENV_IDS)}, got {type(base).__name__}")
        self.observation_space = spaces.Box(0, 255, (self.size, self.size, 3), dtype=np.uint8)
        dt = base.params.dt if isinstance(base, CartPoleSwingUpEnv) else base.dt
        self.metadata = {
            **env.metadata,
            "render_modes": ["rgb_array"],
            "render_fps": 1.0 / (dt * self.action_repeat),
        }
        self._state: np.ndarray | None = None
        self._frame: np.ndarray | None = None

    @property
    def render_mode(self) -> str:
        """Always ``"rgb_array"``: ``render()`` returns the last frame."""
        return "rgb_array"

    @property
    def state(self) -> np.ndarray:
        """The wrapped env's low-dimensional observation of the current state (a copy), shape (obs_dim,)."""
        if self._state is None:
            raise RuntimeError("PixelObservation.state was read before reset")
        return self._state.copy()

    def _observe(self, low_dim_obs) -> np.ndarray:
        self._state = np.array(low_dim_obs, copy=True)
        self._frame = render_frame(self.env, self.size)
        return self._frame.copy()

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Reset the env; return the first frame, with ``info["state"]`` its low-dimensional observation."""
        low_dim_obs, info = self.env.reset(seed=seed, options=options)
        frame = self._observe(low_dim_obs)
        return frame, {**info, "state": self.state}

    def step(self, action):
        """Repeat ``action`` up to R env steps: (frame, Σ rewards, terminated, truncated, info)."""
        total_reward = 0.0
        terminated = truncated = False
        info: dict = {}
        env_steps = 0
        while env_steps < self.action_repeat and not (terminated or truncated):
            low_dim_obs, reward, terminated, truncated, info = self.env.step(action)
            total_reward += float(reward)
            env_steps += 1
        frame = self._observe(low_dim_obs)
        return frame, total_reward, terminated, truncated, {**info, "state": self.state, "env_steps": env_steps}

    def render(self) -> np.ndarray | None:
        """The last observed frame, (size, size, 3) uint8, or None before the first reset."""
        return None if self._frame is None else self._frame.copy()


def make_pixel_env(
    env_id: str,
    *,
    size: int = 64,
    action_repeat: int | None = None,
    seed: int | None = None,
    **kwargs,
) -> PixelObservation:
    """``make_env(env_id, seed=seed, **kwargs)`` observed through ``PixelObservation``.

    >>> env = make_pixel_env("Pendulum-v1", seed=0)
    >>> frame, info = env.reset()
    >>> frame.shape, frame.dtype, info["state"].shape
    ((64, 64, 3), dtype('uint8'), (3,))

    Args:
        env_id: one of ``PIXEL_ENV_IDS``.
        size: side of the square frames [pixels], at least ``MIN_SIZE``; PlaNet and Dreamer use 64.
        action_repeat: R; None takes ``DEFAULT_ACTION_REPEAT[env_id]``.
        seed: as for ``make_env``: the env is reset once with it and its spaces are seeded, so the
            same seed gives the same episodes and frames.
        **kwargs: passed to ``make_env`` (e.g. ``max_episode_steps``, counted in env steps).
    Raises:
        ValueError: for an id outside ``PIXEL_ENV_IDS``, a size below ``MIN_SIZE`` or R < 1.
    """
    check_env_id(env_id, PIXEL_ENV_IDS)
    size = check_size(size)
    repeat = DEFAULT_ACTION_REPEAT[env_id] if action_repeat is None else action_repeat
    repeat = check_positive_int("action_repeat", repeat)
    env = PixelObservation(make_env(env_id, seed=seed, **kwargs), size=size, action_repeat=repeat)
    if seed is not None:
        env.observation_space.seed(int(seed))
    return env
