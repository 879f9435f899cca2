"""The recurrent-SSM lecture's figures (mbrl_course.viz.recurrent_ssm): each draws exactly the data it is given
(frames in the right axes, curves equal to independently recomputed numbers), the graphs encode the slide's
equations, the MSEs match a loop over sequences and pixels, the memory map rebuilds a known world, the slider
redraws without recomputing, and bad input is refused."""

from __future__ import annotations

import itertools

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.image import AxesImage  # noqa: E402
from matplotlib.text import Annotation  # noqa: E402

from mbrl_course.ssm.conv import postprocess_frames  # noqa: E402
from mbrl_course.ssm.rssm import make_world_model, open_loop_prediction  # noqa: E402
from mbrl_course.ssm.worlds import crop, make_world  # noqa: E402
from mbrl_course.viz import recurrent_ssm as vr  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def images(ax) -> list[np.ndarray]:
    return [np.asarray(a.get_array()) for a in ax.get_children() if isinstance(a, AxesImage)]


# ------------------------------------------------------------------------------ the families
# the slide's equations, written out here as the parents of h_t, s_t and y_t (independent of the module's table)
PARENTS = {
    "deterministic RNN": {"h": {"h-", "s-"}, "s": {"h"}, "y": {"h", "s"}},
    "SSM (Markovian)": {"s": {"s-"}, "y": {"s"}},
    "VRNN": {"h": {"h-", "s-", "y-"}, "s": {"h"}, "y": {"h", "s"}},
    "RSSM (PlaNet)": {"h": {"h-", "s-"}, "s": {"h"}, "y": {"h", "s"}},
}


def test_family_graphs_encode_the_slide_equations():
    assert set(vr.FAMILY_GRAPHS) == set(PARENTS)
    for name, graph in vr.FAMILY_GRAPHS.items():
        for child, parents in PARENTS[name].items():
            assert {p for p, c in graph["edges"] if c == child} == parents, (name, child)
        kinds = graph["nodes"]
        assert kinds["y"] == "observed"
        assert kinds["s"] == ("deterministic" if name == "deterministic RNN" else "random")
        assert ("h" in kinds) == (name != "SSM (Markovian)")


def test_plot_model_families_draws_every_node_and_arrow():
    fig = vr.plot_model_families()
    assert isinstance(fig, Figure)
    for ax, (name, graph) in zip(fig.axes, vr.FAMILY_GRAPHS.items()):
        assert ax.get_title() == name
        arrows = [t for t in ax.texts if isinstance(t, Annotation)]
        assert len(arrows) == len(graph["edges"])
        drawn = {(tuple(a.xyann), tuple(a.xy)) for a in arrows}
        assert drawn == {(vr._POSITIONS[p], vr._POSITIONS[c]) for p, c in graph["edges"]}
        labels = {t.get_text() for t in ax.texts if not isinstance(t, Annotation)}
        assert {vr._LABELS[k] for k in graph["nodes"]} <= labels
        assert len(ax.patches) == len(graph["nodes"])


def test_plot_model_families_refuses_an_arrow_to_a_missing_node():
    with pytest.raises(ValueError, match="names a node not in"):
        vr.plot_model_families({"bad": {"equations": "", "nodes": {"s": "random"}, "edges": [("h", "s")]}})


# ------------------------------------------------------------------------------ frames
def test_frame_strip_puts_each_frame_in_its_axes():
    g = torch.Generator().manual_seed(0)
    rows = {name: torch.randint(0, 256, (7, 8, 8, 3), generator=g, dtype=torch.uint8) for name in "abc"}
    columns = [0, 3, 6]
    fig = vr.plot_frame_strip(rows, columns)
    axes = np.array(fig.axes).reshape(3, 3)
    for r, frames in enumerate(rows.values()):
        for c, index in enumerate(columns):
            (shown,) = images(axes[r, c])
            np.testing.assert_allclose(shown, frames[index].numpy() / 255.0)
    assert [ax.get_title() for ax in axes[0]] == ["k=1", "k=4", "k=7"]
    assert [ax.get_ylabel() for ax in axes[:, 0]] == ["a", "b", "c"]
    # channels first, floats in [0, 1]: the same picture
    fig2 = vr.plot_frame_strip({"a": rows["a"].permute(0, 3, 1, 2).double() / 255.0}, [3])
    np.testing.assert_allclose(images(fig2.axes[0])[0], rows["a"][3].numpy() / 255.0)


