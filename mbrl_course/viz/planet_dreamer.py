"""Figures and widgets of the PlaNet and Dreamer lecture (``lectures/09-planet-dreamer.ipynb``).

In the slides' notation (y_t the 64×64×3 frame, h_t the RSSM's deterministic state, s_t its stochastic state,
a_t the action, r_t the reward, v(s_t) Dreamer's value, γ the discount, λ the λ-return's mixing weight):

- **From pixels to latent states.** :func:`buffer_episode` takes an episode of D_real as frames y_{0:T} and the
  actions a_{t−1} before them; :func:`latent_view` filters it with a world model and decodes (the reconstruction
  dec(h_t, s_t) and, after C context frames, the open-loop imagination, via
  :func:`~mbrl_course.agents.latent.reconstruct_and_imagine`); :func:`plot_latent_view` draws the three rows as a
  frame strip, :func:`plot_latent_errors` their per-pixel error against t, :func:`latent_view_panels` the three
  side by side as the frames of an animation.
- **PlaNet = MPC in latent space.** :func:`latent_reward_trajectory`: the predicted reward along each candidate
  plan's imagined mean path, the ``trajectory_fn`` of lecture 2's :func:`~mbrl_course.viz.planning.cem_explorer`
  run on :func:`~mbrl_course.planning.latent.latent_return_objective`.
- **Dreamer = Dyna in latent space.** :func:`imagined_trajectory`: one trajectory the actor imagines from a
  posterior state, decoded, with its rewards, the values v(s_t) and the λ-returns
  (:meth:`~mbrl_course.rl.actor_critic.ImaginationActorCritic.losses`); :func:`plot_imagined_trajectory` draws it.
- **λ-returns.** :func:`n_step_returns` V_N^n(s_t), :func:`lambda_weights` the weights of the mix,
  :func:`plot_lambda_returns` one trajectory's rewards, values, n-step returns and V_λ for a λ and a horizon,
  :func:`lambda_return_explorer` the same with λ and horizon sliders (ipywidgets; elsewhere the static figure).
- :func:`random_policy_returns`: the reference a learning curve must rise above; :func:`benchmark_curves`: the
  default-tier learning curves ``benchmarks/pixels.py`` measured, shipped with the package (small JSON) for the
  lecture's figure that needs longer training than a lecture cell should take.

The n-step and λ-returns, with c_t = γ for every imagined step (no termination head), are those of
:mod:`mbrl_course.rl.actor_critic`:

    V_N^n(s_t) = Σ_{j=t}^{t+n−1} γ^{j−t} r_j + γ^n v(s_{t+n}),
    V_λ(s_t)   = (1 − λ) Σ_{n=1}^{h−t−1} λ^{n−1} V_N^n(s_t) + λ^{h−t−1} V_N^{h−t}(s_t)     (h the horizon)

Every plotting function returns a :class:`matplotlib.figure.Figure` made with pyplot.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from mbrl_course._checks import check_positive_float, check_positive_int
from mbrl_course.agents.latent import reconstruct_and_imagine
from mbrl_course.agents.mpc import RandomAgent, run_episode
from mbrl_course.data import EpisodeBuffer
from mbrl_course.envs import make_pixel_env
from mbrl_course.rl.actor_critic import ImaginationActorCritic, lambda_returns
from mbrl_course.ssm.conv import postprocess_frames, preprocess_frames
from mbrl_course.ssm.rssm import LatentState, RecurrentSSM
from mbrl_course.viz._widgets import widgets_available
from mbrl_course.viz.filtering import _np
from mbrl_course.viz.recurrent_ssm import plot_frame_strip
from mbrl_course.viz.ssm import _png

__all__ = [
    "ImaginedTrajectory",
    "LatentView",
    "benchmark_curves",
    "buffer_episode",
    "imagined_trajectory",
    "lambda_return_explorer",
    "lambda_weights",
    "latent_reward_trajectory",
    "latent_view",
    "latent_view_panels",
    "n_step_returns",
    "plot_imagined_trajectory",
    "plot_lambda_returns",
    "plot_latent_errors",
    "plot_latent_view",
    "random_policy_returns",
]

ROWS = ("real", "reconstruction", "imagination")
"""the rows of :func:`plot_latent_view`, top to bottom"""


def _spread(count: int, length: int, must: Sequence[int] = ()) -> list[int]:
    """About ``count`` indices spread evenly over 0..length−1, with the indices ``must`` among them."""
    picked = set(np.linspace(0, length - 1, min(count, length)).round().astype(int).tolist())
    return sorted(picked | {int(m) for m in must if 0 <= m < length})


def _reward_bars(ax, rewards: np.ndarray, label: str):
    """r_t as green bars at t = 0..H−1 on a right-hand axis of their own (rewards are far smaller than returns)."""
    twin = ax.twinx()
    twin.bar(np.arange(len(rewards)), rewards, width=0.6, color="tab:green", alpha=0.35, label=label)
    twin.set_ylabel("predicted reward r_t", color="tab:green")
    ax.set_zorder(twin.get_zorder() + 1)  # the lines over the bars
    ax.patch.set_visible(False)
    return twin


def _legend(ax, *others, **kwargs) -> None:
    """One legend on ``ax`` for the artists of ``ax`` and of its twin axes ``others``."""
    handles, labels = ax.get_legend_handles_labels()
    for other in others:
        more = other.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    ax.legend(handles, labels, **kwargs)


# ------------------------------------------------------------------------------ 1. from pixels to latent states
def buffer_episode(buffer: EpisodeBuffer, steps: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The last ``steps`` transitions of D_real (None: all of them; one episode) as a sequence for a world model.

    Returns (frames ``(T+1, 64, 64, 3)`` uint8, y_0 (the reset frame) then y_1..y_T; actions ``(T+1, A)``,
    a_{t−1} before each frame y_t, zero before y_0), the alignment of the RSSM's training chunks.
    """
    if not isinstance(buffer, EpisodeBuffer):
        raise TypeError(f"buffer: expected an EpisodeBuffer of frames, got {type(buffer).__name__}")
    steps = len(buffer) if steps is None else check_positive_int("steps", steps)
    if not 1 <= steps <= len(buffer):
        raise ValueError(f"steps: expected 1..{len(buffer)} (the transitions in buffer), got {steps}")
    last = buffer.batch(torch.arange(len(buffer) - steps, len(buffer), device=buffer.device))
    frames = torch.cat([last.obs[:1], last.next_obs])  # y_0, y_1 .. y_T
    actions = torch.cat([torch.zeros_like(last.action[:1]), last.action])  # a_{t-1} before each y_t
    return frames.cpu(), actions.cpu()


