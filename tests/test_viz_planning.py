"""The figures and widgets of lectures 01 (Dyna vs MPC) and 02 (planning): mbrl_course.viz.planning and
mbrl_course.viz.rollouts.

Oracles: the real gymnasium env (returns and states of the true-dynamics objective), closed forms (a pendulum
at rest hanging down, a model whose only error is a constant offset), an independent code path of the ensemble
(``GaussianEnsemble.predict`` against the particles of ``rollout_particles``), and the data behind each drawn
artist (histogram bars that must add up to the samples and elites, ellipses only where a Gaussian is sampled).
"""

from __future__ import annotations

import math
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse, Rectangle

from mbrl_course.data import ReplayBuffer
from mbrl_course.envs import dynamics_fn
from mbrl_course.models import GaussianEnsemble, TrueDynamics
from mbrl_course.planning import CEM, MPPI, Planner, RandomShooting
from mbrl_course.viz.planning import (
    PlannerSweep,
    cem_explorer,
    plot_cem_iterations,
    plot_plan_iteration,
    plot_planner_sweeps,
    rollout_true_dynamics,
    sweep_planners,
    swing_up_return,
    true_dynamics_objective,
    two_hills_objective,
    widgets_available,
)
from mbrl_course.viz.rollouts import (
    CodePanels,
    animation_html,
    code_side_by_side,
    k_step_errors,
    plot_model_predictions,
    rollout_particles,
    source_code,
)

LOW, HIGH = [-2.0], [2.0]


# ------------------------------------------------------------------------------ helpers
def _pendulum_from(state: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, float]:
    """The real env from (θ, θ̇) = state with these actions: observations (H+1, 3) and the return."""
    env = gym.make("Pendulum-v1")
    env.reset(seed=0)
    env.unwrapped.state = np.array(state, dtype=np.float64)
    obs = [env.unwrapped._get_obs()]
    total = 0.0
    for action in actions:
        o, r, *_ = env.step(np.asarray(action, dtype=np.float32))
        obs.append(o)
        total += float(r)
    env.close()
    return np.stack(obs), total


def _random_episode(steps: int = 40, seed: int = 0) -> ReplayBuffer:
    env = gym.make("Pendulum-v1")
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    buffer = ReplayBuffer(3, 1)
    for _ in range(steps):
        action = env.action_space.sample()
        next_obs, reward, terminated, _, _ = env.step(action)
        buffer.add(obs, action, float(reward), next_obs, bool(terminated))
        obs = next_obs
    env.close()
    return buffer


class _TrueModel(TrueDynamics):
    """A deterministic 'learned model' that is the true pendulum, plus a constant offset on θ̇."""

    def __init__(self, offset: float = 0.0):
        super().__init__("Pendulum-v1", dtype=torch.float64)
        f = dynamics_fn("Pendulum-v1")

        def shifted(obs, action):
            nxt = f(obs, action).clone()
            nxt[..., 2] += offset
            return nxt

        self.dynamics = shifted


class _Zero(Planner):
    """Always plans zero torque."""

    def _optimize(self, objective, mean):
        objective(torch.zeros(self.population, self.horizon, self.action_dim))
        return torch.zeros_like(mean)


def _cem_toy(seed: int = 0, iterations: int = 4) -> tuple[CEM, object]:
    toy = two_hills_objective()
    cem = CEM(2, [-1.0], [1.0], population=30, elites=5, iterations=iterations, momentum=0.0, seed=seed)
    cem.plan(toy)
    return cem, toy


def _labelled(fig: Figure, grid: bool = False) -> None:
    """Every visible data axes has an x label and a y label (in a grid: those of the first column); a title."""
    assert fig._suptitle is not None and fig._suptitle.get_text()
    for ax in fig.axes:
        if ax.get_visible() and ax.get_label() != "<colorbar>":
            assert ax.get_xlabel(), ax
            first_column = ax.get_subplotspec().colspan.start == 0
            assert ax.get_ylabel() or (grid and not first_column), ax


def _bar_total(ax, color_rgba) -> float:
    return sum(p.get_height() for p in ax.patches if isinstance(p, Rectangle)
               and np.allclose(p.get_facecolor(), color_rgba))


