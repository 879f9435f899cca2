"""Figures of the lecture on the two MBRL templates: the loops as code, rollouts as animations, and how far a
learned model f_ψ can be trusted when it is rolled forward k steps.

- :func:`code_side_by_side`: the slide's pseudo-code next to the package's code (:func:`source_code`).
- :func:`animation_html`: RGB frames of an episode as an animation inside the notebook.
- :func:`rollout_particles`: P particles of f_ψ driven by the *real* action sequence, from real start states.
- :func:`k_step_errors`: the compounding error of f_ψ against the prediction horizon k (:class:`KStepErrors`).
- :func:`plot_model_predictions`: one k-step prediction against the real trajectory, with the ensemble's
  uncertainty band, and the compounding error over all start points of the trajectory.

The figures are :class:`matplotlib.figure.Figure` objects that are not registered with pyplot: in a notebook
they show as the cell's value (or with ``display(fig)``); in a script, ``fig.savefig(path)``.
"""

from __future__ import annotations

import ast
import html
import inspect
import math
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure

from mbrl_course._checks import as_tensor, check_positive_int, check_shape
from mbrl_course.data import Batch

__all__ = [
    "CodePanels",
    "KStepErrors",
    "animation_html",
    "code_side_by_side",
    "k_step_errors",
    "plot_model_predictions",
    "rollout_particles",
    "source_code",
]

REAL_COLOR = "k"
PREDICTION_COLOR = "tab:blue"


# ---------------------------------------------------------------------------------------------
# Code next to pseudo-code
# ---------------------------------------------------------------------------------------------


def source_code(*functions: Callable, docstrings: bool = False) -> str:
    """The source of ``functions``, one after the other, with their docstrings removed unless ``docstrings``.

    Lines that only held a docstring are dropped, everything else (comments included) stays as written.
    """
    if not functions:
        raise ValueError("functions: expected at least one function or class")
    parts = []
    for fn in functions:
        if not callable(fn):
            raise TypeError(f"functions: expected functions or classes, got {type(fn).__name__}")
        source = textwrap.dedent(inspect.getsource(fn))
        if not docstrings:
            drop: set[int] = set()
            for node in ast.walk(ast.parse(source)):
                body = getattr(node, "body", None)
                if (isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and body
                        and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                        and isinstance(body[0].value.value, str)):
                    drop.update(range(body[0].lineno, body[0].end_lineno + 1))
            source = "\n".join(line for i, line in enumerate(source.splitlines(), 1) if i not in drop)
        parts.append(source.rstrip())
    return "\n\n\n".join(parts) + "\n"


@dataclass
class CodePanels:
    """Blocks of code shown next to each other (HTML in a notebook, plain text elsewhere)."""

    panels: list[tuple[str, str, str]]
    """(title, source, language) per column; language "python" is highlighted, "text" is shown as is."""
    max_height_px: int = 480
    """Longer code scrolls inside its column."""

    def _repr_html_(self) -> str:
        columns = []
        for title, source, language in self.panels:
            body = _highlight(source, language)
            grow = "1 1 0" if language == "python" else "0 1 auto"  # code takes the room, pseudo-code what it needs
            columns.append(
                f'<div style="flex:{grow};min-width:320px;margin:0 6px">'
                f'<div style="font-weight:bold;margin-bottom:4px">{html.escape(title)}</div>'
                f'<div style="max-height:{self.max_height_px}px;overflow:auto;border:1px solid #ddd;'
                f'border-radius:4px;padding:4px 8px;font-size:12px;line-height:1.35">{body}</div></div>'
            )
        return f'<div style="display:flex;flex-wrap:wrap;align-items:flex-start">{"".join(columns)}</div>'

    def __repr__(self) -> str:
        blocks = []
        for title, source, _ in self.panels:
            blocks.append(f"== {title} ==\n{source.rstrip()}")
        return "\n\n".join(blocks)

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        printer.text(repr(self))


def _highlight(source: str, language: str) -> str:
    if language == "python":
        try:
            from pygments import highlight
            from pygments.formatters import HtmlFormatter
            from pygments.lexers import PythonLexer

            return highlight(source, PythonLexer(), HtmlFormatter(noclasses=True, nobackground=True))
        except ImportError:
            pass
    return f'<pre style="margin:0">{html.escape(source)}</pre>'