@dataclass
class LatentView:
    """A world model's view of one episode (:func:`latent_view`): three frame sequences ``(T, 64, 64, 3)`` uint8."""

    frames: torch.Tensor
    """the real frames y_{1:T}"""
    reconstruction: torch.Tensor
    """dec(h_t, s_t) of the filtered posterior means, every t"""
    imagination: torch.Tensor
    """the reconstruction for t ≤ C, then the open-loop prior means under the recorded actions"""
    context: int
    """C, the frames the imagination observed"""

    def errors(self) -> dict[str, torch.Tensor]:
        """Per-pixel MSE (pixels in [0, 1]) of the reconstruction and of the imagination at each t: (T,) each."""
        real = preprocess_frames(self.frames)
        return {name: (preprocess_frames(getattr(self, name)) - real).square().mean((-3, -2, -1))
                for name in ROWS[1:]}


def latent_view(model: RecurrentSSM, frames: torch.Tensor, actions: torch.Tensor, context: int = 5) -> LatentView:
    """Filter one episode ``frames: (T, 64, 64, 3)`` uint8 (``actions: (T, A)``, a_{t−1} before each) through
    ``model`` and decode: the reconstruction at every t, and the open-loop imagination after ``context`` frames
    (:func:`~mbrl_course.agents.latent.reconstruct_and_imagine`)."""
    if frames.ndim != 4 or tuple(frames.shape[1:]) != (64, 64, 3) or frames.dtype != torch.uint8:
        raise ValueError(f"frames: expected uint8 frames of shape (T, 64, 64, 3), got {tuple(frames.shape)} "
                         f"of dtype {frames.dtype}")
    T = frames.shape[0]
    context = check_positive_int("context", context)
    if context >= T:
        raise ValueError(f"context: expected fewer frames than the episode's T = {T} (something left to imagine), "
                         f"got {context}")
    was_training = model.training
    model.eval()
    reconstruction, imagination = reconstruct_and_imagine(model, frames, actions, context)
    model.train(was_training)
    return LatentView(frames.cpu(), reconstruction.cpu(), imagination.cpu(), context)


