"""Figures and widgets of the planning lecture: what ``planning-algo(f_ψ, i)`` does, iteration by iteration.

A planner maximises an objective over action sequences u^n_{1:H} (``samples: (N, H, A)``) whose returns are
G_n (``returns: (N,)``). Every planner of :mod:`mbrl_course.planning` keeps one
:class:`~mbrl_course.planning.PlanIteration` per iteration in ``planner.history`` (samples, returns, the mean
μ and std σ of the sampling distribution, the elites). This module draws them:

- :func:`plot_plan_iteration`: one iteration: the samples (points on the objective's contours when a sequence
  has two numbers, H·A = 2, else u_t against t), the elites, μ ± σ, optionally the trajectories the
  sequences produce, and the histogram of the returns G_n.
- :func:`plot_cem_iterations`: the same for several iterations side by side (the static overview).
- :func:`cem_explorer`: a slider / play button over the iterations (ipywidgets); without ipywidgets or a
  running kernel it degrades to :func:`plot_cem_iterations`.

And the comparison of the planners on Pendulum-v1 with the true dynamics as the model, so that the
comparison is about the planners alone:

- :func:`true_dynamics_objective`, :func:`rollout_true_dynamics`: G(u_{1:H}) and i_{1:H+1} under the env's own f.
- :func:`swing_up_return`: one MPC episode of Pendulum-v1 from hanging down.
- :func:`sweep_planners` → :class:`PlannerSweep`, drawn by :func:`plot_planner_sweeps`.
- :func:`two_hills_objective`: a 2-D toy objective (H = 2, A = 1) to watch CEM on.

Every function returns a :class:`matplotlib.figure.Figure` that is *not* registered with pyplot: in a notebook
the figure is shown when it is the cell's value (or with ``display(fig)``), in a script save it with
``fig.savefig(path)``; nothing is left open behind your back.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse

from mbrl_course._checks import as_tensor, check_positive_int, check_shape
from mbrl_course.planning import Objective, PlanIteration, Planner
from mbrl_course.viz._widgets import widgets_available

__all__ = [
    "PlannerSweep",
    "cem_explorer",
    "plot_cem_iterations",
    "plot_plan_iteration",
    "plot_planner_sweeps",
    "rollout_true_dynamics",
    "swing_up_return",
    "sweep_planners",
    "true_dynamics_objective",
    "two_hills_objective",
    "widgets_available",
]

SAMPLE_COLOR = "0.55"
ELITE_COLOR = "tab:orange"
MEAN_COLOR = "tab:blue"
BEST_COLOR = "tab:red"
PLANNER_COLORS = {"random shooting": "tab:gray", "CEM": "tab:orange", "MPPI": "tab:blue"}

TrajectoryFn = Callable[[torch.Tensor], "np.ndarray | torch.Tensor"]
"""``trajectory_fn(samples: (N, H, A)) -> (N, H+1)``: one number per step of the trajectory each sequence produces."""


# ---------------------------------------------------------------------------------------------
# A toy objective
# ---------------------------------------------------------------------------------------------


def two_hills_objective(
    peak=(0.55, -0.45), hill=(-0.35, 0.4), peak_width: float = 0.25, hill_width: float = 0.45,
    hill_height: float = 0.6,
) -> Objective:
    """A 2-D toy objective over sequences of H = 2 one-dimensional actions u = (u_1, u_2) ∈ [-1, 1]²:

        G(u) = exp(−‖u − a‖² / (2 w_a²)) + h_b exp(−‖u − b‖² / (2 w_b²))

    a narrow high peak at a (= ``peak``, width w_a, height 1) and a broad lower hill at b (= ``hill``,
    width w_b, height h_b < 1). The maximum is G(a) ≈ 1; a sampler that lands mostly on the broad hill
    can settle there instead.

    Returns:
        ``objective(actions: (N, 2, 1)) -> (N,)``.
    """

    def objective(actions: torch.Tensor) -> torch.Tensor:
        check_shape("actions", actions, ("N", 2, 1))
        u = actions[..., 0]  # (N, 2)
        a = torch.as_tensor(peak, dtype=u.dtype, device=u.device)
        b = torch.as_tensor(hill, dtype=u.dtype, device=u.device)
        return (torch.exp(-(u - a).square().sum(-1) / (2 * peak_width**2))
                + hill_height * torch.exp(-(u - b).square().sum(-1) / (2 * hill_width**2)))

    return objective


# ---------------------------------------------------------------------------------------------
# One iteration of a planner
# ---------------------------------------------------------------------------------------------


@dataclass
class _Iteration:
    """One PlanIteration as numpy arrays."""

    samples: np.ndarray  # (N, H, A)
    returns: np.ndarray  # (N,)
    mean: np.ndarray  # (H, A)
    std: np.ndarray  # (H, A)
    elite: np.ndarray  # (N,) bool
    weights: np.ndarray | None  # (N,)


def _as_numpy(tensor) -> np.ndarray:
    return tensor.detach().to("cpu", torch.float64).numpy() if isinstance(tensor, torch.Tensor) else np.asarray(tensor)


def _check_history(history: Sequence[PlanIteration]) -> list[PlanIteration]:
    if isinstance(history, PlanIteration):
        history = [history]
    history = list(history)
    if not history:
        raise ValueError("history: expected the planner's history (one PlanIteration per iteration), got an empty "
                         "list; plan once with keep_history=True first")
    for j, it in enumerate(history):
        if not isinstance(it, PlanIteration):
            raise TypeError(f"history[{j}]: expected a mbrl_course.planning.PlanIteration, got {type(it).__name__}")
    return history


def _convert(it: PlanIteration) -> _Iteration:
    samples = _as_numpy(it.samples)
    elite = np.zeros(samples.shape[0], dtype=bool)
    if it.elite_indices is not None and it.elite_indices.numel() > 1:  # one index: random shooting's best n_*
        elite[_as_numpy(it.elite_indices).astype(int)] = True
    return _Iteration(samples, _as_numpy(it.returns), _as_numpy(it.mean), _as_numpy(it.std), elite,
                      None if it.weights is None else _as_numpy(it.weights))


@dataclass
class _Scene:
    """What every iteration's drawing shares, so that the axes stay put across iterations."""

    iterations: list[_Iteration]
    low: np.ndarray  # (A,)
    high: np.ndarray  # (A,)
    bins: np.ndarray
    count_max: float
    contour: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # (X, Y, G) on a grid
    trajectories: list[np.ndarray] | None = None  # per iteration (N, H+1)
    trajectory_range: tuple[float, float] | None = None
    labels: dict[str, str] = field(default_factory=dict)
    distribution: bool = True  # draw μ, σ (False for random shooting, which samples uniformly)

    @property
    def two_d(self) -> bool:
        return self.contour is not None

    @property
    def panels(self) -> list[str]:
        return ["samples"] + (["trajectories"] if self.trajectories is not None else []) + ["histogram"]


