"""The PILCO lecture's figures draw what they claim: GP bands against the GP's closed form written out in numpy,
moment matching against quadrature and Monte Carlo, real trials against the env's own states and rewards,
particles against a model whose dynamics are known; everything labelled, bad input refused."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")
from matplotlib.collections import PolyCollection  # noqa: E402
from model_doubles import IntegratorModel  # noqa: E402

from mbrl_course.agents.pilco import PILCOTask, Prediction, cartpole_task  # noqa: E402
from mbrl_course.data import ReplayBuffer  # noqa: E402
from mbrl_course.envs import make_env  # noqa: E402
from mbrl_course.models.gp import GaussianProcess  # noqa: E402
from mbrl_course.viz import pilco as vp  # noqa: E402

F64 = torch.float64
ENV = "mbrl_course/CartPoleSwingUp-v0"


def assert_labelled(fig) -> None:
    """A title, and x and y labels on every axes that shows data (shared axes count)."""
    titles = [ax.get_title(loc=loc) for ax in fig.axes for loc in ("center", "left")] + [fig._suptitle.get_text() if fig._suptitle else ""]
    assert any(t.strip() for t in titles), "the figure has no title"
    for ax in fig.axes:
        if not ax.axison:
            continue
        assert ax.get_xlabel() or any(o.get_xlabel() for o in ax.get_shared_x_axes().get_siblings(ax)), ax.get_title()
        assert ax.get_ylabel() or any(o.get_ylabel() for o in ax.get_shared_y_axes().get_siblings(ax)), ax.get_title()


def bands(ax) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(x, lower, upper) of every fill_between band of an axes."""
    out = []
    for poly in (c for c in ax.collections if isinstance(c, PolyCollection)):
        vertices = poly.get_paths()[0].vertices
        xs = np.unique(vertices[:, 0])
        out.append((xs, np.array([vertices[vertices[:, 0] == x, 1].min() for x in xs]),
                    np.array([vertices[vertices[:, 0] == x, 1].max() for x in xs])))
    return out


def line(ax, label: str):
    return next(ln for ln in ax.get_lines() if ln.get_label() == label)


def numpy_gp(x_train, y_train, x, ell, alpha2, sigma2):
    """m(x), v(x) of a 1-D GP with the SE kernel, written out: the oracle of the figures."""
    def k(a, b):
        return alpha2 * np.exp(-0.5 * (a[:, None] - b[None]) ** 2 / ell**2)

    K = k(x_train, x_train) + sigma2 * np.eye(len(x_train))
    ks = k(x, x_train)
    return ks @ np.linalg.solve(K, y_train), alpha2 - np.einsum("ij,ji->i", ks, np.linalg.solve(K, ks.T))


@pytest.fixture(autouse=True)
def close_figures():
    yield
    matplotlib.pyplot.close("all")


@pytest.fixture(scope="module")
def toy_gp():
    """A 1-D GP on 10 points in two clusters, ℓ = 0.7, α² = 1.5, σ² = 0.01 (set, not fitted)."""
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.rand(5, generator=g, dtype=F64) - 2, torch.rand(5, generator=g, dtype=F64) + 1])
    y = torch.sin(2 * x) + 0.1 * torch.randn(10, generator=g, dtype=F64)
    gp = GaussianProcess(1, 1)
    gp.set_data(x[:, None], y[:, None])
    gp.set_hyperparameters(lengthscales=0.7, signal_var=1.5, noise_var=0.01)
    return gp, x.numpy(), y.numpy()


@pytest.fixture(scope="module")
def gp_2d():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(30, 2, generator=g, dtype=F64) * 4 - 2
    y = torch.stack([torch.sin(x[:, 0]) + 0.5 * x[:, 1], torch.cos(x[:, 0] * x[:, 1])], -1)
    gp = GaussianProcess(2, 2)
    gp.set_data(x, y)
    gp.set_hyperparameters(lengthscales=torch.tensor([[1.0, 2.0], [0.8, 0.8]]), signal_var=torch.tensor([1.0, 0.5]),
                           noise_var=1e-3)
    return gp


