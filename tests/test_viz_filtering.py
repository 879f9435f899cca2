"""The filtering lecture's figures: they draw the numbers they are given (checked against the
filters' results, recomputed independently here), label everything, refuse bad input, and the
noise sliders redraw on a change and fall back to a static figure without ipywidgets."""

from __future__ import annotations

import math
import sys

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.image import AxesImage  # noqa: E402

from mbrl_course.filters import GridSSM, kalman_filter, predict  # noqa: E402
from mbrl_course.viz import filtering as vf  # noqa: E402

F64 = torch.float64
DT = 0.1
E = torch.tensor([[1.0, DT], [0.0, 1.0]], dtype=F64)
F_UNIT = torch.tensor([[DT**3 / 3, DT**2 / 2], [DT**2 / 2, DT]], dtype=F64)
C = torch.tensor([[1.0, 0.0]], dtype=F64)
M0, S0 = torch.zeros(2, dtype=F64), torch.eye(2, dtype=F64)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def tracking():
    """A constant-velocity track: states (T, 2), observations (T, 1), times (T,), run(q, r) -> filter."""
    g = torch.Generator().manual_seed(0)
    T = 25
    states = torch.cumsum(torch.randn(T, 2, generator=g, dtype=F64) * 0.1, 0)
    y = states[:, :1] + 0.3 * torch.randn(T, 1, generator=g, dtype=F64)

    def run(q: float, r: float):
        return kalman_filter(y, M0, S0, E, q * F_UNIT, C, r * torch.eye(1, dtype=F64))

    return states, y, DT * torch.arange(1, T + 1, dtype=F64), run


@pytest.fixture(scope="module")
def corridor():
    grid = torch.linspace(0.0, 10.0, 60, dtype=F64).unsqueeze(-1)

    def h(s):
        return torch.exp(-0.5 * ((s - 4.0) / 0.5) ** 2)

    model = GridSSM.from_gaussian(grid, torch.tensor([5.0], dtype=F64), torch.tensor([[4.0]], dtype=F64),
                                  lambda s: s + 0.3, torch.tensor([[0.04]], dtype=F64), h,
                                  torch.tensor([[0.04]], dtype=F64))
    index, y = model.sample(12, generator=torch.Generator().manual_seed(1))
    y[9:] = float("nan")
    return model, model.grid[index, 0], y, model.filter(y), h


def assert_labelled(fig) -> None:
    """A title somewhere, and an x and y label on every axes that shows data (colour bars excepted)."""
    titles = [ax.get_title() for ax in fig.axes] + [fig._suptitle.get_text() if fig._suptitle else ""]
    assert any(t.strip() for t in titles), "the figure has no title"
    for ax in fig.axes:
        if not ax.axison or hasattr(ax, "_colorbar") or ax.get_label() == "<colorbar>":
            continue
        shows_x = ax.get_xlabel() or any(other.get_xlabel() for other in ax.get_shared_x_axes().get_siblings(ax))
        assert shows_x, f"axes {ax.get_title()!r} has no x label"
        shows_y = ax.get_ylabel() or any(other.get_ylabel() for other in ax.get_shared_y_axes().get_siblings(ax))
        assert shows_y, f"axes {ax.get_title()!r} has no y label"