def test_frame_strip_refuses_bad_input():
    frames = torch.zeros(4, 8, 8, 3)
    with pytest.raises(ValueError, match="columns: expected indices in 0..3"):
        vr.plot_frame_strip({"a": frames}, [4])
    with pytest.raises(ValueError, match=r"floats in \[0, 1\]"):
        vr.plot_frame_strip({"a": frames - 0.5}, [0])
    with pytest.raises(ValueError, match="ending in"):
        vr.plot_frame_strip({"a": torch.zeros(4, 8, 8)}, [0])
    with pytest.raises(ValueError, match="column_titles"):
        vr.plot_frame_strip({"a": frames}, [0, 1], column_titles=["only one"])


# ------------------------------------------------------------------------------ video prediction
@pytest.fixture(scope="module")
def video_setup():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    frames = torch.randint(0, 256, (3, 7, 64, 64, 3), generator=g, dtype=torch.uint8)
    actions = torch.rand(3, 7, 1, generator=g) * 2 - 1
    models = {kind: make_world_model(kind, action_dim=1, depth=4, deterministic_size=8, stochastic_size=3,
                                     hidden_size=8) for kind in ("rnn", "rssm")}
    mean_frame = frames.double().mean((0, 1)) / 255.0
    video = vr.compute_video_predictions(models, frames, actions, context=3, horizon=4, mean_frame=mean_frame)
    return models, frames, actions, mean_frame, video


def test_compute_video_predictions_matches_a_loop_over_sequences_and_pixels(video_setup):
    models, frames, actions, mean_frame, video = video_setup
    C, H = 3, 4
    truth = frames[:, C:C + H].double().numpy() / 255.0  # (B, H, 64, 64, 3) in [0, 1]
    assert torch.equal(video.truth, frames[:, C:C + H]) and torch.equal(video.context, frames[:, :C])
    for name, model in models.items():
        model.eval()
        pred, _ = open_loop_prediction(model, frames, actions, C, H, generator=torch.Generator().manual_seed(0))
        assert torch.equal(video.predictions[name], postprocess_frames(pred))
        p = pred.double().permute(0, 1, 3, 4, 2).numpy() + 0.5  # back to [0, 1], channels last
        expected = [np.mean([np.mean((p[b, k] - truth[b, k]) ** 2) for b in range(3)]) for k in range(H)]
        np.testing.assert_allclose(video.mse[name].numpy(), expected, rtol=1e-5)
    last = frames[:, C - 1].double().numpy() / 255.0
    expected = [np.mean([np.mean((last[b] - truth[b, k]) ** 2) for b in range(3)]) for k in range(H)]
    np.testing.assert_allclose(video.mse["last frame"].numpy(), expected, rtol=1e-6)
    expected = [np.mean([np.mean((mean_frame.numpy() - truth[b, k]) ** 2) for b in range(3)]) for k in range(H)]
    np.testing.assert_allclose(video.mse["mean frame"].numpy(), expected, rtol=1e-6)


def test_last_frame_baseline_is_exact_on_a_still_video():
    frames = torch.full((2, 6, 64, 64, 3), 77, dtype=torch.uint8)
    model = make_world_model("ssm", action_dim=0, depth=4, stochastic_size=2, hidden_size=8)
    video = vr.compute_video_predictions({"ssm": model}, frames, None, context=2, horizon=3)
    assert video.mse["last frame"].abs().max() == 0 and "mean frame" not in video.mse
    with pytest.raises(ValueError, match="C \\+ H ≤ T = 6"):
        vr.compute_video_predictions({"ssm": model}, frames, None, context=4, horizon=3)


