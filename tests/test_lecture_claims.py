"""Claims that hold: the numbers the lectures state from cheap, deterministic computations, recomputed.

Every test here does two things: it recomputes a number (or a definite outcome) that a lecture's markdown states,
with the package, the lecture's settings and the tier the text names, and it asserts that the lecture still says
it (the .ipynb is read with nbformat), so that the text and the test cannot drift apart. Where the lecture's own
code cell sets the number up, the test runs that very cell (``run_cells``: its source from the notebook, at the
named tier) instead of a copy of it.

Claims from a lecture's own training runs are not here: they are worded to hold for any seed, or the lecture
prints the value. Claims quoted from ``benchmarks/RESULTS.md`` are the benchmarks' to check; the ones that quote
a file shipped with the package are checked against that file below.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

LECTURES = Path(__file__).resolve().parents[1] / "lectures"


def markdown(lecture: str) -> str:
    """All markdown cells of ``lectures/<lecture>.ipynb``, joined, with runs of whitespace collapsed."""
    nb = nbformat.read(LECTURES / f"{lecture}.ipynb", as_version=4)
    text = "\n".join(cell.source for cell in nb.cells if cell.cell_type == "markdown")
    return re.sub(r"\s+", " ", text)


def assert_says(lecture: str, *phrases: str) -> None:
    """The lecture's markdown contains every phrase (whitespace-insensitive)."""
    text = markdown(lecture)
    missing = [p for p in phrases if re.sub(r"\s+", " ", p) not in text]
    assert not missing, f"{lecture}: the text no longer says {missing}; update the claim and this test together"


def run_cells(lecture: str, ids: list[str], tier: str, monkeypatch, edits: dict[str, str] | None = None) -> dict:
    """Execute the code cells ``ids`` of a lecture, in order, at compute tier ``tier``; returns their namespace.

    IPython magics (lines starting with ``%``) are dropped; ``by_budget`` reads the tier at call time. ``edits``
    (old -> new, each of which must occur) changes the source as an exercise asks the student to.
    """
    monkeypatch.setenv("MBRL_COURSE_BUDGET", tier)
    nb = nbformat.read(LECTURES / f"{lecture}.ipynb", as_version=4)
    cells = {cell.get("id"): cell for cell in nb.cells if cell.cell_type == "code"}
    namespace: dict = {}
    applied: set[str] = set()
    for cell_id in ids:
        source = "\n".join(line for line in cells[cell_id].source.splitlines() if not line.lstrip().startswith("%"))
        for old, new in (edits or {}).items():
            if old in source:
                source, _ = source.replace(old, new), applied.add(old)
        exec(compile(source, f"{lecture}:{cell_id}", "exec"), namespace)  # noqa: S102 - the lecture's own code
    missing = set(edits or {}) - applied
    assert not missing, f"{lecture}: no cell of {ids} contains {missing} any more"
    return namespace


@pytest.fixture
def float64():
    """Lectures 6 and 7 compute in double precision (their import cells set it); conftest's autouse fixture
    restores the default after each test."""
    torch.set_default_dtype(torch.float64)


@pytest.fixture(autouse=True)
def _restore_global_state():
    """The lectures' import cells set torch's thread count; some cells draw figures."""
    import matplotlib.pyplot as plt

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
    plt.close("all")


def _module_cells(lecture: str, ids: list[str]) -> dict:
    """``run_cells`` for a module-scoped fixture (cells that do not depend on the tier), state restored after."""
    mp, threads, dtype = pytest.MonkeyPatch(), torch.get_num_threads(), torch.get_default_dtype()
    try:
        return run_cells(lecture, ids, "default", mp)
    finally:
        mp.undo()
        torch.set_num_threads(threads)
        torch.set_default_dtype(dtype)


# --- Lecture 1 -------------------------------------------------------------------------------------------------

def test_l1_the_scale_of_pendulum_returns(monkeypatch):
    ns = run_cells("01-mbrl-templates", ["f779d93d", "l1-return-scale"], "default", monkeypatch)
    assert round(float(ns["worst"]), 2) == -16.27
    assert round(200 * float(ns["worst"])) == -3255
    assert round(float(ns["hanging"])) == -1974
    assert abs(float(np.mean(ns["random_returns"])) + 1200) < 100  # "the cell's mean is around −1200"
    assert_says("01-mbrl-templates", r"\pi^2 + 6.4 + 0.004 \approx 16.3", "below about −3250",
                r"-200\,\pi^2 \approx -1974", "= 16.274", "no return is below about $-3255$",
                "(The cell prints −16.27 per step, −3255 and −1974.)", "the cell's mean is around −1200",
                "(b) is roughly the mean of random torques")
    # lecture 9 quotes the same scale for the pixel pendulum (its reward is summed over the repeated env steps)
    assert_says("09-planet-dreamer", "costs at most about 16.3 per env step", "between about −3250 and 0",
                "hanging still scores about −1970", "averages about −1200 at the `default` tier")


