"""A nonlinear system for learning θ: a damped pendulum seen through a noisy nonlinear angle sensor (no downloads).

The latent state s = (φ, ω), angle φ (rad, 0 hanging down) and angular velocity ω (rad/s), follows the
damped pendulum, with a random torque as process noise::

    dφ/dt = ω
    dω/dt = −(g/l) sin φ − c ω                          (+ white-noise torque)

integrated with classical fourth-order Runge–Kutta, ``substeps`` sub-steps per sample period dt
(default dt = 0.1 s, 4 sub-steps), then ω_t += σ_w √dt ε_t once per period (ε_t ~ N(0, 1)). The sensor is
an angle encoder that returns the angle's point on a circle of radius a, not the angle (a nonlinear map: no
linear emission C s_t reproduces it)::

    y_t = a · (sin φ_t, −cos φ_t) + ν_t,       ν_t ~ N(0, σ_y² I_2),    t = 1..T  (time t · dt)

Defaults: g/l = 9.81 s⁻² (l = 1 m, a small-angle period of 2.0 s, 20 samples), c = 0.15 s⁻¹, σ_w = 0.3 rad/s/√s,
a = 1, σ_y = 0.1. The initial angle is uniform in [−``max_initial_angle``, ``max_initial_angle``] (default
2.5 rad, up to 143°: far from the small-angle regime, where the period grows with the amplitude) and the
initial velocity N(0, 1) rad/s (large swings, but rarely over the top: none in the seed-0 splits of 64 and
128 sequences). s_0 is at time 0 and is not observed; y_1 is the first observation.

:func:`make_pendulum_data` returns seeded train and held-out splits (:class:`PendulumData`); the held-out
split is longer by ``horizon`` steps so that p(y_{T+k} | Y_{1:T}) can be scored for k = 1..horizon.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mbrl_course._checks import check_positive_float, check_positive_int
from mbrl_course.ssm.systems import rk4_step

__all__ = ["PendulumData", "PendulumParams", "make_pendulum_data", "pendulum_derivative", "pendulum_sensor",
           "simulate_pendulum"]


@dataclass(frozen=True)
class PendulumParams:
    """Constants of the pendulum and its sensor (SI units)."""

    gravity_over_length: float = 9.81
    """g/l (s⁻²): the small-angle angular frequency is √(g/l)"""
    damping: float = 0.15
    """c (s⁻¹): viscous damping of ω"""
    process_noise_std: float = 0.3
    """σ_w (rad s^-1/2): ω_t += σ_w √dt ε_t once per sample period"""
    sensor_gain: float = 1.0
    """a: radius of the sensor's circle"""
    obs_noise_std: float = 0.1
    """σ_y: standard deviation of each sensor channel's noise"""
    dt: float = 0.1
    """sample period (s)"""
    substeps: int = 4
    """RK4 sub-steps per sample period"""


@dataclass
class PendulumData:
    """Train / held-out sequences; ``states[:, t]`` is s_t at time t · dt, ``observations[:, t-1]`` is y_t."""

    train_observations: torch.Tensor
    """Y_{1:T}: (B_train, T, 2)"""
    train_states: torch.Tensor
    """s_{0:T} = (φ, ω): (B_train, T+1, 2)"""
    test_observations: torch.Tensor
    """Y_{1:T'}: (B_test, T', 2), T' = ``test_length`` + ``horizon``"""
    test_states: torch.Tensor
    """s_{0:T'}: (B_test, T'+1, 2)"""
    params: PendulumParams
    """the constants that generated them"""

    @property
    def dt(self) -> float:
        """The sample period (s)."""
        return self.params.dt


def _check_params(params: PendulumParams) -> PendulumParams:
    for name in ("gravity_over_length", "sensor_gain", "dt"):
        check_positive_float(f"params.{name}", getattr(params, name))
    for name in ("damping", "process_noise_std", "obs_noise_std"):
        check_positive_float(f"params.{name}", getattr(params, name), allow_zero=True)
    check_positive_int("params.substeps", params.substeps)
    return params