# ------------------------------------------------------------------------------ GP regression
def test_gp_regression_band_is_the_closed_form_and_widens_away_from_the_data(toy_gp):
    gp, x, y = toy_gp
    other = GaussianProcess(1, 1)
    other.set_data(x[:, None], y[:, None])
    other.set_hyperparameters(lengthscales=0.2, signal_var=1.0, noise_var=0.1)
    grid = np.linspace(-6, 5, 120)
    fig = vp.plot_gp_regression({"guess": other, "fitted": gp}, grid, truth=torch.sin)
    assert_labelled(fig)
    assert len(fig.axes) == 2
    for ax, (ell, a2, s2) in zip(fig.axes, ((0.2, 1.0, 0.1), (0.7, 1.5, 0.01))):
        m, v = numpy_gp(x, y, grid, ell, a2, s2)
        [(xs, low, up)] = bands(ax)
        np.testing.assert_allclose(xs, grid)
        np.testing.assert_allclose(up, m + 2 * np.sqrt(v), atol=1e-7)
        np.testing.assert_allclose(low, m - 2 * np.sqrt(v), atol=1e-7)
        np.testing.assert_allclose(line(ax, "posterior mean m(x)").get_ydata(), m, atol=1e-8)
        np.testing.assert_allclose(line(ax, "data (X, y)").get_xdata(), x)
        np.testing.assert_allclose(line(ax, "true function").get_ydata(), np.sin(grid))
        assert f"ℓ = {ell:.3g}" in ax.get_title() and f"α² = {a2:.3g}" in ax.get_title()
        # far from the data the band is the prior's, ± 2α; next to a data point it is narrow
        assert up[0] - low[0] == pytest.approx(4 * math.sqrt(a2), rel=1e-3)
        near = np.argmin(np.abs(grid - x[0]))
        assert up[near] - low[near] < 0.5 * (up[0] - low[0])
    # the fitted GP explains the data better: its log-likelihood in the title is the larger
    lml = [float(ax.get_title().split("log p(y | X) = ")[1]) for ax in fig.axes]
    assert lml[1] > lml[0]


def test_gp_regression_refuses_a_gp_of_another_shape(gp_2d, toy_gp):
    with pytest.raises(ValueError, match="gp: .*1 input"):
        vp.plot_gp_regression({"2-D": gp_2d}, np.linspace(0, 1, 5))
    with pytest.raises(ValueError, match="gps: expected at least one"):
        vp.plot_gp_regression({}, np.linspace(0, 1, 5))
    with pytest.raises(ValueError, match="without"):
        vp.plot_gp_regression({"empty": GaussianProcess(1, 1)}, np.linspace(0, 1, 5))