def test_l1_what_mpc_pays_per_action(monkeypatch):
    ns = run_cells("01-mbrl-templates", ["f779d93d", "9aea0755"], "default", monkeypatch)
    config = ns["config"]
    N, J, H, P = config.planner.population, config.planner.iterations, config.planner.horizon, config.particles
    assert (N, J, H, P) == (100, 3, 20, 5)
    assert N * P * H * J == 30_000 and J * H == 60 and N * P == 500
    assert_says("01-mbrl-templates", "$N = 100$ sequences per CEM iteration, runs $J = 3$ iterations, plans $H = 20$",
                "$P = 5$ particles", r"= 30\,000$ one-step predictions per action")


def test_l1_a_myopic_planner_fails_even_with_the_true_dynamics(monkeypatch):
    """Exercise 3's answer: the lecture's CEM (default tier) on TrueDynamics with H = 5 and H = 20."""
    from mbrl_course.agents import run_episode
    from mbrl_course.agents.mpc import MPCAgent
    from mbrl_course.envs import make_env, reward_fn, termination_fn
    from mbrl_course.models import TrueDynamics

    torch.set_num_threads(1)
    ns = run_cells("01-mbrl-templates", ["f779d93d", "9aea0755"], "default", monkeypatch)
    env_id = ns["ENV_ID"]
    returns = {}
    for horizon in (5, 20):
        for seed in (10_024, 10_010):
            config = ns["config"]  # the lecture's default-tier PETS settings, the horizon changed
            planner_config = replace(config.planner, horizon=horizon)
            env = make_env(env_id, max_episode_steps=200)
            planner = planner_config.build(env.action_space.low, env.action_space.high, seed=0)
            agent = MPCAgent(TrueDynamics(env_id), planner, reward_fn=reward_fn(env_id),
                             termination_fn=termination_fn(env_id), particles=config.particles,
                             propagation=config.propagation, seed=0)
            returns[horizon, seed] = round(run_episode(env, agent, None, episode=0, seed=seed).ret)
    assert returns == {(5, 10_024): -1495, (5, 10_010): -1188, (20, 10_024): -383, (20, 10_010): -237}
    env = make_env(env_id)
    angles = {seed: math.degrees(math.atan2(*env.reset(seed=seed)[0][[1, 0]])) for seed in (10_024, 10_010)}
    assert abs(angles[10_010] + 135) < 5  # "a start in the lower half (θ ≈ −135°, seed 10 010)"
    assert abs(angles[10_024]) > 135  # section 3's recorded episode "starts near the bottom"
    assert_says("01-mbrl-templates", "the same CEM with $H = 5$ scored −1495",
                "−1188 from a start in the lower half (θ ≈ −135°, seed 10 010)",
                "against −383 and −237 with $H = 20$")


# --- Lecture 2 -------------------------------------------------------------------------------------------------

def test_l2_which_hill_cem_climbs(monkeypatch):
    """The 20-seed cell at the default tier, and exercise 3's populations 6, 40 and 100."""
    ns = run_cells("02-planning", ["ba3745eb", "f56dd47c", "l2-cem-seeds"], "default", monkeypatch)
    assert ns["population"] == 40 and ns["settled"].count("broad hill") == 6  # the cell's own run
    toy, nearest, CEM = ns["toy"], ns["nearest"], ns["CEM"]
    on_hill, fooled = {}, 0
    for population in (6, 40, 100):
        on_hill[population] = 0
        for seed in range(20):
            cem = CEM(horizon=2, action_low=[-1.0], action_high=[1.0], population=population, elites=4, iterations=6,
                      momentum=0.0, seed=seed)
            u = cem.plan(toy).flatten()
            first = cem.history[0]
            best_first = first.samples[first.returns.argmax()].flatten()
            if nearest(u) == "broad hill":
                on_hill[population] += 1
                fooled += population == 40 and nearest(best_first) == "narrow peak"
    assert on_hill == {6: 12, 40: 6, 100: 0}
    assert fooled >= 1  # "look for seeds that settle on the broad hill although their best first sample lay near the peak"
    assert_says("02-planning", "12 of 20 seeds settled on the broad hill with $N = 6$, 6 with $N = 40$ and none with $N = 100$",
                "Look for seeds that settle on the broad hill although their best first sample lay near the narrow peak",
                "the 20-seed cell shows seeds that settle on the lower, broad hill")


def test_l2_hanging_still_for_100_steps():
    from mbrl_course.envs import make_env

    env = make_env("Pendulum-v1")
    env.reset(seed=0)
    env.unwrapped.state = np.array([np.pi, 0.0])
    total = sum(env.step(np.array([0.0]))[1] for _ in range(100))
    assert round(total) == -987
    assert_says("02-planning", r"hanging still for the 100 steps would score $-100\pi^2 \approx -987$")


