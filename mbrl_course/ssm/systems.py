"""A generated system-identification task: two cascaded tanks with overflow (no downloads).

The cascaded-tanks benchmark (Schoukens & Noël, 2017) in normalised units: a pump (input u ∈ [0, 1])
fills the upper tank, which drains through a small hole into the lower tank, which drains out;
only the lower tank's level is measured. Torricelli's law makes the outflow ∝ √level, and when the
upper tank is full it overflows (the excess is lost), a hard nonlinearity a linear model cannot fit.

    dh₁/dt = −k₁ √h₁ + k_p a(u),        h₁ ∈ [0, h_max]   (clipped: overflow above h_max)
    dh₂/dt =  k₂ √h₁ − k₃ √h₂,          h₂ ∈ [0, h_max]
    a(u)   = clip(u, 0, 1)                          (the pump saturates; inactive for the generated u ∈ [0, 1])
    y_t    = h₂(t · dt) + ε_t,           ε_t ~ N(0, σ_y²)

Discretised with classical fourth-order Runge–Kutta, ``substeps`` sub-steps per sample period
``dt`` (default dt = 1 s, 4 sub-steps), the levels clipped to [0, h_max] after every sub-step; an
optional process noise N(0, σ_w² dt) is added to both levels once per sample period.
Defaults: k₁ = k₂ = 0.10, k₃ = 0.11, k_p = 0.14, h_max = 1: at a constant u the upper tank settles at
h₁ = (k_p u / k₁)², so it overflows for u ≳ 0.71; time constants are a few tens of samples.

The input u_t is a random-step excitation: levels uniform in [0, 1], each held for a number of
samples uniform in [``min_hold``, ``max_hold``]; u_t acts on the interval [t, t + 1), so y_{t+1}
is the first output it moves. Initial levels are uniform in [0, h_max / 2].
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch

from mbrl_course._checks import check_positive_float, check_positive_int

__all__ = [
    "TwoTankData",
    "TwoTankParams",
    "fit_linear_baseline",
    "linear_free_run",
    "make_two_tank_data",
    "random_steps",
    "shift_inputs",
    "simulate_two_tank",
    "two_tank_derivative",
]


def rk4_step(derivative, x: torch.Tensor, h: float) -> torch.Tensor:
    """One Runge-Kutta-4 step of dx/dt = f(x) of size h: x + h/6 (k₁ + 2k₂ + 2k₃ + k₄), batched over ``x (..., D)``."""
    k1 = derivative(x)
    k2 = derivative(x + 0.5 * h * k1)
    k3 = derivative(x + 0.5 * h * k2)
    k4 = derivative(x + h * k3)
    return x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


@dataclass(frozen=True)
class TwoTankParams:
    """Physical constants of the cascaded tanks (normalised units, levels in [0, h_max])."""

    k1: float = 0.10
    """k₁: outflow coefficient of the upper tank"""
    k2: float = 0.10
    """k₂: inflow coefficient of the lower tank (from the upper tank's outflow)"""
    k3: float = 0.11
    """k₃: outflow coefficient of the lower tank"""
    pump_gain: float = 0.14
    """k_p: pump flow per unit input"""
    max_level: float = 1.0
    """h_max: tank height; the upper tank overflows above it"""
    dt: float = 1.0
    """sample period (s)"""
    substeps: int = 4
    """RK4 sub-steps per sample period"""


@dataclass
class TwoTankData:
    """Train / test split of two-tank sequences; u_t, y_t aligned on the time axis."""

    train_inputs: torch.Tensor
    """u: (B_train, T, 1)"""
    train_outputs: torch.Tensor
    """y: (B_train, T, 1), lower tank level + noise"""
    test_inputs: torch.Tensor
    """u: (B_test, T, 1)"""
    test_outputs: torch.Tensor
    """y: (B_test, T, 1)"""
    train_levels: torch.Tensor
    """noise-free levels (h₁, h₂): (B_train, T, 2)"""
    test_levels: torch.Tensor
    """noise-free levels (h₁, h₂): (B_test, T, 2)"""
    params: TwoTankParams
    """the constants that generated them"""


def two_tank_derivative(levels: torch.Tensor, inputs: torch.Tensor, params: TwoTankParams) -> torch.Tensor:
    """(dh₁/dt, dh₂/dt) = (−k₁ √h₁ + k_p clip(u, 0, 1), k₂ √h₁ − k₃ √h₂).

    ``levels: (..., 2)`` (h₁, h₂), ``inputs: (..., 1)`` u. Returns ``(..., 2)``.
    """
    root = levels.clamp(min=0.0).sqrt()
    pump = params.pump_gain * inputs[..., 0].clamp(0.0, 1.0)
    d1 = -params.k1 * root[..., 0] + pump
    d2 = params.k2 * root[..., 0] - params.k3 * root[..., 1]
    return torch.stack([d1, d2], -1)


def simulate_two_tank(
    initial_levels: torch.Tensor,
    inputs: torch.Tensor,
    params: TwoTankParams | None = None,
    process_noise_std: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Levels h(t · dt), t = 0..T−1, by RK4 with clipping to [0, h_max] after each sub-step.

    h(0) = ``initial_levels``; h((t+1) dt) = RK4 over [t dt, (t+1) dt] at constant u_t (+ N(0, σ_w² dt)).
    ``initial_levels: (B, 2)``, ``inputs: (B, T, 1)``. Returns ``(B, T, 2)``.
    """
    p = params or TwoTankParams()
    if initial_levels.ndim != 2 or initial_levels.shape[-1] != 2:
        raise ValueError(f"initial_levels: expected shape (B, 2), got {tuple(initial_levels.shape)}")
    if inputs.ndim != 3 or inputs.shape[0] != initial_levels.shape[0] or inputs.shape[-1] != 1:
        raise ValueError(f"inputs: expected shape ({initial_levels.shape[0]}, T, 1), got {tuple(inputs.shape)}")
    h = p.dt / p.substeps
    x = initial_levels.clamp(0.0, p.max_level)
    out = []
    for t in range(inputs.shape[1]):
        out.append(x)
        u = inputs[:, t]
        for _ in range(p.substeps):
            x = rk4_step(partial(two_tank_derivative, inputs=u, params=p), x, h).clamp(0.0, p.max_level)
        if process_noise_std > 0:
            noise = torch.randn(x.shape, generator=generator, dtype=x.dtype) * process_noise_std * p.dt ** 0.5
            x = (x + noise).clamp(0.0, p.max_level)
    return torch.stack(out, 1)


def random_steps(num_sequences: int, length: int, min_hold: int, max_hold: int,
                 generator: torch.Generator, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Random-step excitation: levels ~ U[0, 1] held for U{min_hold..max_hold} samples each: (B, T, 1)."""
    u = torch.empty(num_sequences, length, 1, dtype=dtype)
    for b in range(num_sequences):
        t = 0
        while t < length:
            hold = int(torch.randint(min_hold, max_hold + 1, (1,), generator=generator))
            u[b, t:t + hold] = torch.rand(1, generator=generator, dtype=dtype)
            t += hold
    return u


def make_two_tank_data(
    num_sequences: int = 16,
    length: int = 200,
    seed: int = 0,
    test_sequences: int | None = None,
    noise_std: float = 0.02,
    process_noise_std: float = 0.0,
    min_hold: int = 10,
    max_hold: int = 40,
    params: TwoTankParams | None = None,
    dtype: torch.dtype = torch.float32,
) -> TwoTankData:
    """Simulate ``num_sequences`` training and ``test_sequences`` (default: the same number) test sequences.

    u_t: random steps (see the module docstring); y_t = h₂(t dt) + N(0, ``noise_std``²). Deterministic
    given ``seed`` (its own ``torch.Generator``; the global RNG is untouched). Returns :class:`TwoTankData`
    with ``u: (B, T, 1)`` and ``y: (B, T, 1)`` for each split.
    """
    n_train = check_positive_int("num_sequences", num_sequences)
    n_test = n_train if test_sequences is None else check_positive_int("test_sequences", test_sequences)
    T = check_positive_int("length", length)
    lo = check_positive_int("min_hold", min_hold)
    hi = check_positive_int("max_hold", max_hold)
    if hi < lo:
        raise ValueError(f"max_hold: expected >= min_hold = {lo}, got {hi}")
    noise = check_positive_float("noise_std", noise_std, allow_zero=True)
    w = check_positive_float("process_noise_std", process_noise_std, allow_zero=True)
    p = params or TwoTankParams()
    check_positive_int("params.substeps", p.substeps)
    for name in ("k1", "k2", "k3", "pump_gain", "max_level", "dt"):
        check_positive_float(f"params.{name}", getattr(p, name))
    gen = torch.Generator().manual_seed(int(seed))
    B = n_train + n_test
    inputs = random_steps(B, T, lo, hi, gen, dtype)
    initial = torch.rand(B, 2, generator=gen, dtype=dtype) * (0.5 * p.max_level)
    levels = simulate_two_tank(initial, inputs, p, w, gen)
    outputs = levels[..., 1:] + noise * torch.randn(B, T, 1, generator=gen, dtype=dtype)
    return TwoTankData(train_inputs=inputs[:n_train], train_outputs=outputs[:n_train],
                       test_inputs=inputs[n_train:], test_outputs=outputs[n_train:],
                       train_levels=levels[:n_train], test_levels=levels[n_train:], params=p)


# ------------------------------------------------------------------------ the linear baseline
def fit_linear_baseline(inputs: torch.Tensor, outputs: torch.Tensor, state_dim: int = 2, num_steps: int = 100,
                        seed: int = 0, progress: bool = False):
    """A linear-Gaussian SSM fitted by maximum likelihood (:func:`mbrl_course.filters.fit`, L-BFGS).

    s_t = E s_{t−1} + B u_{t−1} + w_t, y_t = C s_t + v_t: the Kalman filter's convention s_t = E s_{t−1} + B u'_t
    with u'_t = u_{t−1} (u'_0 = 0), so u_t acts on the next state as in the tanks. ``inputs: (B, T, D_u)``,
    ``outputs: (B, T, D_y)``. Returns the fitted :class:`~mbrl_course.filters.LinearGaussianModel`.
    """
    from mbrl_course.filters import FitConfig, LinearGaussianModel, LinearGaussianSSM, fit

    dx = check_positive_int("state_dim", state_dim)
    dy, du = outputs.shape[-1], inputs.shape[-1]
    gen = torch.Generator().manual_seed(int(seed))
    dtype = torch.float64
    ssm = LinearGaussianSSM(
        initial_mean=torch.zeros(dx, dtype=dtype), initial_cov=torch.eye(dx, dtype=dtype),
        transition_matrix=0.9 * torch.eye(dx, dtype=dtype), transition_cov=1e-3 * torch.eye(dx, dtype=dtype),
        emission_matrix=0.5 * torch.randn(dy, dx, generator=gen, dtype=dtype),
        emission_cov=1e-2 * torch.eye(dy, dtype=dtype),
        control_matrix=0.1 * torch.randn(dx, du, generator=gen, dtype=dtype))
    model = LinearGaussianModel(ssm)
    fit(model, outputs.to(dtype), config=FitConfig(num_steps=num_steps, progress=progress),
        controls=shift_inputs(inputs).to(dtype))
    return model


def shift_inputs(inputs: torch.Tensor) -> torch.Tensor:
    """u'_t = u_{t−1}, u'_0 = 0: (B, T, D_u) -> (B, T, D_u) (the Kalman filter's control convention)."""
    return torch.cat([torch.zeros_like(inputs[:, :1]), inputs[:, :-1]], 1)


def linear_free_run(model, inputs: torch.Tensor, outputs: torch.Tensor, recognition_steps: int,
                    num_samples: int = 500, seed: int = 0) -> torch.Tensor:
    """Free run of a fitted linear-Gaussian SSM: Kalman filter on y_{0:L−1}, then k-step prediction for t ≥ L.

    p(y_t | Y_{0:L−1}) = N(u_t, V_t) from :func:`mbrl_course.filters.predict` (the filtered p(y_t | Y_{0:t})
    stands in for t < L); returns ``num_samples`` draws from these marginals, ``(S, B, T, D_y)``, so that
    the same scores apply as to the nonlinear models' trajectory samples.
    """
    from mbrl_course.filters import kalman_filter, predict

    L = check_positive_int("recognition_steps", recognition_steps)
    T = inputs.shape[1]
    if inputs.ndim != 3 or outputs.ndim != 3 or outputs.shape[:2] != inputs.shape[:2] or T < L:
        raise ValueError(f"inputs, outputs: expected (B, T, D_u) and (B, T, D_y) with T >= recognition_steps = {L}, "
                         f"got {tuple(inputs.shape)} and {tuple(outputs.shape)}")
    with torch.no_grad():
        ssm = model.ssm()
        controls = shift_inputs(inputs).to(torch.float64)
        filtered = kalman_filter(ssm, outputs[:, :L].to(torch.float64), controls[:, :L])
        C, D = ssm.emission_matrix, ssm.emission_cov
        mean_f = filtered.filtered_means @ C.mT
        cov_f = D + C @ filtered.filtered_covs @ C.mT
        means, covs = mean_f, cov_f
        if T > L:
            pred = predict(ssm, filtered.filtered_means[:, -1], filtered.filtered_covs[:, -1], T - L,
                           controls[:, L:])
            means, covs = torch.cat([mean_f, pred.obs_means], 1), torch.cat([cov_f, pred.obs_covs], 1)
        gen = torch.Generator().manual_seed(int(seed))
        eps = torch.randn(num_samples, *means.shape, generator=gen, dtype=means.dtype)
        samples = means + (torch.linalg.cholesky(covs) @ eps.unsqueeze(-1)).squeeze(-1)
    return samples.to(outputs.dtype)