def _scene(history, *, objective, trajectory_fn, action_low, action_high, bins, labels) -> _Scene:
    history = _check_history(history)
    iterations = [_convert(it) for it in history]
    _, H, A = iterations[0].samples.shape
    all_samples = np.concatenate([it.samples.reshape(-1, A) for it in iterations])
    low = all_samples.min(0) if action_low is None else np.broadcast_to(np.asarray(action_low, float), (A,))
    high = all_samples.max(0) if action_high is None else np.broadcast_to(np.asarray(action_high, float), (A,))
    finite = np.concatenate([it.returns[np.isfinite(it.returns)] for it in iterations])
    if finite.size == 0:
        raise ValueError("history: every return is -inf (no feasible action sequence to draw)")
    lo, hi = float(finite.min()), float(finite.max())
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, check_positive_int("bins", bins) + 1)
    count_max = max(np.histogram(it.returns[np.isfinite(it.returns)], edges)[0].max(initial=0) for it in iterations)
    scene = _Scene(iterations, low, high, edges, float(count_max), labels=labels)
    first = history[0]
    scene.distribution = not (len(history) == 1 and first.weights is None and first.elite_indices is not None
                              and first.elite_indices.numel() == 1)
    if objective is not None and H * A == 2:
        grid = 120
        lows, highs = np.broadcast_to(low, (H, A)).reshape(2), np.broadcast_to(high, (H, A)).reshape(2)
        x, y = np.meshgrid(np.linspace(lows[0], highs[0], grid), np.linspace(lows[1], highs[1], grid))
        points = torch.as_tensor(np.stack([x.ravel(), y.ravel()], -1), dtype=history[0].samples.dtype)
        with torch.no_grad():
            values = _as_numpy(objective(points.reshape(-1, H, A).to(history[0].samples.device)))
        scene.contour = (x, y, values.reshape(grid, grid))
    if trajectory_fn is not None:
        with torch.no_grad():
            scene.trajectories = [_as_numpy(trajectory_fn(it.samples)) for it in history]
        for j, traj in enumerate(scene.trajectories):
            if traj.shape != (iterations[j].samples.shape[0], H + 1):
                raise ValueError(f"trajectory_fn: expected an array of shape (N, H+1) = "
                                 f"({iterations[j].samples.shape[0]}, {H + 1}), got {traj.shape}")
        stacked = np.concatenate(scene.trajectories)
        scene.trajectory_range = (float(np.nanmin(stacked)), float(np.nanmax(stacked)))
    return scene