# --- Lecture 3 -------------------------------------------------------------------------------------------------

def test_l3_what_a_minibatch_is_made_of(monkeypatch):
    from types import SimpleNamespace

    from mbrl_course.agents.mbpo import MBPOLearner

    ns = run_cells("03-dyna-mbpo-mbmf", ["51b7c065", "6ed1ea43"], "default", monkeypatch)
    config = ns["mbpo_config"]
    assert (config.batch_size, config.real_ratio, config.updates_per_step) == (256, 0.05, 20)
    assert (config.rollout_batch_size, config.rollout_every, config.model_every, config.sim_rounds) == (100_000, 250, 250, 4)
    assert set(config.rollout_schedule[1:3]) == {1}  # rollouts of length 1 throughout
    learner = SimpleNamespace(sim=[object()], batch_size=config.batch_size, real_ratio=config.real_ratio)
    real, imagined = MBPOLearner.split_batch(learner)
    assert (real, imagined) == (13, 243)
    assert (20 * real, 20 * imagined) == (260, 4860)
    assert ns["STEPS"] == 4_500
    assert_says("03-dyna-mbpo-mbmf", "minibatches of $B = 256$ with a real share of 0.05, 20 updates per real step, and every 250 steps imagines 100,000 one-step rollouts, keeping the last 4 rounds",
                r"\mathrm{round}(12.8) = 13$; imagined: $256 - 13 = 243$", "260 real and 4,860 imagined",
                "(b): round(12.8) = 13")


# --- Lecture 4 -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def l4_gps():
    """Section 1's GPs (the lecture's cell, SEED = 0; the tier plays no part in it)."""
    return _module_cells("04-pilco", ["03c9522d", "92f42b96"])


def test_l4_the_fitted_gp(l4_gps):
    fitted, guess, report = l4_gps["fitted"], l4_gps["guess"], l4_gps["report"]
    lengthscale = float(fitted.lengthscales.detach())
    assert 3 * 0.3 < lengthscale < 1.5  # "several times longer" than 0.3, "about 1"
    assert 0.001 < float(fitted.noise_var.detach()) < 0.05  # "of the order of the data's 0.01"
    assert round(float(fitted.signal_var.detach()), 2) == 2.45
    # "Its marginal likelihood ... is far higher" than the hand-set guess's
    assert float(fitted.log_marginal_likelihood().detach().sum()) > float(guess.log_marginal_likelihood().detach().sum()) + 10
    assert report.log_likelihood[-1] > report.log_likelihood[0]
    assert_says("04-pilco", "the fitted length-scale is several times longer", "of the order of the data's 0.01",
                "with the fitted $\\ell$ of about 1", "For the fitted GP ($\\alpha^2 \\approx 2.45$)")


def test_l4_the_two_limits_of_moment_matching(l4_gps):
    fitted = l4_gps["fitted"]
    mu = torch.tensor([-0.5], dtype=torch.float64)
    means = {}
    for var in (1e-6, 1.0, 1e2, 1e6):
        moments = fitted.moments(mu, torch.tensor([[var]], dtype=torch.float64))
        means[var] = float(moments.mean)
        if var == 1e6:
            var_far = float(moments.cov.squeeze())
    plug_mean, plug_var = (float(t) for t in fitted.posterior(mu[None]))
    assert round(means[1e-6], 3) == -0.985 and round(plug_mean, 3) == -0.985 and round(plug_var, 3) == 0.091
    assert round(means[1.0], 2) == -0.31 and round(means[1e2], 2) == -0.15 and round(means[1e6], 4) == -0.0016
    assert round(var_far, 3) == 2.447
    assert_says("04-pilco", "$\\mathbb{E}[f] = -0.985$ at `var = 1e-6` (the plug-in: $m(-0.5) = -0.985$,",
                "$v = 0.091$), $-0.31$ at 1, $-0.15$ at $10^2$, $-0.0016$ at $10^6$, where $\\mathrm{Var}[f] = 2.447$")


def test_l4_beyond_the_data(l4_gps):
    fitted = l4_gps["fitted"]
    mu = torch.tensor([5.0], dtype=torch.float64)
    matched = {}
    for var in (0.02, 0.5):
        moments = fitted.moments(mu, torch.tensor([[var]], dtype=torch.float64))
        matched[var] = (round(float(moments.mean), 2), round(float(moments.cov.squeeze()), 2))
    plug = tuple(round(float(t), 2) for t in fitted.posterior(mu[None]))
    assert matched == {0.02: (0.10, 2.44), 0.5: (0.18, 2.42)} and plug == (0.09, 2.44)
    assert_says("04-pilco", "moment matching gives mean 0.10 and variance 2.44 for $\\sigma_x^2 = 0.02$, 0.18 and 2.42 for 0.5; the plug-in 0.09 and 2.44 for both")


