"""Figures of the iLQR and guided-policy-search lecture (``lectures/05-ilqr-gps.ipynb``).

Notation of :mod:`mbrl_course.planning.ilqr`: x_t the state (the lecture's i), u_t the control, c = -g the
reward read as a cost, J = Σ_t c(x_t, u_t) the cost of a trajectory, (x̄, ū) the nominal trajectory.

- :func:`pendulum_angle`: θ (unwrapped along time) of Pendulum-v1 states (cos θ, sin θ, θ̇);
  :func:`angle_pendulum`: the same env's dynamics and cost in the coordinates x = (θ, θ̇), where a local
  linear model has no direction the data cannot excite;
- :func:`ilqr_snapshots`, :func:`plot_ilqr_iterations`: the trajectory after selected iLQR iterations and J
  per iteration (each snapshot is the very run stopped earlier: iLQR is deterministic);
- :func:`plot_box_qp`: one box-constrained QP in two controls: the unconstrained minimiser, its clipped
  copy and the true constrained minimiser (:func:`~mbrl_course.planning.ilqr.box_qp`);
- :func:`plot_plans`: several plans (θ over t, controls with the steps clamped at a bound marked, J);
- :func:`sample_trajectories`: N rollouts of a linear-Gaussian controller on a dynamics function or on a
  fitted :class:`~mbrl_course.planning.local_models.LinearGaussianDynamics`;
- :func:`plot_local_models`: a local model's (A_t, B_t) entries against the true Jacobians (f_x, f_u) along
  the nominal trajectory, and its one-step predictions against the true next states;
- :func:`trust_region_sweep`, :func:`plot_trust_region`: the KL-bounded controller update for several ε:
  what the local model predicts against what the true dynamics do;
- :func:`record_gps_update`, :func:`plot_guiding_samples`, :func:`plot_gps_progress`: guided policy search
  (:mod:`mbrl_course.agents.gps`): one update's guiding and policy samples with their importance weights,
  and the policy's rollouts against iLQR's guiding trajectories over the updates (:func:`gps_distance`);
- :func:`gps_benchmark_curves`, :func:`plot_gps_benchmark_rollouts`, :func:`plot_gps_benchmark_curves`: the
  same quantities as measured by ``benchmarks/gps.py --save-curves`` over 12 updates on three seeds, shipped in
  ``mbrl_course/viz/data/gps_Pendulum-v1.json`` (the lecture's live run is too short to get there).

Every plotting function returns a :class:`matplotlib.figure.Figure` made with pyplot and takes tensors or arrays.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from mbrl_course._checks import as_tensor, check_positive_int
from mbrl_course.envs import dynamics_fn, reward_fn
from mbrl_course.filters._gaussian import matvec
from mbrl_course.models import rollout
from mbrl_course.planning.ilqr import (
    CostFn,
    DynamicsFn,
    ILQRConfig,
    ILQRResult,
    TerminalCostFn,
    box_qp,
    ilqr,
    rollout_controls,
)
from mbrl_course.planning.local_models import (
    LinearGaussianController,
    LinearGaussianDynamics,
    QuadraticCost,
    trust_region_update,
)
from mbrl_course.viz.filtering import _np

__all__ = [
    "GPSUpdate",
    "ILQRSnapshots",
    "Plan",
    "TrustRegionSweep",
    "angle_pendulum",
    "describe_gps_update",
    "gps_benchmark_curves",
    "gps_distance",
    "ilqr_snapshots",
    "pendulum_angle",
    "plot_box_qp",
    "plot_gps_benchmark_curves",
    "plot_gps_benchmark_rollouts",
    "plot_gps_progress",
    "plot_guiding_samples",
    "plot_ilqr_iterations",
    "plot_local_models",
    "plot_plans",
    "plot_trust_region",
    "record_gps_update",
    "sample_trajectories",
    "trust_region_sweep",
    "wrapped_angle_distance",
]


# ------------------------------------------------------------------------------ pendulum coordinates
def pendulum_angle(states) -> np.ndarray:
    """θ = atan2(sin θ, cos θ) of states ``(..., T, 3)`` = (cos θ, sin θ, θ̇), unwrapped along T: ``(..., T)``.

    Unwrapping adds multiples of 2π so that θ moves continuously; θ = 0 is upright, ±π hanging down.
    """
    states = _np("states", states)
    if states.ndim < 2 or states.shape[-1] != 3:
        raise ValueError(f"states: expected Pendulum-v1 states of shape (..., T, 3) = (cos θ, sin θ, θ̇), got "
                         f"shape {states.shape}")
    return np.unwrap(np.arctan2(states[..., 1], states[..., 0]), axis=-1)


def angle_pendulum(env_id: str = "Pendulum-v1") -> tuple[DynamicsFn, CostFn]:
    """Pendulum-v1's own equations and cost in the coordinates x = (θ, θ̇) instead of (cos θ, sin θ, θ̇).

        f(x, u) = (θ + Δθ, θ̇'),   (cos θ', sin θ', θ̇') = f_env((cos θ, sin θ, θ̇), u),
        Δθ = atan2(sin(θ' - θ), cos(θ' - θ)),        c(x, u) = -g_env((cos θ, sin θ, θ̇), u).

    The env's states lie on the circle cos²θ + sin²θ = 1, so samples never move off it and a regression
    cannot tell how f responds there; in (θ, θ̇) every direction of x is one the samples excite.
    """
    step, reward = dynamics_fn(env_id), reward_fn(env_id)

    def to_env(x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x[..., 0].cos(), x[..., 0].sin(), x[..., 1]], dim=-1)

    def dynamics(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        nxt = step(to_env(x), u)  # (cos θ', sin θ', θ̇')
        cos, sin = x[..., 0].cos(), x[..., 0].sin()
        turn = torch.atan2(nxt[..., 1] * cos - nxt[..., 0] * sin, nxt[..., 0] * cos + nxt[..., 1] * sin)
        return torch.stack([x[..., 0] + turn, nxt[..., 2]], dim=-1)

    def cost(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        obs = to_env(x)
        return -reward(obs, u, obs)

    return dynamics, cost


# ------------------------------------------------------------------------------ iLQR iterations
@dataclass
class ILQRSnapshots:
    """One iLQR run from one start state, with its trajectory after selected iterations."""

    iterations: list[int]
    """The iterations shown (0: the initial controls)."""
    states: torch.Tensor
    """(S, H+1, n): x̄ after each shown iteration."""
    actions: torch.Tensor
    """(S, H, m): ū after each shown iteration."""
    costs: torch.Tensor
    """(I+1,): J before the first and after every iteration of the full run (a rejected step repeats J)."""
    result: ILQRResult
    """The full run's result (batch of one)."""


