"""Environments of the course and their batched torch reward / termination / dynamics functions.

Pixel observations for PlaNet and Dreamer (64 × 64 × 3 uint8 frames, action repeat, the true state in
``info["state"]``): ``make_pixel_env`` in ``mbrl_course.envs.pixels``.

Importing this package registers ``mbrl_course/CartPoleSwingUp-v0`` with gymnasium and chooses the
OpenGL backend MuJoCo renders with (:func:`choose_gl_backend`), before anything imports mujoco.

>>> import torch
>>> from mbrl_course.envs import make_env, reward_fn
>>> env = make_env("Pendulum-v1", seed=0)
>>> r = reward_fn("Pendulum-v1")(torch.zeros(8, 3), torch.zeros(8, 1), torch.zeros(8, 3))
>>> r.shape
torch.Size([8])
"""

from __future__ import annotations

import gymnasium as gym

from mbrl_course.envs.cartpole_swingup import (
    ENV_ID as CARTPOLE_SWINGUP_ID,
)
from mbrl_course.envs.cartpole_swingup import (
    MAX_EPISODE_STEPS as CARTPOLE_SWINGUP_MAX_EPISODE_STEPS,
)
from mbrl_course.envs.cartpole_swingup import (
    CartPoleSwingUpEnv,
    CartPoleSwingUpParams,
    cartpole_step,
    draw_cartpole,
)
from mbrl_course.envs.functions import (
    DynamicsFn,
    EnvFunctions,
    RewardFn,
    TerminationFn,
    dynamics_fn,
    env_functions,
    reward_fn,
    termination_fn,
)
from mbrl_course.envs.pixels import (
    DEFAULT_ACTION_REPEAT,
    PIXEL_ENV_IDS,
    PixelObservation,
    draw_cartpole_frame,
    draw_pendulum,
    make_pixel_env,
    render_frame,
)
from mbrl_course.envs.registry import MUJOCO_ENVS, SUPPORTED_ENVS, check_bounded_box_actions, make_env
from mbrl_course.envs.rendering import GLBackend, RenderingUnavailableWarning, choose_gl_backend

choose_gl_backend()  # mujoco reads MUJOCO_GL once, at its import: choose before any env imports it

if CARTPOLE_SWINGUP_ID not in gym.registry:
    gym.register(
        id=CARTPOLE_SWINGUP_ID,
        entry_point="mbrl_course.envs.cartpole_swingup:CartPoleSwingUpEnv",
        max_episode_steps=CARTPOLE_SWINGUP_MAX_EPISODE_STEPS,
    )

__all__ = [
    "CARTPOLE_SWINGUP_ID",
    "CARTPOLE_SWINGUP_MAX_EPISODE_STEPS",
    "DEFAULT_ACTION_REPEAT",
    "MUJOCO_ENVS",
    "PIXEL_ENV_IDS",
    "SUPPORTED_ENVS",
    "CartPoleSwingUpEnv",
    "CartPoleSwingUpParams",
    "DynamicsFn",
    "EnvFunctions",
    "GLBackend",
    "PixelObservation",
    "RenderingUnavailableWarning",
    "RewardFn",
    "TerminationFn",
    "cartpole_step",
    "check_bounded_box_actions",
    "choose_gl_backend",
    "draw_cartpole",
    "draw_cartpole_frame",
    "draw_pendulum",
    "dynamics_fn",
    "env_functions",
    "make_env",
    "make_pixel_env",
    "render_frame",
    "reward_fn",
    "termination_fn",
]