def test_l4_the_saturating_cost_explores():
    from mbrl_course.models.moment_matching import expected_saturating_cost

    weight, target = torch.tensor([[1 / 0.25**2]], dtype=torch.float64), torch.zeros(1, dtype=torch.float64)

    def cost(mu, s):
        return float(expected_saturating_cost(torch.tensor([mu], dtype=torch.float64),
                                              torch.tensor([[s**2]], dtype=torch.float64), target, weight))

    assert round(cost(1.0, 0.5), 3) == 0.910
    s_star = math.sqrt(1 - 0.25**2)
    assert round(s_star, 2) == 0.97 and round(cost(1.0, s_star), 3) == 0.848 and round(cost(1.0, 0.0), 4) == 0.9997
    grid = np.linspace(0.0, 3.0, 3001)
    assert abs(grid[np.argmin([cost(1.0, s) for s in grid])] - s_star) < 2e-3  # the minimiser over s
    assert_says("04-pilco", "= 0.910$, the table's value", "s^* = \\sqrt{1 - 0.0625} \\approx 0.97$ m",
                "\\approx 0.848$, against 0.9997 at $s = 0$")


# --- Lecture 5 -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def l5_local():
    """Section 4's local model (the lecture's cells; nothing in them depends on the tier)."""
    return _module_cells("05-ilqr-gps", ["cell-03", "cell-16"])


def _one_step_rmse(ns, model, samples):
    xs, us = samples
    predicted = torch.stack([model.mean(t, xs[:, t], us[:, t]) for t in range(ns["T_LOCAL"])], 1)
    return float((predicted - xs[:, 1:]).square().mean().sqrt())


def test_l5_local_models_fit_near_their_samples(l5_local):
    ns = l5_local
    model = ns["local_model"]
    held_out, far = _one_step_rmse(ns, model, ns["held_out"]), _one_step_rmse(ns, model, ns["far"])
    assert far > 5 * held_out  # "far larger for the noisier controller's samples"
    assert float(model.A[0].abs().max()) < 1e-3  # "the ridge sets the fitted A_0 to about 0"
    # exercise 3: four samples per fit (as many as unknowns) generalise several-fold worse; A_0 stays 0
    states, actions = ns["sample_trajectories"](ns["f_angle"], ns["previous"], ns["x0_local"], 4,
                                                torch.Generator().manual_seed(0))
    small = ns["fit_dynamics"](states, actions)
    assert _one_step_rmse(ns, small, ns["held_out"]) > 3 * held_out
    assert float(small.A[0].abs().max()) < 1e-3
    assert_says("05-ilqr-gps", "(the ridge sets the fitted A_0 to about 0)",
                "The RMSE printed above is far larger for the noisier controller's samples",
                "The RMSE on held-out samples grows several-fold", "A_0 stays at 0 for every N")


def test_l5_the_trust_region_sweep(l5_local):
    ns = l5_local
    quadratic = ns["quadratize_cost"](ns["c_angle"], ns["nominal_x"], ns["nominal_u"])
    sweep = ns["trust_region_sweep"](ns["f_angle"], ns["c_angle"], ns["local_model"], quadratic, ns["previous"],
                                     ns["x0_local"], [0.1, 1.0, 10.0, 100.0, 1000.0], samples=50, seed=0)
    predicted = [float(c) for c in sweep.model_costs]
    measured = [float(c) for c in sweep.true_costs]
    # small ε: prediction and truth fall together; the largest ε: the model promises more than the truth delivers
    assert predicted[1] < predicted[0] and measured[1] < measured[0]
    assert abs(predicted[1] - measured[1]) < 0.1 * abs(measured[1])
    assert predicted[-1] < measured[-1] - 0.1 * abs(measured[-1])
    assert_says("05-ilqr-gps", "For small ε both fall together; for the largest ε the model promises more than the true dynamics deliver")


def test_l5_ilqr_solves_an_lqr_problem_in_one_step():
    from mbrl_course.planning.ilqr import ILQRConfig, ilqr

    F64 = torch.float64
    A = torch.tensor([[1.0, 0.1], [0.0, 1.0]], dtype=F64)
    B = torch.tensor([[0.0], [0.1]], dtype=F64)
    Q = torch.diag(torch.tensor([1.0, 0.1], dtype=F64))
    R = torch.tensor([[0.01]], dtype=F64)
    x0, H = torch.tensor([1.0, 0.0], dtype=F64), 30
    lq = ilqr(lambda x, u: x @ A.T + u @ B.T, lambda x, u: ((x @ Q) * x).sum(-1) + ((u @ R) * u).sum(-1),
              x0, torch.zeros(H, 1, dtype=F64), -100.0, 100.0, ILQRConfig(iterations=5))
    P, K = torch.zeros(2, 2, dtype=F64), []
    for _ in range(H):
        K.append(torch.linalg.solve(R + B.T @ P @ B, B.T @ P @ A))
        P = Q + A.T @ P @ (A - B @ K[-1])
    assert int(lq.iterations[0]) == 1
    assert abs(float(lq.actions[0, 0, 0]) - float(-K[-1] @ x0)) < 1e-8
    assert abs(float(lq.cost[0]) - float(x0 @ P @ x0)) < 1e-8
    assert_says("05-ilqr-gps", "(a) One accepted step; the next iteration finds nothing to improve and stops.")


