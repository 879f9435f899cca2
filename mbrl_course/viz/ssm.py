"""Figures and widgets of the variational state-space model lecture (``lectures/07-variational-ssm.ipynb``).

In the slides' notation (latent states s_t, observations y_t, Y_{1:T}, the posterior q(s_{0:T} | Y_{1:T}, ψ),
the model's θ):

- :func:`plot_posterior_families`: the marginals q(s_t | Y_{1:T}) of each posterior family, estimated from
  its sample paths (mean ± 2 sd, a few paths), on top of the exact RTS smoother's p(s_t | Y_{1:T}) ± 2 sd;
- :func:`mean_field_gap_floor`: the least ELBO gap any fully factorised Gaussian q can reach on a
  linear-Gaussian model (the reference line of the next figure);
- :func:`plot_elbo_gaps`: the gap log p(Y_{1:T}) − L per time step while each family trains, and the gap
  of every sample path of the trained families (and of the exact posterior: 0 on every sample);
- :func:`compute_prediction_fans`: p(y_{T+k} | Y_{1:T}) by :func:`~mbrl_course.ssm.k_step_prediction` for
  each family and in closed form by :func:`~mbrl_course.filters.predict`, for several T at once;
- :func:`plot_prediction_fans`: those fans for one T and k, family by family beside the exact one;
- :func:`prediction_explorer`: sliders for T (observations seen) and k (steps ahead) that redraw
  :func:`plot_prediction_fans` from the precomputed fans (ipywidgets), or that figure alone where widgets
  are unavailable;
- :func:`plot_free_run`: free-run simulations of system-identification models (PR-SSM, a linear SSM, ...)
  on one sequence: sampled trajectories, the 95 % interval, the data and the input.

Every plotting function returns a :class:`matplotlib.figure.Figure` made with pyplot (shown inline by
Jupyter) and takes torch tensors or arrays.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from mbrl_course.filters import LinearGaussianSSM, SmootherResult, kalman_filter, predict
from mbrl_course.ssm import GenerativeModel, Posterior, k_step_prediction
from mbrl_course.viz._widgets import widgets_available
from mbrl_course.viz.filtering import _np

BAND = 2.0
"""Gaussian bands are mean ± BAND standard deviations (about 95 % of the mass)."""
LEVELS = (0.025, 0.5, 0.975)
"""Sample bands are the 2.5 % and 97.5 % quantiles, with the median."""
EXACT_COLOR = "0.55"
"""The exact answer is grey in every figure."""


def _family_color(index: int) -> str:
    return f"C{index}"


# ------------------------------------------------------------------------------ posterior marginals
def plot_posterior_families(
    smoothed: SmootherResult,
    samples: Mapping[str, object],
    *,
    states=None,
    num_paths: int = 3,
    state_names: Sequence[str] | None = None,
    title: str = "Posterior marginals q(s_t | Y_1:T) from samples, over the exact smoother's p(s_t | Y_1:T)",
) -> Figure:
    """One column per family, one row per state component, t = 0..T.

    In each panel: the exact RTS smoother's m^s_t ± 2 sd (grey band), the family's marginal mean ± 2 sd
    estimated from its sample paths (coloured band and line), ``num_paths`` of its sample paths (thin
    lines) and the true states (black, dashed) when given.

    ``smoothed``: :func:`~mbrl_course.filters.rts_smoother` of ONE sequence (smoothed_means ``(T, dx)``);
    ``samples``: family name -> sample paths s̃_{0:T} ``(N, T+1, dx)`` (e.g. ``posterior.sample(Y[b:b+1],
    num_samples=N).states[:, 0]``); ``states: (T+1, dx)`` the true s_{0:T}.
    """
    if not isinstance(smoothed, SmootherResult):
        raise TypeError(f"smoothed: expected a SmootherResult, got {type(smoothed).__name__}")
    if smoothed.smoothed_means.ndim != 2:
        raise ValueError("smoothed: expected the result of one sequence, smoothed_means of shape (T, dx), got "
                         f"{tuple(smoothed.smoothed_means.shape)}; index the batch first")
    if not samples:
        raise ValueError("samples: expected at least one family")
    mean = np.concatenate([_np("smoothed.smoothed_initial_mean", smoothed.smoothed_initial_mean, 1)[None],
                           _np("smoothed.smoothed_means", smoothed.smoothed_means, 2)])
    covs = np.concatenate([_np("smoothed.smoothed_initial_cov", smoothed.smoothed_initial_cov, 2)[None],
                           _np("smoothed.smoothed_covs", smoothed.smoothed_covs, 3)])
    sd = np.sqrt(np.clip(np.diagonal(covs, axis1=1, axis2=2), 0.0, None))
    T1, dx = mean.shape
    names = list(state_names) if state_names is not None else [f"s_t[{i}]" for i in range(dx)]
    if len(names) != dx:
        raise ValueError(f"state_names: expected {dx} names (one per state component), got {len(names)}")
    x = None if states is None else _np("states", states, 2)
    if x is not None and x.shape != (T1, dx):
        raise ValueError(f"states: expected shape ({T1}, {dx}) (s_0:T), got {x.shape}")
    t = np.arange(T1)
    fig, axes = plt.subplots(dx, len(samples), figsize=(4.3 * len(samples), 2.6 * dx), dpi=100, sharex=True,
                             sharey="row", squeeze=False)
    for j, (family, paths) in enumerate(samples.items()):
        s = _np(f"samples[{family!r}]", paths, 3)
        if s.shape[1:] != (T1, dx):
            raise ValueError(f"samples[{family!r}]: expected shape (N, {T1}, {dx}) (paths s_0:T), got {s.shape}")
        q_mean, q_sd = s.mean(0), s.std(0)
        color = _family_color(j)
        for i in range(dx):
            ax = axes[i, j]
            ax.fill_between(t, mean[:, i] - BAND * sd[:, i], mean[:, i] + BAND * sd[:, i], color=EXACT_COLOR,
                            alpha=0.35, lw=0, label=f"exact smoother ± {BAND:g} sd")
            ax.fill_between(t, q_mean[:, i] - BAND * q_sd[:, i], q_mean[:, i] + BAND * q_sd[:, i], color=color,
                            alpha=0.3, lw=0, label=f"q from samples ± {BAND:g} sd")
            ax.plot(t, q_mean[:, i], color=color, lw=1.5, label="q's mean")
            for n in range(min(num_paths, s.shape[0])):
                ax.plot(t, s[n, :, i], color=color, lw=0.7, alpha=0.8, label="sample paths s̃_0:T" if n == 0 else None)
            if x is not None:
                ax.plot(t, x[:, i], color="k", lw=1.0, ls="--", label="true s_t")
            ax.grid(alpha=0.3)
            if j == 0:
                ax.set_ylabel(names[i])
        axes[0, j].set_title(family)
        axes[-1, j].set_xlabel("time step t")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


# ------------------------------------------------------------------------------ the ELBO gap
def mean_field_gap_floor(ssm: LinearGaussianSSM, num_steps: int) -> float:
    """min over fully factorised Gaussian q of KL(q(s_{0:T}) || p(s_{0:T} | Y_{1:T})), per sequence (nats).

    The exact posterior of a linear-Gaussian model is Gaussian with a precision Λ ((T+1) dx square) that does
    not depend on Y: Λ = blocks of S_0⁻¹, Eᵀ F⁻¹ E, F⁻¹ + Cᵀ D⁻¹ C and −Eᵀ F⁻¹ (the chain s_0 - s_1 - ... - s_T).
    A q with independent scalar factors (mean-field over time *and* over state components, as
    ``MeanFieldPosterior(covariance="diag")``) minimises KL(q || p) with the exact means and the variances
    1/Λ_ii, and then KL = ½ (Σ_i log Λ_ii − log det Λ): the gap log p(Y) − L(q) that no such q can close.
    ``ssm``: fixed matrices, no batch; ``num_steps``: T. Controls shift means only and change nothing here.
    """
    if not isinstance(ssm, LinearGaussianSSM):
        raise TypeError(f"ssm: expected a LinearGaussianSSM, got {type(ssm).__name__}")
    if ssm.transition_matrix.ndim != 2 or len(ssm.batch_shape):
        raise ValueError("ssm: expected fixed matrices without batch dimensions")
    T = int(num_steps)
    if T < 1:
        raise ValueError(f"num_steps: expected an integer >= 1, got {num_steps}")
    dx = ssm.state_dim
    dtype = torch.float64
    E, C = ssm.transition_matrix.to(dtype), ssm.emission_matrix.to(dtype)
    F_inv = torch.linalg.inv(ssm.transition_cov.to(dtype))
    CDC = C.T @ torch.linalg.inv(ssm.emission_cov.to(dtype)) @ C
    precision = torch.zeros((T + 1) * dx, (T + 1) * dx, dtype=dtype)
    precision[:dx, :dx] += torch.linalg.inv(ssm.initial_cov.to(dtype))
    for t in range(1, T + 1):
        prev, now = slice((t - 1) * dx, t * dx), slice(t * dx, (t + 1) * dx)
        precision[prev, prev] += E.T @ F_inv @ E
        precision[now, now] += F_inv + CDC
        precision[prev, now] -= E.T @ F_inv
        precision[now, prev] -= F_inv @ E
    return float(0.5 * (precision.diagonal().log().sum() - torch.logdet(precision)))


def _moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Moving average over ``window`` values centred on each step; near the start the window shrinks
    symmetrically (no lag: a fast early fall is not smeared into later steps), near the end it keeps
    the ``window // 2`` values before the step (no single noisy last value)."""
    n = values.shape[0]
    half = max(0, int(window) // 2)
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    t = np.arange(n)
    reach = np.minimum(half, t)
    lo, hi = t - reach, np.minimum(n - 1, t + reach)
    return (cumulative[hi + 1] - cumulative[lo]) / (hi - lo + 1)


def plot_elbo_gaps(
    histories: Mapping[str, Sequence[float]],
    log_likelihood_per_step: float,
    sample_gaps: Mapping[str, object],
    *,
    floor: float | None = None,
    smooth: int = 25,
    title: str = "The ELBO's gap to log p(Y_1:T), per time step",
) -> Figure:
    """Left: log p(Y)/T − L̃ per observed step while training (moving average over ``smooth`` steps, log scale).
    Right: the gap of every sample path of the trained posteriors, one column of points per family.

    ``histories``: family -> the per-step ELBO estimates of training (``TrainResult.history``);
    ``log_likelihood_per_step``: log p(Y_{1:T}) of the training data divided by its observed steps (from the
    Kalman filter); ``sample_gaps``: name -> ``(N,)`` the gap per step of each of N sample paths,
    (log p(Y) − L̃_n) / steps (the exact posterior among them: 0 on every path); ``floor``: a reference
    gap drawn as a line on both panels (e.g. :func:`mean_field_gap_floor` per step).
    """
    if not histories or not sample_gaps:
        raise ValueError("histories, sample_gaps: expected at least one family each")
    fig, (left, right) = plt.subplots(1, 2, figsize=(12.0, 4.2), dpi=100, gridspec_kw={"width_ratios": [1.5, 1]})
    names = list(dict.fromkeys(list(histories) + list(sample_gaps)))
    colors = {name: _family_color(i) for i, name in enumerate(n for n in names if n in histories)}
    tiny = 1e-3
    for name, history in histories.items():
        h = _np(f"histories[{name!r}]", history, 1)
        gap = log_likelihood_per_step - h
        steps = np.arange(1, h.shape[0] + 1)
        left.plot(steps, np.clip(gap, tiny, None), color=colors[name], lw=0.5, alpha=0.25)
        left.plot(steps, np.clip(_moving_average(gap, smooth), tiny, None), color=colors[name], lw=1.8,
                  label=f"{name}: {float(np.mean(gap[-smooth:])):.3f} nats/step at the end")
    if floor is not None:
        for ax in (left, right):
            ax.axhline(floor, color="k", ls=":", lw=1.2, label=f"mean-field floor {floor:.3f}")
    left.set(yscale="log", xlabel="Adam step", ylabel="log p(Y)/T − L̃  (nats per step)",
             title=f"while training (moving average over {smooth} steps)")
    left.grid(alpha=0.3, which="both")
    left.legend(fontsize=8, loc="upper right")
    rng = np.random.default_rng(0)
    for k, (name, gaps) in enumerate(sample_gaps.items()):
        g = _np(f"sample_gaps[{name!r}]", gaps, 1)
        color = colors.get(name, EXACT_COLOR if "exact" in name else f"C{len(colors) + k}")
        jitter = k + rng.uniform(-0.18, 0.18, size=g.shape[0])
        right.scatter(jitter, g, s=9, color=color, alpha=0.6, lw=0)
        right.errorbar([k + 0.3], [g.mean()], yerr=[g.std(ddof=1) / np.sqrt(g.shape[0]) if g.shape[0] > 1 else 0.0],
                       fmt="D", color="k", ms=4, capsize=3)
        right.annotate(f"{g.mean():.3f}", (k + 0.36, g.mean()), fontsize=8, va="center")
    right.axhline(0.0, color=EXACT_COLOR, lw=1.0)
    right.set_xticks(range(len(sample_gaps)), list(sample_gaps), rotation=15, fontsize=8)
    right.set(xlabel="posterior", ylabel="(log p(Y) − L̃_n) / T  per sample path",
              title="trained: every sample path (◆ mean ± s.e.)")
    right.grid(alpha=0.3, axis="y")
    if floor is not None:
        right.legend(fontsize=8, loc="upper left")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------ k-step prediction
@dataclass
class PredictionFans:
    """p(y_{T+k} | Y_{1:T}) of several posteriors and of the exact filter, for each T in ``seen``, k = 1..K.

    Made by :func:`compute_prediction_fans`, drawn by :func:`plot_prediction_fans` and :func:`prediction_explorer`.
    """

    observations: np.ndarray
    """the whole sequence y_1, y_2, ...: (T_total, dy)"""
    seen: list[int]
    """the values of T (observations seen), increasing"""
    horizon: int
    """K, the most steps ahead"""
    quantiles: dict[str, np.ndarray]
    """family -> the 2.5 %, 50 %, 97.5 % quantiles of the sampled ỹ_{T+k}: (len(seen), 3, K, dy)"""
    sample_sds: dict[str, np.ndarray]
    """family -> the standard deviation of the sampled ỹ_{T+k}: (len(seen), K, dy)"""
    exact_means: np.ndarray
    """u_{T+k} of :func:`~mbrl_course.filters.predict` after the Kalman filter on Y_{1:T}: (len(seen), K, dy)"""
    exact_sds: np.ndarray
    """√V_{T+k} (the diagonal): (len(seen), K, dy)"""


@torch.no_grad()
def compute_prediction_fans(
    model: GenerativeModel,
    posteriors: Mapping[str, Posterior],
    ssm: LinearGaussianSSM,
    observations: torch.Tensor,
    seen: Sequence[int],
    horizon: int,
    *,
    num_samples: int = 200,
    generator: torch.Generator | None = None,
) -> PredictionFans:
    """Compute every fan once: for each T in ``seen``, p(y_{T+k} | Y_{1:T}), k = 1..``horizon``.

    Each posterior: :func:`~mbrl_course.ssm.k_step_prediction` (sample q up to T, p(s_t | s_{t-1}, θ) after),
    all T in one batch (the sequence repeated, observed up to T by the mask). The exact answer: the Kalman
    filter of ``ssm`` on Y_{1:T} (NaN after T), then :func:`~mbrl_course.filters.predict`.
    ``observations: (T_total, dy)`` one sequence; every T in ``seen`` must satisfy 1 ≤ T ≤ T_total.
    """
    y = observations
    if y.ndim != 2:
        raise ValueError(f"observations: expected one sequence of shape (T_total, dy), got {tuple(y.shape)}")
    T_total = y.shape[0]
    seen = sorted(int(T) for T in seen)
    if not seen or seen[0] < 1 or seen[-1] > T_total:
        raise ValueError(f"seen: expected values between 1 and {T_total} (the sequence's length), got {seen}")
    K = int(horizon)
    if K < 1:
        raise ValueError(f"horizon: expected an integer >= 1, got {horizon}")
    B = len(seen)
    batch = y.unsqueeze(0).expand(B, T_total, y.shape[1])
    steps = torch.arange(1, T_total + 1)
    mask = steps.unsqueeze(0) <= torch.tensor(seen).unsqueeze(1)  # (B, T_total): y_t seen for t ≤ T
    quantiles, sample_sds = {}, {}
    for name, posterior in posteriors.items():
        pred = k_step_prediction(model, posterior, batch, K, mask, num_samples=num_samples, quantiles=LEVELS,
                                 generator=generator)
        quantiles[name] = _np("quantiles", pred.quantiles.transpose(0, 1))  # (B, 3, K, dy)
        sample_sds[name] = _np("sample_sds", pred.observations.std(0))  # (B, K, dy)
    hidden = torch.where(mask.unsqueeze(-1), batch, torch.full_like(batch, float("nan")))
    filtered = kalman_filter(ssm, hidden.to(ssm.initial_mean.dtype))
    last = torch.tensor(seen) - 1
    rows = torch.arange(B)
    ahead = predict(ssm, filtered.filtered_means[rows, last], filtered.filtered_covs[rows, last], K)
    sds = torch.diagonal(ahead.obs_covs, dim1=-2, dim2=-1).clamp_min(0.0).sqrt()
    return PredictionFans(_np("observations", y, 2), seen, K, quantiles, sample_sds,
                          _np("obs_means", ahead.obs_means), _np("sds", sds))


def plot_prediction_fans(
    fans: PredictionFans,
    seen: int,
    steps: int,
    *,
    component: int = 0,
    context: int | None = 20,
    title: str | None = None,
) -> Figure:
    """One panel per family: y_{1:T}, the family's fan p(y_{T+k} | Y_{1:T}) for k = 1..``steps`` (95 % sample
    interval and median) over the exact one (u_{T+k} ± 2√V_{T+k}, grey), the later y (open circles), and at
    T + ``steps`` both intervals as error bars: the slide's p(y_{T+k} | Y_{1:T}) itself.

    ``seen``: T, one of ``fans.seen``; ``steps``: k in 1..``fans.horizon``; ``context``: how many observations
    before T to show (None: all).
    """
    if seen not in fans.seen:
        raise ValueError(f"seen: expected one of the precomputed T {fans.seen}, got {seen}")
    if not 1 <= steps <= fans.horizon:
        raise ValueError(f"steps: expected k between 1 and {fans.horizon} (the fans' horizon), got {steps}")
    i, k, c = fans.seen.index(seen), int(steps), component
    y = fans.observations[:, c]
    first = 0 if context is None else max(0, seen - context)
    t_past = np.arange(first + 1, seen + 1)
    t_future = np.arange(seen + 1, seen + k + 1)
    later = t_future[t_future <= y.shape[0]]
    u, sd = fans.exact_means[i, :k, c], fans.exact_sds[i, :k, c]
    n = len(fans.quantiles)
    fig, axes = plt.subplots(1, n, figsize=(4.3 * n, 3.6), dpi=100, sharey=True, squeeze=False)
    for j, (name, q) in enumerate(fans.quantiles.items()):
        ax = axes[0, j]
        color = _family_color(j)
        lo, mid, hi = q[i, 0, :k, c], q[i, 1, :k, c], q[i, 2, :k, c]
        ax.fill_between(t_future, u - BAND * sd, u + BAND * sd, color=EXACT_COLOR, alpha=0.35, lw=0,
                        label=f"exact: u_T+k ± {BAND:g}√V_T+k")
        ax.fill_between(t_future, lo, hi, color=color, alpha=0.3, lw=0, label="q: 95 % of samples")
        ax.plot(t_future, mid, color=color, lw=1.5, marker=".", label="q: median")
        ax.errorbar([seen + k - 0.15], [u[-1]], yerr=[[BAND * sd[-1]], [BAND * sd[-1]]], color=EXACT_COLOR,
                    capsize=3, lw=1.5)
        ax.errorbar([seen + k + 0.15], [mid[-1]], yerr=[[mid[-1] - lo[-1]], [hi[-1] - mid[-1]]], color=color,
                    capsize=3, lw=1.5)
        ax.plot(t_past, y[first:seen], ".", color="k", ms=5, label="y_1:T (seen)")
        ax.plot(later, y[later - 1], "o", mfc="none", color="k", ms=4, label="later y (not seen)")
        ax.axvline(seen + 0.5, color="0.4", ls=":", lw=1)
        ax.set(title=f"{name}: p(y_T+k | Y_1:T), k ≤ {k}", xlabel="time step t")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel(f"y_t[{c}]" if fans.observations.shape[1] > 1 else "y_t")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    fig.suptitle(title or f"k-step prediction after T = {seen} observations, k = 1..{k}")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def _png(fig: Figure, dpi: int = 80) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return buffer.getvalue()


def prediction_explorer(fans: PredictionFans, seen: int | None = None, steps: int | None = None, *,
                        interactive: bool | None = None, **plot_kwargs):
    """Sliders for T (observations seen, over ``fans.seen``) and k (steps ahead, 1..K) that redraw
    :func:`plot_prediction_fans`; nothing is recomputed.

    ``interactive``: True gives the widget (needs ipywidgets and a Jupyter frontend), False the static figure
    at (``seen``, ``steps``) (defaults: the middle T, the full horizon), None the widget where
    :func:`widgets_available` and the static figure elsewhere. Returns an ``ipywidgets.VBox`` or a Figure.
    """
    seen = fans.seen[len(fans.seen) // 2] if seen is None else seen
    steps = fans.horizon if steps is None else steps
    if seen not in fans.seen:
        raise ValueError(f"seen: expected one of the precomputed T {fans.seen}, got {seen}")
    if not 1 <= steps <= fans.horizon:
        raise ValueError(f"steps: expected k between 1 and {fans.horizon} (the fans' horizon), got {steps}")
    if interactive is None:
        interactive = widgets_available()
    if not interactive:
        return plot_prediction_fans(fans, seen, steps, **plot_kwargs)
    try:
        import ipywidgets as widgets
    except ImportError as err:
        raise ImportError("prediction_explorer(interactive=True) needs ipywidgets: pip install ipywidgets "
                          "(or pass interactive=False for the static figure)") from err
    style = {"description_width": "190px"}
    layout = widgets.Layout(width="520px")
    seen_slider = widgets.SelectionSlider(options=list(fans.seen), value=seen, description="T (observations seen)",
                                          style=style, layout=layout, continuous_update=False)
    steps_slider = widgets.IntSlider(value=steps, min=1, max=fans.horizon, description="k (steps ahead)",
                                     style=style, layout=layout, continuous_update=False)
    image = widgets.Image(value=_png(plot_prediction_fans(fans, seen, steps, **plot_kwargs)), format="png",
                          layout=widgets.Layout(max_width="100%"))

    def redraw(_change) -> None:
        image.value = _png(plot_prediction_fans(fans, seen_slider.value, steps_slider.value, **plot_kwargs))

    seen_slider.observe(redraw, names="value")
    steps_slider.observe(redraw, names="value")
    return widgets.VBox([seen_slider, steps_slider, image])


# ------------------------------------------------------------------------------ free-run simulation
def plot_free_run(
    inputs,
    outputs,
    samples: Mapping[str, object],
    *,
    recognition_steps: int,
    scores: Mapping[str, Mapping[str, float]] | None = None,
    num_paths: int = 5,
    truth=None,
    output_label: str = "lower tank level y_t",
    input_label: str = "pump input u_t",
    title: str = "Free-run simulation on a held-out sequence",
) -> Figure:
    """One panel per model (sampled trajectories, their 95 % interval and mean, the data), the input below.

    ``inputs: (T, 1)`` u_t; ``outputs: (T, 1)`` y_t; ``samples``: model -> ``(S, T, 1)`` free-run samples of
    y_{0:T-1} on this sequence (e.g. ``model.simulate(...).samples[:, b]``); ``recognition_steps``: the first
    L steps, from which the initial state was recognised (shaded); ``scores``: model -> ``free_run_scores``
    (RMSE, NLL, coverage, over all test sequences) for the titles; ``truth: (T,)`` the noise-free output.
    """
    u = _np("inputs", inputs, 2)
    y = _np("outputs", outputs, 2)
    T = y.shape[0]
    if u.shape[0] != T:
        raise ValueError(f"inputs: expected {T} rows (one per step of outputs), got shape {u.shape}")
    if not samples:
        raise ValueError("samples: expected at least one model")
    n = len(samples)
    fig, axes = plt.subplots(n + 1, 1, figsize=(10.0, 2.6 * n + 1.6), dpi=100, sharex=True,
                             gridspec_kw={"height_ratios": [2.2] * n + [1.0]})
    t = np.arange(T)
    for j, (name, draws) in enumerate(samples.items()):
        s = _np(f"samples[{name!r}]", draws, 3)
        if s.shape[1:] != (T, y.shape[1]):
            raise ValueError(f"samples[{name!r}]: expected shape (S, {T}, {y.shape[1]}), got {s.shape}")
        ax = axes[j]
        color = _family_color(j)
        lower, upper = np.quantile(s[..., 0], [LEVELS[0], LEVELS[2]], axis=0)
        ax.fill_between(t, lower, upper, color=color, alpha=0.25, lw=0, label="95 % interval of the samples")
        for p in range(min(num_paths, s.shape[0])):
            ax.plot(t, s[p, :, 0], color=color, lw=0.6, alpha=0.7, label="sampled trajectories" if p == 0 else None)
        ax.plot(t, s[..., 0].mean(0), color=color, lw=1.8, label="mean")
        ax.plot(t, y[:, 0], ".", color="k", ms=3, label="data y_t")
        if truth is not None:
            ax.plot(t, _np("truth", truth, 1), color="k", lw=0.8, ls="--", label="noise-free level")
        ax.axvspan(-0.5, recognition_steps - 0.5, color="0.85", zorder=0, label="recognition window")
        label = name
        if scores and name in scores:
            sc = scores[name]
            label += f"   (test: RMSE {sc['rmse']:.3f}, NLL {sc['nll']:.2f}, 95 % coverage {sc['coverage']:.0%})"
        ax.set(title=label, ylabel=output_label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="upper right", ncol=3)
    axes[-1].step(t, u[:, 0], where="post", color="C7")
    axes[-1].set(xlabel="time step t", ylabel=input_label)
    axes[-1].grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


__all__ = [
    "PredictionFans",
    "compute_prediction_fans",
    "mean_field_gap_floor",
    "plot_elbo_gaps",
    "plot_free_run",
    "plot_posterior_families",
    "plot_prediction_fans",
    "prediction_explorer",
]
