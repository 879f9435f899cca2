"""Figures and widgets of the recurrent-SSM lecture (``lectures/08-recurrent-ssm.ipynb``).

In the slides' notation (h_t the deterministic path, s_t the stochastic state, y_t the frame, a_t the action;
for GTM-SM x_t the frames and s_t the position):

- :data:`FAMILY_GRAPHS`, :func:`plot_model_families`: the graphical models of the deterministic RNN, the
  Markovian SSM, the VRNN and the RSSM, one step t−1 → t (square: deterministic, circle: random, grey: observed);
- :func:`compute_video_predictions`: open-loop video prediction of several world models
  (:func:`~mbrl_course.ssm.rssm.open_loop_prediction`) with the per-pixel MSE per horizon k and two baselines
  without a model (the last context frame, the training set's mean frame);
- :func:`plot_frame_strip`: rows of frames (truth, each model) at chosen columns; :func:`plot_video_predictions`
  draws the strip truth vs each model and the error vs horizon;
- :func:`horizon_explorer`: a slider over k that shows each model's predicted frame beside the truth
  (ipywidgets), or that figure alone where widgets are unavailable;
- :func:`stage_runs`, :func:`expected_lag`, :func:`plot_attention`: the attentive SSM's α_{t,t'} as a heat map
  with the true stages and their boundaries, and how far back the prior of s_t looks against the time already
  spent in the current stage; :func:`plot_durations`: the true stage durations against an HMM's geometric ones;
- :func:`paste_memory_map`, :func:`plot_gtmsm_errors`, :func:`plot_memory_map`: GTM-SM's per-step prediction
  error along a long trajectory (with and without memory), and the map rebuilt from its memory beside the world.

Every plotting function returns a :class:`matplotlib.figure.Figure` made with pyplot and takes torch tensors or
arrays; frames are uint8 (0..255) or floats in [0, 1], channels last (..., H, W, 3) or first (..., 3, H, W).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from mbrl_course.ssm.conv import postprocess_frames, preprocess_frames
from mbrl_course.ssm.rssm import RecurrentSSM, open_loop_prediction
from mbrl_course.viz._widgets import widgets_available
from mbrl_course.viz.filtering import _np
from mbrl_course.viz.ssm import _png

__all__ = [
    "FAMILY_GRAPHS",
    "VideoPredictions",
    "compute_video_predictions",
    "expected_lag",
    "horizon_explorer",
    "paste_memory_map",
    "plot_attention",
    "plot_durations",
    "plot_frame_strip",
    "plot_gtmsm_errors",
    "plot_horizon_frames",
    "plot_memory_map",
    "plot_model_families",
    "plot_video_predictions",
    "stage_runs",
]

# ------------------------------------------------------------------------------ the four families as graphs
_LABELS = {"h-": "$h_{t-1}$", "h": "$h_t$", "s-": "$s_{t-1}$", "s": "$s_t$", "y-": "$y_{t-1}$", "y": "$y_t$"}
_POSITIONS = {"h-": (0, 2), "h": (1, 2), "s-": (0, 1), "s": (1, 1), "y-": (0, 0), "y": (1, 0)}

FAMILY_GRAPHS: dict[str, dict] = {
    "deterministic RNN": {
        "equations": "$h_t = f_\\theta(h_{t-1}, s_{t-1})$\n$s_t = \\mu_\\theta(h_t)$\n$y_t \\sim p(y_t | s_t, h_t)$",
        "nodes": {"h-": "deterministic", "h": "deterministic", "s-": "deterministic", "s": "deterministic",
                  "y-": "observed", "y": "observed"},
        "edges": [("h-", "h"), ("s-", "h"), ("h", "s"), ("h", "y"), ("s", "y"), ("h-", "s-"), ("h-", "y-"),
                  ("s-", "y-")],
    },
    "SSM (Markovian)": {
        "equations": "$s_t \\sim p(s_t | s_{t-1})$\n$y_t \\sim p(y_t | s_t)$",
        "nodes": {"s-": "random", "s": "random", "y-": "observed", "y": "observed"},
        "edges": [("s-", "s"), ("s", "y"), ("s-", "y-")],
    },
    "VRNN": {
        "equations": ("$h_t = f_\\theta(h_{t-1}, s_{t-1}, y_{t-1})$\n$s_t \\sim p(s_t | h_t)$\n"
                      "$y_t \\sim p(y_t | s_t, h_t)$"),
        "nodes": {"h-": "deterministic", "h": "deterministic", "s-": "random", "s": "random", "y-": "observed",
                  "y": "observed"},
        "edges": [("h-", "h"), ("s-", "h"), ("y-", "h"), ("h", "s"), ("h", "y"), ("s", "y"), ("h-", "s-"),
                  ("h-", "y-"), ("s-", "y-")],
    },
    "RSSM (PlaNet)": {
        "equations": "$h_t = f_\\theta(h_{t-1}, s_{t-1})$\n$s_t \\sim p(s_t | h_t)$\n$y_t \\sim p(y_t | s_t, h_t)$",
        "nodes": {"h-": "deterministic", "h": "deterministic", "s-": "random", "s": "random", "y-": "observed",
                  "y": "observed"},
        "edges": [("h-", "h"), ("s-", "h"), ("h", "s"), ("h", "y"), ("s", "y"), ("h-", "s-"), ("h-", "y-"),
                  ("s-", "y-")],
    },
}
"""Per family: the slide's equations, the nodes of steps t−1 and t (kind: deterministic, random, observed) and
the arrows (parent, child). Actions a_{t−1} enter f_θ (and the SSM's transition) in every family; not drawn."""


def plot_model_families(graphs: Mapping[str, dict] | None = None) -> Figure:
    """One panel per family of :data:`FAMILY_GRAPHS` (or ``graphs`` of the same form): its nodes (square:
    deterministic, circle: random, grey: observed), its arrows and its equations."""
    graphs = FAMILY_GRAPHS if graphs is None else graphs
    if not graphs:
        raise ValueError("graphs: expected at least one family, got none")
    fig, axes = plt.subplots(1, len(graphs), figsize=(3.3 * len(graphs), 4.0), squeeze=False)
    for ax, (name, graph) in zip(axes[0], graphs.items()):
        for key, kind in graph["nodes"].items():
            if key not in _POSITIONS:
                raise ValueError(f"graphs[{name!r}]: unknown node {key!r}, expected one of {sorted(_POSITIONS)}")
            x, y = _POSITIONS[key]
            face = "0.8" if kind == "observed" else "white"
            if kind == "deterministic":
                patch = plt.Rectangle((x - 0.26, y - 0.26), 0.52, 0.52, facecolor=face, edgecolor="k", lw=1.5)
            else:
                patch = plt.Circle((x, y), 0.29, facecolor=face, edgecolor="k", lw=1.5)
            ax.add_patch(patch)
            ax.text(x, y, _LABELS[key], ha="center", va="center", fontsize=11)
        for parent, child in graph["edges"]:
            for key in (parent, child):
                if key not in graph["nodes"]:
                    raise ValueError(f"graphs[{name!r}]: the arrow {parent!r} -> {child!r} names a node not in "
                                     f"its nodes {sorted(graph['nodes'])}")
            (x0, y0), (x1, y1) = _POSITIONS[parent], _POSITIONS[child]
            bend = 0.45 if x0 == x1 and abs(y0 - y1) == 2 else 0.0  # h_t -> y_t: around s_t, not through it
            ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                        arrowprops=dict(arrowstyle="-|>", shrinkA=19, shrinkB=19, color="k", lw=1.2,
                                        connectionstyle=f"arc3,rad={bend}"))
        ax.text(0.5, -0.55, graph["equations"], ha="center", va="top", fontsize=9)
        ax.set(xlim=(-0.5, 1.5), ylim=(-1.5, 2.4), aspect="equal", title=name)
        ax.axis("off")
    fig.suptitle("one step of each family (square: deterministic, circle: random, grey: observed)")
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------ frames
def _frames(name: str, frames, ndim: int) -> np.ndarray:
    """``frames`` as floats in [0, 1], channels last, with ``ndim`` dimensions (the last three H, W, 3)."""
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu()
        if frames.dtype == torch.uint8:
            frames = frames.to(torch.float64) / 255.0
        frames = frames.to(torch.float64).numpy()
    else:
        frames = np.asarray(frames)
        frames = frames / 255.0 if frames.dtype == np.uint8 else frames.astype(float)
    if frames.ndim != ndim or 3 not in (frames.shape[-1], frames.shape[-3]):
        raise ValueError(f"{name}: expected {ndim} dimensions ending in (H, W, 3) or (3, H, W), "
                         f"got shape {tuple(frames.shape)}")
    if frames.shape[-1] != 3:
        frames = np.moveaxis(frames, -3, -1)
    if frames.size and (not np.isfinite(frames).all() or frames.min() < 0.0 or frames.max() > 1.0):
        raise ValueError(f"{name}: expected uint8 or floats in [0, 1], got values in "
                         f"[{np.nanmin(frames):.3g}, {np.nanmax(frames):.3g}]")
    return frames