# --- Lecture 6 -------------------------------------------------------------------------------------------------

EQUAL_DOORS = {"DOORS = torch.tensor([2.0, 4.5, 8.0, 10.0, 14.0, 17.5])": "DOORS = torch.arange(2.0, 20.0, 3.0)"}


def _printed_row(near_truth: torch.Tensor) -> list[float]:
    """The cell's printed row: p(|s_t − true s_t| < 1 m | Y_1:t) at t = 5, 10, ..., 60."""
    return [float(near_truth[t - 1]) for t in range(5, 61, 5)]


@pytest.mark.parametrize("tier", ["smoke", "default", "full"])
def test_l6_the_corridor_and_the_tracking_filter_at_every_tier(tier, monkeypatch, float64):
    ns = run_cells("06-filtering", ["filtering-03", "filtering-05", "filtering-11"], tier, monkeypatch)
    row = _printed_row(ns["near_truth"])
    assert all(0.85 - 5e-3 <= p <= 1.0 for p in row[3:])  # "0.85 to 1.00 from step 20 on"
    assert row[0] < 0.5 and float(ns["near_truth"][-1]) < float(ns["near_truth"][44])  # small at first; falls after 45
    alike = run_cells("06-filtering", ["filtering-03", "filtering-05"], tier, monkeypatch, edits=EQUAL_DOORS)
    assert max(_printed_row(alike["near_truth"])) < 0.45  # exercise 4: "at most about 0.4 at every tier"
    # exercise 3: r ten times too large widens the posterior band, at every tier
    matched, wide = ns["tracked"], ns["track"](ns["Q_TRUE"], 10 * ns["R_TRUE"])
    assert abs(float(wide.filtered_covs[:, 0, 0].sqrt().mean()) - 0.48) < 0.015
    assert abs(float(matched.filtered_covs[:, 0, 0].sqrt().mean()) - 0.19) < 0.01
    assert float(wide.log_likelihood) < float(matched.log_likelihood)
    # section 2's three settings: the matched one has the highest marginal likelihood
    lls = {label: float(ns["track"](q, r).log_likelihood)
           for label, (q, r) in {"q/100": (ns["Q_TRUE"] / 100, ns["R_TRUE"]), "matched": (ns["Q_TRUE"], ns["R_TRUE"]),
                                 "r/100": (ns["Q_TRUE"], ns["R_TRUE"] / 100)}.items()}
    assert max(lls, key=lls.get) == "matched"
    if tier == "default":
        assert (round(float(wide.log_likelihood)), round(float(matched.log_likelihood))) == (-169, -81)
    if tier != "smoke":  # the default and full tiers filter the same first 15 s, with a hard turn at about 13 s
        velocity = ns["states"][:150, 1]
        change = (velocity[10:] - velocity[:-10]).abs()  # over 1 s
        assert 12.5 <= 0.1 * (int(change.argmax()) + 1) <= 13.5
        if tier == "full":
            default = run_cells("06-filtering", ["filtering-03", "filtering-11"], "default", monkeypatch)
            assert torch.equal(ns["states"][:150], default["states"])
    assert_says("06-filtering", "the mass near the truth no longer grows (here it falls)",
                "we got at most about 0.4 at every tier, where the irregular doors' row reads 0.85 to 1.00 from step 20 on",
                "about 0.48 m against the matched filter's 0.19 m, at every tier",
                "(about −169 against −81 for the default tier's 150 steps)",
                "at the default and full tiers, which filter the same first 15 s, at about 13 s",
                "the matched setting's is the highest")


@pytest.mark.parametrize("tier", ["smoke", "default"])
def test_l6_adam_climbs_the_likelihood_surface(tier, monkeypatch, float64):
    ns = run_cells("06-filtering", ["filtering-03", "filtering-11", "filtering-19"], tier, monkeypatch)
    best, climbed = float(ns["surface"].max()), float(ns["climb"].log_likelihoods[-1])
    if tier == "default":  # "climbs to the best value on the grid ... the fitted (q, r) lies near the grid's best"
        assert climbed >= best - 0.5
        q_best, r_best = float(ns["Q"].flatten()[ns["best"]]), float(ns["R"].flatten()[ns["best"]])
        assert abs(math.log(ns["q_fit"] / q_best)) < math.log(1.5) and abs(math.log(ns["r_fit"] / r_best)) < math.log(1.5)
    else:  # "the smoke tier's 5 steps stop far below it"
        assert climbed < best - 10
    assert_says("06-filtering", "With enough steps (the default tier's 100) it climbs to the best value on the grid",
                "the smoke tier's 5 steps stop far below it")


