"""The variational-SSM lecture's figures (mbrl_course.viz.ssm): they draw the numbers they are given
(recomputed independently here: sample moments, quantiles, the Kalman filter's prediction, the mean-field
floor by brute-force optimisation), label everything, refuse bad input, and the prediction sliders redraw
from precomputed fans and fall back to a static figure without ipywidgets."""

from __future__ import annotations

import math
import sys

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import PathCollection, PolyCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from mbrl_course.filters import LinearGaussianSSM, kalman_filter, predict, rts_smoother  # noqa: E402
from mbrl_course.ssm import ExactLinearGaussianPosterior, GenerativeModel, make_posterior  # noqa: E402
from mbrl_course.viz import ssm as vs  # noqa: E402

F64 = torch.float64


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _ssm() -> LinearGaussianSSM:
    w = 2 * math.pi / 16
    E = 0.95 * torch.tensor([[math.cos(w), -math.sin(w)], [math.sin(w), math.cos(w)]], dtype=F64)
    return LinearGaussianSSM(torch.tensor([1.0, 0.0], dtype=F64), 0.25 * torch.eye(2, dtype=F64), E,
                             torch.tensor([[0.03, 0.01], [0.01, 0.02]], dtype=F64),
                             torch.tensor([[1.0, 0.3]], dtype=F64), torch.tensor([[0.1]], dtype=F64))


@pytest.fixture(scope="module")
def oscillator():
    ssm = _ssm()
    model = GenerativeModel.from_linear_gaussian(ssm)
    with torch.no_grad():
        states, Y = model.sample(2, 12, generator=torch.Generator().manual_seed(0))
    return ssm, model, states, Y


def assert_labelled(fig) -> None:
    """A title somewhere, and an x and y label on every axes that shows data."""
    titles = [ax.get_title() for ax in fig.axes] + [fig._suptitle.get_text() if fig._suptitle else ""]
    assert any(t.strip() for t in titles), "the figure has no title"
    for ax in fig.axes:
        if not ax.axison:
            continue
        shows_x = ax.get_xlabel() or any(other.get_xlabel() for other in ax.get_shared_x_axes().get_siblings(ax))
        assert shows_x, f"axes {ax.get_title()!r} has no x label"
        shows_y = ax.get_ylabel() or any(other.get_ylabel() for other in ax.get_shared_y_axes().get_siblings(ax))
        assert shows_y, f"axes {ax.get_title()!r} has no y label"


