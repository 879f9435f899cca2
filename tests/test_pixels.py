"""Tests of the pixel wrapper (mbrl_course.envs.pixels) against the plain envs and the drawing's geometry."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from mbrl_course.envs import (
    CARTPOLE_SWINGUP_ID,
    DEFAULT_ACTION_REPEAT,
    PIXEL_ENV_IDS,
    PixelObservation,
    draw_cartpole_frame,
    draw_pendulum,
    make_env,
    make_pixel_env,
    render_frame,
)
from mbrl_course.envs.pixels import CARTPOLE_VIEW, PENDULUM_VIEW

WHITE = (255, 255, 255)
POLE = (205, 140, 60)  # the cart-pole's pole colour
ROD = (204, 77, 77)  # gymnasium's pendulum rod colour


def actions(env: gym.Env, n: int, seed: int) -> list[np.ndarray]:
    """n actions drawn uniformly from the env's action box with their own generator."""
    rng = np.random.default_rng(seed)
    low, high = env.action_space.low, env.action_space.high
    return [rng.uniform(low, high).astype(env.action_space.dtype) for _ in range(n)]


def pixel_of(u: float, v: float, size: int, view: float) -> tuple[int, int]:
    """(row, col) of the pixel holding world point (u, v) in a square view of side ``view`` centred on 0."""
    scale = size / view
    return math.floor(size / 2 - v * scale), math.floor(size / 2 + u * scale)


# ---------------------------------------------------------------------------------------------
# Spaces, shapes, determinism
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("env_id", PIXEL_ENV_IDS)
@pytest.mark.parametrize("size", [64, 32])
def test_frames_are_uint8_images_inside_the_observation_space(env_id, size):
    env = make_pixel_env(env_id, size=size, seed=0)
    assert env.observation_space == gym.spaces.Box(0, 255, (size, size, 3), np.uint8)
    frame, info = env.reset()
    frames = [frame]
    for action in actions(env, 5, seed=1):
        frame, reward, terminated, truncated, info = env.step(action)
        frames.append(frame)
        assert isinstance(reward, float) and not terminated and not truncated
    for frame in frames:
        assert frame.shape == (size, size, 3) and frame.dtype == np.uint8
        assert env.observation_space.contains(frame)
    assert np.array_equal(env.render(), frames[-1])
    assert env.action_repeat == DEFAULT_ACTION_REPEAT[env_id]


@pytest.mark.parametrize("env_id", PIXEL_ENV_IDS)
def test_same_seed_gives_identical_frames_and_another_seed_does_not(env_id):
    def episode(seed: int) -> tuple[np.ndarray, list[float]]:
        env = make_pixel_env(env_id, seed=seed)
        frames, rewards = [env.reset()[0]], []
        for action in actions(env, 8, seed=123):
            frame, reward, *_ = env.step(action)
            frames.append(frame)
            rewards.append(reward)
        return np.stack(frames), rewards

    frames_a, rewards_a = episode(7)
    frames_b, rewards_b = episode(7)
    frames_c, _ = episode(8)
    assert np.array_equal(frames_a, frames_b) and rewards_a == rewards_b
    assert not np.array_equal(frames_a, frames_c)


# ---------------------------------------------------------------------------------------------
# Action repeat and the true state, against the plain env stepped by hand
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("env_id", PIXEL_ENV_IDS)
@pytest.mark.parametrize("repeat", [1, 3])
def test_action_repeat_sums_rewards_and_reaches_the_state_of_the_plain_env(env_id, repeat):
    pixel_env = make_pixel_env(env_id, action_repeat=repeat, seed=3)
    plain_env = make_env(env_id, seed=3)
    frame, info = pixel_env.reset()
    obs, _ = plain_env.reset()
    np.testing.assert_array_equal(info["state"], obs)
    np.testing.assert_array_equal(pixel_env.state, obs)
    for action in actions(plain_env, 6, seed=5):
        frame, reward, terminated, truncated, info = pixel_env.step(action)
        by_hand = 0.0
        for _ in range(repeat):
            obs, r, *_ = plain_env.step(action)
            by_hand += r
        assert reward == pytest.approx(by_hand, rel=1e-12, abs=1e-12)
        np.testing.assert_array_equal(info["state"], obs)
        np.testing.assert_array_equal(pixel_env.state, obs)
        assert info["env_steps"] == repeat
        # the frame is the drawing of the state reached, not of an intermediate one
        np.testing.assert_array_equal(frame, render_frame(plain_env))