def ilqr_snapshots(dynamics: DynamicsFn, cost: CostFn, x0, u_init, low, high, config: ILQRConfig | None = None,
                   shown: Sequence[int] = (0, 1, 2, 4, 8), *,
                   terminal_cost: TerminalCostFn | None = None) -> ILQRSnapshots:
    """Run :func:`~mbrl_course.planning.ilqr.ilqr` from one start state and keep x̄, ū after the ``shown`` iterations.

    The snapshot after i iterations is the same call with ``iterations=i`` (iLQR is deterministic, so it
    is exactly the full run stopped there); shown iterations past the run's end are dropped, and the final
    trajectory is always added.

    Args:
        x0: one start state ``(n,)``; u_init: ``(H, m)``; the rest as for ``ilqr``.
        shown: iterations to keep (0 is the initial trajectory).
    """
    config = ILQRConfig() if config is None else config
    x0 = as_tensor("x0", x0)
    if x0.dim() != 1:
        raise ValueError(f"x0: expected one start state of shape (n,), got {tuple(x0.shape)}")
    u_init = as_tensor("u_init", u_init, dtype=x0.dtype, device=x0.device)
    if u_init.dim() != 2:
        raise ValueError(f"u_init: expected controls of shape (H, m), got {tuple(u_init.shape)}")
    shown = sorted({check_positive_int("shown", i, allow_zero=True) for i in shown})
    full = ilqr(dynamics, cost, x0[None], u_init[None], low, high, config, terminal_cost=terminal_cost)
    last = full.costs.shape[0] - 1
    keep = [i for i in shown if i < last] + [last]
    states, actions = [], []
    for i in keep:
        if i == last:
            states.append(full.states[0])
            actions.append(full.actions[0])
        elif i == 0:  # the initial controls, clipped into the box as iLQR clips them, rolled out
            lower = torch.as_tensor(low, dtype=u_init.dtype, device=u_init.device)
            upper = torch.as_tensor(high, dtype=u_init.dtype, device=u_init.device)
            clipped = torch.maximum(torch.minimum(u_init, upper), lower)
            with torch.no_grad():
                states.append(rollout_controls(dynamics, x0[None], clipped[None])[0])
            actions.append(clipped)
        else:
            run = ilqr(dynamics, cost, x0[None], u_init[None], low, high, replace(config, iterations=i),
                       terminal_cost=terminal_cost)
            states.append(run.states[0])
            actions.append(run.actions[0])
    return ILQRSnapshots(iterations=keep, states=torch.stack(states), actions=torch.stack(actions),
                         costs=full.costs[:, 0], result=full)


def _colors(count: int) -> list:
    return [plt.cm.viridis(v) for v in np.linspace(0.0, 0.9, max(count, 1))]


def plot_ilqr_iterations(snapshots: ILQRSnapshots, *, angle: Callable | None = pendulum_angle,
                         state_label: str = "θ (rad, 0 = upright)", title: str | None = None) -> Figure:
    """iLQR's trajectory after each shown iteration (left: ``angle(states)``, middle: controls) and J per iteration.

    Args:
        snapshots: from :func:`ilqr_snapshots`.
        angle: maps states ``(S, H+1, n)`` to the plotted quantity ``(S, H+1)``; None plots state dimension 0.
    """
    if not isinstance(snapshots, ILQRSnapshots):
        raise TypeError(f"snapshots: expected an ILQRSnapshots (from ilqr_snapshots), got {type(snapshots).__name__}")
    shown = angle(snapshots.states) if angle is not None else _np("states", snapshots.states)[..., 0]
    actions = _np("actions", snapshots.actions)
    costs = _np("costs", snapshots.costs, ndim=1)
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    for color, i, path, u in zip(_colors(len(snapshots.iterations)), snapshots.iterations, shown, actions, strict=True):
        label = f"iteration {i}: J = {costs[i]:.1f}"
        axes[0].plot(np.arange(path.shape[0]), path, color=color, label=label)
        axes[1].step(np.arange(u.shape[0]), u[:, 0], where="post", color=color, label=label)
    axes[0].axhline(0.0, color="k", lw=0.8, ls=":")
    axes[0].set(xlabel="step t", ylabel=state_label, title="x̄_t after each shown iteration")
    axes[1].set(xlabel="step t", ylabel="control ū_t", title="ū_t (first control dimension)")
    axes[0].legend(fontsize=7)
    axes[2].plot(np.arange(costs.shape[0]), costs, "k.-", label="J per iteration")
    axes[2].plot(snapshots.iterations, costs[snapshots.iterations], "o", color="tab:orange", label="shown")
    axes[2].set(xlabel="iteration", ylabel="J = Σ_t c(x_t, u_t)", title="the cost going down")
    axes[2].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------ box constraints