def test_plot_video_predictions_draws_the_errors_and_the_strip(video_setup):
    _, _, _, _, video = video_setup
    fig = vr.plot_video_predictions(video, index=1, horizons=[1, 4])
    curve_ax = fig.axes[0]
    lines = {line.get_label(): line for line in curve_ax.get_lines()}
    for name, err in video.mse.items():
        np.testing.assert_allclose(lines[name].get_ydata(), err.numpy())
        np.testing.assert_array_equal(lines[name].get_xdata(), np.arange(1, 5))
    shown = {(ax.get_title(), ax.get_ylabel()): images(ax) for ax in fig.axes[1:]}
    truth_k4 = [im for ax in fig.axes[1:] for im in images(ax) if ax.get_title() == "k=4"][0]
    np.testing.assert_allclose(truth_k4, video.truth[1, 3].numpy() / 255.0)  # first row: the truth
    np.testing.assert_allclose(shown[("y_C (seen)", "")][0], video.context[1, -1].numpy() / 255.0)
    rssm = [ax for ax in fig.axes[1:] if ax.get_ylabel() == "rssm"][0]
    np.testing.assert_allclose(images(rssm)[0], video.predictions["rssm"][1, 0].numpy() / 255.0)
    with pytest.raises(ValueError, match="horizons: expected k in 1..4"):
        vr.plot_video_predictions(video, horizons=[5])


def test_horizon_explorer_static_and_widget(video_setup):
    _, _, _, _, video = video_setup
    fig = vr.horizon_explorer(video, k=2, interactive=False)
    assert isinstance(fig, Figure)
    panels = {ax.get_title().split("\n")[0]: images(ax)[0] for ax in fig.axes}
    np.testing.assert_allclose(panels["truth"], video.truth[0, 1].numpy() / 255.0)
    np.testing.assert_allclose(panels["rnn"], video.predictions["rnn"][0, 1].numpy() / 255.0)
    assert f"{float(video.mse['rnn'][1]):.4f}" in [ax.get_title() for ax in fig.axes][1]
    pytest.importorskip("ipywidgets")
    box = vr.horizon_explorer(video, k=1, interactive=True)
    slider, image = box.children
    before = image.value
    slider.value = 4
    assert image.value != before and slider.max == 4
    with pytest.raises(ValueError, match="k: expected a horizon in 1..4"):
        vr.horizon_explorer(video, k=0, interactive=False)


# ------------------------------------------------------------------------------ attention
def test_stage_runs_and_expected_lag_against_brute_force():
    g = torch.Generator().manual_seed(3)
    path = torch.randint(0, 3, (25,), generator=g)
    runs = vr.stage_runs(path)
    start, expected = 0, []
    for k, grp in itertools.groupby(path.tolist()):
        n = len(list(grp))
        expected.append((start, start + n, k))
        start += n
    assert runs == expected
    alpha = torch.rand(6, 6, generator=g).tril(-1)
    alpha[1:] /= alpha[1:].sum(-1, keepdim=True)
    lag = vr.expected_lag(alpha)
    assert np.isnan(lag[0])
    for t in range(1, 6):
        assert lag[t] == pytest.approx(sum(float(alpha[t, s]) * (t - s) for s in range(t)))


