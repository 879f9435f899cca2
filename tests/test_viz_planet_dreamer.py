"""The PlaNet/Dreamer lecture's figures (mbrl_course.viz.planet_dreamer): each draws exactly the data it is given
(frames in the right axes, curves equal to independently recomputed numbers: n-step returns by brute force,
λ-returns by a hand-written recursion and as the weighted mix of the n-step returns), the widget redraws with the
sliders' λ and horizon, and bad input is refused."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from mbrl_course.agents.latent import reconstruct_and_imagine  # noqa: E402
from mbrl_course.data import EpisodeBuffer  # noqa: E402
from mbrl_course.planning import CEM  # noqa: E402
from mbrl_course.planning.latent import latent_return_objective  # noqa: E402
from mbrl_course.rl.actor_critic import ActorCriticConfig, ImaginationActorCritic  # noqa: E402
from mbrl_course.ssm.conv import postprocess_frames  # noqa: E402
from mbrl_course.ssm.rssm import RSSM, WorldModelConfig  # noqa: E402
from mbrl_course.viz import planet_dreamer as vp  # noqa: E402
from mbrl_course.viz.planning import cem_explorer  # noqa: E402

TINY = WorldModelConfig(action_dim=1, deterministic_size=8, stochastic_size=3, hidden_size=8, depth=2)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def images(ax) -> list[np.ndarray]:
    """The pictures an Axes shows (its AxesImages), as arrays."""
    return [np.asarray(image.get_array()) for image in ax.images]


def line(ax, label: str) -> np.ndarray:
    (found,) = [x for x in ax.get_lines() if x.get_label() == label]
    return np.asarray(found.get_ydata(), dtype=float)


@pytest.fixture(scope="module")
def model() -> RSSM:
    torch.manual_seed(0)
    return RSSM(TINY).eval()


@pytest.fixture(scope="module")
def episode() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    frames = torch.randint(0, 256, (9, 64, 64, 3), generator=g, dtype=torch.uint8)
    actions = torch.rand(9, 1, generator=g) * 4 - 2
    actions[0] = 0
    return frames, actions


# ------------------------------------------------------------------------------ 1. from pixels to latent states
def test_buffer_episode_pairs_each_frame_with_the_action_before_it():
    buffer = EpisodeBuffer((64, 64, 3), 1, 50, obs_dtype=torch.uint8)
    for k in range(6):  # frame after step k holds the code k + 1, the action that led to it (k + 1) / 10
        buffer.add(np.full((64, 64, 3), k, np.uint8), np.array([(k + 1) / 10], np.float32), 0.0,
                   np.full((64, 64, 3), k + 1, np.uint8), False, truncated=k == 5)
    frames, actions = vp.buffer_episode(buffer)
    assert frames.shape == (7, 64, 64, 3) and actions.shape == (7, 1)
    np.testing.assert_array_equal(frames[:, 0, 0, 0].numpy(), np.arange(7))
    np.testing.assert_allclose(actions[:, 0].numpy(), np.arange(7) / 10, atol=1e-6)  # zero before y_0
    last, last_actions = vp.buffer_episode(buffer, 3)
    np.testing.assert_array_equal(last[:, 0, 0, 0].numpy(), [3, 4, 5, 6])
    np.testing.assert_allclose(last_actions[:, 0].numpy(), [0.0, 0.4, 0.5, 0.6], atol=1e-6)
    with pytest.raises(ValueError, match="steps: expected 1..6"):
        vp.buffer_episode(buffer, 7)
    with pytest.raises(TypeError, match="buffer: expected an EpisodeBuffer"):
        vp.buffer_episode([1, 2])


def test_latent_view_is_the_models_reconstruction_and_imagination(model, episode):
    frames, actions = episode
    view = vp.latent_view(model, frames, actions, context=4)
    reconstruction, imagination = reconstruct_and_imagine(model, frames, actions, 4)
    assert torch.equal(view.reconstruction, reconstruction) and torch.equal(view.imagination, imagination)
    assert torch.equal(view.imagination[:4], view.reconstruction[:4])  # the context is filtered, not imagined
    real = frames.double().numpy() / 255.0
    for name in ("reconstruction", "imagination"):
        shown = getattr(view, name).double().numpy() / 255.0
        expected = [np.mean((shown[t] - real[t]) ** 2) for t in range(9)]
        np.testing.assert_allclose(view.errors()[name].numpy(), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="context: expected fewer frames than the episode's T = 9"):
        vp.latent_view(model, frames, actions, context=9)
    with pytest.raises(ValueError, match=r"frames: expected uint8 frames of shape \(T, 64, 64, 3\)"):
        vp.latent_view(model, frames.float(), actions)


def test_plot_latent_view_puts_each_frame_in_its_panel(model, episode):
    view = vp.latent_view(model, *episode, context=4)
    fig = vp.plot_latent_view(view, columns=[0, 3, 4, 8])
    axes = np.array(fig.axes).reshape(3, 4)
    rows = {"real": view.frames, "reconstruction": view.reconstruction, "imagination": view.imagination}
    assert tuple(rows) == vp.ROWS
    for r, frames in enumerate(rows.values()):
        for c, t in enumerate([0, 3, 4, 8]):
            (shown,) = images(axes[r, c])
            np.testing.assert_allclose(shown, frames[t].numpy() / 255.0)
    assert [ax.get_title() for ax in axes[0]] == ["t=1\nseen", "t=4\nseen", "t=5\nimagined", "t=9\nimagined"]
    assert [ax.get_ylabel() for ax in axes[:, 0]] == list(vp.ROWS)
    default = vp.plot_latent_view(view)  # the last seen and the first imagined frame are always shown
    titles = [ax.get_title() for ax in default.axes[:len(default.axes) // 3]]
    assert "t=4\nseen" in titles and "t=5\nimagined" in titles


def test_plot_latent_errors_and_the_animation_panels(model, episode):
    view = vp.latent_view(model, *episode, context=4)
    fig = vp.plot_latent_errors(view)
    for name, err in view.errors().items():
        np.testing.assert_allclose(line(fig.axes[0], name), err.numpy())
    panels = vp.latent_view_panels(view)
    assert len(panels) == 9 and panels[0].shape == (64, 196, 3)
    for t in (0, 8):
        np.testing.assert_array_equal(panels[t][:, :64], view.frames[t].numpy())
        np.testing.assert_array_equal(panels[t][:, 66:130], view.reconstruction[t].numpy())
        np.testing.assert_array_equal(panels[t][:, 132:], view.imagination[t].numpy())
        assert (panels[t][:, 64:66] == 255).all()


# ------------------------------------------------------------------------------ 2. PlaNet: CEM in latent space
def test_latent_reward_trajectory_follows_the_prior_means_step_by_step(model, episode):
    frames, actions = episode
    posterior, _ = model.observe(frames[None, :3], actions[None, :3])
    state = posterior[:, -1]
    plans = torch.linspace(-2, 2, 5 * 3).reshape(5, 3, 1)
    got = vp.latent_reward_trajectory(model, state)(plans)
    assert got.shape == (5, 4)
    with torch.no_grad():  # the oracle: one prior step at a time, by hand
        current = state.repeat(5)
        expected = [model.reward(current.features)]
        for k in range(3):
            current = model.prior(current, plans[:, k], sample=False)
            expected.append(model.reward(current.features))
    torch.testing.assert_close(got, torch.stack(expected, 1))
    # the explorer of lecture 2 draws it beside a CEM planning on the latent objective
    cem = CEM(horizon=3, action_low=[-2.0], action_high=[2.0], population=12, elites=3, iterations=2, seed=0)
    cem.plan(latent_return_objective(model, state, generator=torch.Generator().manual_seed(0)))
    fig = cem_explorer(cem.history, trajectory_fn=vp.latent_reward_trajectory(model, state), interactive=False)
    assert isinstance(fig, Figure) and len(fig.axes) >= 6  # 3 panels × 2 iterations
    with pytest.raises(ValueError, match=r"action_sequences: expected shape \(N, H, A\)"):
        vp.latent_reward_trajectory(model, state)(plans[0])


# ------------------------------------------------------------------------------ 3. Dreamer: imagination with values
@pytest.fixture(scope="module")
def dreamer(model, episode):
    frames, actions = episode
    torch.manual_seed(0)
    learner = ImaginationActorCritic(model.feature_size, [-2.0], [2.0],
                                     ActorCriticConfig(horizon=5, hidden_sizes=(8,), gamma=0.9, lam=0.8), seed=0)
    posterior, _ = model.observe(frames[None], actions[None])
    return learner, posterior


def hand_lambda_returns(r, v, gamma, lam) -> np.ndarray:
    """V_λ(s_t) = r_t + γ((1 − λ) v(s_{t+1}) + λ V_λ(s_{t+1})), V_λ(s_H) = v(s_H): a plain loop."""
    out, nxt = np.zeros(len(r)), float(v[-1])
    for t in reversed(range(len(r))):
        nxt = float(r[t]) + gamma * ((1 - lam) * float(v[t + 1]) + lam * nxt)
        out[t] = nxt
    return out


def test_imagined_trajectory_keeps_one_trajectory_with_its_values(model, dreamer):
    learner, posterior = dreamer
    traj = vp.imagined_trajectory(model, learner, posterior, index=7)
    assert traj.frames.shape == (6, 64, 64, 3) and traj.actions.shape == (5, 1)
    assert traj.rewards.shape == (5,) and traj.values.shape == (6,) and traj.returns.shape == (5,)
    np.testing.assert_allclose(traj.returns.numpy(), hand_lambda_returns(traj.rewards, traj.values, 0.9, 0.8),
                               rtol=1e-5, atol=1e-6)
    start = posterior[0, 7]  # the flattened index 7 of the (1, 9) posteriors
    torch.testing.assert_close(traj.values[0], learner.value_of(start.features))
    with torch.no_grad():
        assert torch.equal(traj.frames[0], postprocess_frames(model.decode(start.features)))
    assert (traj.actions.abs() <= 2.0).all()
    with pytest.raises(ValueError, match="index: expected one of the 9 imagined trajectories"):
        vp.imagined_trajectory(model, learner, posterior, index=9)


def test_plot_imagined_trajectory_draws_its_frames_rewards_values_and_returns(model, dreamer):
    traj = vp.imagined_trajectory(model, *dreamer, index=0)
    fig = vp.plot_imagined_trajectory(traj, columns=[0, 2, 5])
    for ax, t in zip(fig.axes[:3], [0, 2, 5]):
        np.testing.assert_allclose(images(ax)[0], traj.frames[t].numpy())
        assert ax.get_title() == f"s_{t}"
    curves = fig.axes[3]
    np.testing.assert_allclose(line(curves, "v(s_t)"), traj.values.numpy(), rtol=1e-6)
    np.testing.assert_allclose(line(curves, "V_λ(s_t), λ = 0.8, γ = 0.9"), traj.returns.numpy(), rtol=1e-6)
    rewards = fig.axes[4]  # the rewards' own axis, a twin of the curves'
    np.testing.assert_allclose([p.get_height() for p in rewards.patches], traj.rewards.numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="columns: expected steps in 0..5"):
        vp.plot_imagined_trajectory(traj, columns=[6])


# ------------------------------------------------------------------------------ λ-returns
R = np.array([1.0, -0.5, 2.0, 0.25, 0.0, 1.5])
V = np.array([3.0, 2.0, -1.0, 0.5, 4.0, 1.0, -2.0])


def brute_n_step(r, v, gamma, t, n) -> float:
    return sum(gamma ** (j - t) * r[j] for j in range(t, t + n)) + gamma ** n * v[t + n]


def test_n_step_returns_match_their_definition():
    got = vp.n_step_returns(R, V, 0.9).numpy()
    H = len(R)
    for t in range(H):
        for n in range(1, H + 1):
            if t + n <= H:
                assert got[t, n - 1] == pytest.approx(brute_n_step(R, V, 0.9, t, n))
            else:
                assert np.isnan(got[t, n - 1])


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.95, 1.0])
def test_lambda_return_is_the_weighted_mix_of_the_n_step_returns(lam):
    weights = vp.lambda_weights(lam, 6).numpy()
    assert weights.sum() == pytest.approx(1.0) and (weights >= 0).all()
    n_step = vp.n_step_returns(R, V, 0.9).numpy()
    expected = hand_lambda_returns(R, V, 0.9, lam)
    for t in range(len(R)):
        m = len(R) - t
        assert float(vp.lambda_weights(lam, m).numpy() @ n_step[t, :m]) == pytest.approx(expected[t])
    if lam == 0.0:
        np.testing.assert_allclose(weights, [1, 0, 0, 0, 0, 0])
    if lam == 1.0:
        np.testing.assert_allclose(weights, [0, 0, 0, 0, 0, 1])


@pytest.mark.parametrize(("lam", "horizon"), [(0.95, None), (0.5, 3), (0.0, 1), (1.0, 4)])
def test_plot_lambda_returns_draws_rewards_values_n_step_returns_and_v_lambda(lam, horizon):
    fig = vp.plot_lambda_returns(R, V, 0.9, lam, horizon)
    h = len(R) if horizon is None else horizon
    left, right = fig.axes[0], fig.axes[1]
    expected = hand_lambda_returns(R[:h], V[:h + 1], 0.9, lam)
    np.testing.assert_allclose(line(left, "V_λ(s_t)"), expected, rtol=1e-9)
    np.testing.assert_allclose(line(left, "v(s_t)"), V[:h + 1])
    np.testing.assert_allclose(line(left, "λ = 0: r_t + γ v(s_{t+1})"), R[:h] + 0.9 * V[1:h + 1])
    np.testing.assert_allclose([p.get_height() for p in fig.axes[2].patches], R[:h])  # the rewards' twin axis
    np.testing.assert_allclose(line(right, "V_N^n(s_0)"), [brute_n_step(R, V, 0.9, 0, n) for n in range(1, h + 1)])
    assert line(right, "V_λ(s_0)")[0] == pytest.approx(expected[0])
    share = fig.axes[3]  # the weights' twin axis
    np.testing.assert_allclose([p.get_height() for p in share.patches], vp.lambda_weights(lam, h).numpy())


def test_lambda_return_explorer_redraws_with_the_sliders(monkeypatch):
    static = vp.lambda_return_explorer(R, V, 0.9, lam=0.5, horizon=3, interactive=False)
    np.testing.assert_allclose(line(static.axes[0], "V_λ(s_t)"), hand_lambda_returns(R[:3], V[:4], 0.9, 0.5))
    pytest.importorskip("ipywidgets")
    calls = []
    real = vp.plot_lambda_returns

    def spy(rewards, values, gamma, lam, horizon=None):
        calls.append((float(lam), int(horizon)))
        return real(rewards, values, gamma, lam, horizon)

    monkeypatch.setattr(vp, "plot_lambda_returns", spy)
    box = vp.lambda_return_explorer(R, V, 0.9, lam=0.5, horizon=3, interactive=True)
    lam_slider, horizon_slider, image = box.children
    assert (lam_slider.min, lam_slider.max, lam_slider.value) == (0.0, 1.0, 0.5)
    assert (horizon_slider.min, horizon_slider.max, horizon_slider.value) == (1, 6, 3)
    before = image.value
    lam_slider.value = 0.9
    horizon_slider.value = 5
    assert calls == [(0.5, 3), (0.9, 3), (0.9, 5)] and image.value != before


def test_lambda_returns_refuse_bad_input():
    with pytest.raises(ValueError, match="values: expected H\\+1 = 7 values"):
        vp.n_step_returns(R, V[:-1], 0.9)
    with pytest.raises(ValueError, match="gamma: expected a discount in \\[0, 1\\], got 1.5"):
        vp.plot_lambda_returns(R, V, 1.5, 0.5)
    with pytest.raises(ValueError, match="lam: expected λ in \\[0, 1\\], got 1.2"):
        vp.lambda_weights(1.2, 3)
    with pytest.raises(ValueError, match="horizon: expected at most the trajectory's H = 6"):
        vp.lambda_return_explorer(R, V, 0.9, horizon=7, interactive=False)
    with pytest.raises(ValueError, match="lam: expected λ in \\[0, 1\\], got -0.1"):
        vp.lambda_return_explorer(R, V, 0.9, lam=-0.1, interactive=False)


# ------------------------------------------------------------------------------ 4. the random reference
def test_random_policy_returns_are_seeded_pendulum_returns():
    a = vp.random_policy_returns("Pendulum-v1", 2, seed=3, max_episode_steps=10)
    b = vp.random_policy_returns("Pendulum-v1", 2, seed=3, max_episode_steps=10)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (2,) and (a <= 0).all() and (a >= -16.3 * 10).all()  # Pendulum's reward ∈ [−16.3, 0] per step
    assert a[0] != a[1]


def test_shipped_benchmark_curves_are_consistent():
    """The curves lecture 9 loads: whole runs, ordered, and each z the stated evaluation against the random policy."""
    from mbrl_course.viz.planet_dreamer import benchmark_curves

    bench = benchmark_curves("pixels_Pendulum-v1_default")
    rand = bench["random"]
    assert rand["episodes"] >= 10 and rand["se"] > 0 and "benchmarks/pixels.py" in bench["command"]
    assert len(bench["runs"]) >= 1
    for run in bench["runs"].values():
        steps = [row["env_steps"] for row in run["rows"]]
        assert steps == sorted(steps) and len(set(steps)) == len(steps)
        assert [row["episode"] for row in run["rows"]] == list(range(len(run["rows"])))
        z = (run["eval_mean"] - rand["mean"]) / math.hypot(run["eval_se"], rand["se"])
        assert abs(z - run["z"]) < 0.05, (z, run["z"])
    with pytest.raises(ValueError, match="name: expected one of"):
        benchmark_curves("nonexistent")