def plot_box_qp(hessian, gradient, lower, upper, *, title: str | None = None) -> Figure:
    """min_δu ½ δuᵀ H δu + gᵀ δu over the box [lower, upper] in two controls: why clipping is not enough.

    Draws the contours of the quadratic, the box, the unconstrained minimiser δu* = -H⁻¹ g, its clipped copy
    clip(δu*, lower, upper) and the constrained minimiser of :func:`~mbrl_course.planning.ilqr.box_qp` (the
    step k_t of control-limited DDP). The three points are the lines labelled "unconstrained", "clipped" and
    "box QP" (their data is the point).

    Args:
        hessian: H ``(2, 2)`` positive definite; gradient: g ``(2,)``; lower, upper: ``(2,)``, lower < upper.
    """
    H = as_tensor("hessian", hessian, dtype=torch.float64)
    g = as_tensor("gradient", gradient, dtype=torch.float64)
    lo = as_tensor("lower", lower, dtype=torch.float64)
    hi = as_tensor("upper", upper, dtype=torch.float64)
    if H.shape != (2, 2) or g.shape != (2,) or lo.shape != (2,) or hi.shape != (2,):
        raise ValueError(f"hessian, gradient, lower, upper: expected shapes (2, 2), (2,), (2,), (2,), got "
                         f"{tuple(H.shape)}, {tuple(g.shape)}, {tuple(lo.shape)}, {tuple(hi.shape)}")
    if not bool((lo < hi).all()):
        raise ValueError(f"lower: expected lower < upper in both controls, got lower={lo.tolist()}, upper={hi.tolist()}")
    if not bool((torch.linalg.eigvalsh(0.5 * (H + H.T)) > 0).all()):
        raise ValueError(f"hessian: expected a positive definite matrix, got {H.tolist()}")
    free = -torch.linalg.solve(H, g)
    clipped = torch.maximum(torch.minimum(free, hi), lo)
    solution = box_qp(H[None], g[None], lo[None], hi[None]).x[0]
    points = torch.stack([free, clipped, solution, lo, hi]).numpy()
    margin = 0.3 * (points.max(0) - points.min(0)) + 0.1
    a = np.linspace(points[:, 0].min() - margin[0], points[:, 0].max() + margin[0], 200)
    b = np.linspace(points[:, 1].min() - margin[1], points[:, 1].max() + margin[1], 200)
    grid = np.stack(np.meshgrid(a, b), -1)
    Hn, gn = H.numpy(), g.numpy()
    values = 0.5 * np.einsum("...i,ij,...j->...", grid, Hn, grid) + grid @ gn
    fig, ax = plt.subplots(figsize=(5.5, 4.8))
    ax.contour(a, b, values, levels=20, cmap="Greys", linewidths=0.7)
    lo_n, hi_n = lo.numpy(), hi.numpy()
    ax.add_patch(plt.Rectangle(lo_n, *(hi_n - lo_n), fill=False, lw=2, color="tab:blue", label="box"))
    q = lambda p: float(0.5 * p @ Hn @ p + gn @ p)  # noqa: E731
    for point, style, name in ((free, "ks", "unconstrained"), (clipped, "rX", "clipped"), (solution, "g*", "box QP")):
        p = point.numpy()
        ax.plot([p[0]], [p[1]], style, ms=12, label=f"{name}: q = {q(p):.3g}")
    ax.annotate("", xy=clipped.numpy(), xytext=free.numpy(), arrowprops=dict(arrowstyle="->", color="r", lw=0.8))
    ax.set(xlabel="δu₁", ylabel="δu₂", title=title or "½ δuᵀ Q_uu δu + δuᵀ Q_u over the box")
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


@dataclass
class Plan:
    """An open-loop plan to draw: x_{0:H}, u_{0:H-1}, its cost J and (optionally) which controls are clamped."""

    states: torch.Tensor
    """(H+1, n)."""
    actions: torch.Tensor
    """(H, m)."""
    cost: float
    """J of the plan."""
    clamped: torch.Tensor | None = None
    """(H, m) bool: controls clamped at a bound (control-limited DDP's clamped set), or None."""

    @classmethod
    def from_ilqr(cls, result: ILQRResult, index: int = 0) -> Plan:
        """Trajectory ``index`` of an iLQR result, its clamped controls those the last backward pass clamped."""
        return cls(states=result.states[index], actions=result.actions[index], cost=float(result.cost[index]),
                   clamped=~result.free[index])


def plot_plans(plans: Mapping[str, Plan], *, low: float | None = None, high: float | None = None,
               angle: Callable | None = pendulum_angle, state_label: str = "θ (rad, 0 = upright)",
               title: str | None = None) -> Figure:
    """Several plans side by side: ``angle(states)`` over t (left), the controls with clamped steps marked (right).

    Each legend entry carries the plan's J; a plan's clamped controls are drawn as "x" markers (label
    "<name> clamped"); ``low``, ``high`` are drawn as dashed lines.
    """
    if not isinstance(plans, Mapping) or not plans:
        raise ValueError(f"plans: expected a non-empty mapping name -> Plan, got {plans!r}")
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
    for (name, plan), color in zip(plans.items(), plt.cm.tab10.colors, strict=False):
        if not isinstance(plan, Plan):
            raise TypeError(f"plans[{name!r}]: expected a Plan, got {type(plan).__name__}")
        states = _np(f"plans[{name!r}].states", plan.states, ndim=2)
        actions = _np(f"plans[{name!r}].actions", plan.actions, ndim=2)
        if states.shape[0] != actions.shape[0] + 1:
            raise ValueError(f"plans[{name!r}]: expected H+1 states for H actions, got {states.shape[0]} and "
                             f"{actions.shape[0]}")
        shown = angle(states) if angle is not None else states[:, 0]
        axes[0].plot(np.arange(shown.shape[0]), shown, color=color, label=f"{name}: J = {plan.cost:.1f}")
        t = np.arange(actions.shape[0])
        axes[1].step(t, actions[:, 0], where="post", color=color, label=name)
        if plan.clamped is not None:
            mask = np.asarray(plan.clamped.detach().cpu())[:, 0].astype(bool)
            axes[1].plot(t[mask], actions[mask, 0], "x", color=color, ms=5, label=f"{name} clamped")
    for bound in (low, high):
        if bound is not None:
            axes[1].axhline(bound, color="k", ls="--", lw=0.8)
    axes[0].axhline(0.0, color="k", lw=0.8, ls=":")
    axes[0].set(xlabel="step t", ylabel=state_label, title="states")
    axes[1].set(xlabel="step t", ylabel="control u_t", title="controls (x: clamped at a bound)")
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------ local linear-Gaussian models
def _psd_sqrt(covariance: torch.Tensor) -> torch.Tensor:
    """L with L Lᵀ = Σ for a positive semi-definite Σ (a fitted noise covariance may be singular)."""
    values, vectors = torch.linalg.eigh(0.5 * (covariance + covariance.transpose(-1, -2)))
    return vectors * values.clamp_min(0.0).sqrt().unsqueeze(-2)