def test_l6_one_kalman_step_by_hand_and_the_widening_prediction(float64):
    from mbrl_course.filters import LinearGaussianSSM, kalman_filter, predict

    one = LinearGaussianSSM(torch.tensor([0.0]), torch.eye(1), torch.eye(1), torch.eye(1), torch.eye(1), torch.eye(1))
    step = kalman_filter(one, torch.tensor([[2.0]]))
    assert float(step.predicted_covs.squeeze()) == pytest.approx(2.0)
    assert float(step.predicted_obs_covs.squeeze()) == pytest.approx(3.0)
    assert round(float(step.filtered_means.squeeze()), 4) == 1.3333
    assert round(float(step.filtered_covs.squeeze()), 4) == 0.6667
    assert round(float(step.log_likelihood), 4) == -2.1349
    DT = 0.1
    target = LinearGaussianSSM(torch.zeros(2), torch.eye(2), torch.tensor([[1.0, DT], [0.0, 1.0]]),
                               torch.tensor([[DT**3 / 3, DT**2 / 2], [DT**2 / 2, DT]]), torch.tensor([[1.0, 0.0]]),
                               0.1 * torch.eye(1))
    position_var = predict(target, torch.zeros(2), torch.zeros(2, 2), num_steps=30).state_covs[:, 0, 0]
    assert [round(float(position_var[k - 1]), 4) for k in (10, 20, 30)] == [0.3333, 2.6667, 9.0]
    assert_says("06-filtering", r"\approx -2.135$", "log p(y_1) = -2.1349",
                "The entries at $k = 10, 20, 30$ are $0.3333$, $2.6667$ and $9.0000$",
                "±1.15 m after 1 s, ±3.27 m after 2 s and ±6 m after 3 s")
    assert [round(2 * math.sqrt(float(position_var[k - 1])), 2) for k in (10, 20, 30)] == [1.15, 3.27, 6.0]


@pytest.mark.slow
def test_l6_the_bayesian_kalman_filter_learns_the_rate(monkeypatch, float64):
    """Section 5 at the default tier (6-15 s: 40 Adam steps through the ODE solver) and at the smoke tier."""
    ns = run_cells("06-filtering", ["filtering-03", "filtering-25", "filtering-27"], "default", monkeypatch)
    rate = ns["bkf"].dynamics.flow.transition_field.rate.item()
    assert abs(abs(rate) - 0.01) < 0.0015  # "close after the default tier's 40 Adam steps"
    with torch.no_grad():
        fixed, bkf = ns["fixed"].filter(ns["y_chirp"]), ns["bkf"].filter(ns["y_chirp"])
    assert float(bkf.log_likelihood) > float(fixed.log_likelihood)  # "the Bayesian Kalman filter's the higher"
    smoke = run_cells("06-filtering", ["filtering-03", "filtering-25", "filtering-27"], "smoke", monkeypatch)
    smoke_rate = smoke["bkf"].dynamics.flow.transition_field.rate.item()
    assert abs(abs(smoke_rate) - 0.01) > 0.0015  # "the smoke tier's 2 steps are too few to learn it"
    assert_says("06-filtering", "compare the printed |a| with the true 0.01: close after the default tier's 40 Adam steps",
                "the smoke tier's 2 steps are too few to learn it",
                "the Bayesian Kalman filter's the higher once its rate is learned")


# --- Lecture 7 -------------------------------------------------------------------------------------------------

def test_l7_the_mean_field_floor(monkeypatch, float64):
    from mbrl_course.filters import LinearGaussianSSM
    from mbrl_course.viz.ssm import mean_field_gap_floor

    eye = torch.eye(1)
    chain = LinearGaussianSSM(initial_mean=torch.zeros(1), initial_cov=eye, transition_matrix=eye,
                              transition_cov=0.1 * eye, emission_matrix=eye, emission_cov=0.1 * eye)
    assert round(mean_field_gap_floor(chain, 1), 4) == 0.3031
    precision = torch.tensor([[11.0, -10.0], [-10.0, 20.0]])
    exact = torch.linalg.inv(precision).diagonal()
    assert [round(float(v), 4) for v in exact] == [0.1667, 0.0917]
    assert [round(1 / float(p), 4) for p in precision.diagonal()] == [0.0909, 0.05]
    assert round(1 - 100 / 220, 3) == 0.545 and round(-0.5 * math.log(1 - 100 / 220), 4) == 0.3031
    # exercise 3: the floor per step of the lecture's oscillator (its own cell), for three transition noises
    floors = {}
    for noise in ("0.2", "0.02", "0.002"):
        ns = run_cells("07-variational-ssm", ["vssm-03", "vssm-05"], "smoke", monkeypatch,
                       edits={"transition_cov=0.02 * torch.eye(2)": f"transition_cov={noise} * torch.eye(2)"})
        floors[noise] = round(mean_field_gap_floor(ns["oscillator"], ns["T"]) / ns["T"], 3)
    assert floors == {"0.2": 0.257, "0.02": 0.478, "0.002": 0.670}
    assert_says("07-variational-ssm", "so the floor is −½ log(0.5455) = 0.3031 nats",
                "0.1667 and 0.0917. The mean-field ones are 1/11 = 0.0909 and 1/20 = 0.0500",
                "| 0.2 I | 0.257 |", "| 0.02 I (the lecture's) | 0.478 |", "| 0.002 I | 0.670 |")