def plot_latent_view(view: LatentView, columns: Sequence[int] | None = None, title: str = "") -> Figure:
    """Rows real | reconstruction | imagination at the time steps ``columns`` (0-based; default about 9 spread
    over the episode, including the last context frame and the first imagined one); a column's title says
    whether the imagination had seen that frame ("seen") or predicted it open loop ("imagined")."""
    T = view.frames.shape[0]
    columns = _spread(9, T, (view.context - 1, view.context)) if columns is None else [int(c) for c in columns]
    titles = [f"t={c + 1}\n" + ("seen" if c < view.context else "imagined") for c in columns]
    rows = {"real": view.frames, "reconstruction": view.reconstruction, "imagination": view.imagination}
    return plot_frame_strip(rows, columns, titles, title or f"the model's view: C = {view.context} frames seen, "
                                                             f"then open loop under the recorded actions")


def plot_latent_errors(view: LatentView) -> Figure:
    """Per-pixel MSE against t of the reconstruction and of the imagination, the context shaded."""
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    t = np.arange(1, view.frames.shape[0] + 1)
    for name, err in view.errors().items():
        ax.plot(t, _np(name, err, 1), marker=".", label=name)
    ax.axvspan(0.5, view.context + 0.5, color="0.9", zorder=0, label="context (seen by the imagination)")
    ax.set(xlabel="t [agent steps]", ylabel="per-pixel MSE (pixels in [0, 1])",
           title="decoded frames against the real ones")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def latent_view_panels(view: LatentView) -> list[np.ndarray]:
    """The frames of an animation: real | reconstruction | imagination side by side, each ``(64, 196, 3)`` uint8
    (white gaps of 2 pixels), one per t (show them with :func:`~mbrl_course.viz.rollouts.animation_html`)."""
    gap = torch.full((*view.frames.shape[:2], 2, 3), 255, dtype=torch.uint8)
    panels = torch.cat([view.frames, gap, view.reconstruction, gap, view.imagination], 2)
    return list(panels.numpy())


# ------------------------------------------------------------------------------ 2. PlaNet: CEM in latent space
def latent_reward_trajectory(model: RecurrentSSM, state: LatentState) -> Callable[[torch.Tensor], torch.Tensor]:
    """``trajectory_fn`` for :func:`~mbrl_course.viz.planning.cem_explorer`: ``(N, H, A) -> (N, H+1)``, the predicted
    reward r̂(h_{t+k}, s_{t+k}) for k = 0..H along each plan's imagined path from the filtered ``state`` (one
    time step), following the prior means (the objective samples one path; this draws the mode path)."""
    if model.reward_net is None:
        raise ValueError("model: expected a world model with a reward head, got one without")

    @torch.no_grad()
    def trajectory(action_sequences: torch.Tensor) -> torch.Tensor:
        if action_sequences.ndim != 3:
            raise ValueError(f"action_sequences: expected shape (N, H, A), got {tuple(action_sequences.shape)}")
        start = state.repeat(action_sequences.shape[0])
        imagined = model.imagine(start, actions=action_sequences, sample=False)
        return torch.cat([model.reward(start.features)[:, None], imagined.rewards], 1)

    return trajectory


# ------------------------------------------------------------------------------ 3. Dreamer: imagination with values
@dataclass
class ImaginedTrajectory:
    """One trajectory imagined by Dreamer's actor from a posterior state (:func:`imagined_trajectory`)."""

    frames: torch.Tensor
    """dec(h_t, s_t) of s_0 (the start) .. s_H: (H+1, 64, 64, 3) uint8"""
    actions: torch.Tensor
    """a_t ~ q_φ(· | s_t), t = 0..H−1: (H, A)"""
    rewards: torch.Tensor
    """r_t, the reward predicted for the step s_t → s_{t+1}: (H,)"""
    values: torch.Tensor
    """v(s_t), t = 0..H (the bootstrap values): (H+1,)"""
    returns: torch.Tensor
    """V_λ(s_t), t = 0..H−1, as the learner computed them: (H,)"""
    gamma: float
    """γ"""
    lam: float
    """λ"""