# ------------------------------------------------------------------------------ objectives with the true dynamics
def test_true_dynamics_objective_equals_the_real_env():
    rng = np.random.default_rng(0)
    actions = rng.uniform(-2.5, 2.5, size=(4, 6, 1))  # beyond the bounds too: the env clips
    state = np.array([2.5, -0.7])
    obs0 = torch.tensor([math.cos(2.5), math.sin(2.5), -0.7], dtype=torch.float64)
    returns = true_dynamics_objective("Pendulum-v1", obs0)(torch.as_tensor(actions))
    states = rollout_true_dynamics("Pendulum-v1", obs0, torch.as_tensor(actions))
    assert returns.shape == (4,) and states.shape == (4, 7, 3)
    for n in range(4):
        real_obs, real_return = _pendulum_from(state, actions[n])
        assert returns[n].item() == pytest.approx(real_return, abs=1e-3)
        np.testing.assert_allclose(states[n].numpy(), real_obs, atol=1e-4)


def test_true_dynamics_objective_discounts_and_checks_its_arguments():
    obs0 = torch.tensor([-1.0, 0.0, 0.0], dtype=torch.float64)
    actions = torch.zeros(1, 3, 1, dtype=torch.float64)  # at rest hanging down: g = -π² every step
    undiscounted = true_dynamics_objective("Pendulum-v1", obs0)(actions)
    discounted = true_dynamics_objective("Pendulum-v1", obs0, discount=0.5)(actions)
    assert undiscounted.item() == pytest.approx(-3 * math.pi**2, rel=1e-6)
    assert discounted.item() == pytest.approx(-(1 + 0.5 + 0.25) * math.pi**2, rel=1e-6)
    with pytest.raises(ValueError, match="discount"):
        true_dynamics_objective("Pendulum-v1", obs0, discount=0.0)
    with pytest.raises(ValueError, match="obs"):
        true_dynamics_objective("Pendulum-v1", torch.zeros(2, 3))
    with pytest.raises(ValueError, match="env_id"):
        true_dynamics_objective("CartPole-v1", obs0)


def test_swing_up_return_at_rest_is_minus_pi_squared_per_step_and_cem_does_better():
    zero = _Zero(5, LOW, HIGH, population=2, iterations=1, seed=0)
    assert swing_up_return(zero, seed=3, steps=20, start_noise=0.0) == pytest.approx(-20 * math.pi**2, rel=1e-5)
    cem = CEM(10, LOW, HIGH, population=40, elites=5, iterations=3, seed=0, keep_history=False)
    assert swing_up_return(cem, seed=0, steps=20) > -20 * math.pi**2 + 5  # pumping lifts the pendulum


def test_two_hills_objective_has_its_maximum_at_the_peak():
    toy = two_hills_objective()
    peak, hill, corner = [[0.55, -0.45]], [[-0.35, 0.4]], [[-1.0, -1.0]]
    values = toy(torch.tensor([peak, hill, corner]).reshape(3, 2, 1))
    assert values[0] > values[1] > values[2] and values[0].item() == pytest.approx(1.0, abs=0.02)
    grid = torch.stack(torch.meshgrid(torch.linspace(-1, 1, 201), torch.linspace(-1, 1, 201), indexing="ij"), -1)
    assert toy(grid.reshape(-1, 2, 1)).max() <= values[0] + 1e-3  # brute force: nothing higher
    with pytest.raises(ValueError, match="actions"):
        toy(torch.zeros(4, 3, 1))


# ------------------------------------------------------------------------------ sweeps
def test_sweep_planners_shapes_seeds_and_errors():
    builders = {"random shooting": lambda n, h, s: RandomShooting(h, LOW, HIGH, population=n, seed=s),
                "MPPI": lambda n, h, s: MPPI(h, LOW, HIGH, population=n, iterations=2, seed=s)}
    sweep = sweep_planners(builders, samples=[4, 8], horizon=3, seeds=[0, 1], steps=3, progress=False)
    assert isinstance(sweep, PlannerSweep) and sweep.values == [4.0, 8.0] and "per planned action" in sweep.parameter
    assert set(sweep.returns) == set(builders) and all(r.shape == (2, 2) for r in sweep.returns.values())
    again = sweep_planners(builders, samples=[4, 8], horizon=3, seeds=[0, 1], steps=3, progress=False)
    for name in builders:
        np.testing.assert_array_equal(sweep.returns[name], again.returns[name])  # same seeds, same episodes
    by_h = sweep_planners(builders, samples=4, horizon=[2, 3], seeds=[0], steps=2, progress=False)
    assert "horizon" in by_h.parameter and by_h.returns["MPPI"].shape == (2, 1)
    with pytest.raises(ValueError, match="exactly one"):
        sweep_planners(builders, samples=[4], horizon=[3], steps=2, progress=False)
    with pytest.raises(ValueError, match="exactly one"):
        sweep_planners(builders, samples=4, horizon=3, steps=2, progress=False)
    with pytest.raises(ValueError, match="builders"):
        sweep_planners({}, samples=[4], horizon=3, progress=False)


