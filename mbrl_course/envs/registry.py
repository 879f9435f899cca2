"""Which envs the course supports, and how to make one."""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np

SUPPORTED_ENVS: tuple[str, ...] = (
    "Pendulum-v1",
    "MountainCarContinuous-v0",
    "InvertedPendulum-v5",
    "HalfCheetah-v5",
    "mbrl_course/CartPoleSwingUp-v0",
)
"""The env ids that ``make_env``, ``reward_fn``, ``termination_fn`` and ``dynamics_fn`` accept."""


def check_env_id(env_id: str, supported: tuple[str, ...] | None = None) -> str:
    """Refuse an env id outside ``SUPPORTED_ENVS`` with the list of the supported ones."""
    supported = SUPPORTED_ENVS if supported is None else supported
    if not isinstance(env_id, str) or env_id not in supported:
        raise ValueError(f"env_id: expected one of {', '.join(map(repr, supported))}, got {env_id!r}")
    return env_id


def check_bounded_box_actions(env: gym.Env) -> None:
    """Refuse an env whose action space is not a ``Box`` with finite bounds on both sides.

    Planners sample u ~ U(u_min, u_max) and clip to the box, so they need u_min and u_max.
    """
    space = env.action_space
    name = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
    if not isinstance(space, gym.spaces.Box):
        raise ValueError(
            f"env {name!r}: expected a continuous action space gymnasium.spaces.Box with finite bounds, "
            f"got {space!r}"
        )
    if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
        raise ValueError(
            f"env {name!r}: expected an action Box with finite bounds on both sides, "
            f"got low={space.low}, high={space.high}"
        )


def make_env(env_id: str, *, seed: int | None = None, render_mode: str | None = None, **kwargs) -> gym.Env:
    """``gymnasium.make(env_id, render_mode=render_mode, **kwargs)`` for a supported env id.

    Args:
        env_id: one of ``SUPPORTED_ENVS``.
        seed: if given, the env is reset once with ``seed`` and its action and observation spaces are
            seeded with it, so the same seed gives the same episodes and the same ``action_space.sample()``.
            Call ``env.reset()`` to start an episode.
        render_mode: ``None`` or ``"rgb_array"`` (MuJoCo envs need ``MUJOCO_GL=egl`` on a headless machine).
        **kwargs: passed to ``gymnasium.make`` (e.g. ``max_episode_steps``, ``g`` for Pendulum-v1).
    Raises:
        ValueError: for an id outside ``SUPPORTED_ENVS`` or an env whose action space is not a bounded Box.
    """
    check_env_id(env_id)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise TypeError(f"seed: expected an integer or None, got {seed!r}")
    if env_id.startswith("mbrl_course/"):
        import mbrl_course.envs  # noqa: F401  (registers our own envs)
    if render_mode == "rgb_array":
        # classic-control envs draw with pygame: off-screen needs no display, and SDL's dummy
        # driver keeps it from complaining about a missing one on headless machines
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    env = gym.make(env_id, render_mode=render_mode, **kwargs)
    try:
        check_bounded_box_actions(env)
    except ValueError:
        env.close()
        raise
    if seed is not None:
        env.reset(seed=int(seed))
        env.action_space.seed(int(seed))
        env.observation_space.seed(int(seed))
    return env