def code_side_by_side(panels: Mapping[str, str | Callable | Sequence[Callable]], *,
                      max_height_px: int = 480) -> CodePanels:
    """Show blocks of code next to each other, e.g. the slide's pseudo-code and the package's loop.

    Args:
        panels: title -> content. A string is shown as it is (pseudo-code); a function (or a sequence of
            functions) is shown as its source code without docstrings (:func:`source_code`), highlighted.
        max_height_px: longer blocks scroll.
    Returns:
        a :class:`CodePanels`, which a notebook shows as columns and ``print`` shows as plain text.
    """
    if not panels:
        raise ValueError("panels: expected at least one title -> code entry")
    out = []
    for title, content in panels.items():
        if isinstance(content, str):
            out.append((str(title), content, "text"))
        elif callable(content):
            out.append((str(title), source_code(content), "python"))
        elif isinstance(content, Sequence) and content and all(callable(c) for c in content):
            out.append((str(title), source_code(*content), "python"))
        else:
            raise TypeError(f"panels[{title!r}]: expected pseudo-code (str), a function or a list of functions, "
                            f"got {type(content).__name__}")
    return CodePanels(out, check_positive_int("max_height_px", max_height_px))


# ---------------------------------------------------------------------------------------------
# Animations
# ---------------------------------------------------------------------------------------------


def animation_html(frames: Sequence[np.ndarray], *, fps: float = 30.0, max_frames: int = 60, downsample: int = 2,
                   title: str | None = None):
    """An episode's RGB frames as a looping animation in the notebook (an ``IPython.display.HTML``).

    Keeps every s-th frame, s = ⌈len(frames) / max_frames⌉, and every ``downsample``-th pixel, and plays them
    at fps / s frames per second, so the animation runs at the episode's real speed.

    Args:
        frames: ``(H, W, 3)`` uint8 arrays, e.g. from ``env.render()`` with ``render_mode="rgb_array"``.
        fps: the env's frame rate (``env.metadata["render_fps"]``).
        max_frames: at most this many frames in the animation (the HTML holds one PNG per frame).
        downsample: keep every ``downsample``-th row and column of pixels.
        title: above the animation.
    """
    from IPython.display import HTML

    from mbrl_course.viz.animation import animate_frames

    if len(frames) == 0:
        raise ValueError("frames: expected at least one RGB frame, got none")
    max_frames = check_positive_int("max_frames", max_frames)
    downsample = check_positive_int("downsample", downsample)
    if not fps > 0:
        raise ValueError(f"fps: expected a positive frame rate, got {fps!r}")
    stride = max(1, math.ceil(len(frames) / max_frames))
    kept = [np.ascontiguousarray(np.asarray(f)[::downsample, ::downsample]) for f in frames[::stride]]
    anim = animate_frames(kept, fps=max(1, round(fps / stride)), title=title)
    return HTML(anim.to_jshtml(default_mode="loop"))


# ---------------------------------------------------------------------------------------------
# k-step predictions of a learned model
# ---------------------------------------------------------------------------------------------