# ------------------------------------------------------------------------------ moment matching
def test_monte_carlo_at_a_gaussian_input_matches_the_exact_moments(gp_2d):
    # at the edge of the data, where E[v(x)] is about half of Var[f]: the draws of f around m(x) must count
    mean, cov = torch.tensor([1.8, 2.5], dtype=F64), torch.tensor([[0.5, 0.2], [0.2, 0.3]], dtype=F64)
    n = 200_000
    x, f = vp.sample_at_gaussian_input(gp_2d, mean, cov, n, generator=torch.Generator().manual_seed(2))
    assert x.shape == (n, 2) and f.shape == (n, 2)
    exact = gp_2d.moments(mean, cov)
    se_mean = (f.var(0) / n).sqrt()
    assert ((f.mean(0) - exact.mean).abs() < 4 * se_mean).all()
    centred = f - f.mean(0)
    sample_cov = centred.T @ centred / (n - 1)
    # standard error of each covariance entry: sqrt(Var[(f_a − μ_a)(f_b − μ_b)] / n)
    se_cov = ((centred[:, :, None] * centred[:, None, :]).var(0) / n).sqrt()
    assert ((sample_cov - exact.cov).abs() < 4 * se_cov).all()
    torch.testing.assert_close(torch.cov(x.T), cov, atol=0.01, rtol=0)
    # a singular input covariance is a point along a line: every x_s lies on it
    line_cov = torch.tensor([[1.0, 1.0], [1.0, 1.0]], dtype=F64)
    x, _ = vp.sample_at_gaussian_input(gp_2d, mean, line_cov, 100, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(x[:, 0] - x[:, 1], (mean[0] - mean[1]).expand(100), atol=1e-9, rtol=0)
    with pytest.raises(ValueError, match="cov: expected a positive semi-definite"):
        vp.sample_at_gaussian_input(gp_2d, mean, -cov, 10)
    with pytest.raises(ValueError, match="mean: expected shape"):
        vp.sample_at_gaussian_input(gp_2d, torch.zeros(3), cov, 10)


def test_moment_matching_1d_draws_histogram_matched_and_plug_in_gaussians(toy_gp):
    gp, x, y = toy_gp
    mu, var = -0.5, 0.4
    fig = vp.plot_moment_matching_1d(gp, mu, var, grid=np.linspace(-4, 3, 100), samples=5000,
                                     generator=torch.Generator().manual_seed(4), bins=40)
    assert_labelled(fig)
    ax_gp, ax_in, ax_out, ax_text = fig.axes
    # the oracle: E[f] = ∫ m(x) N(x) dx and Var[f] = ∫ (v(x) + m(x)²) N(x) dx − E[f]², by quadrature
    xq = np.linspace(mu - 10 * math.sqrt(var), mu + 10 * math.sqrt(var), 20001)
    weight = np.exp(-0.5 * (xq - mu) ** 2 / var) / math.sqrt(2 * math.pi * var) * (xq[1] - xq[0])
    m, v = numpy_gp(x, y, xq, 0.7, 1.5, 0.01)
    e_f = (m * weight).sum()
    var_f = ((v + m**2) * weight).sum() - e_f**2
    matched = line(ax_out, "moment matching N(E[f], Var[f])")
    f_axis = matched.get_ydata()
    np.testing.assert_allclose(matched.get_xdata(), np.exp(-0.5 * (f_axis - e_f) ** 2 / var_f)
                               / math.sqrt(2 * math.pi * var_f), rtol=1e-6, atol=1e-9)
    (m0,), (v0,) = numpy_gp(x, y, np.array([mu]), 0.7, 1.5, 0.01)
    plug = line(ax_out, "plug-in N(m(μ), v(μ))")
    np.testing.assert_allclose(plug.get_xdata(), np.exp(-0.5 * (f_axis - m0) ** 2 / v0) / math.sqrt(2 * math.pi * v0),
                               rtol=1e-6, atol=1e-9)
    # the histogram is a density over the samples: 40 bars, area 1
    bars = ax_out.patches
    assert len(bars) == 40
    assert sum(b.get_width() * b.get_height() for b in bars) == pytest.approx(1.0)
    density = line(ax_in, "p(x) = N(μ, σ_x²)")
    np.testing.assert_allclose(density.get_ydata(), np.exp(-0.5 * (density.get_xdata() - mu) ** 2 / var)
                               / math.sqrt(2 * math.pi * var), rtol=1e-10)
    text = ax_text.texts[0].get_text()
    assert f"{e_f:+.3f}" in text.splitlines()[1] and f"{m0:+.3f}" in text.splitlines()[2]
    with pytest.raises(ValueError, match="var"):
        vp.plot_moment_matching_1d(gp, 0.0, 0.0, grid=np.linspace(0, 1, 5))


def test_ellipse_is_at_mahalanobis_distance_n_std():
    mean, cov = np.array([1.0, -2.0]), np.array([[2.0, 0.6], [0.6, 0.5]])
    points = vp.ellipse(mean, cov, n_std=2.0, points=50)
    d = points - mean
    np.testing.assert_allclose(np.einsum("si,ij,sj->s", d, np.linalg.inv(cov), d), 4.0, rtol=1e-10)
    np.testing.assert_allclose(points[0], points[-1])
    with pytest.raises(ValueError, match="mean, cov"):
        vp.ellipse(np.zeros(3), np.eye(3))


def test_moment_matching_2d_ellipses_are_the_matched_and_sample_moments(gp_2d):
    mean, cov = torch.tensor([0.2, 0.4], dtype=F64), torch.tensor([[0.4, 0.1], [0.1, 0.3]], dtype=F64)
    fig = vp.plot_moment_matching_2d(gp_2d, mean, cov, samples=4000, generator=torch.Generator().manual_seed(5))
    assert_labelled(fig)
    ax_in, ax_out = fig.axes
    exact = gp_2d.moments(mean, cov)
    matched = line(ax_out, "moment matching N(E[f], Cov[f]), 2σ")
    pts = np.stack([matched.get_xdata(), matched.get_ydata()], -1) - exact.mean.numpy()
    np.testing.assert_allclose(np.einsum("si,ij,sj->s", pts, np.linalg.inv(exact.cov.numpy()), pts), 4.0, rtol=1e-8)
    samples = line(ax_out, "samples f(x_s)")
    f = np.stack([samples.get_xdata(), samples.get_ydata()], -1)
    assert f.shape == (4000, 2)
    sampled = line(ax_out, "the samples' mean and covariance, 2σ")
    pts = np.stack([sampled.get_xdata(), sampled.get_ydata()], -1) - f.mean(0)
    np.testing.assert_allclose(np.einsum("si,ij,sj->s", pts, np.linalg.inv(np.cov(f.T)), pts), 4.0, rtol=1e-8)
    # a Gaussian input: 1 − e^{−2} = 86.5 % of its samples inside its 2σ ellipse (binomial SE ≈ 0.54 %)
    inside = float(ax_in.get_title().split(": ")[1].split("%")[0]) / 100
    assert abs(inside - (1 - math.exp(-2))) < 4 * math.sqrt(0.865 * 0.135 / 4000)
    with pytest.raises(ValueError, match="2 input"):
        vp.plot_moment_matching_2d(GaussianProcess(1, 2), mean, cov)


# ------------------------------------------------------------------------------ PILCO's trials
def test_unwrap_angles_makes_angles_continuous_near_the_reference():
    theta = np.linspace(2.5, 8.0, 30)  # crosses π, 2π ...: wrapped to (−π, π] it jumps
    wrapped = np.arctan2(np.sin(theta), np.cos(theta))
    states = torch.tensor(np.stack([np.arange(30.0), wrapped], -1))
    out = vp.unwrap_angles(states, (1,), reference=torch.tensor([math.pi]))
    np.testing.assert_allclose(out[:, 1].numpy(), theta, atol=1e-12)
    np.testing.assert_allclose(out[:, 0].numpy(), np.arange(30.0))
    # without a reference θ_0 lands in (−π, π]: the np.unwrap of the wrapped angles
    np.testing.assert_allclose(vp.unwrap_angles(states, (1,))[:, 1].numpy(), np.unwrap(wrapped), atol=1e-12)
    batched = vp.unwrap_angles(states.expand(3, -1, -1), (1,), reference=torch.tensor([math.pi]))
    np.testing.assert_allclose(batched[2, :, 1].numpy(), theta, atol=1e-12)


@pytest.fixture(scope="module")
def cartpole_trials():
    """D_real of two 12-step cart-pole trials with random actions, the states the env says it went through,
    and its rewards."""
    env = make_env(ENV, max_episode_steps=12)
    task = cartpole_task(env)
    buffer = ReplayBuffer(5, 1)
    rng = np.random.default_rng(0)
    states, rewards = [], []
    for episode in range(2):
        obs, _ = env.reset(seed=episode)
        states.append([env.unwrapped.state.copy()])
        rewards.append([])
        done = False
        while not done:
            action = rng.uniform(-10, 10, size=1).astype(np.float32)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            buffer.add(obs, action, reward, next_obs, terminated, truncated=truncated)
            states[-1].append(env.unwrapped.state.copy())
            rewards[-1].append(reward)
            obs, done = next_obs, terminated or truncated
    return task, buffer, np.array(states), np.array(rewards)


def test_record_trial_holds_the_last_trials_states_and_costs(cartpole_trials):
    task, buffer, states, rewards = cartpole_trials
    trial = vp.record_trial(buffer, 12, task, trial=2)
    assert trial.trial == 2 and trial.prediction is None
    real = states[1]  # the env's own state (x, ẋ, θ, θ̇), θ continuous from its start near π
    assert trial.states.shape == (13, 4)
    np.testing.assert_allclose(trial.states[:, [0, 1, 3]].numpy(), real[:, [0, 1, 3]], atol=1e-5)
    theta = real[:, 2] - 2 * np.pi * np.round((real[0, 2] - np.pi) / (2 * np.pi))  # the branch next to π
    np.testing.assert_allclose(trial.states[:, 2].numpy(), np.unwrap(theta), atol=1e-5)
    # the cart-pole's reward is 1 − c(x) of PILCO's saturating cost
    np.testing.assert_allclose(trial.costs.numpy(), 1 - rewards[1], atol=1e-6)
    with pytest.raises(ValueError, match="steps"):
        vp.record_trial(buffer, 25, task, trial=1)
    bad = Prediction(mean=torch.zeros(5, 3), cov=torch.zeros(5, 3, 3), expected_cost=torch.zeros(4))
    with pytest.raises(ValueError, match="prediction"):
        vp.record_trial(buffer, 12, task, trial=2, prediction=bad)


def _prediction(H: int, generator: torch.Generator) -> Prediction:
    mean = torch.cumsum(torch.randn(H + 1, 4, generator=generator, dtype=F64) * 0.1, 0) + torch.tensor(
        [0.0, 0.0, math.pi, 0.0], dtype=F64)
    root = torch.randn(H + 1, 4, 4, generator=generator, dtype=F64) * 0.1
    return Prediction(mean=mean, cov=root @ root.transpose(-1, -2),
                      expected_cost=torch.rand(H, generator=generator, dtype=F64))


def test_pilco_trials_draw_prediction_bands_against_the_real_trajectory(cartpole_trials):
    task, buffer, _, _ = cartpole_trials
    g = torch.Generator().manual_seed(6)
    first = vp.record_trial(buffer, 12, task, trial=1)
    second = vp.record_trial(buffer, 12, task, trial=2, prediction=_prediction(8, g))
    fig = vp.plot_pilco_trials([first, second], dims=(0, 2), labels=("x [m]", "θ [rad]"), dt=0.1)
    assert_labelled(fig)
    axes = np.array(fig.axes).reshape(2, 3)
    assert [bands(ax) for ax in axes[0]] == [[], [], []]  # the random trial: no prediction
    assert "random" in axes[0, 0].get_title(loc="left")
    p = second.prediction
    for ax, d in zip(axes[1, :2], (0, 2)):
        [(t, low, up)] = bands(ax)
        np.testing.assert_allclose(t, 0.1 * np.arange(9))
        sd = p.cov[:, d, d].sqrt().numpy()
        np.testing.assert_allclose(up, p.mean[:, d].numpy() + 2 * sd, atol=1e-12)
        np.testing.assert_allclose(low, p.mean[:, d].numpy() - 2 * sd, atol=1e-12)
        np.testing.assert_allclose(line(ax, "real z_t").get_ydata(), second.states[:, d].numpy())
    # θ's panel marks upright at a multiple of 2π within its range
    upright = [ln for ln in axes[1, 1].get_lines() if ln.get_linestyle() == ":"]
    assert all(abs(ln.get_ydata()[0] / (2 * math.pi) - round(ln.get_ydata()[0] / (2 * math.pi))) < 1e-12
               for ln in upright)
    cost = axes[1, 2]
    np.testing.assert_allclose(line(cost, "predicted E[c(x_t)]").get_ydata(), p.expected_cost.numpy())
    np.testing.assert_allclose(line(cost, "real c(x_t)").get_ydata(), second.costs.numpy())
    assert f"{float(p.expected_cost.sum()):.1f}" in axes[1, 0].get_title(loc="left")
    assert f"real Σ c = {float(second.costs[:8].sum()):.1f}" in axes[1, 0].get_title(loc="left")

    fig = vp.plot_cost_per_trial([first, second])
    assert_labelled(fig)
    (ax,) = fig.axes
    np.testing.assert_allclose(line(ax, "real: mean c(x_t)").get_ydata(),
                               [first.costs.mean(), second.costs[:8].mean()])
    np.testing.assert_allclose(line(ax, "predicted: mean E[c(x_t)]").get_xydata(), [[2, p.expected_cost.mean()]])
    with pytest.raises(ValueError, match="dims"):
        vp.plot_pilco_trials([second], dims=(4,))
    with pytest.raises(ValueError, match="labels"):
        vp.plot_pilco_trials([second], dims=(0, 1), labels=("x",))
    with pytest.raises(ValueError, match="trials"):
        vp.plot_cost_per_trial([])


# ------------------------------------------------------------------------------ particles
class ConstantController(torch.nn.Module):
    def __init__(self, action):
        super().__init__()
        self.action = torch.nn.Parameter(torch.as_tensor(action, dtype=F64))

    def forward(self, obs):
        return self.action.expand(*obs.shape[:-1], -1)


def test_policy_particles_start_from_the_task_and_follow_the_model():
    # i' = i + u with a constant u: z_t = z_0 + t u, and z_0 ~ N(m_0, diag s²)
    task = PILCOTask(angles=(), start_mean=(1.0, -2.0), start_std=(0.5, 0.2), target=(0.0, 0.0),
                     weight=((1.0, 0.0), (0.0, 1.0)))
    u = torch.tensor([0.3, -0.1], dtype=F64)
    K = 4000
    z = vp.policy_particles(IntegratorModel(2, 2), ConstantController(u), task, 5, particles=K,
                            generator=torch.Generator().manual_seed(7))
    assert z.shape == (K, 6, 2)
    torch.testing.assert_close(z[:, 1:] - z[:, :1], (torch.arange(1, 6, dtype=F64)[:, None] * u).expand(K, 5, 2),
                               rtol=0, atol=1e-12)
    std = torch.tensor(task.start_std, dtype=F64)
    assert ((z[:, 0].mean(0) - torch.tensor(task.start_mean, dtype=F64)).abs() < 4 * std / math.sqrt(K)).all()
    assert ((z[:, 0].std(0) / std - 1).abs() < 4 / math.sqrt(2 * K)).all()
    # a start distribution given as a prediction, with correlations: its mean[0] and cov[0]
    cov0 = torch.tensor([[0.5, 0.3], [0.3, 0.4]], dtype=F64)
    start = Prediction(mean=torch.tensor([[2.0, 1.0]], dtype=F64), cov=cov0[None], expected_cost=torch.zeros(0))
    z = vp.policy_particles(IntegratorModel(2, 2), ConstantController(u), task, 1, particles=K,
                            generator=torch.Generator().manual_seed(10), start=start)
    torch.testing.assert_close(z[:, 0].mean(0), start.mean[0], rtol=0, atol=4 * math.sqrt(0.5 / K))
    torch.testing.assert_close(torch.cov(z[:, 0].T), cov0, rtol=0, atol=4 * 0.5 * math.sqrt(2 / K))
    # the cart-pole's angle: particles start around θ = π on one branch (no jumps to −π)
    env = make_env(ENV)
    cp = cartpole_task(env)
    z = vp.policy_particles(IntegratorModel(5, 5), ConstantController(torch.zeros(5)), cp, 3, particles=500,
                            generator=torch.Generator().manual_seed(8))
    assert ((z[:, :, 2] - math.pi).abs() < 1.0).all()
    torch.testing.assert_close(z[:, 1:], z[:, :1].expand(-1, 3, -1), rtol=0, atol=1e-12)


def test_particles_beside_moments_draws_both_bands(cartpole_trials):
    g = torch.Generator().manual_seed(9)
    p = _prediction(6, g)
    particles = p.mean + 0.1 * torch.randn(50, 7, 4, generator=g, dtype=F64)
    fig = vp.plot_particles_vs_moments(particles, p, dims=(0, 2), max_lines=10, particle_label="Deep PILCO")
    assert_labelled(fig)
    for ax, d in zip(fig.axes, (0, 2)):
        [(_, low, up)] = bands(ax)
        np.testing.assert_allclose(up, p.mean[:, d].numpy() + 2 * p.cov[:, d, d].sqrt().numpy(), atol=1e-12)
        lines = [ln for ln in ax.get_lines() if ln.get_linewidth() == 0.6]
        assert len(lines) == 10
        upper = line(ax, "particles' mean ± 2 std").get_ydata()
        x = particles[:, :, d].numpy()
        np.testing.assert_allclose(upper, x.mean(0) + 2 * x.std(0), atol=1e-12)
    with pytest.raises(ValueError, match="particles"):
        vp.plot_particles_vs_moments(particles[..., :3], p)


def test_a_band_far_wider_than_the_trajectories_runs_off_the_frame(cartpole_trials):
    task, buffer, _, _ = cartpole_trials
    g = torch.Generator().manual_seed(11)
    wide = _prediction(8, g)
    wide.cov = wide.cov + 1e4 * torch.eye(4, dtype=F64)  # ± 200 around the mean
    trial = vp.record_trial(buffer, 12, task, trial=2, prediction=wide)
    fig = vp.plot_pilco_trials([trial], dims=(0, 2), labels=("x [m]", "θ [rad]"))
    for ax, d in zip(fig.axes[:2], (0, 2)):
        low, high = ax.get_ylim()
        shown = np.concatenate([trial.states[:, d].numpy(), wide.mean[:, d].numpy()])
        assert low <= shown.min() and high >= shown.max()
        assert high - low < 4 * (np.ptp(shown) + 1e-3)  # framed on what is shown, not on the ± 200 band
    # a narrow band is not cut: the frame reaches its edges
    narrow = vp.record_trial(buffer, 12, task, trial=2, prediction=_prediction(8, g))
    ax = vp.plot_pilco_trials([narrow], dims=(0,), labels=("x [m]",)).axes[0]
    [(_, low, up)] = bands(ax)
    frame = ax.get_ylim()
    assert frame[0] <= low.min() and frame[1] >= up.max()