@torch.no_grad()
def imagined_trajectory(model: RecurrentSSM, actor_critic: ImaginationActorCritic, start_state: LatentState,
                        index: int = 0) -> ImaginedTrajectory:
    """Imagine H steps with the actor from every state of ``start_state`` (any leading shape, e.g. the (B, T)
    posteriors of ``model.observe``) with :meth:`ImaginationActorCritic.losses`, and keep trajectory ``index``
    (into the flattened starts), its states decoded into frames."""
    out = actor_critic.losses(model, start_state)
    N = out.features.shape[1]
    if not -N <= int(index) < N:
        raise ValueError(f"index: expected one of the {N} imagined trajectories (-{N}..{N - 1}), got {index}")
    n = int(index)
    frames = postprocess_frames(model.decode(out.features[:, n])).cpu()
    return ImaginedTrajectory(frames, out.actions[:, n].cpu(), out.rewards[:, n].cpu(), out.values[:, n].cpu(),
                              out.returns[:, n].cpu(), actor_critic.config.gamma, actor_critic.config.lam)


def plot_imagined_trajectory(trajectory: ImaginedTrajectory, columns: Sequence[int] | None = None) -> Figure:
    """Top: the decoded imagined frames at the steps ``columns`` (0-based, default about 8 over 0..H). Bottom, against
    t: the values v(s_t) and the λ-returns V_λ(s_t) along the same trajectory, and the predicted rewards r_t (bars,
    on a right-hand axis of their own)."""
    H = trajectory.rewards.shape[0]
    columns = _spread(8, H + 1) if columns is None else [int(c) for c in columns]
    bad = [c for c in columns if not 0 <= c <= H]
    if not columns or bad:
        raise ValueError(f"columns: expected steps in 0..{H} (the imagined states), got {list(columns)}")
    fig = plt.figure(figsize=(max(6.4, 1.0 * len(columns) + 1.0), 5.0))
    grid = fig.add_gridspec(2, len(columns), height_ratios=[1.0, 2.2])
    frames = trajectory.frames.numpy()
    for c, t in enumerate(columns):
        ax = fig.add_subplot(grid[0, c])
        ax.imshow(frames[t], interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"s_{t}", fontsize=8)
    ax = fig.add_subplot(grid[1, :])
    rewards = _reward_bars(ax, _np("rewards", trajectory.rewards, 1), "r_t, predicted reward (step t → t+1)")
    ax.plot(np.arange(H + 1), _np("values", trajectory.values, 1), marker="o", color="tab:blue", label="v(s_t)")
    ax.plot(np.arange(H), _np("returns", trajectory.returns, 1), marker="s", color="tab:red",
            label=f"V_λ(s_t), λ = {trajectory.lam:g}, γ = {trajectory.gamma:g}")
    ax.set(xlabel="imagined step t", ylabel="value / λ-return", xlim=(-0.6, H + 0.6))
    ax.grid(alpha=0.3)
    _legend(ax, rewards, fontsize=8)
    fig.suptitle("one trajectory Dreamer's actor imagines from a posterior state")
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------ λ-returns
def _trajectory(rewards, values) -> tuple[torch.Tensor, torch.Tensor]:
    r = torch.as_tensor(_np("rewards", rewards, 1))
    v = torch.as_tensor(_np("values", values, 1))
    if r.shape[0] < 1 or v.shape[0] != r.shape[0] + 1:
        raise ValueError(f"values: expected H+1 = {r.shape[0] + 1} values v(s_0)..v(s_H) for H = {r.shape[0]} "
                         f"rewards, got {v.shape[0]}")
    return r, v


def _check_gamma(gamma: float) -> float:
    gamma = check_positive_float("gamma", gamma, allow_zero=True)
    if gamma > 1.0:
        raise ValueError(f"gamma: expected a discount in [0, 1], got {gamma}")
    return gamma


def n_step_returns(rewards, values, gamma: float) -> torch.Tensor:
    """All n-step returns of one trajectory: entry [t, n−1] = V_N^n(s_t), NaN where t + n > H.

        V_N^n(s_t) = Σ_{j=t}^{t+n−1} γ^{j−t} r_j + γ^n v(s_{t+n})

    ``rewards: (H,)`` r_t, ``values: (H+1,)`` v(s_0)..v(s_H), ``gamma`` γ. Returns ``(H, H)`` float64.
    """
    r, v = _trajectory(rewards, values)
    gamma = _check_gamma(gamma)
    H = r.shape[0]
    t = torch.arange(H)[:, None]
    n = torch.arange(1, H + 1)[None, :]
    j = torch.arange(H)[None, None, :]
    inside = (j >= t[..., None]) & (j < (t + n)[..., None])  # [t, n-1, j]: j ∈ t..t+n−1
    discount = torch.tensor(gamma, dtype=torch.float64) ** (j - t[..., None]).clamp_min(0)
    rewards_part = (inside * discount * r).sum(-1)  # Σ_j γ^{j−t} r_j
    end = (t + n).clamp_max(H)  # bootstrap index t + n
    returns = rewards_part + gamma ** n.double() * v[end]
    return torch.where(t + n <= H, returns, torch.full_like(returns, float("nan")))