def test_state_is_a_copy_that_the_caller_cannot_corrupt():
    env = make_pixel_env(CARTPOLE_SWINGUP_ID, seed=0)
    _, info = env.reset()
    info["state"][:] = 99.0
    env.state[:] = 99.0
    assert not np.any(env.state == 99.0)


def test_truncation_inside_a_repeat_stops_the_repeat():
    # 5 env steps at R = 2: agent steps of 2, 2 and 1 env steps, the last one truncated
    pixel_env = make_pixel_env("Pendulum-v1", action_repeat=2, seed=4, max_episode_steps=5)
    plain_env = make_env("Pendulum-v1", seed=4, max_episode_steps=5)
    pixel_env.reset()
    plain_env.reset()
    action = np.array([1.5], dtype=np.float32)
    outcomes = [pixel_env.step(action) for _ in range(3)]
    assert [o[4]["env_steps"] for o in outcomes] == [2, 2, 1]
    assert [o[3] for o in outcomes] == [False, False, True]
    plain = [plain_env.step(action) for _ in range(5)]
    assert plain[4][3] is True
    assert outcomes[2][1] == pytest.approx(plain[4][1], rel=1e-12)
    np.testing.assert_array_equal(outcomes[2][4]["state"], plain[4][0])


class TerminateAfter(gym.Wrapper):
    """Terminate (not truncate) the episode at the n-th step: the course's envs never terminate."""

    def __init__(self, env: gym.Env, n: int) -> None:
        super().__init__(env)
        self.n, self.count = n, 0

    def reset(self, **kwargs):
        self.count = 0
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.count += 1
        return obs, reward, terminated or self.count >= self.n, truncated, info


def test_termination_inside_a_repeat_stops_the_repeat_and_sums_only_the_steps_taken():
    pixel_env = PixelObservation(TerminateAfter(make_env(CARTPOLE_SWINGUP_ID, seed=2), 6), action_repeat=4)
    plain_env = make_env(CARTPOLE_SWINGUP_ID, seed=2)
    pixel_env.reset()
    plain_env.reset()
    action = np.array([3.0], dtype=np.float32)
    _, _, terminated, _, info = pixel_env.step(action)
    assert not terminated and info["env_steps"] == 4
    frame, reward, terminated, truncated, info = pixel_env.step(action)
    assert terminated and not truncated and info["env_steps"] == 2
    plain = [plain_env.step(action) for _ in range(6)]
    assert reward == pytest.approx(plain[4][1] + plain[5][1], rel=1e-12)
    np.testing.assert_array_equal(info["state"], plain[5][0])


# ---------------------------------------------------------------------------------------------
# The frames show the state where geometry says
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("theta", [0.0, math.pi, 0.7, -2.0])
def test_pendulum_rod_is_where_the_angle_points_and_nowhere_opposite(theta):
    size = 64
    frame = draw_pendulum(theta, size=size)
    # tip at l (-sin θ, cos θ), l = 1; rod half width 0.1 m = 1.3 px, so a pixel holding a point of
    # the rod's axis lies inside the rod entirely and has exactly the rod's colour
    direction = np.array([-math.sin(theta), math.cos(theta)])
    for s in (0.3, 0.5, 0.7, 0.9):
        assert tuple(frame[pixel_of(*(s * direction), size, PENDULUM_VIEW)]) == ROD
        assert tuple(frame[pixel_of(*(-s * direction), size, PENDULUM_VIEW)]) == WHITE
    assert tuple(frame[pixel_of(0.0, 0.0, size, PENDULUM_VIEW)]) == (0, 0, 0)  # the pivot


def test_pendulum_up_and_down_frames_differ_where_the_rod_is():
    up, down = draw_pendulum(0.0), draw_pendulum(math.pi)
    changed_rows = np.flatnonzero(np.any(up != down, axis=(1, 2)))
    changed_cols = np.flatnonzero(np.any(up != down, axis=(0, 2)))
    # the rod (length 1 m + 0.1 m cap, in a 2.4 m view of 64 px) spans rows 32 ± 29.3, columns 32 ± 2.7
    assert changed_rows.min() <= 4 and changed_rows.max() >= 59
    assert changed_cols.min() >= 29 and changed_cols.max() <= 34
    np.testing.assert_array_equal(up[::-1], down)  # mirror images about the pivot's row