def _draw_samples_2d(ax, scene: _Scene, j: int, colorbar: bool = True) -> None:
    it = scene.iterations[j]
    x, y, values = scene.contour
    filled = ax.contourf(x, y, values, levels=14, cmap="Greens", alpha=0.55)
    ax.contour(x, y, values, levels=14, colors="g", linewidths=0.3, alpha=0.5)
    points = it.samples.reshape(len(it.samples), 2)
    ax.scatter(points[~it.elite, 0], points[~it.elite, 1], s=9, color=SAMPLE_COLOR, label="samples u^n", zorder=3)
    if it.elite.any():
        ax.scatter(points[it.elite, 0], points[it.elite, 1], s=22, color=ELITE_COLOR, edgecolor="k",
                   linewidth=0.4, label="elites", zorder=4)
    mean, std = it.mean.reshape(2), it.std.reshape(2)
    if scene.distribution:
        for k, style in ((1, "-"), (2, "--")):
            ax.add_patch(Ellipse(tuple(mean), 2 * k * std[0], 2 * k * std[1], fill=False, color=MEAN_COLOR,
                                 linestyle=style, linewidth=1.4, zorder=5))
        ax.plot(*mean, marker="x", color=MEAN_COLOR, markersize=9, mew=2, label="μ (ellipses: 1σ, 2σ)", zorder=6)
    if scene.distribution and j + 1 < len(scene.iterations):
        nxt = scene.iterations[j + 1].mean.reshape(2)
        ax.annotate("", xy=tuple(nxt), xytext=tuple(mean), zorder=6,
                    arrowprops=dict(arrowstyle="->", color=MEAN_COLOR, lw=1.5))
    best = int(np.nanargmax(it.returns))
    ax.plot(*points[best], marker="*", color=BEST_COLOR, markersize=11, label="best sample", zorder=7,
            linestyle="none")
    ax.set_xlim(x.min(), x.max())
    ax.set_ylim(y.min(), y.max())
    ax.set_aspect("equal")
    ax.set_xlabel(scene.labels["x"])
    ax.set_ylabel(scene.labels["y"])
    ax.legend(loc="lower left", fontsize=6.5, framealpha=0.85)
    if colorbar:
        ax.figure.colorbar(filled, ax=ax, fraction=0.046, pad=0.03).set_label(scene.labels["return"], fontsize=8)


def _draw_sequences(ax, scene: _Scene, j: int, action_dim: int, max_lines: int) -> None:
    it = scene.iterations[j]
    N, H, _ = it.samples.shape
    t = np.arange(1, H + 1)
    others = np.flatnonzero(~it.elite)[:max_lines]
    for k, n in enumerate(others):
        ax.plot(t, it.samples[n, :, action_dim], color=SAMPLE_COLOR, lw=0.6, alpha=0.4,
                label="samples u^n" if k == 0 else None)
    for k, n in enumerate(np.flatnonzero(it.elite)[:max_lines]):
        ax.plot(t, it.samples[n, :, action_dim], color=ELITE_COLOR, lw=1.0, alpha=0.9,
                label="elites" if k == 0 else None)
    if scene.distribution:
        mean, std = it.mean[:, action_dim], it.std[:, action_dim]
        ax.fill_between(t, mean - std, mean + std, color=MEAN_COLOR, alpha=0.2, label="μ ± σ")
        for edge in (mean - std, mean + std):
            ax.plot(t, edge, color=MEAN_COLOR, lw=1.0, ls="--")
        ax.plot(t, mean, color=MEAN_COLOR, lw=2.2, label="μ")
    else:
        best = int(np.nanargmax(it.returns))
        ax.plot(t, it.samples[best, :, action_dim], color=BEST_COLOR, lw=2.0, label="best sample")
    for bound in (scene.low[action_dim], scene.high[action_dim]):
        ax.axhline(bound, color="k", lw=0.8, ls="--")
    pad = 0.06 * (scene.high[action_dim] - scene.low[action_dim])
    ax.set_ylim(scene.low[action_dim] - pad, scene.high[action_dim] + pad)
    ax.set_xlim(1, max(H, 2))
    ax.set_xlabel(scene.labels["t"])
    ax.set_ylabel(scene.labels["action"])
    ax.legend(loc="upper right", fontsize=6.5, framealpha=0.85, ncol=2)