def test_plot_planner_sweeps_draws_one_labelled_panel_per_sweep():
    returns = {"CEM": np.array([[-1.0, -2.0], [-0.5, -0.7], [-0.2, -0.3]]), "random shooting": -np.ones((3, 2))}
    by_samples = PlannerSweep("sequences evaluated per planned action", [10, 100, 1000], returns)
    by_horizon = PlannerSweep("planning horizon H [env steps of 0.05 s]", [2, 4, 8], returns)
    fig = plot_planner_sweeps(by_samples, by_horizon, title="sweeps")
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    _labelled(fig)
    assert fig.axes[0].get_xscale() == "log" and fig.axes[1].get_xscale() == "linear"
    cem_line = [line for line in fig.axes[0].lines if line.get_label() == "CEM"][0]
    np.testing.assert_allclose(cem_line.get_ydata(), returns["CEM"].mean(1))  # mean over seeds
    with pytest.raises(TypeError, match="PlannerSweep"):
        plot_planner_sweeps({"CEM": returns})
    with pytest.raises(ValueError):
        plot_planner_sweeps()


# ------------------------------------------------------------------------------ iterations of a planner
def test_plot_plan_iteration_on_the_toy_draws_samples_elites_and_the_gaussian():
    cem, toy = _cem_toy()
    fig = plot_plan_iteration(cem.history, 1, objective=toy)
    assert isinstance(fig, Figure)
    _labelled(fig)
    samples_ax, hist_ax = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert sum(isinstance(p, Ellipse) for p in samples_ax.patches) == 2  # 1σ and 2σ
    assert len(samples_ax.collections) >= 2  # contours, samples, elites
    grey, orange = (0.55, 0.55, 0.55, 1.0), (1.0, 0.4980392156862745, 0.054901960784313725, 1.0)
    assert _bar_total(hist_ax, orange) == cem.elites  # the elites' bars
    assert _bar_total(hist_ax, grey) == cem.population - cem.elites
    assert "iteration 2 of 4" in fig._suptitle.get_text()


def test_random_shooting_draws_no_gaussian_and_no_elite_set():
    toy = two_hills_objective()
    rs = RandomShooting(2, [-1.0], [1.0], population=50, seed=0)
    rs.plan(toy)
    fig = plot_plan_iteration(rs.history, objective=toy, name="random shooting")
    samples_ax = fig.axes[0]
    assert not any(isinstance(p, Ellipse) for p in samples_ax.patches)
    assert fig._suptitle.get_text() == "random shooting: 50 samples"
    hist_ax = [ax for ax in fig.axes if ax.get_xlabel().startswith("return")][0]
    assert sum(p.get_height() for p in hist_ax.patches if isinstance(p, Rectangle)) == 50


def test_sequence_panels_with_trajectories_on_the_pendulum():
    hanging = torch.tensor([-1.0, 0.0, 0.0])
    cem = CEM(6, LOW, HIGH, population=20, elites=4, iterations=3, seed=0)
    cem.plan(true_dynamics_objective("Pendulum-v1", hanging))

    def tip(actions):
        return rollout_true_dynamics("Pendulum-v1", hanging, actions)[..., 0]

    labels = {"action": "torque u_t [N m]", "trajectory": "cos θ_t"}
    fig = plot_plan_iteration(cem.history, -1, trajectory_fn=tip, action_low=LOW, action_high=HIGH, labels=labels)
    assert len(fig.axes) == 3
    _labelled(fig)
    assert fig.axes[0].get_ylabel() == "torque u_t [N m]" and fig.axes[1].get_ylabel() == "cos θ_t"
    assert fig.axes[0].get_ylim()[0] < -2.0 < 2.0 < fig.axes[0].get_ylim()[1]
    grid = plot_cem_iterations(cem.history, trajectory_fn=tip, action_low=LOW, action_high=HIGH)
    assert len(grid.axes) == 9  # 3 panels x 3 iterations
    _labelled(grid, grid=True)
    with pytest.raises(ValueError, match="trajectory_fn"):
        plot_plan_iteration(cem.history, trajectory_fn=lambda a: torch.zeros(len(a), 2))