def sample_trajectories(model: DynamicsFn | LinearGaussianDynamics, controller: LinearGaussianController, x0,
                        samples: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """N rollouts of u_t ~ N(K_t x_t + k_t, Σ_u,t) from x_0 on a model: ``states (N, T+1, n)``, ``actions (N, T, m)``.

    ``model`` is either a dynamics function, x_{t+1} = f(x_t, u_t), or a fitted local model,
    x_{t+1} ~ N(A_t x_t + B_t u_t + c_t, Σ_t) (its noise sampled too, from a generator seeded by ``generator``,
    so that the same ``generator`` state gives the controller the same noise on either kind of model).
    """
    samples = check_positive_int("samples", samples)
    x0 = as_tensor("x0", x0, dtype=controller.k.dtype, device=controller.k.device)
    if x0.shape != (controller.K.shape[-1],):
        raise ValueError(f"x0: expected one start state of shape ({controller.K.shape[-1]},), got {tuple(x0.shape)}")
    local = isinstance(model, LinearGaussianDynamics)
    if not local and not callable(model):
        raise TypeError(f"model: expected a dynamics function or a LinearGaussianDynamics, got {type(model).__name__}")
    x = x0.expand(samples, -1)
    states, actions = [x], []
    # the model's noise has a generator of its own, seeded from ``generator`` on either kind of model, so that
    # the controller's noise is the same draw on a local model and on a dynamics function (common random numbers)
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    model_noise = torch.Generator(device=x.device).manual_seed(seed)
    with torch.no_grad():
        for t in range(controller.k.shape[0]):
            u = controller.sample(t, x, generator)
            if local:
                noise = torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=model_noise)
                x = model.mean(t, x, u) + matvec(_psd_sqrt(model.covariance[t]), noise)
            else:
                x = model(x, u)
            states.append(x)
            actions.append(u)
    return torch.stack(states, 1), torch.stack(actions, 1)


def plot_local_models(fit: LinearGaussianDynamics, f_x, f_u, states, actions, *,
                      state_names: Sequence[str] | None = None, shown: int = 3) -> Figure:
    """A local model against the truth along a trajectory.

    Panels 1..n: the entries of row i of [A_t B_t] over t (markers: fitted from samples) against the true
    Jacobians [f_x f_u] at the nominal (x̄_t, ū_t) (lines). Last panel: one-step predictions
    A_t x_t + B_t u_t + c_t (markers) against the true next states x_{t+1} (lines) of ``shown`` held-out
    trajectories, in the last state dimension.

    Args:
        fit: the local model (T steps); f_x ``(T, n, n)``, f_u ``(T, n, m)``: true Jacobians;
        states ``(N, T+1, n)``, actions ``(N, T, m)``: held-out trajectories.
    """
    if not isinstance(fit, LinearGaussianDynamics):
        raise TypeError(f"fit: expected a LinearGaussianDynamics, got {type(fit).__name__}")
    T, n, m = fit.B.shape
    f_x, f_u = _np("f_x", f_x, ndim=3), _np("f_u", f_u, ndim=3)
    if f_x.shape != (T, n, n) or f_u.shape != (T, n, m):
        raise ValueError(f"f_x, f_u: expected shapes {(T, n, n)} and {(T, n, m)} like the fit's A and B, got "
                         f"{f_x.shape} and {f_u.shape}")
    states_t = as_tensor("states", states, dtype=fit.A.dtype)
    actions_t = as_tensor("actions", actions, dtype=fit.A.dtype)
    if states_t.dim() != 3 or states_t.shape[1:] != (T + 1, n) or actions_t.shape != (states_t.shape[0], T, m):
        raise ValueError(f"states, actions: expected shapes (N, {T + 1}, {n}) and (N, {T}, {m}), got "
                         f"{tuple(states_t.shape)} and {tuple(actions_t.shape)}")
    names = list(state_names) if state_names is not None else [f"x{i}" for i in range(n)]
    inputs = names + [f"u{j}" for j in range(m)]
    fitted = torch.cat([fit.A, fit.B], -1).detach().cpu().numpy()
    true = np.concatenate([f_x, f_u], -1)
    fig, axes = plt.subplots(1, n + 1, figsize=(4.3 * (n + 1), 3.6))
    t = np.arange(T)
    for i in range(n):
        for j, color in zip(range(n + m), plt.cm.tab10.colors, strict=False):
            axes[i].plot(t, true[:, i, j], color=color, label=f"∂{names[i]}'/∂{inputs[j]} true")
            axes[i].plot(t, fitted[:, i, j], "o", color=color, ms=3, label="fitted")
        axes[i].set(xlabel="step t", title=f"row {names[i]}' of [A_t B_t]")
        axes[i].legend(fontsize=6, ncol=2)
    with torch.no_grad():
        predicted = torch.stack([fit.mean(s, states_t[:, s], actions_t[:, s]) for s in range(T)], 1).cpu().numpy()
    truth = states_t[:, 1:].detach().cpu().numpy()
    for k, color in zip(range(min(shown, truth.shape[0])), plt.cm.tab10.colors, strict=False):
        axes[n].plot(t + 1, truth[k, :, -1], color=color, label="true x_{t+1}" if k == 0 else None)
        axes[n].plot(t + 1, predicted[k, :, -1], ".", color=color, label="A_t x_t + B_t u_t + c_t" if k == 0 else None)
    rmse = float(np.sqrt(np.mean((predicted - truth) ** 2)))
    axes[n].set(xlabel="step t+1", ylabel=names[-1], title=f"one-step predictions (RMSE, all dims: {rmse:.3g})")
    axes[n].legend(fontsize=7)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------ the KL trust region