def _draw_trajectories(ax, scene: _Scene, j: int, max_lines: int) -> None:
    it, traj = scene.iterations[j], scene.trajectories[j]
    t = np.arange(traj.shape[1])
    for k, n in enumerate(np.flatnonzero(~it.elite)[:max_lines]):
        ax.plot(t, traj[n], color=SAMPLE_COLOR, lw=0.6, alpha=0.45, label="from samples" if k == 0 else None)
    for k, n in enumerate(np.flatnonzero(it.elite)[:max_lines]):
        ax.plot(t, traj[n], color=ELITE_COLOR, lw=1.0, label="from elites" if k == 0 else None)
    best = int(np.nanargmax(it.returns))
    ax.plot(t, traj[best], color=BEST_COLOR, lw=1.8, label="from the best sample")
    lo, hi = scene.trajectory_range
    pad = 0.06 * (hi - lo) if hi > lo else 0.5
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlim(0, max(traj.shape[1] - 1, 1))
    ax.set_xlabel(scene.labels["t"])
    ax.set_ylabel(scene.labels["trajectory"])
    ax.legend(loc="best", fontsize=6.5, framealpha=0.85)


def _draw_histogram(ax, scene: _Scene, j: int) -> None:
    it = scene.iterations[j]
    finite = np.isfinite(it.returns)
    if it.elite.any():
        ax.hist([it.returns[finite & ~it.elite], it.returns[finite & it.elite]], bins=scene.bins, stacked=True,
                color=[SAMPLE_COLOR, ELITE_COLOR], label=["other samples", "elites"])
    else:
        ax.hist(it.returns[finite], bins=scene.bins, color=SAMPLE_COLOR, label="samples")
    if it.elite.any():
        threshold = float(it.returns[it.elite].min())
        ax.axvline(threshold, color=ELITE_COLOR, ls="--", lw=1.2, label=f"elite threshold {threshold:.3g}")
    best = float(np.nanmax(it.returns))
    ax.axvline(best, color=BEST_COLOR, lw=1.2, label=f"best G = {best:.3g}")
    ax.set_xlim(scene.bins[0], scene.bins[-1])
    ax.set_ylim(0, 1.08 * max(scene.count_max, 1))
    ax.set_xlabel(scene.labels["return"])
    ax.set_ylabel("number of sequences")
    ax.legend(loc="upper left", fontsize=6.5, framealpha=0.85)


def _draw(fig: Figure, axes: Sequence, scene: _Scene, j: int, *, action_dim: int, max_lines: int,
          colorbar: bool = True) -> None:
    for ax, panel in zip(axes, scene.panels):
        if panel == "samples":
            if scene.two_d:
                _draw_samples_2d(ax, scene, j, colorbar)
            else:
                _draw_sequences(ax, scene, j, action_dim, max_lines)
        elif panel == "trajectories":
            _draw_trajectories(ax, scene, j, max_lines)
        else:
            _draw_histogram(ax, scene, j)


def _labels(overrides: Mapping[str, str] | None) -> dict[str, str]:
    labels = {
        "x": "u_1, first action of the sequence",
        "y": "u_2, second action of the sequence",
        "t": "planning step t",
        "action": "action u_t",
        "trajectory": "state along the imagined trajectory",
        "return": "return G_n",
    }
    unknown = set(overrides or {}) - set(labels)
    if unknown:
        raise ValueError(f"labels: unknown key(s) {sorted(unknown)}; expected some of {sorted(labels)}")
    labels.update(overrides or {})
    return labels


def _build_scene(history, objective, trajectory_fn, action_low, action_high, bins, labels) -> _Scene:
    scene = _scene(history, objective=objective, trajectory_fn=trajectory_fn, action_low=action_low,
                   action_high=action_high, bins=bins, labels=_labels(labels))
    return scene


def _iteration_title(scene: _Scene, j: int, name: str) -> str:
    it = scene.iterations[j]
    n_elite = int(it.elite.sum())
    what = f"{len(it.samples)} samples, {n_elite} elite{'s' if n_elite != 1 else ''}" if n_elite else \
        f"{len(it.samples)} samples"
    if len(scene.iterations) == 1:
        return f"{name}: {what}"
    return f"{name} iteration {j + 1} of {len(scene.iterations)}: {what}"