@pytest.mark.parametrize("theta", [0.0, math.pi, 0.5])
def test_cartpole_pole_is_where_the_state_puts_it(theta):
    size, pole_length = 64, 0.6
    # the cart at x = 0.825 m puts the pivot on a pixel centre (column 48.5), so an upright pole (1 px
    # wide) covers the whole pixel; a tilted one covers the pixel that holds a point of its axis mostly
    x = 0.825
    frame = draw_cartpole_frame(x, theta, pole_length, size=size)
    direction = np.array([math.sin(theta), math.cos(theta)])
    for s in (0.5, 0.75):  # above (or below) the cart, short of the target ring
        u, v = np.array([x, 0.0]) + s * pole_length * direction
        pixel = frame[pixel_of(u, v, size, CARTPOLE_VIEW)].astype(int)
        if theta in (0.0, math.pi):
            assert tuple(pixel) == POLE
        else:  # the anti-aliased pole: nearer the pole's colour than the background's
            assert np.abs(pixel - POLE).sum() < np.abs(pixel - WHITE).sum()
        u, v = np.array([x, 0.0]) - s * pole_length * direction
        assert tuple(frame[pixel_of(u, v, size, CARTPOLE_VIEW)]) == WHITE
    # the cart is a 0.5 m × 0.25 m box around (x, 0)
    assert tuple(frame[pixel_of(x - 0.2, 0.08, size, CARTPOLE_VIEW)]) == (60, 90, 160)


def test_cartpole_frames_change_with_the_pole_angle_and_the_cart_position():
    env = make_pixel_env(CARTPOLE_SWINGUP_ID, seed=0)
    frames = [env.reset(options={"state": state})[0] for state in ([0, 0, 0, 0], [0, 0, 1.0, 0], [0.5, 0, 1.0, 0])]
    assert not np.array_equal(frames[0], frames[1])
    assert not np.array_equal(frames[1], frames[2])
    # the velocities are not drawn: a state that differs only in them gives the same frame
    same = env.reset(options={"state": [0.5, 3.0, 1.0, -2.0]})[0]
    np.testing.assert_array_equal(same, frames[2])


# ---------------------------------------------------------------------------------------------
# Headless, gymnasium's checker, errors
# ---------------------------------------------------------------------------------------------


def test_runs_without_display_opengl_or_pygame():
    script = (
        "import sys\n"
        "from mbrl_course.envs import make_pixel_env, PIXEL_ENV_IDS\n"
        "for env_id in PIXEL_ENV_IDS:\n"
        "    env = make_pixel_env(env_id, seed=0)\n"
        "    frame, _ = env.reset()\n"
        "    frame, *_ = env.step(env.action_space.sample())\n"
        "    assert frame.shape == (64, 64, 3), frame.shape\n"
        "assert 'pygame' not in sys.modules, 'pygame was imported'\n"
        "print('ok')\n"
    )
    headless = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MUJOCO_GL", "DISPLAY", "WAYLAND_DISPLAY", "PYOPENGL_PLATFORM", "SDL_VIDEODRIVER")
    }
    result = subprocess.run(
        [sys.executable, "-c", script], env=headless, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.mark.parametrize("env_id", PIXEL_ENV_IDS)
def test_gymnasium_env_checker_passes(env_id):
    env = make_pixel_env(env_id, seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env)
    # allowed: gymnasium's note that a wrapped env is checked, and its advice to normalise the action
    # box, which is the plain env's (Pendulum-v1: [-2, 2] N m, the cart-pole: [-10, 10] N)
    allowed = ("different from the unwrapped version", "symmetric and normalized space")
    others = [str(w.message) for w in caught if not any(a in str(w.message) for a in allowed)]
    assert not others, others


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"env_id": "HalfCheetah-v5"}, ValueError, "Pendulum-v1"),
        ({"env_id": "CartPole-v1"}, ValueError, CARTPOLE_SWINGUP_ID),
        ({"env_id": "Pendulum-v1", "size": 8}, ValueError, "size: expected a frame side >= 16"),
        ({"env_id": "Pendulum-v1", "size": 0}, ValueError, "size"),
        ({"env_id": "Pendulum-v1", "size": 64.0}, TypeError, "size"),
        ({"env_id": "Pendulum-v1", "action_repeat": 0}, ValueError, "action_repeat"),
        ({"env_id": "Pendulum-v1", "action_repeat": 2.5}, TypeError, "action_repeat"),
    ],
)
def test_bad_arguments_are_refused_with_a_message(kwargs, error, message):
    with pytest.raises(error, match=message):
        make_pixel_env(**kwargs)


def test_wrapper_refuses_an_env_it_cannot_draw():
    env = make_env("MountainCarContinuous-v0")
    with pytest.raises(ValueError, match="env: expected one of"):
        PixelObservation(env)