@dataclass
class TrustRegionSweep:
    """The KL-bounded update for several ε, each controller rolled out on the local model and on the truth."""

    epsilons: list[float]
    """The bounds ε, in the order given."""
    controllers: list[LinearGaussianController]
    """The updated controller p per ε."""
    etas: list[float]
    """The multiplier η found per ε."""
    kls: list[float]
    """KL(p(τ) ‖ p̄(τ)) per ε (≤ ε)."""
    model_states: torch.Tensor
    """(E+1, N, T+1, n): samples on the fitted local model; index 0 is the previous controller p̄."""
    true_states: torch.Tensor
    """(E+1, N, T+1, n): samples on the true dynamics; index 0 is p̄."""
    model_costs: torch.Tensor
    """(E+1,): mean J of the local-model samples (the true cost function): what the model promises."""
    true_costs: torch.Tensor
    """(E+1,): mean J of the true-dynamics samples: what the controller delivers."""


def _mean_cost(cost: CostFn, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    N, T, m = actions.shape
    with torch.no_grad():
        return cost(states[:, :-1].reshape(N * T, -1), actions.reshape(N * T, m)).reshape(N, T).sum(1).mean()


def trust_region_sweep(dynamics: DynamicsFn, cost: CostFn, fit: LinearGaussianDynamics, quadratic: QuadraticCost,
                       previous: LinearGaussianController, x0, epsilons: Sequence[float], *, samples: int = 50,
                       seed: int = 0) -> TrustRegionSweep:
    """For each ε: p = :func:`~mbrl_course.planning.local_models.trust_region_update` (KL(p ‖ p̄) ≤ ε on the
    local model ``fit`` and the cost expansion ``quadratic``), then N rollouts of p on the local model and on
    the true ``dynamics``, each scored by the true ``cost``. The same seed is used for every controller
    (common random numbers), so the differences are the controllers', not the noise's.

    Args:
        x0: the (known) start state ``(n,)``: p(x_0) = δ(x_0), a zero initial covariance.
    """
    x0 = as_tensor("x0", x0, dtype=fit.A.dtype, device=fit.A.device)
    epsilons = [float(e) for e in epsilons]
    if not epsilons:
        raise ValueError("epsilons: expected at least one bound ε > 0, got none")
    zero = torch.zeros(x0.shape[0], x0.shape[0], dtype=x0.dtype, device=x0.device)
    controllers, etas, kls = [], [], []
    for epsilon in epsilons:
        update = trust_region_update(fit, quadratic, previous, x0, zero, epsilon)
        controllers.append(update.controller)
        etas.append(update.eta)
        kls.append(update.kl)
    model_states, true_states, model_costs, true_costs = [], [], [], []
    for controller in [previous, *controllers]:
        for model, states_out, costs_out in ((fit, model_states, model_costs), (dynamics, true_states, true_costs)):
            states, actions = sample_trajectories(model, controller, x0, samples, torch.Generator().manual_seed(seed))
            states_out.append(states)
            costs_out.append(_mean_cost(cost, states, actions))
    return TrustRegionSweep(epsilons=epsilons, controllers=controllers, etas=etas, kls=kls,
                            model_states=torch.stack(model_states), true_states=torch.stack(true_states),
                            model_costs=torch.stack(model_costs), true_costs=torch.stack(true_costs))


def plot_trust_region(sweep: TrustRegionSweep, *, dim: int = 0, state_label: str = "θ (rad, 0 = upright)") -> Figure:
    """Left: the mean of state ``dim`` over t under p̄ and each ε's controller, on the true dynamics (solid)
    and as the local model predicts it (dashed). Right: the mean cost J against ε, predicted by the local
    model and measured on the true dynamics, with p̄'s cost as a horizontal line."""
    if not isinstance(sweep, TrustRegionSweep):
        raise TypeError(f"sweep: expected a TrustRegionSweep, got {type(sweep).__name__}")
    model_mean = sweep.model_states[..., dim].mean(1).cpu().numpy()  # (E+1, T+1)
    true_mean = sweep.true_states[..., dim].mean(1).cpu().numpy()
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    labels = ["p̄ (previous)"] + [f"ε = {e:g} (KL {k:.2g})" for e, k in zip(sweep.epsilons, sweep.kls, strict=True)]
    colors = ["0.4"] + _colors(len(sweep.epsilons))
    t = np.arange(true_mean.shape[1])
    for label, color, truth, model in zip(labels, colors, true_mean, model_mean, strict=True):
        axes[0].plot(t, truth, color=color, label=label)
        axes[0].plot(t, model, color=color, ls="--")
    axes[0].axhline(0.0, color="k", lw=0.8, ls=":")
    axes[0].set(xlabel="step t", ylabel=f"mean {state_label}",
                title="solid: true dynamics, dashed: local model's prediction")
    axes[0].legend(fontsize=7)
    eps = np.asarray(sweep.epsilons)
    axes[1].plot(eps, sweep.model_costs[1:].cpu().numpy(), "s--", color="tab:blue", label="predicted by the local model")
    axes[1].plot(eps, sweep.true_costs[1:].cpu().numpy(), "o-", color="tab:red", label="measured on the true dynamics")
    axes[1].axhline(float(sweep.true_costs[0]), color="0.4", ls=":", label="p̄ on the true dynamics")
    axes[1].set(xscale="log", xlabel="KL bound ε", ylabel="mean J", title="what the update promises and delivers")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------ guided policy search
@dataclass
class GPSUpdate:
    """What one GPS policy update drew and what it made of it (C start states, m samples of T steps each)."""

    plan_states: torch.Tensor
    """(C, T+1, n): iLQR's guiding trajectories x̄^j."""
    sample_states: torch.Tensor
    """(C, m, T+1, n): the samples; the first ``guided`` from the guiding controllers q_j, the rest from μ_θ̄."""
    guided: int
    """m_g."""
    weights: torch.Tensor
    """(C, m, T): the normalised importance weights w̄_i,t under the policy after the update."""
    policy_states: torch.Tensor
    """(C, T+1, n): the updated policy's mean rollout (no noise) from the same start states, on the model."""
    plan_return: torch.Tensor
    """(C,): Σ_t g of the guiding trajectories."""
    policy_return: torch.Tensor
    """(C,): Σ_t g of the policy's mean rollouts."""
    effective_samples: torch.Tensor
    """(C,): 1 / Σ_i w̄_i,T², how many samples the estimate at the last step rests on."""


def describe_gps_update(learner, model) -> GPSUpdate:
    """Record the last :meth:`~mbrl_course.agents.gps.GPSLearner.policy_update` of ``learner`` (run on ``model``)
    without running another one.

    The weights are Levine & Koltun's w̄_i,t recomputed under the updated θ (``learner.objective``) on that
    update's samples only; the policy's mean rollout u_t = mean of μ_θ(· | x_t), clipped, x_{t+1} = f(x_t, u_t),
    starts from the update's start states and runs as long as the samples. Uses no random numbers, so recording
    does not change the run.
    """
    samples, plan = learner.last_samples, learner.last_plan
    if samples is None or plan is None:
        raise ValueError("learner: expected a GPSLearner after at least one policy_update, got one with no update yet")
    with torch.no_grad():
        objective = learner.objective(samples)
        start = samples.obs[:, 0, 0]
        horizon = samples.action.shape[2]
        policy = learner.policy

        def mean_action(obs: torch.Tensor) -> torch.Tensor:
            return policy.policy_sample(obs.to(learner.dtype), deterministic=True).action.to(obs.dtype)

        out = rollout(model, start, policy=mean_action, horizon=horizon, reward_fn=learner.reward_fn)
    return GPSUpdate(plan_states=plan.states.detach(), sample_states=samples.obs.detach(), guided=int(samples.guided),
                     weights=objective.weights.detach(), policy_states=out.obs.transpose(0, 1).detach(),
                     plan_return=-plan.cost.detach(), policy_return=out.reward.sum(0).detach(),
                     effective_samples=objective.effective_samples.detach())


def record_gps_update(learner, model) -> GPSUpdate:
    """Run one :meth:`~mbrl_course.agents.gps.GPSLearner.policy_update` on ``model`` and record it
    (:func:`describe_gps_update`)."""
    learner.policy_update(model)
    return describe_gps_update(learner, model)


def wrapped_angle_distance(theta, reference) -> np.ndarray:
    """|wrap(θ − θ_ref)| with wrap into (−π, π]: the distance of two angles on the circle (a full turn more or
    less is no difference); any matching shapes, elementwise."""
    theta, reference = _np("theta", theta), _np("reference", reference)
    if theta.shape != reference.shape:
        raise ValueError(f"theta, reference: expected the same shape, got {theta.shape} and {reference.shape}")
    return np.abs(np.angle(np.exp(1j * (theta - reference))))


def gps_distance(update: GPSUpdate, *, angle: Callable | None = pendulum_angle) -> np.ndarray:
    """How far the policy's mean rollout is from iLQR's guiding trajectory, per start state: ``(C,)``.

        d_j = (1 / (T+1)) Σ_{t=0}^{T} |wrap(θ_t^μ,j − θ̄_t^j)|     (radians; 0 when the policy retraces x̄^j)

    with θ = ``angle(states)`` (None: state dimension 0, e.g. θ of x = (θ, θ̇) from :func:`angle_pendulum`).
    """
    if not isinstance(update, GPSUpdate):
        raise TypeError(f"update: expected a GPSUpdate (from record_gps_update), got {type(update).__name__}")
    convert = angle if angle is not None else (lambda s: _np("states", s)[..., 0])
    return wrapped_angle_distance(convert(update.policy_states), convert(update.plan_states)).mean(-1)


def plot_guiding_samples(update: GPSUpdate, condition: int = 0, *, angle: Callable | None = pendulum_angle,
                         state_label: str = "θ (rad, 0 = upright)") -> Figure:
    """One start state of one GPS update. Left: the guiding samples (blue), the policy's samples (orange),
    iLQR's trajectory (black) and the updated policy's mean rollout (red, dashed). Right: each sample's
    normalised importance weight w̄_i,t over t (same colours)."""
    if not isinstance(update, GPSUpdate):
        raise TypeError(f"update: expected a GPSUpdate (from record_gps_update), got {type(update).__name__}")
    conditions = update.plan_states.shape[0]
    if not 0 <= condition < conditions:
        raise ValueError(f"condition: expected a start-state index in [0, {conditions}), got {condition}")
    convert = angle if angle is not None else (lambda s: _np("states", s)[..., 0])
    samples = convert(update.sample_states[condition])  # (m, T+1)
    weights = update.weights[condition].cpu().numpy()  # (m, T)
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    for i, path in enumerate(samples):
        guided = i < update.guided
        color = "tab:blue" if guided else "tab:orange"
        label = ("guiding sample ~ q_j" if i == 0 else None) if guided else \
            ("policy sample ~ μ_θ̄" if i == update.guided else None)
        axes[0].plot(path, color=color, alpha=0.5, lw=1, label=label)
        axes[1].plot(np.arange(1, weights.shape[1] + 1), weights[i], color=color, alpha=0.7, lw=1, label=label)
    axes[0].plot(convert(update.plan_states[condition][None])[0], color="k", lw=2, label="iLQR trajectory x̄")
    axes[0].plot(convert(update.policy_states[condition][None])[0], color="tab:red", lw=2, ls="--",
                 label="μ_θ's mean rollout (after the update)")
    axes[0].axhline(0.0, color="k", lw=0.8, ls=":")
    axes[0].set(xlabel="step t", ylabel=state_label, title=f"start state {condition}: samples and plans")
    axes[0].legend(fontsize=7)
    axes[1].set(xlabel="step t", ylabel="w̄_i,t", ylim=(-0.02, 1.02),
                title=f"normalised importance weights (ESS at T: {float(update.effective_samples[condition]):.2f})")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_gps_progress(updates: Sequence[GPSUpdate], *, angle: Callable | None = pendulum_angle) -> Figure:
    """Over the updates: the mean return of the guiding trajectories and of the policy's mean rollouts from the
    same start states (left), the mean distance between the two on the circle,
    mean_{j,t} |wrap(angle(policy) − angle(plan))| with wrap into (−π, π] (middle), and the effective sample
    size at the last step (right)."""
    updates = list(updates)
    if not updates or not all(isinstance(u, GPSUpdate) for u in updates):
        raise ValueError("updates: expected a non-empty sequence of GPSUpdate (from record_gps_update)")
    index = np.arange(1, len(updates) + 1)
    plan = np.array([float(u.plan_return.mean()) for u in updates])
    policy = np.array([float(u.policy_return.mean()) for u in updates])
    gap = np.array([float(gps_distance(u, angle=angle).mean()) for u in updates])  # on the circle
    ess = np.array([float(u.effective_samples.mean()) for u in updates])
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.4))
    axes[0].plot(index, plan, "ks-", label="iLQR's guiding trajectories")
    axes[0].plot(index, policy, "o-", color="tab:red", label="μ_θ's mean rollout, same starts")
    axes[0].set(xlabel="policy update", ylabel="mean return Σ_t g", title="return")
    axes[0].legend(fontsize=8)
    axes[1].plot(index, gap, "o-", color="tab:purple")
    axes[1].set(xlabel="policy update", ylabel="mean |Δθ| (rad, wrapped)", title="policy vs guiding trajectory")
    axes[2].plot(index, ess, "o-", color="tab:green")
    axes[2].set(xlabel="policy update", ylabel="ESS at the last step", title="effective sample size")
    for ax in axes:
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------ GPS: the benchmark's measured curves
GPS_ROW_KEYS = ("update", "env_steps", "eval_return", "eval_se", "eval_returns", "upright")
"""Keys every row of a seed holds (row 0: the fresh policy, before any update)."""
GPS_UPDATE_KEYS = ("plan_return", "policy_return", "sample_return", "distance", "log_likelihood", "ess", "samples")
"""Keys the rows of updates 1 … N hold besides :data:`GPS_ROW_KEYS`."""
GPS_SNAPSHOT_KEYS = ("update", "step_every", "guided_shown", "plan", "policy", "samples", "final_weights",
                     "plan_return", "policy_return", "distance")