def test_plot_attention_shows_alpha_and_the_stage_boundaries():
    stages = torch.tensor([0] * 4 + [1] * 3 + [2] * 5)
    T = len(stages)
    alpha = torch.rand(T, T, generator=torch.Generator().manual_seed(0)).tril(-1)
    alpha[1:] /= alpha[1:].sum(-1, keepdim=True)
    fig = vr.plot_attention(alpha, stages, stage_names=["a", "b", "c"])
    band, heat, _colorbar, lag = fig.axes
    np.testing.assert_allclose(images(band)[0], stages[None].numpy())
    np.testing.assert_allclose(images(heat)[0], alpha.numpy())
    vertical = sorted(line.get_xdata()[0] for line in heat.get_lines() if line.get_xdata()[0] == line.get_xdata()[1])
    assert vertical == [4.5, 7.5]  # stage 1 starts at t = 5, stage 2 at t = 8 (1-based)
    curve = lag.get_lines()[0]
    np.testing.assert_allclose(curve.get_ydata(), vr.expected_lag(alpha), equal_nan=True)
    dwell = lag.get_lines()[1].get_ydata()  # d_{t-1} for t = 2..T
    np.testing.assert_array_equal(dwell, [1, 2, 3, 4, 1, 2, 3, 1, 2, 3, 4])
    with pytest.raises(ValueError, match="the same T"):
        vr.plot_attention(alpha[:5, :5], stages)


def test_plot_durations_draws_the_true_law_and_the_hmm_geometric_law():
    durations = torch.tensor([[0.1, 0.6, 0.3], [0.5, 0.25, 0.25]])
    fig = vr.plot_durations(durations, torch.tensor([0.5, 0.8]))
    for k, ax in enumerate(fig.axes):
        np.testing.assert_allclose([bar.get_height() for bar in ax.patches], durations[k].numpy(), rtol=1e-6)
        a = [0.5, 0.8][k]
        np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), [(1 - a), (1 - a) * a, (1 - a) * a * a])
    with pytest.raises(ValueError, match="self_transition: expected 2 probabilities"):
        vr.plot_durations(durations, torch.tensor([0.5, 1.0]))


# ------------------------------------------------------------------------------ GTM-SM
def test_paste_memory_map_rebuilds_the_world_where_it_was_seen():
    world = make_world(0, 64)
    positions = torch.tensor([[16.0, 16.0], [30.0, 20.0], [47.6, 40.2], [40.0, 47.0]])
    crops = crop(world, positions[None])[0]  # (4, 3, 32, 32) uint8
    rebuilt = vr.paste_memory_map(positions, crops, 64, fill=-1.0)
    truth = world.image[0].permute(1, 2, 0).double().numpy() / 255.0
    covered = np.zeros((64, 64), bool)
    for x, y in torch.round(positions).long().tolist():
        covered[y - 16:y + 16, x - 16:x + 16] = True
    np.testing.assert_allclose(rebuilt[covered], truth[covered], atol=1e-12)
    assert (rebuilt[~covered] == -1.0).all() and (~covered).any()
    with pytest.raises(ValueError, match="positions: expected shape \\(4, 2\\)"):
        vr.paste_memory_map(positions[:3], crops, 64)


def test_gtmsm_figures_draw_their_data():
    errors = {"GTM-SM": np.linspace(0, 1, 10), "memory=False": np.ones(10)}
    revisit = np.zeros(10, bool)
    revisit[7:] = True
    fig = vr.plot_gtmsm_errors(errors, context_steps=5, away_steps=4, revisit=revisit)
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    np.testing.assert_allclose(lines["GTM-SM"].get_ydata(), errors["GTM-SM"])
    np.testing.assert_array_equal(lines["GTM-SM"].get_xdata(), np.arange(6, 16))
    np.testing.assert_array_equal(lines["revisit of a context place"].get_xdata(), [13, 14, 15])
    with pytest.raises(ValueError, match="expected 10 steps"):
        vr.plot_gtmsm_errors({"a": np.ones(10), "b": np.ones(9)}, 5, 4)
    world = make_world(1, 64)
    positions = torch.full((12, 2), 30.0)
    rebuilt = np.full((64, 64, 3), 0.5)
    fig = vr.plot_memory_map(world.image[0], positions, 5, 4, rebuilt)
    np.testing.assert_allclose(images(fig.axes[0])[0], world.image[0].permute(1, 2, 0).numpy() / 255.0)
    np.testing.assert_allclose(images(fig.axes[1])[0], rebuilt)