def bands(ax) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(x, lower, upper) of every filled band (fill_between) of an axes, in drawing order."""
    out = []
    for poly in (c for c in ax.collections if isinstance(c, PolyCollection)):
        vertices = poly.get_paths()[0].vertices
        xs = np.unique(vertices[:, 0])
        lower = np.array([vertices[vertices[:, 0] == x, 1].min() for x in xs])
        upper = np.array([vertices[vertices[:, 0] == x, 1].max() for x in xs])
        out.append((xs, lower, upper))
    return out


# ------------------------------------------------------------------------------ posterior marginals
def test_posterior_families_draw_the_smoother_and_the_sample_moments(oscillator):
    ssm, _, states, Y = oscillator
    smoothed = rts_smoother(ssm, Y[0])
    g = torch.Generator().manual_seed(1)
    paths = {"A": torch.randn(40, 13, 2, generator=g, dtype=F64), "B": 2 + torch.randn(30, 13, 2, generator=g, dtype=F64)}
    fig = vs.plot_posterior_families(smoothed, paths, states=states[0], num_paths=3, state_names=("x", "v"))
    assert_labelled(fig)
    axes = np.array(fig.axes).reshape(2, 2)  # rows: state components, columns: families
    assert [ax.get_title() for ax in axes[0]] == ["A", "B"] and [ax.get_ylabel() for ax in axes[:, 0]] == ["x", "v"]
    m = torch.cat([smoothed.smoothed_initial_mean[None], smoothed.smoothed_means]).numpy()
    P = torch.cat([smoothed.smoothed_initial_cov[None], smoothed.smoothed_covs])
    sd = torch.diagonal(P, dim1=-2, dim2=-1).sqrt().numpy()
    for j, s in enumerate(paths.values()):
        for i in range(2):
            ax = axes[i, j]
            drawn = bands(ax)
            assert len(drawn) == 2  # the exact band and the family's
            xs, low, up = drawn[0]
            np.testing.assert_array_equal(xs, np.arange(13))
            np.testing.assert_allclose(low, m[:, i] - 2 * sd[:, i], atol=1e-12)
            np.testing.assert_allclose(up, m[:, i] + 2 * sd[:, i], atol=1e-12)
            _, low, up = drawn[1]
            mean, std = s[..., i].mean(0).numpy(), s[..., i].std(0, unbiased=False).numpy()
            np.testing.assert_allclose(low, mean - 2 * std, atol=1e-12)
            np.testing.assert_allclose(up, mean + 2 * std, atol=1e-12)
            lines = ax.get_lines()
            assert len(lines) == 1 + 3 + 1  # q's mean, three sample paths, the true state
            np.testing.assert_allclose(lines[0].get_ydata(), mean)
            for n in range(3):
                np.testing.assert_allclose(lines[1 + n].get_ydata(), s[n, :, i].numpy())
            np.testing.assert_allclose(lines[-1].get_ydata(), states[0, :, i].numpy())


def test_posterior_families_refuse_bad_input(oscillator):
    ssm, _, _, Y = oscillator
    smoothed = rts_smoother(ssm, Y[0])
    with pytest.raises(ValueError, match="index the batch"):
        vs.plot_posterior_families(rts_smoother(ssm, Y), {"A": torch.zeros(2, 13, 2)})
    with pytest.raises(ValueError, match=r"samples\['A'\]: expected shape \(N, 13, 2\)"):
        vs.plot_posterior_families(smoothed, {"A": torch.zeros(2, 12, 2)})
    with pytest.raises(ValueError, match="at least one family"):
        vs.plot_posterior_families(smoothed, {})
    with pytest.raises(TypeError, match="SmootherResult"):
        vs.plot_posterior_families(kalman_filter(ssm, Y[0]), {"A": torch.zeros(2, 13, 2)})


# ------------------------------------------------------------------------------ the ELBO gap
def test_mean_field_floor_is_the_optimum_of_a_factorised_gaussian():
    """Against brute force: the KL of the best diagonal Gaussian to the exact posterior, found by Adam on the
    variances of N(m, diag v) against the joint posterior covariance from the dense joint of (s, Y)."""
    ssm, T = _ssm(), 4
    floor = vs.mean_field_gap_floor(ssm, T)
    # the joint prior of s_{0:T} by brute force: s = A ε, stacked ancestral sampling as a linear map
    dx = ssm.state_dim
    n = (T + 1) * dx
    A = torch.zeros(n, n, dtype=F64)
    A[:dx, :dx] = torch.linalg.cholesky(ssm.initial_cov)
    LF = torch.linalg.cholesky(ssm.transition_cov)
    for t in range(1, T + 1):
        A[t * dx:(t + 1) * dx] = ssm.transition_matrix @ A[(t - 1) * dx:t * dx]
        A[t * dx:(t + 1) * dx, t * dx:(t + 1) * dx] = LF
    prior_cov = A @ A.T
    C = torch.block_diag(*[ssm.emission_matrix] * T)
    H = torch.cat([torch.zeros(T, dx, dtype=F64), C], 1)  # y_t sees s_t, t = 1..T
    R = torch.block_diag(*[ssm.emission_cov] * T)
    post_cov = prior_cov - prior_cov @ H.T @ torch.linalg.solve(H @ prior_cov @ H.T + R, H @ prior_cov)
    post = torch.distributions.MultivariateNormal(torch.zeros(n, dtype=F64), post_cov)
    log_v = torch.zeros(n, dtype=F64, requires_grad=True)
    opt = torch.optim.Adam([log_v], lr=0.05)
    for _ in range(2000):
        q = torch.distributions.MultivariateNormal(torch.zeros(n, dtype=F64), torch.diag(log_v.exp()))
        kl = torch.distributions.kl_divergence(q, post)
        opt.zero_grad()
        kl.backward()
        opt.step()
    assert floor == pytest.approx(float(kl.detach()), rel=1e-4)
    assert floor > 0.1  # the oscillator's states are strongly correlated: a real floor
    # the floor grows about linearly with T (a per-step cost of the factorisation)
    assert vs.mean_field_gap_floor(ssm, 40) / 40 == pytest.approx(vs.mean_field_gap_floor(ssm, 80) / 80, rel=0.05)
    with pytest.raises(ValueError, match="num_steps"):
        vs.mean_field_gap_floor(ssm, 0)
    with pytest.raises(TypeError, match="LinearGaussianSSM"):
        vs.mean_field_gap_floor("ssm", 3)


def test_elbo_gaps_draw_the_training_gap_and_every_sample_path():
    histories = {"A": [-3.0, -2.0, -1.5, -1.2], "B": [-2.5, -1.1, -1.05, -1.01]}
    sample_gaps = {"exact": torch.zeros(6), "A": torch.tensor([0.1, 0.3, 0.2]), "B": torch.tensor([0.01, 0.02])}
    fig = vs.plot_elbo_gaps(histories, -1.0, sample_gaps, floor=0.15, smooth=2)
    assert_labelled(fig)
    left, right = fig.axes
    assert left.get_yscale() == "log"
    raw = [ln for ln in left.get_lines() if ln.get_linewidth() < 1.0]
    smooth = [ln for ln in left.get_lines() if ln.get_linewidth() > 1.5]
    assert len(raw) == len(smooth) == 2
    np.testing.assert_allclose(raw[0].get_ydata(), [2.0, 1.0, 0.5, 0.2])  # log p/T − L̃ per step
    # moving average over 2: one value each side, shrinking symmetrically at the start, trailing at the end
    np.testing.assert_allclose(smooth[0].get_ydata(), [2.0, 3.5 / 3, 1.7 / 3, 0.35])
    np.testing.assert_allclose(raw[1].get_ydata(), [1.5, 0.1, 0.05, 0.01])
    assert "0.350" in smooth[0].get_label()  # the last `smooth` steps' mean gap in the legend
    floors = [ln for ax in (left, right) for ln in ax.get_lines() if ln.get_linestyle() == ":"]
    assert len(floors) == 2 and all(ln.get_ydata()[0] == 0.15 for ln in floors)
    points = [c for c in right.collections if isinstance(c, PathCollection)]
    assert len(points) == 3  # one column of points per posterior
    for k, (col, gaps) in enumerate(zip(points, sample_gaps.values())):
        xy = col.get_offsets()
        np.testing.assert_allclose(np.sort(xy[:, 1]), np.sort(gaps.numpy()))
        assert np.all(np.abs(xy[:, 0] - k) < 0.2)
    assert [t.get_text() for t in right.get_xticklabels()] == ["exact", "A", "B"]
    with pytest.raises(ValueError, match="at least one"):
        vs.plot_elbo_gaps({}, -1.0, sample_gaps)


# ------------------------------------------------------------------------------ prediction fans
@pytest.fixture(scope="module")
def fans(oscillator):
    ssm, model, _, _ = oscillator
    with torch.no_grad():
        _, Y = model.sample(1, 14, generator=torch.Generator().manual_seed(5))
    torch.manual_seed(0)
    posteriors = {"exact": ExactLinearGaussianPosterior(ssm),
                  "mean-field": make_posterior("mean_field", 2, 1, hidden_size=8).double()}
    result = vs.compute_prediction_fans(model, posteriors, ssm, Y[0], seen=[8, 4, 10], horizon=4,
                                        num_samples=4000, generator=torch.Generator().manual_seed(6))
    return ssm, Y[0], result


def test_prediction_fans_of_the_exact_posterior_match_the_kalman_prediction(fans):
    ssm, y, result = fans
    assert result.seen == [4, 8, 10] and result.horizon == 4 and result.observations.shape == (14, 1)
    assert set(result.quantiles) == {"exact", "mean-field"}
    assert result.quantiles["exact"].shape == (3, 3, 4, 1)
    for i, T in enumerate(result.seen):
        kf = kalman_filter(ssm, y[:T])  # the filter on Y_1:T alone, as lecture 6
        ref = predict(ssm, kf.filtered_means[-1], kf.filtered_covs[-1], 4)
        sd = ref.obs_covs[:, 0, 0].sqrt().numpy()
        np.testing.assert_allclose(result.exact_means[i, :, 0], ref.obs_means[:, 0].numpy(), atol=1e-10)
        np.testing.assert_allclose(result.exact_sds[i, :, 0], sd, atol=1e-10)
        # the sampled fan of the exact posterior: the Gaussian's quantiles, up to Monte Carlo error
        lo, mid, hi = result.quantiles["exact"][i, :, :, 0]
        z = 1.959963984540054
        np.testing.assert_allclose(mid, ref.obs_means[:, 0].numpy(), atol=4 * 1.25 * sd.max() / math.sqrt(4000))
        np.testing.assert_allclose((hi - lo) / (2 * z), sd, rtol=0.1)
        np.testing.assert_allclose(result.sample_sds["exact"][i, :, 0], sd, rtol=4 / math.sqrt(2 * 4000))
    with pytest.raises(ValueError, match="seen"):
        vs.compute_prediction_fans(None, {}, ssm, y, seen=[0, 3], horizon=2)
    with pytest.raises(ValueError, match="one sequence"):
        vs.compute_prediction_fans(None, {}, ssm, y[None], seen=[3], horizon=2)


def test_prediction_fan_figure_draws_one_panel_per_family(fans):
    _, y, result = fans
    fig = vs.plot_prediction_fans(result, seen=8, steps=3, context=None)
    assert_labelled(fig)
    assert len(fig.axes) == 2 and [ax.get_title().split(":")[0] for ax in fig.axes] == ["exact", "mean-field"]
    i = result.seen.index(8)
    for ax, q in zip(fig.axes, result.quantiles.values()):
        (xe, le, ue), (xq, lq, uq) = bands(ax)
        np.testing.assert_array_equal(xe, [9, 10, 11])  # T+1..T+k
        np.testing.assert_allclose(le, result.exact_means[i, :3, 0] - 2 * result.exact_sds[i, :3, 0])
        np.testing.assert_allclose(ue, result.exact_means[i, :3, 0] + 2 * result.exact_sds[i, :3, 0])
        np.testing.assert_allclose(lq, q[i, 0, :3, 0])
        np.testing.assert_allclose(uq, q[i, 2, :3, 0])
        seen = next(ln for ln in ax.get_lines() if ln.get_label() == "y_1:T (seen)")
        np.testing.assert_allclose(seen.get_ydata(), y[:8, 0].numpy())
        later = next(ln for ln in ax.get_lines() if ln.get_label() == "later y (not seen)")
        np.testing.assert_array_equal(later.get_xdata(), [9, 10, 11])
    narrow = vs.plot_prediction_fans(result, seen=10, steps=4, context=3)
    seen = next(ln for ln in narrow.axes[0].get_lines() if ln.get_label() == "y_1:T (seen)")
    np.testing.assert_array_equal(seen.get_xdata(), [8, 9, 10])
    with pytest.raises(ValueError, match="precomputed"):
        vs.plot_prediction_fans(result, seen=5, steps=2)
    with pytest.raises(ValueError, match="steps"):
        vs.plot_prediction_fans(result, seen=8, steps=5)


def test_prediction_explorer_static_figure_and_widget_redraw(fans, monkeypatch):
    _, _, result = fans
    assert vs.widgets_available() is False  # pytest is no Jupyter kernel: the default is the static figure
    fig = vs.prediction_explorer(result)
    assert isinstance(fig, Figure) and "T = 8" in fig._suptitle.get_text() and "k = 1..4" in fig._suptitle.get_text()
    assert isinstance(vs.prediction_explorer(result, 4, 2, interactive=False), Figure)

    pytest.importorskip("ipywidgets")
    drawn = []
    original = vs.plot_prediction_fans

    def spy(fans, seen, steps, **kwargs):
        drawn.append((seen, steps))
        return original(fans, seen, steps, **kwargs)

    monkeypatch.setattr(vs, "plot_prediction_fans", spy)
    box = vs.prediction_explorer(result, seen=4, steps=2, interactive=True)
    seen_slider, steps_slider, image = box.children
    assert list(seen_slider.options) == [4, 8, 10] and steps_slider.max == 4
    first = image.value
    assert first[:8] == b"\x89PNG\r\n\x1a\n" and drawn == [(4, 2)]
    seen_slider.value = 10
    assert drawn[-1] == (10, 2) and image.value != first
    steps_slider.value = 4
    assert drawn[-1] == (10, 4)

    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # ipywidgets missing
    assert vs.widgets_available() is False
    with pytest.raises(ImportError, match="interactive=False"):
        vs.prediction_explorer(result, interactive=True)


# ------------------------------------------------------------------------------ free run
def test_free_run_draws_each_models_interval_paths_and_scores():
    g = torch.Generator().manual_seed(2)
    T = 30
    u = torch.rand(T, 1, generator=g, dtype=F64)
    y = torch.cumsum(u - 0.5, 0) * 0.1
    samples = {"PR-SSM": y + 0.05 * torch.randn(100, T, 1, generator=g, dtype=F64),
               "linear": y + 0.2 + 0.1 * torch.randn(100, T, 1, generator=g, dtype=F64)}
    scores = {"PR-SSM": {"rmse": 0.0123, "nll": -1.5, "coverage": 0.95}}
    fig = vs.plot_free_run(u, y, samples, recognition_steps=5, scores=scores, num_paths=4, truth=y[:, 0])
    assert_labelled(fig)
    assert len(fig.axes) == 3  # one panel per model, the input below
    for ax, (name, s) in zip(fig.axes, samples.items()):
        assert ax.get_title().startswith(name)
        ((xs, low, up),) = bands(ax)
        lower, upper = np.quantile(s[..., 0].numpy(), [0.025, 0.975], axis=0)
        np.testing.assert_allclose(low, lower)
        np.testing.assert_allclose(up, upper)
        paths = [ln for ln in ax.get_lines() if ln.get_linewidth() < 1.0 and ln.get_linestyle() == "-"]
        assert len(paths) == 4
        mean = next(ln for ln in ax.get_lines() if ln.get_label() == "mean")
        np.testing.assert_allclose(mean.get_ydata(), s[..., 0].mean(0).numpy())
    assert "RMSE 0.012" in fig.axes[0].get_title() and "95 %" in fig.axes[0].get_title()
    assert "RMSE" not in fig.axes[1].get_title()  # no scores given for it
    np.testing.assert_allclose(fig.axes[2].get_lines()[0].get_ydata(), u[:, 0].numpy())
    with pytest.raises(ValueError, match=r"samples\['linear'\]"):
        vs.plot_free_run(u, y, {"linear": torch.zeros(5, T - 1, 1)}, recognition_steps=5)
    with pytest.raises(ValueError, match="inputs"):
        vs.plot_free_run(u[:-1], y, samples, recognition_steps=5)