def test_plot_cem_iterations_shares_axes_and_picks_at_most_six():
    cem, toy = _cem_toy(iterations=9)
    fig = plot_cem_iterations(cem.history, objective=toy)
    data_axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(data_axes) == 12  # 6 of the 9 iterations, 2 rows
    titles = [ax.get_title() for ax in data_axes if ax.get_title()]
    assert titles[0] == "iteration 1 of 9" and titles[-1] == "iteration 9 of 9"
    hist_axes = [ax for ax in data_axes if ax.get_xlabel().startswith("return")]
    assert len({ax.get_xlim() for ax in hist_axes}) == 1 and len({ax.get_ylim() for ax in hist_axes}) == 1
    fig = plot_cem_iterations(cem.history, iterations=[0, 8], objective=toy)
    assert len([ax for ax in fig.axes if ax.get_label() != "<colorbar>"]) == 4
    with pytest.raises(ValueError, match="iterations"):
        plot_cem_iterations(cem.history, iterations=[9])


def test_bad_histories_and_arguments_are_refused():
    cem, toy = _cem_toy()
    with pytest.raises(ValueError, match="history"):
        plot_plan_iteration([])
    with pytest.raises(TypeError, match="PlanIteration"):
        plot_plan_iteration([{"samples": 1}])
    with pytest.raises(ValueError, match="iteration"):
        plot_plan_iteration(cem.history, 4)
    with pytest.raises(ValueError, match="labels"):
        plot_plan_iteration(cem.history, labels={"colour": "x"})
    cem.history[0].returns[:] = -math.inf
    for it in cem.history[1:]:
        it.returns[:] = -math.inf
    with pytest.raises(ValueError, match="-inf"):
        plot_plan_iteration(cem.history)


# ------------------------------------------------------------------------------ the explorer
def test_cem_explorer_is_a_static_figure_without_a_kernel_or_ipywidgets(monkeypatch):
    cem, toy = _cem_toy()
    assert not widgets_available()  # pytest is no Jupyter kernel
    assert isinstance(cem_explorer(cem.history, objective=toy), Figure)
    assert isinstance(cem_explorer(cem.history, objective=toy, interactive=False), Figure)
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # ipywidgets not installed
    assert not widgets_available()
    with pytest.raises(ImportError, match="interactive=False"):
        cem_explorer(cem.history, objective=toy, interactive=True)


def test_cem_explorer_widget_shows_the_iteration_of_its_slider():
    pytest.importorskip("ipywidgets")
    cem, toy = _cem_toy()
    widget = cem_explorer(cem.history, objective=toy, interactive=True)
    (play, slider), image = widget.children[0].children, widget.children[1]
    assert (slider.min, slider.max, play.max) == (1, 4, 4)
    first = image.value
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    slider.value = 3
    third = image.value
    assert third != first
    slider.value = 1
    assert image.value == first  # cached frames come back unchanged


# ------------------------------------------------------------------------------ code side by side
def _documented(x):
    """A docstring that must not be shown."""
    return x + 1  # the body stays


def test_source_code_drops_docstrings_only():
    source = source_code(_documented)
    assert "must not be shown" not in source and "return x + 1  # the body stays" in source
    assert "must not be shown" in source_code(_documented, docstrings=True)
    with pytest.raises(TypeError):
        source_code(3)


def test_code_side_by_side_html_and_text():
    panels = code_side_by_side({"slide": "u ~ planning-algo(f_ψ, i) <here>", "code": [_documented]})
    assert isinstance(panels, CodePanels)
    html = panels._repr_html_()
    assert "u ~ planning-algo(f_ψ, i) &lt;here&gt;" in html and "display:flex" in html
    assert "_documented" in html and "must not be shown" not in html
    text = repr(panels)
    assert text.startswith("== slide ==") and "== code ==" in text
    with pytest.raises(TypeError, match="panels"):
        code_side_by_side({"bad": 3})
    with pytest.raises(ValueError):
        code_side_by_side({})