def band(ax, index: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, lower, upper) of the index-th filled band (fill_between) of an axes."""
    polys = [c for c in ax.collections if isinstance(c, PolyCollection)]
    vertices = polys[index].get_paths()[0].vertices
    xs = np.unique(vertices[:, 0])
    lower = np.array([vertices[vertices[:, 0] == x, 1].min() for x in xs])
    upper = np.array([vertices[vertices[:, 0] == x, 1].max() for x in xs])
    return xs, lower, upper


# ------------------------------------------------------------------------------ the grid filter
def test_grid_filter_heat_map_is_the_posterior_density_with_the_true_state(corridor):
    model, states, y, result, h = corridor
    fig = vf.plot_grid_filter(model.grid, result, true_states=states, observations=y, emission_fn=h,
                              observed_steps=9, state_label="position s (m)")
    assert_labelled(fig)
    image = next(a for ax in fig.axes for a in ax.get_children() if isinstance(a, AxesImage))
    spacing = float(model.grid[1, 0] - model.grid[0, 0])
    np.testing.assert_allclose(np.asarray(image.get_array()), result.filtered_probs.numpy().T / spacing, rtol=1e-12)
    # the density integrates to one over the grid at every step
    np.testing.assert_allclose(np.asarray(image.get_array()).sum(0) * spacing, 1.0, rtol=1e-9)
    line = next(ln for ax in fig.axes for ln in ax.get_lines() if ln.get_label() == "true state s_t")
    np.testing.assert_allclose(line.get_ydata(), states.numpy())
    emission = next(ax for ax in fig.axes if ax.get_xlabel() == "h(s)").get_lines()[0]
    np.testing.assert_allclose(emission.get_xdata(), h(model.grid).numpy()[:, 0], rtol=1e-12)


def test_filter_steps_draw_prediction_likelihood_and_posterior(corridor):
    model, states, y, result, _ = corridor
    log_lik = model.emission_log_probs(y)
    fig = vf.plot_filter_steps(model.grid, result, log_lik, steps=[1, 5, 12], true_states=states)
    assert_labelled(fig)
    spacing = float(model.grid[1, 0] - model.grid[0, 0])
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["t = 1", "t = 5", "t = 12 (y_t missing)"]
    for ax, t in zip(panels, (1, 5, 12)):
        prediction = ax.get_lines()[0]
        np.testing.assert_allclose(prediction.get_ydata(), result.predicted_probs[t - 1].numpy() / spacing)
        _, low, up = band(ax)
        np.testing.assert_allclose(up, result.filtered_probs[t - 1].numpy() / spacing, atol=1e-12)
        dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
        if t == 12:
            assert dashed == []  # no reading, no likelihood
        else:
            # normalised likelihood ∝ exp(log p(y_t | s_t)): integrates to one, same shape
            lik = dashed[0].get_ydata()
            assert lik.sum() * spacing == pytest.approx(1.0)
            want = np.exp(log_lik[t - 1].numpy())
            np.testing.assert_allclose(lik, want / (want.sum() * spacing), rtol=1e-9)
    with pytest.raises(ValueError, match="steps"):
        vf.plot_filter_steps(model.grid, result, log_lik, steps=[0])


def test_grid_filter_refuses_bad_input(corridor):
    model, _, _, result, _ = corridor
    with pytest.raises(ValueError, match="states"):
        vf.plot_grid_filter(model.grid[:-1], result)
    with pytest.raises(TypeError, match="BayesianFilterResult"):
        vf.plot_grid_filter(model.grid, "not a result")
    with pytest.raises(ValueError, match="true_states"):
        vf.plot_grid_filter(model.grid, result, true_states=torch.zeros(3))


# ------------------------------------------------------------------------------ Kalman filter
def test_kalman_figure_bands_are_two_standard_deviations(tracking):
    states, y, times, run = tracking
    result = run(0.5, 0.09)
    fig = vf.plot_kalman_filter(times, result, states=states, observations=y)
    assert_labelled(fig)
    position, velocity, loglik = fig.axes
    assert position.get_ylabel() == "position (m)" and velocity.get_ylabel() == "velocity (m/s)"
    # on the observed component: first the predictive band ŷ_t ± 2√V_t, then the posterior m_t ± 2 sd
    _, low, up = band(position, 0)
    u, V = result.predicted_obs_means[:, 0].numpy(), result.predicted_obs_covs[:, 0, 0].numpy()
    np.testing.assert_allclose(up, u + 2 * np.sqrt(V), rtol=1e-10)
    np.testing.assert_allclose(low, u - 2 * np.sqrt(V), rtol=1e-10, atol=1e-12)
    for k, ax in ((0, position), (1, velocity)):
        _, low, up = band(ax, 1 if k == 0 else 0)
        m, sd = result.filtered_means[:, k].numpy(), result.filtered_covs[:, k, k].sqrt().numpy()
        np.testing.assert_allclose(up, m + 2 * sd, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(low, m - 2 * sd, rtol=1e-10, atol=1e-12)
    # the log-likelihood panel: per-step values and their sum in the title
    np.testing.assert_allclose(loglik.get_lines()[0].get_ydata(), result.step_log_likelihoods.numpy())
    assert f"{float(result.log_likelihood):.1f}" in loglik.get_title()


def test_kalman_figure_refuses_batches_and_mismatched_lengths(tracking):
    states, y, times, run = tracking
    batched = kalman_filter(y.expand(2, -1, -1), M0, S0, E, F_UNIT, C, torch.eye(1, dtype=F64))
    with pytest.raises(ValueError, match="index the batch"):
        vf.plot_kalman_filter(times, batched)
    with pytest.raises(ValueError, match="times"):
        vf.plot_kalman_filter(times[:-1], run(1.0, 0.1))
    with pytest.raises(ValueError, match="state_names"):
        vf.plot_kalman_filter(times, run(1.0, 0.1), state_names=("x",), units=("m",))


def test_noise_settings_show_each_setting_and_its_log_likelihood(tracking):
    states, y, times, run = tracking
    results = {"small q": run(0.01, 0.09), "right": run(0.5, 0.09)}
    fig = vf.plot_noise_settings(times, results, states=states, observations=y, window=(0.5, 1.5))
    assert_labelled(fig)
    for ax, (label, result) in zip(fig.axes, results.items()):
        assert label in ax.get_title() and f"{float(result.log_likelihood):.1f}" in ax.get_title()
        xs, _, _ = band(ax)
        assert xs.min() >= 0.5 - 1e-9 and xs.max() <= 1.5 + 1e-9  # the window
    with pytest.raises(ValueError, match="at least one"):
        vf.plot_noise_settings(times, {})


def test_noise_explorer_static_figure_and_widget_redraw(tracking, monkeypatch):
    states, y, times, run = tracking
    calls = []

    def spy(q, r):
        calls.append((q, r))
        return run(q, r)

    fig = vf.noise_explorer(spy, times, states=states, observations=y, q=0.5, r=0.09, interactive=False)
    assert isinstance(fig, matplotlib.figure.Figure) and calls == [(0.5, 0.09)]
    assert "q = 0.5" in fig.axes[0].get_title()
    assert vf.widgets_available() is False  # pytest is no Jupyter kernel: the default is the static figure
    assert isinstance(vf.noise_explorer(spy, times, interactive=None), matplotlib.figure.Figure)

    pytest.importorskip("ipywidgets")
    calls.clear()
    box = vf.noise_explorer(spy, times, states=states, observations=y, q=0.5, r=0.09, interactive=True)
    q_slider, r_slider, image = box.children
    first = image.value
    assert first[:8] == b"\x89PNG\r\n\x1a\n" and calls == [(0.5, 0.09)]
    q_slider.value = 10.0
    assert calls[-1] == (pytest.approx(10.0), 0.09) and image.value != first
    r_slider.value = 0.001
    assert calls[-1] == (pytest.approx(10.0), pytest.approx(0.001))

    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # ipywidgets missing
    assert vf.widgets_available() is False
    with pytest.raises(ImportError, match="interactive=False"):
        vf.noise_explorer(spy, times, interactive=True)


# ------------------------------------------------------------------------------ learning and prediction
def test_likelihood_surface_marks_the_grid_maximum_and_draws_the_path(tracking):
    _, y, _, _ = tracking
    q = torch.logspace(-2, 1, 7, dtype=F64)
    r = torch.logspace(-2, 0, 5, dtype=F64)
    Q, R = torch.meshgrid(q, r, indexing="ij")
    surface = kalman_filter(y, M0, S0, E, (Q[..., None, None] * F_UNIT)[..., None, :, :], C,
                            R[..., None, None, None] * torch.ones(1, 1, dtype=F64)).log_likelihood
    # each entry is the filter of that (q, r) alone
    assert float(surface[3, 2]) == pytest.approx(float(kalman_filter(
        y, M0, S0, E, q[3] * F_UNIT, C, r[2] * torch.eye(1, dtype=F64)).log_likelihood))
    path = torch.tensor([[5.0, 0.5], [2.0, 0.3], [1.0, 0.1]])
    fig = vf.plot_likelihood_surface(q, r, surface, path=path, truth=(0.5, 0.09), trace=torch.tensor([-50.0, -30, -20]))
    assert_labelled(fig)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    star = next(ln for ln in ax.get_lines() if ln.get_label() == "best on the grid")
    i, j = np.unravel_index(int(surface.argmax()), surface.shape)
    assert (star.get_xdata()[0], star.get_ydata()[0]) == (pytest.approx(float(q[i])), pytest.approx(float(r[j])))
    ascent = next(ln for ln in ax.get_lines() if ln.get_label() == "gradient ascent (Adam)")
    np.testing.assert_allclose(np.column_stack([ascent.get_xdata(), ascent.get_ydata()]), path.numpy())
    with pytest.raises(ValueError, match="expected shape"):
        vf.plot_likelihood_surface(q, r, surface.T)
    with pytest.raises(ValueError, match="positive"):
        vf.plot_likelihood_surface(q - 1.0, r, surface)


def test_k_step_prediction_band_starts_at_the_filter_and_widens(tracking):
    states, y, times, run = tracking
    past = run(0.5, 0.09)
    K = 8
    ahead = predict(past.filtered_means[-1], past.filtered_covs[-1], E, 0.5 * F_UNIT, C,
                    0.09 * torch.eye(1, dtype=F64), num_steps=K)
    future = times[-1] + DT * torch.arange(1, K + 1, dtype=F64)
    fig = vf.plot_k_step_prediction(times, y, past, ahead, future, future_observations=torch.zeros(K, 1))
    assert_labelled(fig)
    xs, low, up = band(fig.axes[0], 1)
    assert xs[0] == pytest.approx(float(times[-1]))  # joined to the last filtering distribution
    half_width = (up - low) / 2
    assert np.all(np.diff(half_width) > 0)  # the uncertainty grows with the horizon
    # against an independent k-step recursion: Σ_{T+k} = F + E Σ Eᵀ, V = D + C Σ Cᵀ
    Sigma = past.filtered_covs[-1]
    for k in range(K):
        Sigma = 0.5 * F_UNIT + E @ Sigma @ E.T
        assert half_width[k + 1] == pytest.approx(2 * math.sqrt(float(Sigma[0, 0]) + 0.09), rel=1e-9)


def test_bayesian_kalman_filter_figure_accumulates_each_models_log_likelihood(tracking):
    _, y, times, run = tracking
    models = {"fixed": run(0.5, 0.09), "other": run(2.0, 0.5)}
    angles = {"true": torch.linspace(0, 1, len(times)), "fixed": torch.full((len(times),), 0.3)}
    fig = vf.plot_bayesian_kalman_filter(times, y, models, angles)
    assert_labelled(fig)
    cumulative = fig.axes[2].get_lines()
    for line, result in zip(cumulative, models.values()):
        assert line.get_ydata()[-1] == pytest.approx(float(result.log_likelihood))
    np.testing.assert_allclose(fig.axes[1].get_lines()[0].get_ydata(), angles["true"].numpy())
    with pytest.raises(ValueError, match="one value per time step"):
        vf.plot_bayesian_kalman_filter(times, y, models, {"short": torch.zeros(3)})