def test_l7_how_much_of_a_prediction_is_the_posteriors(monkeypatch, float64):
    ns = run_cells("07-variational-ssm", ["vssm-03", "vssm-05"], "smoke", monkeypatch)
    from mbrl_course.filters import predict

    oscillator = ns["oscillator"]
    assert round(0.97**40, 3) == 0.296
    far = predict(oscillator, torch.zeros(2), torch.zeros(2, 2), num_steps=300)
    V = float(far.obs_covs[-1].squeeze())
    assert round(V - 0.1, 4) == 0.3384 and round(V, 4) == 0.4384 and round(math.sqrt(V), 3) == 0.662
    assert round(0.02 / (1 - 0.97**2), 4) == 0.3384
    assert_says("07-variational-ssm", "0.97^{40} = 0.296", "→ 0.02 / 0.0591 = 0.3384, and V_{T+k} → 0.3384 + 0.1",
                "= 0.4384, a standard deviation of 0.662 (`filters.predict` gives the same value of V at k = 300)")


# --- Lecture 8 -------------------------------------------------------------------------------------------------

def test_l8_the_disease_stages_durations():
    from mbrl_course.ssm.hmm import SemiMarkovChain

    durations = SemiMarkovChain.disease_progression().durations  # (K, D_max): p_k(d), d = 1..D_max
    d = torch.arange(1, durations.shape[1] + 1, dtype=durations.dtype)
    means = (durations * d).sum(-1)
    assert [round(float(m)) for m in means] == [6, 4, 5, 3]
    healthy = durations[0]
    assert round(float(healthy[5]), 1) == 0.5 and float(healthy[:3].sum()) < 1e-3
    assert float(healthy[0]) < 1e-3 and float(healthy[12:].sum()) < 1e-3  # d = 1..12 only
    assert_says("08-recurrent-ssm", "(about 6, 4, 5 and 3 steps, rarely much shorter or longer)",
                "`chain.durations[0]`: p(6) ≈ 0.50, p(d ≤ 3) ≈ 0",
                "The true law puts 0.50 on d = 6 and nothing on d = 1 or beyond 12")


# --- Lecture 9 -------------------------------------------------------------------------------------------------

def test_l9_the_weights_of_the_lambda_return():
    from mbrl_course.rl.actor_critic import lambda_returns

    gamma, lam, H = 0.99, 0.95, 15
    weights = []
    for n in range(1, H + 1):  # r = 0 and v = the n-th unit vector: V_λ(s_0) = γ^n w_n
        values = torch.zeros(H + 1, dtype=torch.float64)
        values[n] = 1.0
        weights.append(float(lambda_returns(torch.zeros(H, dtype=torch.float64), values, gamma, lam)[0]) / gamma**n)
    assert sum(weights) == pytest.approx(1.0)
    assert round(weights[-1], 3) == 0.488 and round(sum(weights[:5]), 3) == 0.226
    assert round(sum(weights[:7]), 3) == 0.302 and round(gamma**15, 3) == 0.860
    assert_says("09-planet-dreamer", "λ^{14} = 0.95^{14} = 0.488 on V_N^{15}", "= 1 − λ^5 = 0.226",
                "(70 % of the weight lies on returns of 8 steps or more, 1 − 0.302)", "γ^{15} = 0.99^{15} = 0.860")


def test_l9_what_each_agent_pays():
    from mbrl_course.runs import make_config

    planet, dreamer = make_config("planet", tier="default"), make_config("dreamer", tier="default")
    p = planet.planner
    assert (p.population, p.elites, p.iterations, p.horizon, planet.exploration_std) == (200, 20, 5, 12, 0.3)
    assert (planet.train.num_steps, planet.train.batch_size, planet.train.chunk_length) == (100, 16, 20)
    assert planet.seed_episodes == 3
    assert p.population * p.iterations * p.horizon == 12_000
    ac = dreamer.actor_critic
    assert (dreamer.seed_steps, dreamer.train_every, ac.horizon, ac.lam, ac.gamma) == (300, 5, 15, 0.95, 0.99)
    assert (dreamer.train.batch_size, dreamer.train.chunk_length) == (16, 20) and ac.actor_lr == ac.value_lr == 8e-5
    assert dreamer.train.batch_size * dreamer.train.chunk_length * ac.horizon == 4_800
    assert_says("09-planet-dreamer", "(default tier: 100 steps on 16 chunks of 20)",
                "(default: 200 candidates, 20 elites, 5 iterations, H = 12)", "(σ = 0.3)",
                "random actions for the first 300 steps, then an update every 5 steps", "(8e-5)",
                "200 × 5 × 12 = 12 000 imagined steps per decision", "= 4 800 imagined steps per update",
                "The first three episodes of each run act at random")