def test_animation_html_keeps_at_most_max_frames():
    frames = [np.full((8, 8, 3), 20 * k, dtype=np.uint8) for k in range(10)]
    html = animation_html(frames, fps=30, max_frames=4, downsample=2).data
    assert html.count("data:image/png;base64") == 4  # frames 0, 3, 6, 9
    with pytest.raises(ValueError, match="frames"):
        animation_html([])


# ------------------------------------------------------------------------------ k-step predictions
def test_rollout_particles_follow_one_member_each_under_ts_inf():
    torch.manual_seed(0)
    model = GaussianEnsemble(3, 1, ensemble_size=3, hidden_size=8, num_layers=1, dtype=torch.float64)
    with torch.no_grad():
        model.max_logvar.fill_(-40.0)  # std ≈ e^-20: the members are deterministic
        model.min_logvar.fill_(-60.0)
    starts = torch.randn(2, 3, dtype=torch.float64)
    actions = torch.rand(2, 4, 1, dtype=torch.float64) * 4 - 2
    predicted = rollout_particles(model, starts, actions, particles=5, generator=torch.Generator().manual_seed(1))
    assert predicted.shape == (2, 5, 5, 3)
    for s in range(2):
        for p in range(5):
            state = starts[s : s + 1]
            np.testing.assert_allclose(predicted[s, p, 0].numpy(), state[0].numpy())
            for j in range(4):  # member p mod 3 all the way, through GaussianEnsemble.predict
                mean, _ = model.predict(state, actions[s, j : j + 1], members=torch.tensor([p % 3]))
                state = mean[0, :, :3]
                np.testing.assert_allclose(predicted[s, p, j + 1].numpy(), state[0].numpy(), atol=1e-6)


def test_k_step_errors_vanish_for_the_true_model_and_match_a_known_offset():
    episode = _random_episode(steps=30).all()
    perfect = k_step_errors(_TrueModel(), episode, horizon=10, particles=3)
    assert perfect.rmse.shape == (11, 3) and perfect.starts == 21
    assert perfect.rmse.max() < 1e-4 and perfect.spread.max() == 0.0
    biased = k_step_errors(_TrueModel(offset=0.1), episode, horizon=10, particles=3)
    assert biased.rmse[0].max() == 0.0
    assert biased.rmse[1, 2] == pytest.approx(0.1, abs=1e-4)  # one step: exactly the offset
    assert biased.rmse[10, 2] > biased.rmse[1, 2]  # and then it compounds
    with pytest.raises(ValueError, match="horizon"):
        k_step_errors(_TrueModel(), episode, horizon=31)


def test_plot_model_predictions_draws_each_state_and_the_error():
    episode = _random_episode(steps=30).all()
    torch.manual_seed(0)
    model = GaussianEnsemble(3, 1, ensemble_size=2, hidden_size=8, num_layers=1)
    fig = plot_model_predictions(model, episode, start=5, horizon=8, particles=4,
                                 obs_labels=["cos θ", "sin θ", "θ̇ [rad/s]"], dt=0.05, title="predictions")
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 4
    _labelled(fig)
    assert visible[3].get_yscale() == "log" and "Δt = 0.05 s" in visible[3].get_xlabel()
    real = [line for line in visible[2].lines if line.get_label() == "real trajectory"][0]
    np.testing.assert_allclose(real.get_ydata()[-1], episode.next_obs[12, 2].item(), rtol=1e-6)
    with pytest.raises(ValueError, match="start"):
        plot_model_predictions(model, episode, start=25, horizon=8)
    with pytest.raises(ValueError, match="obs_labels"):
        plot_model_predictions(model, episode, start=0, horizon=8, obs_labels=["a"])
    shuffled = _random_episode(steps=30).all()
    shuffled.obs = shuffled.obs.flip(0)
    with pytest.raises(ValueError, match="consecutive"):
        plot_model_predictions(model, shuffled, start=0, horizon=8)
    with pytest.raises(TypeError, match="Batch"):
        plot_model_predictions(model, (episode.obs, episode.action), start=0, horizon=8)