def plot_plan_iteration(
    history: Sequence[PlanIteration],
    iteration: int = -1,
    *,
    objective: Objective | None = None,
    trajectory_fn: TrajectoryFn | None = None,
    action_low=None,
    action_high=None,
    action_dim: int = 0,
    labels: Mapping[str, str] | None = None,
    name: str = "CEM",
    title: str | None = None,
    bins: int = 30,
    max_lines: int = 60,
) -> Figure:
    """One iteration j of a planner's ``history``: where it sampled, what it kept, how the returns spread.

    Panels, left to right:

    1. the samples u^n ~ N(μ, diag σ²) of iteration j and the elites ℰ (the E sequences with the largest G_n).
       When a sequence is two numbers (H·A = 2) and ``objective`` is given: points on the objective's contours,
       μ with its 1σ and 2σ ellipses and an arrow to the next iteration's μ. Otherwise: u_t against t
       (action dimension ``action_dim``) with μ ± σ as a band and the bounds [u_min, u_max] dashed.
       (Random shooting's history, one iteration with one best index n_*, draws no μ and σ: it samples
       uniformly; its best sample is marked instead.)
    2. (with ``trajectory_fn``) the trajectories the sequences produce, e.g. the pendulum's height cos θ_t.
    3. the histogram of the returns G_n, elites stacked in colour, the elite threshold min_{n∈ℰ} G_n and the best.

    Axis ranges are shared by all iterations of ``history`` (so iterations compare at a glance).

    Args:
        history: ``planner.history`` (a list of :class:`~mbrl_course.planning.PlanIteration`).
        iteration: j, 0-based; negative counts from the end.
        objective: ``(N, H, A) -> (N,)`` for the contour background (used only when H·A = 2).
        trajectory_fn: ``(N, H, A) -> (N, H+1)``, one number per step of each sequence's trajectory.
        action_low, action_high: u_min, u_max, (A,) or floats; default: the range of the samples.
        action_dim: which action dimension the sequence panel draws.
        labels: axis labels to override, keys among ``x``, ``y`` (2-D panel), ``t``, ``action``,
            ``trajectory``, ``return`` (give units, e.g. ``{"action": "torque u_t [N m]"}``).
        name: the planner's name in the title.
        title: the figure's title (default: iteration and counts).
        bins: histogram bins. max_lines: at most this many sample and elite lines per panel.
    Returns:
        a :class:`~matplotlib.figure.Figure` with one row of 2 or 3 panels.
    """
    scene = _build_scene(history, objective, trajectory_fn, action_low, action_high, bins, labels)
    n = len(scene.iterations)
    if not isinstance(iteration, (int, np.integer)) or not -n <= iteration < n:
        raise ValueError(f"iteration: expected an integer in [{-n}, {n - 1}] (the history has {n}), got {iteration!r}")
    return _render_one(scene, int(iteration) % n, action_dim=action_dim, max_lines=max_lines, name=name, title=title)


def _render_one(scene: _Scene, j: int, *, action_dim: int, max_lines: int, name: str, title: str | None) -> Figure:
    panels = scene.panels
    fig = Figure(figsize=(4.6 * len(panels), 3.9), dpi=100, layout="constrained")
    axes = fig.subplots(1, len(panels))
    _draw(fig, axes, scene, j, action_dim=action_dim, max_lines=max_lines)
    fig.suptitle(title or _iteration_title(scene, j, name), fontsize=11)
    return fig


def plot_cem_iterations(
    history: Sequence[PlanIteration],
    *,
    iterations: Sequence[int] | None = None,
    objective: Objective | None = None,
    trajectory_fn: TrajectoryFn | None = None,
    action_low=None,
    action_high=None,
    action_dim: int = 0,
    labels: Mapping[str, str] | None = None,
    name: str = "CEM",
    title: str | None = None,
    bins: int = 30,
    max_lines: int = 60,
) -> Figure:
    """Several iterations of ``history`` side by side: one column per iteration, one row per panel.

    The panels are those of :func:`plot_plan_iteration` (samples and elites, optionally trajectories, the
    histogram of G_n), with shared axes so that the sampling distribution N(μ, diag σ²) can be seen to
    shrink onto the high returns. ``iterations``: which (0-based) to draw; default all of them when there
    are at most 6, else 6 spread from the first to the last. Other arguments as in :func:`plot_plan_iteration`.
    """
    scene = _build_scene(history, objective, trajectory_fn, action_low, action_high, bins, labels)
    n = len(scene.iterations)
    if iterations is None:
        iterations = list(range(n)) if n <= 6 else sorted(set(np.linspace(0, n - 1, 6).round().astype(int)))
    iterations = [int(j) for j in iterations]
    if not iterations or any(not 0 <= j < n for j in iterations):
        raise ValueError(f"iterations: expected a non-empty list of indices in [0, {n - 1}], got {iterations}")
    panels = scene.panels
    cols = len(iterations)
    fig = Figure(figsize=(3.9 * cols + 0.6, 3.4 * len(panels)), dpi=90, layout="constrained")
    axes = np.asarray(fig.subplots(len(panels), cols, squeeze=False))
    for c, j in enumerate(iterations):
        _draw(fig, axes[:, c], scene, j, action_dim=action_dim, max_lines=max_lines, colorbar=c == cols - 1)
        axes[0, c].set_title(f"iteration {j + 1} of {n}", fontsize=10)
        for ax in axes[:, c]:
            if c > 0:
                ax.set_ylabel("")
            legend = ax.get_legend()
            if legend is not None and c < cols - 1:
                legend.remove()
    fig.suptitle(title or f"{name}: {n} iteration{'s' if n != 1 else ''}, "
                 f"{len(scene.iterations[0].samples)} samples each", fontsize=12)
    return fig