def _check_gps_curves(data, source: str) -> dict:
    """Refuse a curves file that is not what ``benchmarks/gps.py --save-curves`` writes, naming what is wrong."""
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a JSON object, got {type(data).__name__}")
    missing = [k for k in ("command", "measured", "iterations", "setting", "seeds") if k not in data]
    if missing or not isinstance(data["seeds"], dict) or not data["seeds"]:
        raise ValueError(f"{source}: expected the keys command, measured, iterations, setting and a non-empty "
                         f"'seeds' object (benchmarks/gps.py --save-curves), missing {missing or ['seeds']}")
    iterations = data["iterations"]
    for seed, run in data["seeds"].items():
        rows, snapshots = run.get("rows"), run.get("snapshots")
        if not isinstance(rows, list) or len(rows) != iterations + 1:
            raise ValueError(f"{source}: seed {seed}: expected {iterations} + 1 rows (update 0 … {iterations}), got "
                             f"{len(rows) if isinstance(rows, list) else rows!r}")
        for k, row in enumerate(rows):
            need = GPS_ROW_KEYS + (GPS_UPDATE_KEYS if k > 0 else ())
            lacking = [key for key in need if key not in row]
            if lacking or row["update"] != k:
                raise ValueError(f"{source}: seed {seed}, row {k}: expected update {k} with keys {list(need)}, "
                                 f"got update {row.get('update')!r}, missing {lacking}")
        if not isinstance(snapshots, list) or not snapshots:
            raise ValueError(f"{source}: seed {seed}: expected a non-empty list of snapshots, got {snapshots!r}")
        for snap in snapshots:
            lacking = [key for key in GPS_SNAPSHOT_KEYS if key not in snap]
            if lacking:
                raise ValueError(f"{source}: seed {seed}: a snapshot lacks the keys {lacking}")
            plan, policy, samples = (np.asarray(snap[k], dtype=float) for k in ("plan", "policy", "samples"))
            weights = np.asarray(snap["final_weights"], dtype=float)
            if plan.ndim != 2 or policy.shape != plan.shape or samples.ndim != 3 \
                    or samples.shape[::2] != plan.shape or weights.shape != samples.shape[:2]:
                raise ValueError(f"{source}: seed {seed}, update {snap['update']}: expected plan and policy (S, L), "
                                 f"samples (S, k, L) and final_weights (S, k), got {plan.shape}, {policy.shape}, "
                                 f"{samples.shape}, {weights.shape}")
    return data