def plot_frame_strip(rows: Mapping[str, object], columns: Sequence[int], column_titles: Sequence[str] | None = None,
                     title: str = "") -> Figure:
    """A grid of frames: one row per entry of ``rows`` (name -> frames ``(N, H, W, 3)`` or ``(N, 3, H, W)``),
    one column per index in ``columns`` (0-based into N), titled ``column_titles`` (default "k=index+1").
    Axes [r, c] shows ``rows[r][columns[c]]``; each row's name is its y label."""
    if not rows:
        raise ValueError("rows: expected at least one row of frames, got none")
    arrays = {name: _frames(f"rows[{name!r}]", frames, 4) for name, frames in rows.items()}
    columns = [int(c) for c in columns]
    if not columns:
        raise ValueError("columns: expected at least one frame index, got none")
    for name, frames in arrays.items():
        bad = [c for c in columns if not 0 <= c < frames.shape[0]]
        if bad:
            raise ValueError(f"columns: expected indices in 0..{frames.shape[0] - 1} (the frames of "
                             f"rows[{name!r}]), got {bad}")
    titles = [f"k={c + 1}" for c in columns] if column_titles is None else list(column_titles)
    if len(titles) != len(columns):
        raise ValueError(f"column_titles: expected {len(columns)} titles (one per column), got {len(titles)}")
    fig, axes = plt.subplots(len(arrays), len(columns), figsize=(1.15 * len(columns) + 1.2, 1.2 * len(arrays) + 0.5),
                             squeeze=False)
    for r, (name, frames) in enumerate(arrays.items()):
        for c, index in enumerate(columns):
            ax = axes[r, c]
            ax.imshow(frames[index], vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=8)
            if c == 0:
                ax.set_ylabel(name, fontsize=8, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------ video prediction
@dataclass
class VideoPredictions:
    """What :func:`compute_video_predictions` returns: frames as uint8 ``(B, ·, 64, 64, 3)``."""

    context: torch.Tensor
    """the observed frames y_{1:C}: (B, C, 64, 64, 3)"""
    truth: torch.Tensor
    """what happened next, y_{C+1:C+H}: (B, H, 64, 64, 3)"""
    predictions: dict[str, torch.Tensor]
    """each model's decoded open-loop prediction (clipped to 0..255): (B, H, 64, 64, 3)"""
    mse: dict[str, torch.Tensor]
    """per-pixel MSE (pixels in [0, 1]) at each horizon k = 1..H, over the B sequences: (H,); models and the
    baselines "last frame" and (with ``mean_frame``) "mean frame\""""

    @property
    def horizon(self) -> int:
        """H"""
        return int(self.truth.shape[1])


@torch.no_grad()
def compute_video_predictions(models: Mapping[str, RecurrentSSM], frames: torch.Tensor, actions: torch.Tensor | None,
                              context: int, horizon: int, mean_frame: torch.Tensor | None = None,
                              seed: int = 0) -> VideoPredictions:
    """Observe y_{1:C} and imagine k = 1..H steps under the recorded actions (the prior means) for each model.

    ``frames: (B, T, 64, 64, 3)`` uint8, ``actions: (B, T, A)``, T ≥ C + H. ``mean_frame: (64, 64, 3)`` floats in
    [0, 1] (e.g. the training frames' per-pixel mean) adds the "mean frame" baseline. The MSE compares the
    decoder's mean (unclipped, as ``benchmarks/recurrent_ssm.py`` does) with the true frame, pixels in [0, 1].
    The filter's samples s_t ~ q(s_t | h_t, e_t) over the context come from ``torch.Generator().manual_seed(seed)``,
    a fresh one per model (the same call gives the same predictions).
    """
    if not models:
        raise ValueError("models: expected at least one world model, got none")
    B, T = frames.shape[:2]
    if context < 1 or horizon < 1 or context + horizon > T:
        raise ValueError(f"context, horizon: expected C ≥ 1, H ≥ 1 and C + H ≤ T = {T}, got {context} + {horizon}")
    truth = frames[:, context:context + horizon]
    target = preprocess_frames(truth)  # (B, H, 3, 64, 64) in [-0.5, 0.5]
    predictions, mse = {}, {}
    for name, model in models.items():
        was_training = model.training
        model.eval()
        pred, _ = open_loop_prediction(model, frames, actions, context, horizon,
                                       generator=torch.Generator(device=model._param().device).manual_seed(seed))
        model.train(was_training)
        pred = pred.cpu().to(target.dtype)
        mse[name] = (pred - target).square().mean((0, 2, 3, 4))
        predictions[name] = postprocess_frames(pred)
    last = preprocess_frames(frames[:, context - 1:context])
    mse["last frame"] = (last - target).square().mean((0, 2, 3, 4))
    if mean_frame is not None:
        mean = torch.as_tensor(mean_frame, dtype=target.dtype)
        if tuple(mean.shape) != tuple(frames.shape[2:]):
            raise ValueError(f"mean_frame: expected shape {tuple(frames.shape[2:])} (one frame), got {tuple(mean.shape)}")
        mse["mean frame"] = (mean.movedim(-1, -3) - 0.5 - target).square().mean((0, 2, 3, 4))
    return VideoPredictions(frames[:, :context], truth, predictions, mse)


def plot_video_predictions(video: VideoPredictions, index: int = 0, horizons: Sequence[int] | None = None) -> Figure:
    """Left: the per-pixel MSE against the horizon k, every model and baseline (baselines dashed). Right: sequence
    ``index``'s last context frame, then the truth and each model's prediction at the ``horizons`` k (1-based)."""
    H = video.horizon
    horizons = [k for k in (1, 2, 5, 10, 15, 20, 30) if k <= H] if horizons is None else [int(k) for k in horizons]
    if not horizons or any(not 1 <= k <= H for k in horizons):
        raise ValueError(f"horizons: expected k in 1..{H}, got {horizons}")
    if not 0 <= index < video.truth.shape[0]:
        raise ValueError(f"index: expected a sequence in 0..{video.truth.shape[0] - 1}, got {index}")
    rows = {"truth": video.truth[index], **{name: p[index] for name, p in video.predictions.items()}}
    fig = plt.figure(figsize=(5.0 + 1.1 * (len(horizons) + 1), max(3.6, 1.15 * len(rows) + 0.6)))
    grid = fig.add_gridspec(len(rows), len(horizons) + 6)
    ax = fig.add_subplot(grid[:, :4])
    for name, err in video.mse.items():
        ax.plot(np.arange(1, H + 1), _np(f"video.mse[{name!r}]", err, 1), label=name,
                ls="--" if name.endswith("frame") else "-")
    ax.set(xlabel="horizon k [steps after the context]", ylabel="per-pixel MSE (pixels in [0, 1])",
           title="open-loop prediction error", yscale="log")
    ax.legend(fontsize=8)
    last = _frames("video.context", video.context[index, -1:], 4)[0]
    for r, (name, frames) in enumerate(rows.items()):
        shown = _frames(f"frames of {name!r}", frames, 4)
        cells = [("y_C (seen)", last if r == 0 else None)] + [(f"k={k}", shown[k - 1]) for k in horizons]
        for c, (label, image) in enumerate(cells):
            a = fig.add_subplot(grid[r, 5 + c])
            a.set_xticks([])
            a.set_yticks([])
            if image is None:
                a.axis("off")
            else:
                a.imshow(image, vmin=0.0, vmax=1.0, interpolation="nearest")
            if r == 0:
                a.set_title(label, fontsize=8)
            if c == 1:
                a.set_ylabel(name, fontsize=8)
    fig.suptitle(f"video prediction after C = {video.context.shape[1]} context frames")
    fig.tight_layout()
    return fig


def plot_horizon_frames(video: VideoPredictions, k: int, index: int = 0) -> Figure:
    """The truth and each model's predicted frame at horizon ``k`` (1-based) of sequence ``index``, titled with
    the model's MSE at that k over all sequences."""
    H = video.horizon
    if not 1 <= int(k) <= H:
        raise ValueError(f"k: expected a horizon in 1..{H}, got {k}")
    k = int(k)
    panels = {"truth": video.truth[index, k - 1], **{n: p[index, k - 1] for n, p in video.predictions.items()}}
    fig, axes = plt.subplots(1, len(panels), figsize=(1.9 * len(panels), 2.3), squeeze=False)
    for ax, (name, frame) in zip(axes[0], panels.items()):
        ax.imshow(_frames(name, frame[None], 4)[0], vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        extra = f"\nMSE {float(video.mse[name][k - 1]):.4f}" if name in video.mse else ""
        ax.set_title(name + extra, fontsize=8)
    fig.suptitle(f"k = {k} steps after the context")
    fig.tight_layout()
    return fig


def horizon_explorer(video: VideoPredictions, k: int = 1, index: int = 0, *, interactive: bool | None = None):
    """A slider over the horizon k that redraws :func:`plot_horizon_frames` (nothing is recomputed).

    ``interactive``: True the widget (needs ipywidgets and a Jupyter frontend), False the static figure at ``k``,
    None the widget where :func:`~mbrl_course.viz.widgets_available` and the static figure elsewhere.
    Returns an ``ipywidgets.VBox`` or a Figure.
    """
    if not 1 <= int(k) <= video.horizon:
        raise ValueError(f"k: expected a horizon in 1..{video.horizon}, got {k}")
    if interactive is None:
        interactive = widgets_available()
    if not interactive:
        return plot_horizon_frames(video, k, index)
    try:
        import ipywidgets as widgets
    except ImportError as err:
        raise ImportError("horizon_explorer(interactive=True) needs ipywidgets: pip install ipywidgets "
                          "(or pass interactive=False for the static figure)") from err
    slider = widgets.IntSlider(value=int(k), min=1, max=video.horizon, description="k (steps ahead)",
                               style={"description_width": "120px"}, layout=widgets.Layout(width="480px"),
                               continuous_update=False)
    image = widgets.Image(value=_png(plot_horizon_frames(video, k, index)), format="png",
                          layout=widgets.Layout(max_width="100%"))
    slider.observe(lambda _change: setattr(image, "value", _png(plot_horizon_frames(video, slider.value, index))),
                   names="value")
    return widgets.VBox([slider, image])


# ------------------------------------------------------------------------------ the attentive SSM
def stage_runs(stages) -> list[tuple[int, int, int]]:
    """The runs of a stage path ``stages: (T,)``: a list of (first step, last step + 1, stage), 0-based."""
    path = [int(s) for s in _np("stages", stages, 1)]
    runs, start = [], 0
    for t in range(1, len(path) + 1):
        if t == len(path) or path[t] != path[start]:
            runs.append((start, t, path[start]))
            start = t
    return runs


def expected_lag(alpha) -> np.ndarray:
    """E_α[t − t'] = Σ_{t'<t} α_{t,t'} (t − t') per step: how far back the prior of s_t looks. ``alpha: (T, T)``
    -> (T,), NaN at t = 1 (no earlier step)."""
    a = _np("alpha", alpha, 2)
    T = a.shape[0]
    if a.shape != (T, T):
        raise ValueError(f"alpha: expected a square (T, T) matrix, got {a.shape}")
    lags = np.arange(T)[:, None] - np.arange(T)[None, :]
    out = (np.tril(a, -1) * lags).sum(1)
    out[0] = np.nan
    return out


def plot_attention(alpha, stages, stage_names: Sequence[str] | None = None,
                   title: str = "attention of the attentive SSM") -> Figure:
    """Left: α_{t,t'} of one sequence (row t: where the prior p(s_t | s_{1:t-1}, Y_{1:t-1}) looks), with the true
    stage boundaries as lines and the stages as a coloured band on top. Right: the expected lag E_α[t − t'] and the
    time already spent in the current stage, d_{t-1}, against t. ``alpha: (T, T)``, ``stages: (T,)`` long."""
    a = _np("alpha", alpha, 2)
    T = a.shape[0]
    runs = stage_runs(stages)
    if a.shape != (T, T) or runs[-1][1] != T:
        raise ValueError(f"alpha, stages: expected alpha (T, T) and stages (T,) with the same T, got {a.shape} "
                         f"and ({runs[-1][1]},)")
    path = np.concatenate([[s] * (e - b) for b, e, s in runs])
    K = int(path.max()) + 1
    names = [f"stage {k}" for k in range(K)] if stage_names is None else list(stage_names)
    fig = plt.figure(figsize=(11.5, 5.6))
    grid = fig.add_gridspec(6, 2, width_ratios=(1.15, 1.0))
    band = fig.add_subplot(grid[0, 0])
    cmap = plt.get_cmap("tab10")
    band.imshow(path[None], aspect="auto", cmap=cmap, vmin=0, vmax=9, interpolation="nearest",
                extent=(0.5, T + 0.5, 0, 1))
    for b, e, s in runs:
        band.text((b + e) / 2 + 0.5, 0.5, str(s), ha="center", va="center", fontsize=7, color="w")
    band.set(yticks=[], title=title + " (band: the true stage s_t; "
             + ", ".join(f"{k} = {n}" for k, n in enumerate(names)) + ")")
    band.tick_params(labelbottom=False)
    heat = fig.add_subplot(grid[1:, 0], sharex=band)
    image = heat.imshow(a, cmap="viridis", vmin=0.0, interpolation="nearest", extent=(0.5, T + 0.5, T + 0.5, 0.5),
                        aspect="auto")
    for b, _, _ in runs[1:]:  # a new stage starts at step b + 1 (1-based)
        heat.axvline(b + 0.5, color="w", lw=0.6, ls=":")
        heat.axhline(b + 0.5, color="w", lw=0.6, ls=":")
    heat.set(xlabel="t' (earlier step attended to)", ylabel="t (step whose prior is computed)")
    fig.colorbar(image, ax=heat, label="α_{t,t'}", fraction=0.04)
    lag = fig.add_subplot(grid[1:, 1])
    t = np.arange(1, T + 1)
    dwell = np.concatenate([np.arange(1, e - b + 1) for b, e, _ in runs]).astype(float)  # d_t, 1 at a stage's start
    lag.plot(t, expected_lag(a), "o-", ms=3, label="E_α[t − t'] (how far back the prior of s_t looks)")
    lag.step(t[1:], dwell[:-1], where="mid", color="k", alpha=0.6, label="d_{t−1}: steps already spent in the stage")
    for b, _, _ in runs[1:]:
        lag.axvline(b + 0.5, color="0.7", lw=0.6, ls=":")
    lag.set(xlabel="t", ylabel="steps", title="lag of the attention vs time in the current stage")
    lag.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def plot_durations(durations, self_transition, stage_names: Sequence[str] | None = None) -> Figure:
    """How long each stage lasts: the true duration law p_k(d) (bars, ``durations: (K, D)``, d = 1..D) against
    the geometric law a first-order HMM implies, p(d) = (1 − A_kk) A_kk^{d−1} (line, ``self_transition: (K,)``
    the A_kk of the HMM state matched to stage k)."""
    p = _np("durations", durations, 2)
    a = _np("self_transition", self_transition, 1)
    K, D = p.shape
    if a.shape != (K,) or not ((a >= 0) & (a < 1)).all():
        raise ValueError(f"self_transition: expected {K} probabilities in [0, 1) (one A_kk per stage), got {a}")
    names = [f"stage {k}" for k in range(K)] if stage_names is None else list(stage_names)
    fig, axes = plt.subplots(1, K, figsize=(3.0 * K, 2.8), sharey=True, squeeze=False)
    d = np.arange(1, D + 1)
    for k, ax in enumerate(axes[0]):
        ax.bar(d, p[k], color="C0", alpha=0.6, label="true p_k(d)")
        ax.plot(d, (1 - a[k]) * a[k] ** (d - 1), "o-", color="C3", ms=3, label=f"HMM: A_kk = {a[k]:.2f}")
        ax.set(title=names[k], xlabel="duration d [steps]")
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("probability")
    fig.suptitle("stage durations: peaked in the data, geometric in any first-order HMM")
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------ GTM-SM
def paste_memory_map(positions, crops, size: int, fill: float = 1.0) -> np.ndarray:
    """The map rebuilt from memory: each crop ``(N, 3, c, c)`` or ``(N, c, c, 3)`` pasted with its centre at
    round(position) (``positions: (N, 2)`` (x, y) in pixels, clamped so the crop stays inside), overlapping crops
    averaged, pixels no crop covers set to ``fill``. Returns ``(size, size, 3)`` floats in [0, 1]."""
    p = _np("positions", positions, 2)
    x = _frames("crops", crops, 4)
    if p.shape != (x.shape[0], 2):
        raise ValueError(f"positions: expected shape ({x.shape[0]}, 2) (one (x, y) per crop), got {p.shape}")
    c, half = x.shape[1], x.shape[1] // 2
    if size < c:
        raise ValueError(f"size: expected at least the crop's side {c}, got {size}")
    canvas, weight = np.zeros((size, size, 3)), np.zeros((size, size, 1))
    centres = np.clip(np.rint(p).astype(int), half, size - c + half)
    for (cx, cy), crop in zip(centres, x):
        canvas[cy - half:cy - half + c, cx - half:cx - half + c] += crop
        weight[cy - half:cy - half + c, cx - half:cx - half + c] += 1.0
    return np.where(weight > 0, canvas / np.maximum(weight, 1.0), fill)


def plot_gtmsm_errors(errors: Mapping[str, object], context_steps: int, away_steps: int, revisit=None) -> Figure:
    """Per-step per-pixel MSE of each model's predicted crop along one long trajectory (``errors``: name ->
    ``(T,)`` over the predicted steps τ+1..τ+T), the away phase shaded, revisited steps (``revisit: (T,)`` bool)
    marked on the time axis."""
    if not errors:
        raise ValueError("errors: expected at least one model's errors, got none")
    fig, ax = plt.subplots(figsize=(9, 3.4))
    T = None
    for name, err in errors.items():
        e = _np(f"errors[{name!r}]", err, 1)
        T = len(e) if T is None else T
        if len(e) != T:
            raise ValueError(f"errors[{name!r}]: expected {T} steps (as the first model), got {len(e)}")
        ax.plot(np.arange(context_steps + 1, context_steps + T + 1), e, label=name)
    ax.axvspan(context_steps + 0.5, context_steps + away_steps + 0.5, color="0.9", label="away (never seen)")
    if revisit is not None:
        r = _np("revisit", revisit, 1).astype(bool)
        if len(r) != T:
            raise ValueError(f"revisit: expected {T} steps, got {len(r)}")
        steps = np.arange(context_steps + 1, context_steps + T + 1)[r]
        ax.plot(steps, np.zeros_like(steps, dtype=float), "|", color="k", ms=8, label="revisit of a context place")
    ax.set(xlabel="t (steps; the context is t = 1..τ)", ylabel="per-pixel MSE of the crop",
           title="GTM-SM: prediction from the actions alone, long after the context")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_memory_map(world_image, positions, context_steps: int, away_steps: int, memory_map: np.ndarray) -> Figure:
    """Left: the true world ``(3, S, S)`` or ``(S, S, 3)`` with the trajectory ``positions: (T+1, 2)`` p_0..p_T
    (context, away, return in three colours). Right: ``memory_map`` ``(S, S, 3)`` (:func:`paste_memory_map`)
    with the context path on top."""
    world = _frames("world_image", np.asarray(world_image)[None], 4)[0]
    rebuilt = _frames("memory_map", np.asarray(memory_map)[None], 4)[0]
    p = _np("positions", positions, 2)
    tau, away = int(context_steps), int(away_steps)
    fig, axes = plt.subplots(1, 2, figsize=(10, 5))
    axes[0].imshow(world, interpolation="nearest")
    axes[0].plot(p[:tau + 1, 0], p[:tau + 1, 1], "w-", lw=1.2, label="context t ≤ τ")
    axes[0].plot(p[tau:tau + away + 1, 0], p[tau:tau + away + 1, 1], "k-", lw=1, label="away")
    axes[0].plot(p[tau + away:, 0], p[tau + away:, 1], "r-", lw=1, label="return")
    axes[0].legend(fontsize=8, loc="upper right")
    axes[0].set(title="the world (true) and the trajectory", xlabel="x [pixels]", ylabel="y [pixels]")
    axes[1].imshow(rebuilt, interpolation="nearest")
    axes[1].plot(p[:tau + 1, 0], p[:tau + 1, 1], "w-", lw=0.8)
    axes[1].set(title="the map rebuilt from memory: decoded ẑ_k at p_0 + ŝ_k / Δt", xlabel="x [pixels]",
                ylabel="y [pixels]")
    fig.tight_layout()
    return fig