def _png(fig: Figure, dpi: int = 90) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def cem_explorer(
    history: Sequence[PlanIteration],
    *,
    objective: Objective | None = None,
    trajectory_fn: TrajectoryFn | None = None,
    action_low=None,
    action_high=None,
    action_dim: int = 0,
    labels: Mapping[str, str] | None = None,
    name: str = "CEM",
    interactive: bool | None = None,
    interval_ms: int = 900,
    bins: int = 30,
    max_lines: int = 60,
):
    """Step through a planner's iterations: a play button and a slider over ``history``.

    Each position shows :func:`plot_plan_iteration` of that iteration (samples, elites, μ ± σ, optional
    trajectories, the histogram of the returns G_n); frames are drawn once, when first shown, and then
    cached, so playing is smooth. The figure's axes stay fixed across iterations.

    Args:
        history, objective, trajectory_fn, action_low, action_high, action_dim, labels, name, bins, max_lines:
            as in :func:`plot_plan_iteration`.
        interactive: True: the widget (needs ipywidgets); False: the static :func:`plot_cem_iterations`
            figure; None: the widget when :func:`widgets_available`, else the static figure.
        interval_ms: time per iteration while playing.
    Returns:
        an ``ipywidgets.VBox`` (play button, slider, image), or a :class:`~matplotlib.figure.Figure`.
    """
    if interactive is None:
        interactive = widgets_available()
    if not interactive:
        return plot_cem_iterations(history, objective=objective, trajectory_fn=trajectory_fn,
                                   action_low=action_low, action_high=action_high, action_dim=action_dim,
                                   labels=labels, name=name, bins=bins, max_lines=max_lines)
    try:
        import ipywidgets as widgets
    except ImportError as err:
        raise ImportError("cem_explorer(interactive=True) needs ipywidgets: pip install ipywidgets "
                          "(or pass interactive=False for the static figure)") from err
    scene = _build_scene(history, objective, trajectory_fn, action_low, action_high, bins, labels)
    n = len(scene.iterations)
    cache: dict[int, bytes] = {}

    def frame(j: int) -> bytes:
        if j not in cache:
            cache[j] = _png(_render_one(scene, j, action_dim=action_dim, max_lines=max_lines, name=name, title=None))
        return cache[j]

    play = widgets.Play(value=1, min=1, max=n, step=1, interval=check_positive_int("interval_ms", interval_ms),
                        description="play", tooltip="play the iterations")
    slider = widgets.IntSlider(value=1, min=1, max=n, step=1, description="iteration",
                               continuous_update=True, layout=widgets.Layout(width="420px"))
    widgets.jslink((play, "value"), (slider, "value"))
    image = widgets.Image(value=frame(0), format="png", layout=widgets.Layout(max_width="100%"))

    def show(change) -> None:
        image.value = frame(int(change["new"]) - 1)

    slider.observe(show, names="value")
    return widgets.VBox([widgets.HBox([play, slider]), image])


# ---------------------------------------------------------------------------------------------
# Planning with the true dynamics: the planners compared on Pendulum-v1
# ---------------------------------------------------------------------------------------------


def rollout_true_dynamics(env_id: str, obs, actions: torch.Tensor, **env_kwargs) -> torch.Tensor:
    """i_{1:H+1} under the env's own dynamics: i_1 = ``obs``, i_{t+1} = f(i_t, u^n_t).

    Args:
        env_id: an env with analytic dynamics (:class:`~mbrl_course.models.TrueDynamics`), e.g. ``"Pendulum-v1"``.
        obs: i_1, ``(O,)``.
        actions: u^n_{1:H}, ``(N, H, A)``.
        **env_kwargs: as given to ``make_env`` (e.g. ``g`` of Pendulum-v1).
    Returns:
        states ``(N, H+1, O)`` (no termination: the states go on past a terminal one).
    """
    from mbrl_course.envs import reward_fn
    from mbrl_course.models import TrueDynamics, rollout

    actions = as_tensor("actions", actions)
    check_shape("actions", actions, ("N", "H", "A"))
    state = as_tensor("obs", obs, dtype=actions.dtype, device=actions.device)
    if state.dim() != 1:
        raise ValueError(f"obs: expected one state of shape (O,), got shape {tuple(state.shape)}")
    model = TrueDynamics(env_id, device=actions.device, dtype=actions.dtype, **env_kwargs)
    out = rollout(model, state.expand(actions.shape[0], -1), actions=actions,
                  reward_fn=reward_fn(env_id, **env_kwargs))
    return out.obs.transpose(0, 1)


