"""PILCO's cart-pole swing-up (Deisenroth & Rasmussen, 2011), without MuJoCo.

A cart of mass M rolls on a frictional track (coefficient b) and carries a uniform rod of mass m
and length l on a frictionless pivot. A horizontal force u ∈ [-u_max, u_max] pushes the cart.
The state is s = (x, ẋ, θ, θ̇) with θ the pole angle measured from upright (θ = 0: pole up,
θ = π: pole hanging down; the same convention as gymnasium's Pendulum-v1 and CartPole-v1).

Equations of motion (Lagrangian of the cart and the uniform rod; the rod's centre of mass sits at
l/2 and its inertia about the pivot is m l²/3: PILCO's cart-pole equations, rewritten for θ
measured from upright; derived again and checked in tests/test_envs.py):

    ẍ = (4 (u - b ẋ) - 3 m g sin θ cos θ + 2 m l θ̇² sin θ) / (4 (M + m) - 3 m cos² θ)
    θ̈ = 3 / (2 l) · (g sin θ - ẍ cos θ)

The force is held constant over each control step Δt = 0.1 s (zero-order hold) and the ODE is
integrated with ``substeps`` = 5 classical Runge-Kutta-4 steps of size h = Δt / 5 = 0.02 s: one
control step stays within 1e-4 of the exact flow of the ODE over |θ̇| ≤ 8 rad/s, |u| ≤ 10 N (tested
against scipy's DOP853 at rtol 1e-12); more substeps buy accuracy ∝ h⁴ at a cost ∝ substeps, which
matters for the batched torch dynamics inside a planner.

The pole tip is at p(s) = (x + l sin θ, l cos θ); its target is the tip of the upright pole above
the track's origin, p* = (0, l). With d² = ‖p(s) - p*‖² = x² + 2 x l sin θ + 2 l² (1 - cos θ),
the reward is PILCO's saturating cost turned into a reward,

    r(s_{t+1}) = exp(-d² / (2 σ_c²)) ∈ (0, 1],   σ_c = 0.25 m,

i.e. r = 1 - c(s) with PILCO's cost c(s) = 1 - exp(-d²/(2σ_c²)). The reward is taken on the
state reached by the step, s_{t+1}, and does not depend on the action.

The physics functions below are written with plain arithmetic plus ``sin``/``cos``/``exp`` that
dispatch on the argument: the same code runs on Python floats (the env's ``step``) and on batched
torch tensors of any leading shape and device (``mbrl_course.envs.dynamics_fn``), so the env and
the torch oracle cannot drift apart.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

ENV_ID = "mbrl_course/CartPoleSwingUp-v0"
MAX_EPISODE_STEPS = 100


@dataclass(frozen=True)
class CartPoleSwingUpParams:
    """Physical and task constants of the swing-up (defaults: PILCO's cart-pole)."""

    cart_mass: float = 0.5
    """M: mass of the cart [kg]."""
    pole_mass: float = 0.5
    """m: mass of the pole, a uniform rod [kg]."""
    pole_length: float = 0.6
    """l: length of the pole, pivot to tip [m]."""
    friction: float = 0.1
    """b: viscous friction between cart and track [N s/m]."""
    gravity: float = 9.82
    """g: gravitational acceleration [m/s²] (PILCO's value)."""
    max_force: float = 10.0
    """u_max: the force is clipped to [-u_max, u_max] [N]."""
    dt: float = 0.1
    """Δt: duration of one control step [s]."""
    substeps: int = 5
    """Number of RK4 steps per control step (step size Δt / substeps)."""
    cost_width: float = 0.25
    """σ_c: width of the saturating reward exp(-d²/(2σ_c²)) [m]."""

    def __post_init__(self) -> None:
        for name in ("cart_mass", "pole_mass", "pole_length", "gravity", "max_force", "dt", "cost_width"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")
        if not (isinstance(self.friction, (int, float)) and math.isfinite(self.friction) and self.friction >= 0):
            raise ValueError(f"friction: expected a finite number >= 0, got {self.friction!r}")
        if isinstance(self.substeps, bool) or not isinstance(self.substeps, int) or self.substeps < 1:
            raise ValueError(f"substeps: expected an integer >= 1, got {self.substeps!r}")


def _sin(v):
    return torch.sin(v) if isinstance(v, torch.Tensor) else math.sin(v)


def _cos(v):
    return torch.cos(v) if isinstance(v, torch.Tensor) else math.cos(v)


def _exp(v):
    return torch.exp(v) if isinstance(v, torch.Tensor) else math.exp(v)


def cartpole_derivatives(state: tuple, force, params: CartPoleSwingUpParams) -> tuple:
    """ds/dt = f(s, u) for s = (x, ẋ, θ, θ̇), θ from upright.

    ẍ = (4 (u - b ẋ) - 3 m g sin θ cos θ + 2 m l θ̇² sin θ) / (4 (M + m) - 3 m cos² θ),
    θ̈ = 3 / (2 l) · (g sin θ - ẍ cos θ).

    Args:
        state: (x, ẋ, θ, θ̇), each a float or a tensor of shape (...).
        force: u, a float or a tensor of shape (...), already clipped.
    Returns:
        (ẋ, ẍ, θ̇, θ̈), same types and shapes.
    """
    _, x_dot, theta, theta_dot = state
    M, m, l = params.cart_mass, params.pole_mass, params.pole_length
    b, g = params.friction, params.gravity
    sin_t, cos_t = _sin(theta), _cos(theta)
    x_acc = (4.0 * (force - b * x_dot) - 3.0 * m * g * sin_t * cos_t + 2.0 * m * l * theta_dot**2 * sin_t) / (
        4.0 * (M + m) - 3.0 * m * cos_t**2
    )
    theta_acc = 3.0 / (2.0 * l) * (g * sin_t - x_acc * cos_t)
    return (x_dot, x_acc, theta_dot, theta_acc)


def cartpole_step(state: tuple, force, params: CartPoleSwingUpParams) -> tuple:
    """s_{t+1} = RK4^K(s_t, u_t): ``substeps`` = K Runge-Kutta-4 steps of h = Δt / K, u held constant.

    k₁ = f(s), k₂ = f(s + h/2 k₁), k₃ = f(s + h/2 k₂), k₄ = f(s + h k₃),
    s ← s + h/6 (k₁ + 2 k₂ + 2 k₃ + k₄).

    Args:
        state: (x, ẋ, θ, θ̇), floats or tensors of shape (...).
        force: u, float or tensor of shape (...); clipped here to [-u_max, u_max].
    """
    if isinstance(force, torch.Tensor):
        force = force.clamp(-params.max_force, params.max_force)
    else:
        force = min(max(float(force), -params.max_force), params.max_force)
    h = params.dt / params.substeps
    s = tuple(state)
    for _ in range(params.substeps):
        k1 = cartpole_derivatives(s, force, params)
        k2 = cartpole_derivatives(tuple(si + 0.5 * h * ki for si, ki in zip(s, k1)), force, params)
        k3 = cartpole_derivatives(tuple(si + 0.5 * h * ki for si, ki in zip(s, k2)), force, params)
        k4 = cartpole_derivatives(tuple(si + h * ki for si, ki in zip(s, k3)), force, params)
        s = tuple(
            si + h / 6.0 * (a + 2.0 * b_ + 2.0 * c + d) for si, a, b_, c, d in zip(s, k1, k2, k3, k4)
        )
    return s


def swingup_reward(x, cos_theta, sin_theta, params: CartPoleSwingUpParams):
    """r(s) = exp(-d² / (2 σ_c²)), d² = x² + 2 x l sin θ + 2 l² (1 - cos θ) (tip to upright target).

    d² is computed as the sum of squares (x + l sin θ)² + l² (cos θ − 1)², equal to the expanded form
    and never negative, so r ∈ [0, 1] for any input and a huge x gives r = 0 rather than inf − inf.
    """
    l = params.pole_length
    dist_sq = (x + l * sin_theta) ** 2 + (l * (cos_theta - 1.0)) ** 2
    return _exp(-0.5 * dist_sq / params.cost_width**2)


def cartpole_swingup_reward(
    obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor, params: CartPoleSwingUpParams
) -> torch.Tensor:
    """r_t = exp(-d²(s_{t+1}) / (2 σ_c²)) from next_obs = (x, ẋ, cos θ, sin θ, θ̇); obs and action unused.

    The angle is read as θ = atan2(sin θ, cos θ), as for Pendulum-v1: a learned model's prediction of
    (cos θ, sin θ) is off the unit circle, and taken literally a cos θ > 1 would make d² negative and
    the reward larger than 1, even +inf, which a planner then chases.

    Args:
        obs: (..., 5), action: (..., 1), next_obs: (..., 5).
    Returns:
        reward: (...).
    """
    theta = torch.atan2(next_obs[..., 3], next_obs[..., 2])
    return swingup_reward(next_obs[..., 0], torch.cos(theta), torch.sin(theta), params)


def cartpole_swingup_dynamics(
    obs: torch.Tensor, action: torch.Tensor, params: CartPoleSwingUpParams
) -> torch.Tensor:
    """next_obs = obs(RK4^K(s, clip(u))) with θ = atan2(sin θ, cos θ) read from obs.

    Args:
        obs: (..., 5) = (x, ẋ, cos θ, sin θ, θ̇); action: (..., 1), the force u [N].
    Returns:
        next_obs: (..., 5).
    """
    theta = torch.atan2(obs[..., 3], obs[..., 2])
    state = (obs[..., 0], obs[..., 1], theta, obs[..., 4])
    x, x_dot, theta, theta_dot = cartpole_step(state, action[..., 0], params)
    return torch.stack([x, x_dot, torch.cos(theta), torch.sin(theta), theta_dot], dim=-1)


# ---------------------------------------------------------------------------------------------
# Drawing (numpy only: no pygame, no display)
# ---------------------------------------------------------------------------------------------

_WIDTH, _HEIGHT = 600, 400
_PIXELS_PER_METRE = 125.0  # the view spans x ∈ [-2.4, 2.4] m
_TRACK_ROW = 250  # pixel row of the track (y = 0)
_CART_HALF = (0.25, 0.125)  # half width, half height [m]
_POLE_HALF_THICKNESS = 0.025  # [m]
_COLOURS = {
    "background": (255, 255, 255),
    "track": (110, 110, 110),
    "target": (220, 60, 60),
    "cart": (60, 90, 160),
    "pole": (205, 140, 60),
    "pivot": (40, 40, 40),
}


def _pixel_grid(
    width: int, height: int, pixels_per_metre: float = _PIXELS_PER_METRE, track_row: int = _TRACK_ROW
) -> tuple[np.ndarray, np.ndarray]:
    """World coordinates (metres) of the pixel centres: u (1, W) to the right, v (H, 1) upwards.

    The view is centred on x = 0; the track (y = 0) lies on the top edge of pixel row ``track_row``.
    """
    u = (np.arange(width) + 0.5 - width / 2) / pixels_per_metre
    v = (track_row - (np.arange(height) + 0.5)) / pixels_per_metre
    return u[None, :], v[:, None]


def draw_cartpole(
    x: float,
    theta: float,
    pole_length: float,
    *,
    width: int = _WIDTH,
    height: int = _HEIGHT,
    pixels_per_metre: float = _PIXELS_PER_METRE,
    track_row: int = _TRACK_ROW,
) -> np.ndarray:
    """Draw the cart-pole into an RGB image.

    Args:
        x: cart position [m]; theta: pole angle from upright [rad]; pole_length: l [m].
        width, height, pixels_per_metre, track_row: the camera. The defaults give the env's
            600 × 400 view of x ∈ [-2.4, 2.4] m; ``mbrl_course.envs.pixels`` draws small square
            frames with other values. The track is 3 pixel rows thick at any scale.
    Returns:
        image: (height, width, 3) uint8. The view spans x ∈ ±width / (2 pixels_per_metre) m; a red
        ring marks the target p* = (0, l) of the pole tip; a cart outside the view is clipped away.
    """
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:] = _COLOURS["background"]
    u, v = _pixel_grid(width, height, pixels_per_metre, track_row)
    image[max(track_row - 1, 0) : max(track_row + 2, 0), :] = _COLOURS["track"]

    ring = np.abs(np.hypot(u - 0.0, v - pole_length) - 0.06) < 0.012
    image[ring] = _COLOURS["target"]

    cart = (np.abs(u - x) <= _CART_HALF[0]) & (np.abs(v) <= _CART_HALF[1])
    image[cart] = _COLOURS["cart"]

    # distance from each pixel to the segment pivot (x, 0) -> tip (x + l sin θ, l cos θ)
    dx, dy = pole_length * math.sin(theta), pole_length * math.cos(theta)
    along = np.clip(((u - x) * dx + v * dy) / pole_length**2, 0.0, 1.0)
    pole = np.hypot(u - x - along * dx, v - along * dy) <= _POLE_HALF_THICKNESS
    image[pole] = _COLOURS["pole"]

    pivot = np.hypot(u - x, v) <= 0.035
    image[pivot] = _COLOURS["pivot"]
    return image


# ---------------------------------------------------------------------------------------------
# The gymnasium env
# ---------------------------------------------------------------------------------------------


class CartPoleSwingUpEnv(gym.Env):
    """Cart-pole swing-up with a continuous force (PILCO's benchmark), registered as
    ``mbrl_course/CartPoleSwingUp-v0``.

    - Action: u ∈ [-10, 10] N, ``Box(shape=(1,), float32)``; out-of-range forces are clipped.
    - Observation: (x, ẋ, cos θ, sin θ, θ̇), ``Box(shape=(5,), float64)``; θ from upright. cos/sin
      remove the 2π wrap of the angle (easier to learn); float64 so that the batched torch
      dynamics (``dynamics_fn``) reproduces ``step`` to ~1e-12.
    - Start: s₀ ~ N((0, 0, π, 0), σ₀² I), σ₀ = ``init_std`` = 0.1 (PILCO's): hanging down.
    - Reward: r(s_{t+1}) = exp(-d²/(2σ_c²)), σ_c = 0.25 m, d the distance of the pole tip from its
      upright target above the origin (see the module docstring); r ∈ (0, 1], 1 is best.
    - Termination: never (the track is unbounded, as in PILCO).
    - Truncation: after 100 steps = 10 s (``max_episode_steps`` of the registration): time to swing
      up and to show that the pole stays up. CEM on the true dynamics (horizon 20, 300 samples,
      5 iterations, seed 0) reaches r > 0.9 at step 10 and a return of about 91 of the maximal 100.
      Shorter episodes, as in PILCO's few-second horizons: ``make_env(..., max_episode_steps=40)``.
    - Rendering: ``render_mode="rgb_array"`` gives a (400, 600, 3) uint8 image drawn with numpy.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        render_mode: str | None = None,
        *,
        cart_mass: float = 0.5,
        pole_mass: float = 0.5,
        pole_length: float = 0.6,
        friction: float = 0.1,
        gravity: float = 9.82,
        max_force: float = 10.0,
        dt: float = 0.1,
        substeps: int = 5,
        cost_width: float = 0.25,
        init_std: float = 0.1,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode: expected None or one of {self.metadata['render_modes']}, got {render_mode!r}"
            )
        if not (isinstance(init_std, (int, float)) and math.isfinite(init_std) and init_std >= 0):
            raise ValueError(f"init_std: expected a finite number >= 0, got {init_std!r}")
        self.params = CartPoleSwingUpParams(
            cart_mass=cart_mass,
            pole_mass=pole_mass,
            pole_length=pole_length,
            friction=friction,
            gravity=gravity,
            max_force=max_force,
            dt=dt,
            substeps=substeps,
            cost_width=cost_width,
        )
        self.init_std = float(init_std)
        self.render_mode = render_mode
        self.metadata = {**type(self).metadata, "render_fps": max(1, round(1.0 / dt))}
        self.action_space = spaces.Box(low=-max_force, high=max_force, shape=(1,), dtype=np.float32)
        high = np.array([np.inf, np.inf, 1.0, 1.0, np.inf])
        self.observation_space = spaces.Box(low=-high, high=high, dtype=np.float64)
        self.state: np.ndarray | None = None

    def _get_obs(self) -> np.ndarray:
        x, x_dot, theta, theta_dot = self.state
        return np.array([x, x_dot, math.cos(theta), math.sin(theta), theta_dot], dtype=np.float64)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """s₀ ~ N((0, 0, π, 0), σ₀² I); ``options={"state": (x, ẋ, θ, θ̇)}`` starts from a given state."""
        super().reset(seed=seed)
        if options is not None and "state" in options:
            state = np.asarray(options["state"], dtype=np.float64)
            if state.shape != (4,) or not np.isfinite(state).all():
                raise ValueError(f"options['state']: expected 4 finite numbers (x, ẋ, θ, θ̇), got {state!r}")
            self.state = state.copy()
        else:
            mean = np.array([0.0, 0.0, math.pi, 0.0])
            self.state = mean + self.init_std * self.np_random.standard_normal(4)
        return self._get_obs(), {}

    def step(self, action):
        if self.state is None:
            raise RuntimeError("CartPoleSwingUpEnv.step was called before reset")
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        if action.shape != (1,):
            raise ValueError(f"action: expected shape (1,), got {np.shape(action)}")
        next_state = cartpole_step(tuple(float(s) for s in self.state), float(action[0]), self.params)
        self.state = np.array(next_state, dtype=np.float64)
        x, _, theta, _ = next_state
        reward = float(swingup_reward(x, math.cos(theta), math.sin(theta), self.params))
        return self._get_obs(), reward, False, False, {}

    def render(self):
        if self.render_mode is None:
            gym.logger.warn(
                "render() was called without a render_mode; make the env with render_mode='rgb_array'"
            )
            return None
        if self.state is None:
            raise RuntimeError("CartPoleSwingUpEnv.render was called before reset")
        return draw_cartpole(float(self.state[0]), float(self.state[2]), self.params.pole_length)

    def params_dict(self) -> dict:
        """The physical constants as a dict (``reward_fn(ENV_ID, **env.unwrapped.params_dict())``)."""
        return asdict(self.params)