def pendulum_derivative(states: torch.Tensor, params: PendulumParams) -> torch.Tensor:
    """(dφ/dt, dω/dt) = (ω, −(g/l) sin φ − c ω): ``states: (..., 2)`` -> ``(..., 2)``."""
    phi, omega = states[..., 0], states[..., 1]
    return torch.stack([omega, -params.gravity_over_length * torch.sin(phi) - params.damping * omega], -1)


def simulate_pendulum(initial_states: torch.Tensor, num_steps: int, params: PendulumParams | None = None,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """s_{0:T} from s_0 = ``initial_states``: RK4 over each period [t dt, (t+1) dt], then ω += σ_w √dt ε.

    ``initial_states: (B, 2)`` (φ_0, ω_0); ``num_steps`` T. Returns ``(B, T+1, 2)``.
    """
    p = _check_params(params or PendulumParams())
    T = check_positive_int("num_steps", num_steps)
    if not isinstance(initial_states, torch.Tensor) or initial_states.ndim != 2 or initial_states.shape[-1] != 2:
        got = tuple(initial_states.shape) if isinstance(initial_states, torch.Tensor) else type(initial_states).__name__
        raise ValueError(f"initial_states: expected shape (B, 2) (angle, angular velocity), got {got}")
    h = p.dt / p.substeps
    s = initial_states
    out = [s]
    for _ in range(T):
        for _ in range(p.substeps):
            s = rk4_step(lambda states: pendulum_derivative(states, p), s, h)
        if p.process_noise_std > 0:
            eps = torch.randn(s.shape[:-1], generator=generator, dtype=s.dtype, device=s.device)
            s = torch.stack([s[..., 0], s[..., 1] + p.process_noise_std * p.dt ** 0.5 * eps], -1)
        out.append(s)
    return torch.stack(out, 1)


def pendulum_sensor(states: torch.Tensor, params: PendulumParams | None = None) -> torch.Tensor:
    """The noiseless sensor a · (sin φ, −cos φ): ``states: (..., 2)`` -> ``(..., 2)``."""
    p = params or PendulumParams()
    phi = states[..., 0]
    return p.sensor_gain * torch.stack([torch.sin(phi), -torch.cos(phi)], -1)


def make_pendulum_data(
    num_train: int = 32,
    num_test: int = 32,
    length: int = 60,
    test_length: int | None = None,
    horizon: int = 20,
    seed: int = 0,
    max_initial_angle: float = 2.5,
    params: PendulumParams | None = None,
    dtype: torch.dtype = torch.float32,
) -> PendulumData:
    """Seeded train and held-out pendulum sequences.

    ``num_train`` sequences of ``length`` observations and ``num_test`` sequences of ``test_length``
    (default: ``length``) + ``horizon`` observations: condition on the first ``test_length``, score the
    next ``horizon``. φ_0 ~ U[−``max_initial_angle``, ``max_initial_angle``], ω_0 ~ N(0, 1); then
    :func:`simulate_pendulum` and y_t = :func:`pendulum_sensor` (s_t) + N(0, σ_y² I). Deterministic given
    ``seed`` (its own ``torch.Generator``; the global RNG is untouched); simulated in float64, returned in
    ``dtype``.
    """
    n_train = check_positive_int("num_train", num_train)
    n_test = check_positive_int("num_test", num_test)
    T = check_positive_int("length", length)
    T_test = T if test_length is None else check_positive_int("test_length", test_length)
    K = check_positive_int("horizon", horizon, allow_zero=True)
    angle = check_positive_float("max_initial_angle", max_initial_angle, allow_zero=True)
    p = _check_params(params or PendulumParams())
    gen = torch.Generator().manual_seed(int(seed))
    f64 = torch.float64

    def split(B: int, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        phi0 = (2 * torch.rand(B, generator=gen, dtype=f64) - 1) * angle
        omega0 = torch.randn(B, generator=gen, dtype=f64)
        states = simulate_pendulum(torch.stack([phi0, omega0], -1), steps, p, gen)
        clean = pendulum_sensor(states[:, 1:], p)
        y = clean + p.obs_noise_std * torch.randn(clean.shape, generator=gen, dtype=f64)
        return y.to(dtype), states.to(dtype)

    train_y, train_s = split(n_train, T)
    test_y, test_s = split(n_test, T_test + K)
    return PendulumData(train_y, train_s, test_y, test_s, p)