def true_dynamics_objective(env_id: str, obs, *, discount: float = 1.0, **env_kwargs) -> Objective:
    """The planner's objective with the env's own dynamics as the model (f_ψ := f, no model error):

        G(u^n_{1:H}) = Σ_{t=1}^{H} γ^{t−1} g(i_t, u^n_t, i_{t+1}) [no termination before t],
        i_1 = obs,  i_{t+1} = f(i_t, u^n_t)

    that is :func:`~mbrl_course.models.imagine_returns` with :class:`~mbrl_course.models.TrueDynamics`, the
    env's :func:`~mbrl_course.envs.reward_fn` and termination function. ``obs``: i_1, ``(O,)``.
    Returns ``objective(actions: (N, H, A)) -> (N,)``.
    """
    from mbrl_course.envs import reward_fn, termination_fn
    from mbrl_course.models import TrueDynamics, imagine_returns

    if not 0 < discount <= 1:
        raise ValueError(f"discount: expected γ in (0, 1], got {discount!r}")
    start = as_tensor("obs", obs, dtype=torch.float32)
    if start.dim() != 1:
        raise ValueError(f"obs: expected one state of shape (O,), got shape {tuple(start.shape)}")
    reward, done = reward_fn(env_id, **env_kwargs), termination_fn(env_id, **env_kwargs)
    models: dict = {}

    def objective(actions: torch.Tensor) -> torch.Tensor:
        key = (actions.device, actions.dtype)
        if key not in models:
            models[key] = TrueDynamics(env_id, device=actions.device, dtype=actions.dtype, **env_kwargs)
        return imagine_returns(models[key], start, actions, reward_fn=reward, termination_fn=done,
                               particles=1, discount=discount)

    return objective


class _StartHanging(gym.Wrapper):
    """Pendulum-v1 reset to θ = π + ε_θ, θ̇ = ε_θ̇, ε ~ N(0, ``start_noise``²) drawn from the reset's seed."""

    def __init__(self, env: gym.Env, start_noise: float):
        super().__init__(env)
        self.start_noise = start_noise

    def reset(self, *, seed: int | None = None, options=None):
        _, info = self.env.reset(seed=seed, options=options)
        rng = np.random.default_rng(seed)
        self.env.unwrapped.state = np.array([np.pi, 0.0]) + rng.normal(0.0, self.start_noise, size=2)
        return self.env.unwrapped._get_obs(), info


def swing_up_return(planner: Planner, *, seed: int = 0, steps: int = 100, start_noise: float = 0.1) -> float:
    """The return of one MPC episode of Pendulum-v1 that starts hanging down, planned with the true dynamics.

    The pendulum starts at θ = π + ε_θ, θ̇ = ε_θ̇ (ε ~ N(0, ``start_noise``²), drawn from ``seed``); each step
    the planner maximises the return under :class:`~mbrl_course.models.TrueDynamics` (the MPC loop's
    :class:`~mbrl_course.agents.MPCAgent` with f_ψ := f) and the first action of its plan is executed:
    Σ_{t=1}^{steps} g_t is returned (between about −16 and 0 per step).
    """
    from mbrl_course.agents import MPCAgent, run_episode
    from mbrl_course.envs import make_env, reward_fn, termination_fn
    from mbrl_course.models import TrueDynamics

    steps = check_positive_int("steps", steps)
    env = _StartHanging(make_env("Pendulum-v1", max_episode_steps=steps), start_noise)
    agent = MPCAgent(TrueDynamics("Pendulum-v1"), planner, reward_fn=reward_fn("Pendulum-v1"),
                     termination_fn=termination_fn("Pendulum-v1"), device=planner.device)
    try:
        return run_episode(env, agent, None, episode=0, seed=int(seed)).ret
    finally:
        env.close()


@dataclass
class PlannerSweep:
    """Returns of MPC episodes for several planners as one setting varies."""

    parameter: str
    """What varies, as the x-axis label (with units)."""
    values: list[float]
    """The settings tried, (V,)."""
    returns: dict[str, np.ndarray]
    """Planner name -> episode returns, (V, S) for V settings and S seeds."""
    steps: int = 100
    """Episode length in env steps."""


PlannerBuilder = Callable[[int, int, int], Planner]
"""``build(samples, horizon, seed) -> Planner``: a planner that evaluates ``samples`` sequences per planned action."""