def test_l9_the_shipped_planet_curves_say_what_the_lecture_says():
    from mbrl_course.viz.planet_dreamer import benchmark_curves

    bench = benchmark_curves("pixels_Pendulum-v1_default")
    random_ref = bench["random"]
    assert (random_ref["mean"], random_ref["se"], random_ref["episodes"]) == (-1195.5, 50.3, 30)
    band = random_ref["mean"] + 5 * random_ref["se"]  # the figure's "random + 5 SE"
    runs = {name.split()[-1]: run for name, run in bench["runs"].items()}
    assert sorted(runs) == ["0", "1", "2"]
    first_above = []
    for seed, run in runs.items():
        returns = [row["return"] for row in run["rows"]]
        assert len(returns) == 20
        assert 12 * 60 <= run["wall_s"] <= 15 * 60  # "each in 12 to 15 minutes of training"
        assert run["z"] > 10  # "more than 10 standard errors ... above the random policy's mean"
        first_above.append(next(i + 1 for i, r in enumerate(returns) if r > band))
        if seed == "2":  # "swings the pendulum up and balances it in three of its last four episodes, about −125"
            assert sum(abs(r + 125) < 10 for r in returns[-4:]) == 3
        else:  # "seeds 0 and 1 end between about −500 and −900"
            assert all(-900 <= r <= -500 for r in returns[-5:])
    assert (min(first_above), max(first_above)) == (6, 13)  # quiz 6: "first left the random band in their 6th to 13th"
    assert_says("09-planet-dreamer", "(−1195.5 ± 50.3 over the benchmark's 30 episodes)",
                "each in 12 to 15 minutes of training", "more than 10 standard errors (of the difference)",
                "seed 2 swings the pendulum up and balances it in three of its last four episodes, returns about −125",
                "seeds 0 and 1 end between about −500 and −900", "first left the random band in their 6th to 13th episode")


# --- Settings the lectures quote from the package's tier configs ----------------------------------------------

def test_l4_l5_the_tier_settings_the_lectures_quote():
    from mbrl_course.agents.gps import GPSConfig
    from mbrl_course.agents.pilco import PILCOConfig

    smoke, default = PILCOConfig.for_budget("smoke"), PILCOConfig.for_budget("default")
    assert smoke.horizon == 10 and smoke.num_basis < default.num_basis
    assert (default.horizon, default.controller, default.num_basis) == (40, "rbf", 50)
    assert_says("04-pilco", "in `smoke` 2 trials, a 10-step prediction horizon and a tiny policy",
                "the paper's 40-step horizon and 50-basis RBF policy")
    gps = GPSConfig.for_budget("default")
    g = gps.learner
    assert gps.model == "true"
    assert (g.conditions, g.horizon, g.guided_samples, g.policy_samples, g.covariance_scale, g.policy_steps,
            g.keep_updates, g.ilqr.iterations) == (8, 80, 8, 4, 0.1, 300, 3, 25)
    assert_says("05-ilqr-gps", "C = 8 start states per update, T = 80 steps, m_g = 8 guiding and 4 policy samples per start state, guiding covariance 0.1 · Q_uu⁻¹, 300 Adam steps on −Φ(θ) per update over the last 3 sample sets",
                "iLQR returns a *local* optimum after at most 25 iterations")


def test_l5_mirrored_initial_controls_give_a_mirrored_run(monkeypatch):
    """Exercise 2's answer, on section 1's own cell: u = −0.5 mirrors the run from u = 0.5. The symmetry holds at
    any tier; the smoke tier's 6 iterations on 40 steps check it in a second (the default tier's run takes ~10 s)."""
    runs = {}
    for sign in ("0.5", "-0.5"):
        ns = run_cells("05-ilqr-gps", ["cell-03", "cell-05"], "smoke", monkeypatch,
                       edits={"torch.full((H_SWING, 1), 0.5, dtype=F64)": f"torch.full((H_SWING, 1), {sign}, dtype=F64)"})
        runs[sign] = ns["snapshots"].result
    plus, minus = runs["0.5"], runs["-0.5"]
    assert int(plus.iterations[0]) == int(minus.iterations[0])
    assert float(plus.cost[0]) == pytest.approx(float(minus.cost[0]), rel=1e-9)
    assert torch.allclose(plus.actions, -minus.actions, atol=1e-6)
    assert_says("05-ilqr-gps", "From u = −0.5 the run is the mirror image of the run from u = 0.5: the same J (to rounding), the same number of\naccepted steps")