def gps_benchmark_curves(name: str = "gps_Pendulum-v1", *, path: str | Path | None = None) -> dict:
    """The GPS curves ``benchmarks/gps.py --save-curves`` measured, as shipped in
    ``mbrl_course/viz/data/<name>.json`` (or read from ``path``), checked for the expected layout.

    ``{"command", "measured", "env", "tier", "iterations", "eval_episodes", "setting", "upright_rule",
    "seeds": {seed: {"rows": [update 0 … N], "snapshots": [first, middle, last update], "wall_s"}}}``; the
    rows' and snapshots' fields are defined in the docstring of ``benchmarks/gps.py``.
    """
    if path is None:
        file = resources.files("mbrl_course.viz") / "data" / f"{name}.json"
        if not file.is_file():
            shipped = sorted(p.name[:-5] for p in (resources.files("mbrl_course.viz") / "data").iterdir()
                             if p.name.startswith("gps_") and p.name.endswith(".json"))
            raise ValueError(f"name: expected one of the shipped GPS curves {shipped}, got {name!r}")
        text, source = file.read_text(), f"{name}.json"
    else:
        text, source = Path(path).read_text(), str(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{source}: not valid JSON ({error})") from None
    return _check_gps_curves(data, source)


def _seed_colors(seeds: Sequence[str]) -> dict[str, tuple]:
    return {seed: plt.cm.tab10(i % 10) for i, seed in enumerate(seeds)}


def plot_gps_benchmark_rollouts(curves: dict, seed: int | str | None = None) -> Figure:
    """θ(t) at the first, middle and last update of one seed of the shipped benchmark: per stored start state
    (one colour each) the guiding samples (thin, more opaque the larger their weight w̄_i,T), iLQR's guiding
    trajectory x̄ (solid) and the updated policy's mean rollout on f from the same start (dashed); each panel's
    title gives the distance d of :func:`gps_distance` over those starts.

    Args:
        curves: from :func:`gps_benchmark_curves`.
        seed: which seed (default: the first in the file).
    """
    curves = _check_gps_curves(curves, "curves")
    seeds = list(curves["seeds"])
    key = seeds[0] if seed is None else str(seed)
    if key not in curves["seeds"]:
        raise ValueError(f"seed: expected one of the file's seeds {seeds}, got {seed!r}")
    snapshots = curves["seeds"][key]["snapshots"]
    fig, axes = plt.subplots(1, len(snapshots), figsize=(4.6 * len(snapshots), 3.8), sharey=True, squeeze=False)
    for ax, snap in zip(axes[0], snapshots, strict=True):
        plan, policy = np.asarray(snap["plan"]), np.asarray(snap["policy"])
        samples, weights = np.asarray(snap["samples"]), np.asarray(snap["final_weights"])
        t = np.arange(plan.shape[1]) * snap["step_every"]
        guided = snap["guided_shown"]
        for j, color in zip(range(plan.shape[0]), plt.cm.tab10.colors, strict=False):
            for i in range(guided):
                ax.plot(t, samples[j, i], color=color, lw=0.7, alpha=0.15 + 0.7 * float(weights[j, i]),
                        label="guiding samples ~ q_j" if j == 0 and i == 0 else None)
            ax.plot(t, plan[j], color=color, lw=2, label="iLQR's guiding trajectory x̄" if j == 0 else None)
            ax.plot(t, policy[j], color=color, lw=2, ls="--", label="μ_θ's mean rollout" if j == 0 else None)
        top = np.round(np.rint(np.concatenate([plan[:, -1], policy[:, -1]]) / (2 * np.pi)))
        for turns in sorted(set(top.tolist())):
            ax.axhline(2 * np.pi * turns, color="k", lw=0.6, ls=":")
        ax.set(xlabel="step t", title=f"update {snap['update']}: d = {float(np.mean(snap['distance'])):.2f} rad")
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[0, 0].set_ylabel("θ (rad, unwrapped; dotted: upright)")
    axes[0, 0].legend(fontsize=7, loc="best")
    fig.suptitle(f"GPS on {curves.get('env', 'Pendulum-v1')}, seed {key}, {plan.shape[0]} of the "
                 f"{curves['setting'].get('conditions', '?')} start states per update "
                 f"(measured by benchmarks/gps.py, {curves['measured']})", fontsize=10)
    fig.tight_layout()
    return fig


def plot_gps_benchmark_curves(curves: dict) -> Figure:
    """Per update, one line per seed of the shipped benchmark: (1) the distance d between the policy's mean
    rollout and the guiding trajectories (:func:`gps_distance`); (2) on f from the same start states, the
    guiding trajectories' return (squares) and the policy's (circles); (3) the policy alone in the real env,
    mean ± SE of its evaluation episodes (update 0: the fresh policy); (4) the effective sample size of the
    importance weights at the last step, against the m samples per start state (dotted)."""
    curves = _check_gps_curves(curves, "curves")
    colors = _seed_colors(list(curves["seeds"]))
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.6))
    for seed, run in curves["seeds"].items():
        rows, color = run["rows"], colors[seed]
        updates = np.array([r["update"] for r in rows[1:]])
        label = f"seed {seed}"
        axes[0].plot(updates, [r["distance"] for r in rows[1:]], "o-", color=color, label=label)
        axes[1].plot(updates, [r["plan_return"] for r in rows[1:]], "s-", color=color, alpha=0.5, ms=4,
                     label=f"{label}: guiding x̄")
        axes[1].plot(updates, [r["policy_return"] for r in rows[1:]], "o--", color=color, ms=4,
                     label=f"{label}: μ_θ")
        every = np.array([r["update"] for r in rows])
        mean, se = np.array([r["eval_return"] for r in rows]), np.array([r["eval_se"] for r in rows])
        axes[2].errorbar(every, mean, yerr=se, fmt="o-", color=color, capsize=3, ms=4,
                         label=f"{label}: {rows[-1]['upright']:.0%} swung up at the end")
        axes[3].plot(updates, [r["ess"] for r in rows[1:]], "o-", color=color, label=label)
    samples = rows[-1]["samples"]
    axes[3].axhline(samples, color="0.5", ls=":", label=f"m = {samples} (equal weights)")
    axes[3].set_ylim(0, samples * 1.08)
    horizon = curves["setting"].get("horizon", "T")
    axes[0].set(xlabel="policy update", ylabel="d: mean over j, t of |wrap(θ^μ − θ̄)| (rad)",
                title="policy's rollout vs guiding trajectory")
    axes[1].set(xlabel="policy update", ylabel=f"Σ_t g over T = {horizon} steps, mean over starts",
                title="on f, same start states")
    axes[2].set(xlabel="policy update (0: fresh policy)", ylabel="return (200 steps)",
                title=f"μ_θ alone, real env (± SE, {curves.get('eval_episodes', '?')} episodes)")
    axes[3].set(xlabel="policy update", ylabel="1 / Σ_i w̄_i,T²", title="effective sample size")
    for ax in axes:
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize=6)
    fig.tight_layout()
    return fig