def sweep_planners(
    builders: Mapping[str, PlannerBuilder],
    *,
    samples: int | Sequence[int],
    horizon: int | Sequence[int],
    seeds: Sequence[int] = (0, 1, 2),
    steps: int = 100,
    progress: bool = True,
) -> PlannerSweep:
    """Run :func:`swing_up_return` for every planner, setting and seed; vary the samples or the horizon.

    Exactly one of ``samples`` and ``horizon`` is a list: the setting that varies; the other is held fixed.

    Args:
        builders: planner name -> ``build(samples, horizon, seed) -> Planner``, where ``samples`` is the number
            of sequences the planner may evaluate per planned action (for CEM and MPPI: population N times
            iterations J). The same seed gives every planner the same start state.
        samples: sequences per planned action, an int or a list of them.
        horizon: H, the planning horizon in env steps, an int or a list of them.
        seeds: one episode per seed. steps: episode length. progress: show a tqdm bar.
    Returns:
        :class:`PlannerSweep` with returns ``(len(values), len(seeds))`` per planner.
    """
    from tqdm.auto import tqdm

    if not builders:
        raise ValueError("builders: expected at least one planner (name -> build(samples, horizon, seed))")
    vary_samples = isinstance(samples, Sequence)
    if vary_samples == isinstance(horizon, Sequence):
        raise ValueError(f"samples, horizon: expected exactly one of them to be a list (the setting that varies), "
                         f"got samples={samples!r}, horizon={horizon!r}")
    values = [check_positive_int("samples" if vary_samples else "horizon", v)
              for v in (samples if vary_samples else horizon)]
    seeds = [int(s) for s in seeds]
    if not values or not seeds:
        raise ValueError(f"samples/horizon, seeds: expected non-empty lists, got {values} and {seeds}")
    parameter = ("sequences evaluated per planned action" if vary_samples
                 else "planning horizon H [env steps of 0.05 s]")
    out = {name: np.zeros((len(values), len(seeds))) for name in builders}
    bar = tqdm(total=len(builders) * len(values) * len(seeds), desc="samples" if vary_samples else "horizon",
               unit="episode", disable=not progress)
    for name, build in builders.items():
        for v, value in enumerate(values):
            n, h = (value, horizon) if vary_samples else (samples, value)
            for s, seed in enumerate(seeds):
                out[name][v, s] = swing_up_return(build(n, h, seed), seed=seed, steps=steps)
                bar.update(1)
    bar.close()
    return PlannerSweep(parameter, [float(v) for v in values], out, steps)


def plot_planner_sweeps(*sweeps: PlannerSweep, title: str | None = None,
                        reference: Mapping[str, float] | None = None) -> Figure:
    """One panel per sweep: the episode return against the setting, mean over seeds ± one standard deviation.

    A logarithmic x-axis is used where the settings span a factor of 10 or more. ``reference``: horizontal
    dashed lines, e.g. ``{"zero torque": -1200}``.
    """
    if not sweeps:
        raise ValueError("sweeps: expected at least one PlannerSweep")
    for k, sweep in enumerate(sweeps):
        if not isinstance(sweep, PlannerSweep):
            raise TypeError(f"sweeps[{k}]: expected a PlannerSweep (from sweep_planners), got {type(sweep).__name__}")
    fig = Figure(figsize=(5.6 * len(sweeps), 4.0), dpi=100, layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(sweeps)))
    for ax, sweep in zip(axes, sweeps):
        x = np.asarray(sweep.values)
        for name, returns in sweep.returns.items():
            mean, std = returns.mean(1), returns.std(1)
            color = PLANNER_COLORS.get(name)
            ax.plot(x, mean, marker="o", label=name, color=color)
            if returns.shape[1] > 1:
                ax.fill_between(x, mean - std, mean + std, alpha=0.2, color=color)
        for label, value in (reference or {}).items():
            ax.axhline(value, color="0.4", ls="--", lw=1)
            ax.annotate(f" {label}", (0, value), xycoords=("axes fraction", "data"), va="bottom", fontsize=8,
                        color="0.3")
        if x.min() > 0 and x.max() / x.min() >= 10:
            ax.set_xscale("log")
        ax.set_xticks(x)
        ax.set_xticklabels([f"{v:g}" for v in x])
        ax.minorticks_off()
        ax.set_xlabel(sweep.parameter)
        seeds = next(iter(sweep.returns.values())).shape[1]
        ax.set_ylabel(f"episode return over {sweep.steps} steps")
        ax.set_title(f"return against {sweep.parameter.split('[')[0].split(',')[0].strip()}"
                     f" (mean ± std, {seeds} seed{'s' if seeds != 1 else ''})", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=12)
    return fig