def _episode_arrays(episode: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(states i_{0:T} (T+1, O), actions u_{0:T-1} (T, A)) of one episode's consecutive transitions."""
    if not isinstance(episode, Batch):
        raise TypeError(f"episode: expected a mbrl_course.data.Batch of one episode's transitions "
                        f"(e.g. buffer.all()), got {type(episode).__name__}")
    if episode.obs.dim() != 2 or len(episode) < 2:
        raise ValueError(f"episode: expected at least 2 consecutive transitions with obs (T, O), "
                         f"got obs of shape {tuple(episode.obs.shape)}")
    gap = (episode.obs[1:] - episode.next_obs[:-1]).abs().max()
    if float(gap) > 1e-5:
        raise ValueError("episode: expected consecutive transitions of one episode (obs[t+1] == next_obs[t]); "
                         "pass the transitions of a single episode, oldest first")
    return torch.cat([episode.obs, episode.next_obs[-1:]]), episode.action


def _no_reward(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    return torch.zeros(obs.shape[0], dtype=obs.dtype, device=obs.device)


@torch.no_grad()
def rollout_particles(
    model,
    start_obs: torch.Tensor,
    actions: torch.Tensor,
    *,
    particles: int = 20,
    propagation: str = "ts_inf",
    generator: torch.Generator | None = None,
    members="elites",
) -> torch.Tensor:
    """Roll f_ψ forward k steps from real states with given actions: an open-loop k-step prediction.

    For every start s and particle p:  î^{s,p}_0 = i_s,  î^{s,p}_{j+1} ~ f_ψ(î^{s,p}_j, u_{s,j}),  j = 0..k−1
    (one :func:`~mbrl_course.models.rollout`). With ``"ts_inf"`` particle p keeps member p mod K' all the way
    (PETS's TS∞), so the spread of the particles holds both the members' noise (aleatoric) and their
    disagreement (epistemic uncertainty).

    Args:
        model: f_ψ, a ``GaussianEnsemble`` (or a deterministic ``DeltaMLP``: all particles then agree).
        start_obs: i_s, ``(S, O)``. actions: u_{s,0:k}, ``(S, k, A)``.
        particles: P per start. propagation: ``"ts_inf"``, ``"ts1"`` or ``"expectation"``.
        generator: for the noise and the TS1 member draws. members: "elites", "all" or indices.
    Returns:
        predicted states ``(S, P, k+1, O)``; ``[:, :, 0]`` is the start.
    """
    from mbrl_course.models import rollout

    particles = check_positive_int("particles", particles)
    start_obs = as_tensor("start_obs", start_obs, dtype=model.dtype, device=model.device)
    actions = as_tensor("actions", actions, dtype=model.dtype, device=model.device)
    check_shape("start_obs", start_obs, ("S", model.obs_dim))
    check_shape("actions", actions, (start_obs.shape[0], "k", model.act_dim))
    S, k = actions.shape[:2]
    options = {"generator": generator, "propagation": propagation, "members": members}
    propagator = model.propagator(**options)
    if propagation == "ts_inf" and propagator.components > 1:  # particle p of every start keeps member p mod K'
        assignment = (torch.arange(S * particles, device=model.device) % particles) % propagator.components
        propagator = model.propagator(member_of_particle=assignment, **options)
    out = rollout(model, start_obs.repeat_interleave(particles, dim=0),  # (S·P, O), particle-major per start
                  actions=actions.repeat_interleave(particles, dim=0), reward_fn=_no_reward, propagator=propagator)
    states = out.obs.transpose(0, 1)  # (S·P, k+1, O)
    return states.reshape(S, particles, k + 1, model.obs_dim)


@dataclass
class KStepErrors:
    """How far k-step predictions of f_ψ drift from the real trajectory, k = 0..horizon."""

    rmse: np.ndarray
    """(k+1, O): sqrt(mean_s (mean_p î^{s,p}_k − i_{s+k})²), the error of the particles' mean, per state dimension."""
    spread: np.ndarray
    """(k+1, O): sqrt(mean_s var_p î^{s,p}_k), the model's own uncertainty (the particles' std), per dimension."""
    starts: int
    """S, the number of start points averaged over."""


def _windows(states: torch.Tensor, actions: torch.Tensor, horizon: int, starts: torch.Tensor):
    """Real windows of length k from every start s: (i_s (S, O), u_{s:s+k} (S, k, A), i_{s:s+k+1} (S, k+1, O))."""
    steps = torch.arange(horizon + 1, device=states.device)
    real = states[starts[:, None] + steps]  # (S, k+1, O)
    acts = actions[starts[:, None] + steps[:-1]]  # (S, k, A)
    return states[starts], acts, real


@torch.no_grad()
def k_step_errors(model, episode: Batch, horizon: int, *, particles: int = 20, propagation: str = "ts_inf",
                  generator: torch.Generator | None = None, members="elites") -> KStepErrors:
    """The compounding error of f_ψ along a real episode: predict k = 1..horizon steps ahead from every state.

    From every start s = 0..T−k of the episode the real actions u_{s:s+k} drive P particles
    (:func:`rollout_particles`); at each k the error of the particles' mean against the real i_{s+k} and the
    particles' own spread are averaged over s (:class:`KStepErrors`). A model whose spread tracks its error
    knows how much it does not know.

    Args:
        model: f_ψ. episode: one episode's consecutive transitions (e.g. ``buffer.all()`` of a buffer that
            holds one episode), T ≥ horizon. horizon: k_max ≥ 1. Others as in :func:`rollout_particles`.
    """
    states, actions = _episode_arrays(episode)
    horizon = check_positive_int("horizon", horizon)
    T = actions.shape[0]
    if horizon > T:
        raise ValueError(f"horizon: expected at most the episode's {T} steps, got {horizon}")
    states = states.to(model.device, model.dtype)
    actions = actions.to(model.device, model.dtype)
    starts = torch.arange(T - horizon + 1, device=model.device)
    start_obs, acts, real = _windows(states, actions, horizon, starts)
    predicted = rollout_particles(model, start_obs, acts, particles=particles, propagation=propagation,
                                  generator=generator, members=members)  # (S, P, k+1, O)
    mean = predicted.mean(1)
    rmse = (mean - real).square().mean(0).sqrt()
    spread = predicted.var(1, correction=0).mean(0).sqrt()
    return KStepErrors(rmse.cpu().double().numpy(), spread.cpu().double().numpy(), int(starts.shape[0]))


@torch.no_grad()
def plot_model_predictions(
    model,
    episode: Batch,
    *,
    start: int,
    horizon: int,
    particles: int = 20,
    obs_labels: Sequence[str] | None = None,
    dt: float | None = None,
    context: int = 10,
    error_horizon: int | None = None,
    propagation: str = "ts_inf",
    generator: torch.Generator | None = None,
    members="elites",
    title: str | None = None,
) -> Figure:
    """k-step predictions of f_ψ against the real trajectory, and the compounding error against k.

    One panel per state dimension d: the real i_{t,d} (black), and from the real state at t = ``start`` the
    ensemble's open-loop prediction with the real actions u_{start:start+k} (:func:`rollout_particles`):
    a few particles, their mean and mean ± 2 std. The last panel: :func:`k_step_errors` over every start of
    the episode (RMSE of the mean, solid; the particles' own std, dashed; one colour per dimension).

    Args:
        model: f_ψ (a ``GaussianEnsemble``).
        episode: one episode's consecutive transitions, oldest first (e.g. ``buffer.all()``).
        start: t_0, the real state the prediction starts from. horizon: k, the steps predicted.
        particles: P. obs_labels: one label (with units) per state dimension. dt: seconds per step (adds a
            second time axis label). context: real steps drawn before ``start``.
        error_horizon: k_max of the error panel (default ``horizon``).
        propagation, generator, members: as in :func:`rollout_particles`.
        title: the figure's title.
    """
    states, actions = _episode_arrays(episode)
    T, O = actions.shape[0], states.shape[1]
    horizon = check_positive_int("horizon", horizon)
    if not isinstance(start, (int, np.integer)) or not 0 <= start <= T - horizon:
        raise ValueError(f"start: expected an integer in [0, {T - horizon}] (episode of {T} steps, horizon "
                         f"{horizon}), got {start!r}")
    labels = list(obs_labels) if obs_labels is not None else [f"state i[{d}]" for d in range(O)]
    if len(labels) != O:
        raise ValueError(f"obs_labels: expected {O} labels (one per state dimension), got {len(labels)}")
    error_horizon = horizon if error_horizon is None else check_positive_int("error_horizon", error_horizon)
    errors = k_step_errors(model, episode, min(error_horizon, T), particles=particles, propagation=propagation,
                           generator=generator, members=members)
    s = torch.tensor([int(start)], device=model.device)
    start_obs, acts, _ = _windows(states.to(model.device, model.dtype), actions.to(model.device, model.dtype),
                                  horizon, s)
    predicted = rollout_particles(model, start_obs, acts, particles=particles, propagation=propagation,
                                  generator=generator, members=members)[0].cpu().double().numpy()  # (P, k+1, O)
    real = states.cpu().double().numpy()

    n_panels = O + 1
    cols = 2 if n_panels == 4 else min(n_panels, 3)
    rows = math.ceil(n_panels / cols)
    fig = Figure(figsize=(5.2 * cols, 3.3 * rows), dpi=100, layout="constrained")
    axes = np.asarray(fig.subplots(rows, cols, squeeze=False)).ravel()
    t_real = np.arange(max(0, start - context), min(T, start + horizon) + 1)
    t_pred = start + np.arange(horizon + 1)
    unit = f" (Δt = {dt:g} s)" if dt else ""
    for d in range(O):
        ax = axes[d]
        mean, std = predicted[:, :, d].mean(0), predicted[:, :, d].std(0)
        ax.fill_between(t_pred, mean - 2 * std, mean + 2 * std, color=PREDICTION_COLOR, alpha=0.2,
                        label="prediction mean ± 2 std")
        for p in range(min(particles, 8)):
            ax.plot(t_pred, predicted[p, :, d], color=PREDICTION_COLOR, lw=0.5, alpha=0.5,
                    label="particles" if p == 0 else None)
        ax.plot(t_pred, mean, color=PREDICTION_COLOR, lw=2, label="prediction mean")
        ax.plot(t_real, real[t_real, d], color=REAL_COLOR, lw=1.6, label="real trajectory")
        ax.axvline(start, color="0.5", ls=":", lw=1)
        ax.set_xlabel(f"env step t{unit}")
        ax.set_ylabel(labels[d])
        ax.set_title(f"{labels[d].split('[')[0].strip()}: {horizon}-step prediction from t = {start}", fontsize=10)
        ax.grid(alpha=0.3)
        if d == 0:
            ax.legend(loc="best", fontsize=7, framealpha=0.85)
    ax = axes[O]
    k = np.arange(1, errors.rmse.shape[0])
    for d in range(O):
        (line,) = ax.plot(k, errors.rmse[1:, d], marker="o", markersize=2.5, label=f"{labels[d]}: error")
        ax.plot(k, errors.spread[1:, d], ls="--", color=line.get_color(), label=f"{labels[d]}: model std")
    ax.set_yscale("log")
    ax.set_xlabel(f"prediction horizon k [env steps]{unit}")
    ax.set_ylabel("RMSE of the mean / model std")
    ax.set_title(f"compounding error, averaged over {errors.starts} start points", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right", fontsize=6.5, framealpha=0.85, ncol=1)
    for ax in axes[O + 1:]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=12)
    return fig