def lambda_weights(lam: float, n: int) -> torch.Tensor:
    """The weights of V_N^1 .. V_N^n in V_λ: (1 − λ) λ^{k−1} for k < n, and λ^{n−1} for the longest; they sum to 1.
    Returns ``(n,)`` float64."""
    lam = float(lam)
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam: expected λ in [0, 1], got {lam}")
    n = check_positive_int("n", n)
    powers = torch.tensor(lam, dtype=torch.float64) ** torch.arange(n, dtype=torch.float64)
    weights = (1.0 - lam) * powers
    weights[-1] = powers[-1]
    return weights


def _check_horizon(horizon: int | None, H: int) -> int:
    h = H if horizon is None else check_positive_int("horizon", horizon)
    if h > H:
        raise ValueError(f"horizon: expected at most the trajectory's H = {H} imagined steps, got {h}")
    return h


def plot_lambda_returns(rewards, values, gamma: float, lam: float, horizon: int | None = None) -> Figure:
    """The λ-return of one imagined trajectory, cut to its first ``horizon`` h steps (None: all H).

    Left, against t: the rewards r_t (bars, on a right-hand axis of their own), the values v(s_t) and V_λ(s_t) for t = 0..h−1 (:func:`lambda_returns`
    on r_{0:h−1}, v(s_0)..v(s_h)), with λ = 0 (one-step TD targets) and λ = 1 (the h-step returns) dashed.
    Right, for the first state s_0: the n-step returns V_N^n(s_0), n = 1..h (:func:`n_step_returns`), the weights
    each gets in V_λ (:func:`lambda_weights`, bars on the right axis) and V_λ(s_0) = their weighted sum.
    Lines carry labels (``"V_λ(s_t)"``, ``"v(s_t)"``, ``"V_N^n(s_0)"``, ``"V_λ(s_0)"``) to find them by.
    """
    r, v = _trajectory(rewards, values)
    lam = float(lam)
    gamma = _check_gamma(gamma)
    h = _check_horizon(horizon, r.shape[0])
    r, v = r[:h], v[:h + 1]
    returns = {x: lambda_returns(r, v, gamma, x) for x in (lam, 0.0, 1.0)}
    fig, (left, right) = plt.subplots(1, 2, figsize=(11.0, 3.8), gridspec_kw={"width_ratios": [1.4, 1.0]})
    t = np.arange(h)
    reward_axis = _reward_bars(left, r.numpy(), "r_t")
    left.plot(np.arange(h + 1), v.numpy(), marker="o", color="tab:blue", label="v(s_t)")
    left.plot(t, returns[0.0].numpy(), ls="--", lw=1.0, color="0.5", label="λ = 0: r_t + γ v(s_{t+1})")
    left.plot(t, returns[1.0].numpy(), ls=":", lw=1.4, color="0.2", label="λ = 1: return to h, then v(s_h)")
    left.plot(t, returns[lam].numpy(), marker="s", color="tab:red", lw=2.0, label="V_λ(s_t)")
    left.set(xlabel="imagined step t", ylabel="value / return", xlim=(-0.6, h + 0.6),
             title=f"along the trajectory (H = {h}, γ = {gamma:g}, λ = {lam:g})")
    left.grid(alpha=0.3)
    _legend(left, reward_axis, fontsize=7)

    n = np.arange(1, h + 1)
    first = n_step_returns(r, v, gamma)[0]  # V_N^n(s_0), n = 1..h
    weights = lambda_weights(lam, h)
    share = right.twinx()
    share.bar(n, weights.numpy(), width=0.6, color="tab:orange", alpha=0.35, label="weight of V_N^n in V_λ")
    share.set_ylabel("weight", color="tab:orange")
    share.set_ylim(0.0, 1.05)
    right.set_zorder(share.get_zorder() + 1)  # the lines over the bars
    right.patch.set_visible(False)
    right.plot(n, first.numpy(), marker="o", color="tab:purple", label="V_N^n(s_0)")
    right.axhline(float(returns[lam][0]), color="tab:red", lw=2.0, label="V_λ(s_0)")
    right.set(xlabel="n (imagined rewards before bootstrapping)", ylabel="return estimate of s_0",
              title=f"V_λ(s_0) = Σ_n weight_n V_N^n(s_0) = {float(returns[lam][0]):.4g}")
    right.grid(alpha=0.3)
    _legend(right, share, fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def lambda_return_explorer(rewards, values, gamma: float, lam: float = 0.95, horizon: int | None = None, *,
                           interactive: bool | None = None):
    """Sliders for λ and the horizon H over one trajectory's :func:`plot_lambda_returns` (ipywidgets).

    ``interactive``: True the widget (needs ipywidgets and a Jupyter frontend), False the static figure for
    ``lam`` and ``horizon``, None the widget where :func:`~mbrl_course.viz.widgets_available`, else the figure.
    Returns an ``ipywidgets.VBox`` or a Figure.
    """
    r, v = _trajectory(rewards, values)
    H = r.shape[0]
    h = _check_horizon(horizon, H)
    lam = float(lam)
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam: expected λ in [0, 1], got {lam}")
    if interactive is None:
        interactive = widgets_available()
    if not interactive:
        return plot_lambda_returns(r, v, gamma, lam, h)
    try:
        import ipywidgets as widgets
    except ImportError as err:
        raise ImportError("lambda_return_explorer(interactive=True) needs ipywidgets: pip install ipywidgets "
                          "(or pass interactive=False for the static figure)") from err
    style, layout = {"description_width": "110px"}, widgets.Layout(width="460px")
    lam_slider = widgets.FloatSlider(value=lam, min=0.0, max=1.0, step=0.05, description="λ", style=style,
                                     layout=layout, continuous_update=False)
    horizon_slider = widgets.IntSlider(value=h, min=1, max=H, description="horizon H", style=style, layout=layout,
                                       continuous_update=False)
    image = widgets.Image(value=_png(plot_lambda_returns(r, v, gamma, lam, h)), format="png",
                          layout=widgets.Layout(max_width="100%"))

    def redraw(_change) -> None:
        image.value = _png(plot_lambda_returns(r, v, gamma, lam_slider.value, horizon_slider.value))

    lam_slider.observe(redraw, names="value")
    horizon_slider.observe(redraw, names="value")
    return widgets.VBox([lam_slider, horizon_slider, image])


# ------------------------------------------------------------------------------ 4. learning curves
def random_policy_returns(env_id: str, episodes: int, seed: int = 0, **env_kwargs) -> np.ndarray:
    """Undiscounted returns of ``episodes`` episodes of uniform random actions (each held for the action repeat R)
    on the pixel env ``env_id``, as PlaNet's and Dreamer's seed episodes act. ``env_kwargs`` go to
    :func:`~mbrl_course.envs.make_pixel_env` (e.g. ``max_episode_steps``). Returns ``(episodes,)``."""
    episodes = check_positive_int("episodes", episodes)
    env = make_pixel_env(env_id, **env_kwargs)
    agent = RandomAgent(env.action_space, seed=seed)
    returns = np.array([run_episode(env, agent, None, episode=e, seed=seed).ret for e in range(episodes)])
    env.close()
    return returns


def benchmark_curves(name: str = "pixels_Pendulum-v1_default") -> dict:
    """The learning curves a benchmark run measured, as shipped in ``mbrl_course/viz/data/<name>.json``.

    Written by ``benchmarks/pixels.py --save-curves``: ``{"command", "measured", "random": {"mean", "se",
    "episodes"}, "runs": {label: {"rows": [returns.csv rows], "eval_mean", "eval_se", "z", "wall_s"}}}``.
    """
    path = resources.files("mbrl_course.viz") / "data" / f"{name}.json"
    if not path.is_file():
        raise ValueError(f"name: expected one of the shipped benchmark curves "
                         f"{sorted(p.name[:-5] for p in (resources.files('mbrl_course.viz') / 'data').iterdir())}, "
                         f"got {name!r}")
    return json.loads(path.read_text())
