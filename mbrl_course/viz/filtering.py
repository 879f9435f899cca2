"""Figures and widgets of the filtering lecture (``lectures/06-filtering.ipynb``).

In the slide's notation (p(s_t | Y_{1:t-1}) = N(μ_t, Σ_t), p(y_t | Y_{1:t-1}) = N(ŷ_t, V_t),
p(s_t | Y_{1:t}) = N(m_t, S_t)); the slides write u_t for ŷ_t, and the course keeps u for actions (docs/notation.md):

- :func:`plot_grid_filter`: the Bayesian filter on a grid, p(s_t | Y_{1:t}) as a heat map over time
  next to the true state, with the observations above and the emission map beside it;
- :func:`plot_filter_steps`: single steps up close: prediction p(s_t | Y_{1:t-1}), likelihood
  p(y_t | s_t) and filtering posterior p(s_t | Y_{1:t}) on one axis;
- :func:`plot_kalman_filter`: a Kalman filter on a tracking problem: m_t ± 2 sd per state
  component, the predictive band ŷ_t ± 2 √V_t, and log p(y_t | Y_{1:t-1}) per step;
- :func:`plot_noise_settings`: the same data filtered under several noise levels (q, r), side by side;
- :func:`noise_explorer`: sliders for q and r that redraw :func:`plot_kalman_filter` (ipywidgets),
  or that figure alone where widgets are unavailable;
- :func:`plot_likelihood_surface`: log p(Y_{1:T} | θ) over two parameters with a gradient-ascent path;
- :func:`plot_k_step_prediction`: p(y_{T+k} | Y_{1:T}), k = 1..K, after filtering Y_{1:T};
- :func:`plot_bayesian_kalman_filter`: models with fixed and with ODE-driven E_t, F_t compared: their
  one-step predictions, a scalar summary of E_t over time and the cumulative log-likelihood.

Every function returns a :class:`matplotlib.figure.Figure` made with pyplot (shown inline by Jupyter)
and takes torch tensors or arrays; nothing here computes a filter.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure

from mbrl_course.filters import BayesianFilterResult, KalmanFilterResult, PredictionResult
from mbrl_course.viz._widgets import widgets_available

BAND = 2.0
"""Bands are mean ± BAND standard deviations (about 95 % of a Gaussian's mass)."""


def _np(name: str, value, ndim: int | None = None) -> np.ndarray:
    """``value`` as a float numpy array (detached, on the CPU); check its number of dimensions."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().to(torch.float64).numpy()
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name}: expected a tensor or an array of numbers, got {type(value).__name__}") from err
    if ndim is not None and array.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimension(s), got shape {array.shape}")
    return array


def _expect_length(name: str, array: np.ndarray, length: int, what: str) -> None:
    if array.shape[0] != length:
        raise ValueError(f"{name}: expected {length} entries along the first axis ({what}), got shape {array.shape}")


def _unbatched(name: str, result: KalmanFilterResult) -> None:
    if not isinstance(result, KalmanFilterResult):
        raise TypeError(f"{name}: expected a KalmanFilterResult, got {type(result).__name__}")
    if result.filtered_means.ndim != 2:
        raise ValueError(
            f"{name}: expected the result of one sequence, filtered_means of shape (T, dx), got "
            f"{tuple(result.filtered_means.shape)}; index the batch first"
        )


# ------------------------------------------------------------------------------ the grid filter
def plot_grid_filter(
    grid,
    result: BayesianFilterResult,
    *,
    true_states=None,
    observations=None,
    emission_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    observed_steps: int | None = None,
    title: str = "Bayesian filtering on a grid: p(s_t | Y_1:t)",
    state_label: str = "state s",
    obs_label: str = "observation y",
    time_label: str = "time step t",
    gamma: float = 0.4,
) -> Figure:
    """The filtering posterior p(s_t | Y_{1:t}) of a 1-D grid as a heat map over time (with the true state).

    Args:
        grid: the K grid points g_k, ``(K,)`` or ``(K, 1)``, increasing.
        result: :func:`~mbrl_course.filters.bayesian_filter`'s result for one sequence
            (``filtered_probs: (T, K)``).
        true_states: s_t, ``(T,)``: drawn as a line over the heat map.
        observations: y_t, ``(T,)`` or ``(T, 1)`` (NaN = missing): drawn in a panel above.
        emission_fn: h, the emission map ``(K, 1) -> (K, 1)``: drawn beside the heat map, sharing its state axis.
        observed_steps: y_t is observed for t <= observed_steps only; later steps are shaded as prediction.
        gamma: colour scale exponent (< 1 brightens small probabilities so that faint modes stay visible).
    Returns:
        the figure.
    """
    g = _np("grid", grid)
    if g.ndim == 2 and g.shape[1] == 1:
        g = g[:, 0]
    if g.ndim != 1 or g.shape[0] < 2:
        raise ValueError(f"grid: expected a 1-D grid, shape (K,) or (K, 1), got {np.shape(grid)}")
    if not isinstance(result, BayesianFilterResult):
        raise TypeError(f"result: expected a BayesianFilterResult, got {type(result).__name__}")
    probs = _np("result.filtered_probs", result.filtered_probs, 2)
    T, K = probs.shape
    if K != g.shape[0]:
        raise ValueError(f"result.filtered_probs: has {K} states, the grid {g.shape[0]} points")
    t = np.arange(1, T + 1)
    spacing = float(np.mean(np.diff(g)))
    density = probs / spacing  # probability per unit of state: comparable across grids

    fig = plt.figure(figsize=(10.5, 6.2), dpi=100)
    spec = fig.add_gridspec(2, 3, height_ratios=(1, 2.6), width_ratios=(1, 0.22, 0.035), hspace=0.08, wspace=0.06)
    ax_obs = fig.add_subplot(spec[0, 0])
    ax_map = fig.add_subplot(spec[1, 0], sharex=ax_obs)
    ax_h = fig.add_subplot(spec[1, 1], sharey=ax_map)
    ax_bar = fig.add_subplot(spec[1, 2])

    image = ax_map.imshow(density.T, origin="lower", aspect="auto", cmap="magma",
                          extent=(0.5, T + 0.5, g[0] - spacing / 2, g[-1] + spacing / 2),
                          norm=PowerNorm(gamma=gamma, vmin=0.0, vmax=float(density.max())))
    fig.colorbar(image, cax=ax_bar, label=f"p(s_t | Y_1:t) per unit of {state_label.split(' (')[0]}")
    if true_states is not None:
        s = _np("true_states", true_states).reshape(-1)
        _expect_length("true_states", s, T, "one state per time step")
        ax_map.plot(t, s, color="#35d0ff", lw=1.4, label="true state s_t")
        ax_map.legend(loc="upper left", fontsize=8, framealpha=0.7)
    ax_map.set(xlabel=time_label, ylabel=state_label)

    if observations is not None:
        y = _np("observations", observations).reshape(T, -1)[:, 0]
        ax_obs.plot(t, y, "o", ms=3, color="C0", label="y_t")
    ax_obs.set(ylabel=obs_label, title=title)
    ax_obs.tick_params(labelbottom=False)
    if observed_steps is not None and observed_steps < T:
        ax_obs.axvspan(observed_steps + 0.5, T + 0.5, color="0.6", alpha=0.25, lw=0)
        ax_obs.text(observed_steps + 1, 0.93, "no observations:\nprediction only",
                    transform=ax_obs.get_xaxis_transform(), va="top", fontsize=8, color="0.25")
        ax_map.axvline(observed_steps + 0.5, color="white", ls="--", lw=1.0)

    if emission_fn is not None:
        with torch.no_grad():
            h = _np("emission_fn(grid)", emission_fn(torch.as_tensor(g).reshape(-1, 1))).reshape(K, -1)[:, 0]
        ax_h.plot(h, g, color="C0")
        ax_h.set(xlabel="h(s)", title="emission\nmap")
        ax_h.tick_params(labelleft=False)
        ax_h.grid(alpha=0.3)
    else:
        ax_h.axis("off")
    return fig


def plot_filter_steps(
    grid,
    result: BayesianFilterResult,
    emission_log_probs,
    steps: Sequence[int],
    *,
    true_states=None,
    state_label: str = "state s",
    title: str = "One step of the Bayesian filter: marginalise, then condition",
) -> Figure:
    """For a few time steps t (1-based): p(s_t | Y_{1:t-1}), p(y_t | s_t) and p(s_t | Y_{1:t}) on one axis.

    All three are drawn as densities per unit of state on the grid; the likelihood p(y_t | s_t) is
    normalised over the grid to be comparable (inference multiplies it with the prediction and
    renormalises). ``emission_log_probs: (T, K)`` is log p(y_t | s_t = g_k) (rows of zeros for
    missing y_t); ``true_states: (T,)``.
    """
    g = _np("grid", grid).reshape(-1)
    if not isinstance(result, BayesianFilterResult):
        raise TypeError(f"result: expected a BayesianFilterResult, got {type(result).__name__}")
    filtered = _np("result.filtered_probs", result.filtered_probs, 2)
    predicted = _np("result.predicted_probs", result.predicted_probs, 2)
    log_lik = _np("emission_log_probs", emission_log_probs, 2)
    T, K = filtered.shape
    if log_lik.shape != (T, K) or g.shape[0] != K:
        raise ValueError(f"emission_log_probs: expected shape ({T}, {K}) like the filter's, got {log_lik.shape}")
    steps = list(steps)
    if not steps or any(not 1 <= int(s) <= T for s in steps):
        raise ValueError(f"steps: expected time steps in 1..{T}, got {steps}")
    spacing = float(np.mean(np.diff(g)))
    states = None if true_states is None else _np("true_states", true_states).reshape(-1)
    fig, axes = plt.subplots(1, len(steps), figsize=(3.3 * len(steps), 3.4), dpi=100, squeeze=False)
    for ax, step in zip(axes[0], steps):
        i = int(step) - 1
        observed = bool(np.any(log_lik[i] != 0.0))
        ax.plot(g, predicted[i] / spacing, color="C0", lw=1.5, label="prediction p(s_t | Y_1:t-1)")
        if observed:
            lik = np.exp(log_lik[i] - log_lik[i].max())
            ax.plot(g, lik / (lik.sum() * spacing), color="C1", lw=1.2, ls="--", label="likelihood p(y_t | s_t), normalised")
        ax.fill_between(g, filtered[i] / spacing, color="C2", alpha=0.45, lw=0, label="posterior p(s_t | Y_1:t)")
        if states is not None:
            ax.axvline(states[i], color="k", lw=1, ls=":", label="true state s_t")
        ax.set(title=f"t = {step}" + ("" if observed else " (y_t missing)"), xlabel=state_label,
               ylabel=f"density per unit of {state_label.split(' (')[0]}")
        ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


# ------------------------------------------------------------------------------ Kalman filter
def _band(ax, t, mean, sd, color, label, alpha=0.25):
    ax.fill_between(t, mean - BAND * sd, mean + BAND * sd, color=color, alpha=alpha, lw=0, label=label)


def _draw_kalman(axes, times, result: KalmanFilterResult, states, observations, names, units, observed_component,
                 time_label, log_likelihood_panel: bool) -> None:
    m = _np("result.filtered_means", result.filtered_means, 2)
    S = _np("result.filtered_covs", result.filtered_covs, 3)
    u = _np("result.predicted_obs_means", result.predicted_obs_means, 2)
    V = _np("result.predicted_obs_covs", result.predicted_obs_covs, 3)
    sd = np.sqrt(np.clip(np.diagonal(S, axis1=1, axis2=2), 0.0, None))
    for k, ax in enumerate(axes[: len(names)]):
        if k == observed_component:
            _band(ax, times, u[:, 0], np.sqrt(V[:, 0, 0]), "C1", f"prediction ŷ_t ± {BAND:g}√V_t", alpha=0.18)
        _band(ax, times, m[:, k], sd[:, k], "C0", f"posterior m_t ± {BAND:g} sd")
        if states is not None:
            ax.plot(times, states[:, k], color="k", lw=1.1, label="true state")
        ax.plot(times, m[:, k], color="C0", lw=1.3, label="filtered mean m_t")
        if k == observed_component and observations is not None:
            ax.plot(times, observations[:, 0], ".", ms=4, color="C3", label="measurement y_t")
        ax.set(ylabel=f"{names[k]} ({units[k]})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best", ncol=2)
    if log_likelihood_panel:
        ax = axes[len(names)]
        step_ll = _np("result.step_log_likelihoods", result.step_log_likelihoods, 1)
        ax.plot(times, step_ll, color="C4", lw=1.0)
        ax.set(ylabel="log p(y_t | Y_1:t-1)",
               title=f"log p(Y_1:T) = Σ_t log p(y_t | Y_1:t-1) = {float(step_ll.sum()):.1f}")
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel(time_label)


def plot_kalman_filter(
    times,
    result: KalmanFilterResult,
    *,
    states=None,
    observations=None,
    state_names: Sequence[str] = ("position", "velocity"),
    units: Sequence[str] = ("m", "m/s"),
    observed_component: int | None = 0,
    time_label: str = "time (s)",
    title: str = "Kalman filter: posterior p(s_t | Y_1:t) and prediction p(y_t | Y_1:t-1)",
) -> Figure:
    """One panel per state component (m_t ± 2 sd, the true state) and one of log p(y_t | Y_{1:t-1}).

    ``result``: :func:`~mbrl_course.filters.kalman_filter` of one sequence; ``times: (T,)``;
    ``states: (T, dx)``; ``observations: (T, 1)``, drawn with the predictive band ŷ_t ± 2 √V_t on
    the panel of ``observed_component`` (the state component the scalar y_t measures).
    """
    _unbatched("result", result)
    t = _np("times", times, 1)
    T, dx = result.filtered_means.shape
    _expect_length("times", t, T, "one time per step")
    if len(state_names) != dx or len(units) != dx:
        raise ValueError(f"state_names, units: expected {dx} of each (one per state component), "
                         f"got {len(state_names)} and {len(units)}")
    x = None if states is None else _np("states", states, 2)
    y = None if observations is None else _np("observations", observations, 2)
    for name, value in (("states", x), ("observations", y)):
        if value is not None:
            _expect_length(name, value, T, "one row per time step")
    fig, axes = plt.subplots(dx + 1, 1, figsize=(9.5, 2.4 * (dx + 1)), dpi=100, sharex=True,
                             gridspec_kw={"height_ratios": [2] * dx + [1.2]})
    _draw_kalman(axes, t, result, x, y, list(state_names), list(units), observed_component, time_label, True)
    axes[0].set_title(title)
    fig.tight_layout()
    return fig


def plot_noise_settings(
    times,
    results: Mapping[str, KalmanFilterResult],
    *,
    states=None,
    observations=None,
    component: int = 0,
    window: tuple[float, float] | None = None,
    state_name: str = "position",
    unit: str = "m",
    time_label: str = "time (s)",
    title: str = "The same measurements filtered under different noise levels",
) -> Figure:
    """One column per setting: m_t ± 2 sd of one state component, the truth and the measurements.

    ``results`` maps a label (e.g. "q = 0.01, r = 0.1") to a :class:`KalmanFilterResult` of one
    sequence; the title of each column adds its log p(Y_{1:T}). ``window = (t_start, t_end)`` zooms in.
    """
    if not results:
        raise ValueError("results: expected at least one setting")
    t = _np("times", times, 1)
    x = None if states is None else _np("states", states, 2)
    y = None if observations is None else _np("observations", observations, 2)
    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.6), dpi=100, sharey=True, squeeze=False)
    keep = np.ones_like(t, dtype=bool) if window is None else (t >= window[0]) & (t <= window[1])
    for ax, (label, result) in zip(axes[0], results.items()):
        _unbatched(f"results[{label!r}]", result)
        _expect_length("times", t, result.filtered_means.shape[0], "one time per step")
        m = _np("filtered_means", result.filtered_means)[:, component]
        sd = np.sqrt(_np("filtered_covs", result.filtered_covs)[:, component, component])
        _band(ax, t[keep], m[keep], sd[keep], "C0", f"m_t ± {BAND:g} sd")
        if x is not None:
            ax.plot(t[keep], x[keep, component], color="k", lw=1.1, label="true state")
        ax.plot(t[keep], m[keep], color="C0", lw=1.3, label="filtered mean m_t")
        if y is not None:
            ax.plot(t[keep], y[keep, 0], ".", ms=4, color="C3", label="measurement y_t")
        ax.set(title=f"{label}\nlog p(Y_1:T) = {float(result.log_likelihood):.1f}", xlabel=time_label)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel(f"{state_name} ({unit})")
    axes[0, 0].legend(fontsize=7, loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _png(fig: Figure, dpi: int = 80) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return buffer.getvalue()


def noise_explorer(
    run_filter: Callable[[float, float], KalmanFilterResult],
    times,
    *,
    states=None,
    observations=None,
    q: float = 1.0,
    r: float = 0.1,
    log10_q_range: tuple[float, float] = (-3.0, 2.0),
    log10_r_range: tuple[float, float] = (-3.0, 1.0),
    interactive: bool | None = None,
    **plot_kwargs,
):
    """Sliders for the transition noise q and the observation noise r that redraw :func:`plot_kalman_filter`.

    ``run_filter(q, r)`` returns the :class:`KalmanFilterResult` of the data under F = q·F_1, D = r·D_1
    (or whatever q and r mean in the model at hand). ``interactive``: True gives the widget (needs
    ipywidgets and a Jupyter frontend), False the static figure at (q, r), None the widget where
    :func:`widgets_available` and the static figure elsewhere. Returns an ``ipywidgets.VBox`` or a Figure.
    """
    if interactive is None:
        interactive = widgets_available()

    def draw(q_value: float, r_value: float) -> Figure:
        title = f"Kalman filter with q = {q_value:.3g}, r = {r_value:.3g}"
        return plot_kalman_filter(times, run_filter(q_value, r_value), states=states, observations=observations,
                                  title=title, **plot_kwargs)

    if not interactive:
        return draw(q, r)
    try:
        import ipywidgets as widgets
    except ImportError as err:
        raise ImportError("noise_explorer(interactive=True) needs ipywidgets: pip install ipywidgets "
                          "(or pass interactive=False for the static figure)") from err
    style = {"description_width": "170px"}
    layout = widgets.Layout(width="480px")
    q_slider = widgets.FloatLogSlider(value=q, base=10, min=log10_q_range[0], max=log10_q_range[1], step=0.05,
                                      description="transition noise q", style=style, layout=layout,
                                      continuous_update=False, readout_format=".3g")
    r_slider = widgets.FloatLogSlider(value=r, base=10, min=log10_r_range[0], max=log10_r_range[1], step=0.05,
                                      description="observation noise r", style=style, layout=layout,
                                      continuous_update=False, readout_format=".3g")
    image = widgets.Image(value=_png(draw(q, r)), format="png", layout=widgets.Layout(max_width="100%"))

    def redraw(_change) -> None:
        image.value = _png(draw(q_slider.value, r_slider.value))

    q_slider.observe(redraw, names="value")
    r_slider.observe(redraw, names="value")
    return widgets.VBox([q_slider, r_slider, image])


# ------------------------------------------------------------------------------ learning θ
def plot_likelihood_surface(
    q_values,
    r_values,
    log_likelihood,
    *,
    path=None,
    truth: tuple[float, float] | None = None,
    trace=None,
    q_label: str = "transition noise q",
    r_label: str = "observation noise r",
    title: str = "Marginal likelihood log p(Y_1:T | q, r)",
    depths: Sequence[float] = (1, 3, 10, 30, 100, 300, 1000),
) -> Figure:
    """log p(Y_{1:T} | θ) over a log grid of two parameters, with a gradient-ascent path and its trace.

    Args:
        q_values: ``(Nq,)`` increasing positive values of the first parameter (x axis, log scale).
        r_values: ``(Nr,)`` of the second (y axis, log scale).
        log_likelihood: ``(Nq, Nr)``, entry [i, j] at (q_values[i], r_values[j]).
        path: ``(steps, 2)`` the (q, r) visited by the optimiser, drawn from start to end.
        truth: the (q, r) that generated the data.
        trace: ``(steps,)`` log p(Y | θ) along the path, drawn in a second panel.
        depths: contour levels, in nats below the grid's maximum.
    """
    q = _np("q_values", q_values, 1)
    r = _np("r_values", r_values, 1)
    ll = _np("log_likelihood", log_likelihood, 2)
    if ll.shape != (q.shape[0], r.shape[0]):
        raise ValueError(f"log_likelihood: expected shape ({q.shape[0]}, {r.shape[0]}) = (len(q_values), "
                         f"len(r_values)), got {ll.shape}")
    if np.any(q <= 0) or np.any(r <= 0):
        raise ValueError("q_values, r_values: expected positive values (the axes are logarithmic)")
    best = np.unravel_index(np.nanargmax(ll), ll.shape)
    top = float(ll[best])
    panels = 2 if trace is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(6.6 + 4.2 * (panels - 1), 5.0), dpi=100, squeeze=False,
                             gridspec_kw={"width_ratios": [1.5, 1][:panels]})
    ax = axes[0, 0]
    levels = sorted(top - np.asarray(depths, dtype=float)) + [top]
    filled = ax.contourf(q, r, ll.T, levels=levels, cmap="viridis", extend="min")
    ax.contour(q, r, ll.T, levels=levels[:-1], colors="white", linewidths=0.4, alpha=0.6)
    bar = fig.colorbar(filled, ax=ax)
    bar.set_label("log p(Y_1:T | q, r)  (levels: 1, 3, 10, ... nats below the best)")
    ax.set(xscale="log", yscale="log", xlabel=q_label, ylabel=r_label, title=title)
    ax.plot(q[best[0]], r[best[1]], marker="*", ms=15, color="gold", mec="k", ls="none", label="best on the grid")
    if truth is not None:
        ax.plot(*truth, marker="X", ms=10, color="C3", mec="w", ls="none", label="true (q, r)")
    if path is not None:
        p = _np("path", path, 2)
        if p.shape[1] != 2:
            raise ValueError(f"path: expected shape (steps, 2), got {p.shape}")
        ax.plot(p[:, 0], p[:, 1], "-", color="white", lw=1.6, label="gradient ascent (Adam)")
        ax.plot(p[:, 0], p[:, 1], ".", color="white", ms=3)
        ax.plot(p[0, 0], p[0, 1], "o", color="white", mec="k", ms=8, label="start")
    ax.legend(fontsize=8, loc="lower left", framealpha=0.8)
    if trace is not None:
        tr = _np("trace", trace, 1)
        ax2 = axes[0, 1]
        ax2.plot(np.arange(tr.shape[0]), tr, color="C0")
        ax2.axhline(top, color="gold", ls="--", lw=1.2, label="best on the grid")
        ax2.set(xlabel="optimiser step", ylabel="log p(Y_1:T | θ)", title="Climbing the marginal likelihood",
                ylim=(min(top - 200.0, float(np.nanmin(tr[len(tr) // 10:])) - 5.0), top + 0.05 * abs(top) + 5.0))
        ax2.grid(alpha=0.3)
        ax2.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def plot_k_step_prediction(
    times,
    observations,
    filtered: KalmanFilterResult,
    prediction: PredictionResult,
    future_times,
    *,
    future_observations=None,
    states=None,
    future_states=None,
    component: int = 0,
    state_name: str = "position",
    unit: str = "m",
    time_label: str = "time (s)",
    title: str = "k-step prediction p(y_T+k | Y_1:T) after filtering Y_1:T",
) -> Figure:
    """Filtering up to T, then the predictive p(y_{T+k} | Y_{1:T}) = N(u_{T+k}, V_{T+k}) for k = 1..K.

    ``times: (T,)``, ``observations: (T, 1)``, ``filtered``: the filter's result on them;
    ``prediction``: :func:`~mbrl_course.filters.predict` from its last step, ``future_times: (K,)``;
    ``future_observations: (K, 1)`` (what did happen) and ``states``/``future_states``
    (``(T, dx)``/``(K, dx)``) are drawn when given.
    """
    _unbatched("filtered", filtered)
    t, tf = _np("times", times, 1), _np("future_times", future_times, 1)
    y = _np("observations", observations, 2)
    T = filtered.filtered_means.shape[0]
    _expect_length("times", t, T, "one time per filtered step")
    _expect_length("observations", y, T, "one row per filtered step")
    if not isinstance(prediction, PredictionResult):
        raise TypeError(f"prediction: expected a PredictionResult, got {type(prediction).__name__}")
    u = _np("prediction.obs_means", prediction.obs_means, 2)
    V = _np("prediction.obs_covs", prediction.obs_covs, 3)
    _expect_length("future_times", tf, u.shape[0], "one time per predicted step")
    m = _np("filtered.filtered_means", filtered.filtered_means)[:, component]
    sd = np.sqrt(_np("filtered.filtered_covs", filtered.filtered_covs)[:, component, component])
    fig, ax = plt.subplots(figsize=(9.5, 3.8), dpi=100)
    _band(ax, t, m, sd, "C0", f"filtering m_t ± {BAND:g} sd")
    ax.plot(t, m, color="C0", lw=1.3)
    # join the two bands at T so the prediction visibly starts from the last filtering distribution
    u_all = np.concatenate([[m[-1]], u[:, 0]])
    sd_all = np.concatenate([[sd[-1]], np.sqrt(V[:, 0, 0])])
    t_all = np.concatenate([[t[-1]], tf])
    _band(ax, t_all, u_all, sd_all, "C1", f"prediction ŷ_T+k ± {BAND:g}√V_T+k")
    ax.plot(t_all, u_all, color="C1", lw=1.3, ls="--")
    if states is not None:
        x = _np("states", states, 2)
        ax.plot(t, x[:, component], color="k", lw=1.0, label="true state")
        if future_states is not None:
            ax.plot(tf, _np("future_states", future_states, 2)[:, component], color="k", lw=1.0)
    ax.plot(t, y[:, 0], ".", ms=4, color="C3", label="measurements y_1:T (filtered)")
    if future_observations is not None:
        yf = _np("future_observations", future_observations, 2)
        ax.plot(tf, yf[:, 0], "o", ms=4, mfc="none", color="C3", label="later measurements (not seen)")
    ax.axvline(t[-1], color="0.4", ls=":", lw=1)
    ax.text(t[-1], 0.97, "  T: last measurement", transform=ax.get_xaxis_transform(), va="top", fontsize=8, color="0.3")
    ax.set(xlabel=time_label, ylabel=f"{state_name} ({unit})", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def plot_bayesian_kalman_filter(
    times,
    observations,
    results: Mapping[str, KalmanFilterResult],
    parameters: Mapping[str, object],
    *,
    parameter_label: str = "rotation of E_t per step (rad)",
    obs_label: str = "observation y_t",
    time_label: str = "time step t",
    title: str = "Fixed E, F versus ODE-driven E_t, F_t",
) -> Figure:
    """Compare models on one sequence: their one-step predictions, a summary of E_t, their log-likelihoods.

    Args:
        times: ``(T,)``; observations: ``(T, 1)``.
        results: label -> :class:`KalmanFilterResult` of the sequence under that model (one-step
            predictions ŷ_t ± 2 √V_t are drawn, and Σ_{τ<=t} log p(y_τ | Y_{1:τ-1})).
        parameters: label -> ``(T,)`` a scalar summary of E_t per step (e.g. its rotation angle), for
            the models in ``results`` and possibly the truth.
    """
    t = _np("times", times, 1)
    y = _np("observations", observations, 2)
    _expect_length("observations", y, t.shape[0], "one row per time step")
    if not results:
        raise ValueError("results: expected at least one model")
    fig, axes = plt.subplots(3, 1, figsize=(9.5, 8.2), dpi=100, sharex=True, gridspec_kw={"height_ratios": [2, 1.2, 1.2]})
    axes[0].plot(t, y[:, 0], ".", ms=4, color="k", label="y_t")
    for k, (label, result) in enumerate(results.items()):
        _unbatched(f"results[{label!r}]", result)
        _expect_length(f"results[{label!r}]", _np("u", result.predicted_obs_means), t.shape[0], "one step per time")
        u = _np("u", result.predicted_obs_means)[:, 0]
        sd = np.sqrt(_np("V", result.predicted_obs_covs)[:, 0, 0])
        color = f"C{k}"
        _band(axes[0], t, u, sd, color, f"{label}: ŷ_t ± {BAND:g}√V_t", alpha=0.2)
        axes[0].plot(t, u, color=color, lw=1.0)
        cumulative = np.cumsum(_np("step_log_likelihoods", result.step_log_likelihoods, 1))
        axes[2].plot(t, cumulative, color=color, label=f"{label}: log p(Y_1:T) = {cumulative[-1]:.1f}")
    axes[0].set(ylabel=obs_label, title=title)
    axes[0].legend(fontsize=8, loc="upper left")
    styles = ["-", "--", ":", "-."]
    for k, (label, values) in enumerate(parameters.items()):
        v = _np(f"parameters[{label!r}]", values, 1)
        _expect_length(f"parameters[{label!r}]", v, t.shape[0], "one value per time step")
        axes[1].plot(t, v, ls=styles[k % len(styles)], lw=1.6, label=label)
    axes[1].set(ylabel=parameter_label)
    axes[1].legend(fontsize=8, loc="upper left")
    axes[2].set(xlabel=time_label, ylabel="Σ_τ≤t log p(y_τ | Y_1:τ-1)")
    axes[2].legend(fontsize=8, loc="lower left")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


__all__ = [
    "noise_explorer",
    "plot_bayesian_kalman_filter",
    "plot_filter_steps",
    "plot_grid_filter",
    "plot_k_step_prediction",
    "plot_kalman_filter",
    "plot_likelihood_surface",
    "plot_noise_settings",
    "widgets_available",
]
