"""Which envs the course supports, and how to make one."""

from __future__ import annotations

import os
import sys
import warnings

import gymnasium as gym
import numpy as np

from mbrl_course.envs.rendering import (
    DOCTOR_HINT,
    RenderingUnavailableWarning,
    choose_gl_backend,
    rendering_failed,
)

SUPPORTED_ENVS: tuple[str, ...] = (
    "Pendulum-v1",
    "MountainCarContinuous-v0",
    "InvertedPendulum-v5",
    "HalfCheetah-v5",
    "mbrl_course/CartPoleSwingUp-v0",
)
"""The env ids that ``make_env``, ``reward_fn``, ``termination_fn`` and ``dynamics_fn`` accept."""

MUJOCO_ENVS: tuple[str, ...] = ("InvertedPendulum-v5", "HalfCheetah-v5")
"""The supported envs that render with MuJoCo's OpenGL (the others draw with numpy / pygame)."""

TRACKING_CAMERA: dict[str, dict] = {"HalfCheetah-v5": {"camera_name": "track"}}
"""Render kwargs per env: the model's ``track`` camera follows the running cheetah's centre of mass.
gymnasium's v5 default is a free camera fixed where the cheetah starts, which it leaves within seconds."""


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

    Rendering never stops an env from being made: when a MuJoCo env cannot render here (no OpenGL
    backend loads, or its first frame raises), the env comes back without a renderer
    (``env.render_mode is None``) and one :class:`RenderingUnavailableWarning` says why and what to do.
    Code that records videos checks ``env.render_mode`` first.

    Args:
        env_id: one of ``SUPPORTED_ENVS``.
        seed: if given, the env is reset once with ``seed`` and its action and observation spaces are
            seeded with it, so the same seed gives the same episodes and the same ``action_space.sample()``.
            Call ``env.reset()`` to start an episode.
        render_mode: ``None`` or ``"rgb_array"``. MuJoCo's GL backend is chosen by
            :func:`mbrl_course.envs.rendering.choose_gl_backend`; HalfCheetah's camera follows the cheetah.
        **kwargs: passed to ``gymnasium.make`` (e.g. ``max_episode_steps``, ``g`` for Pendulum-v1,
            ``width``, ``height``, ``camera_name`` for MuJoCo envs).
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
    if render_mode is not None and env_id in MUJOCO_ENVS:
        env = _make_mujoco_rendering(env_id, render_mode, kwargs)
    else:
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


def _make_mujoco_rendering(env_id: str, render_mode: str, kwargs: dict) -> gym.Env:
    """A MuJoCo env that renders, or, where it cannot, the same env without a renderer and one warning."""
    if not {"camera_id", "camera_name"} & set(kwargs):
        kwargs = {**TRACKING_CAMERA.get(env_id, {}), **kwargs}
    error = choose_gl_backend().error
    if error is None:
        env = gym.make(env_id, render_mode=render_mode, **kwargs)
        error = _first_frame_error(env)
        if error is None:
            return env
        env.close()
        rendering_failed(error)
    warnings.warn(
        f"rendering is off for {env_id}: MuJoCo cannot render with {choose_gl_backend().describe()}: {error}. "
        f"The env steps as usual, but env.render_mode is None and no video is recorded; {DOCTOR_HINT}.",
        RenderingUnavailableWarning, stacklevel=3)
    return gym.make(env_id, render_mode=None, **kwargs)


def _first_frame_error(env: gym.Env) -> str | None:
    """Render one frame (this creates the GL context); ``None`` if it worked, else what went wrong.

    A failed context leaves gymnasium's half-built viewer to complain from ``__del__`` and GLFW to
    warn; both are folded into the one message the caller gives instead of reaching the user.
    """
    unraisable, hook = [], sys.unraisablehook
    sys.unraisablehook = unraisable.append
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                frame = env.unwrapped.render()  # unwrapped: the order checker wants a reset first
            except Exception as err:  # noqa: BLE001 (whatever the GL stack raises, the env must still step)
                error = f"{type(err).__name__}: {err}"
            else:
                shape = getattr(frame, "shape", None)
                error = None if shape is not None and len(shape) == 3 else f"the first frame is {shape or frame!r}"
    finally:
        sys.unraisablehook = hook
    if error is not None and caught:
        error += " (" + "; ".join(dict.fromkeys(str(w.message) for w in caught)) + ")"
    return error
