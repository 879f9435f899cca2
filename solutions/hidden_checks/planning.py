"""Hidden checks of Assignment 1, "Planning with a learned model": the instructor's only, never released.

Loaded by the hidden test regions of ``solutions/01-planning/01-planning.ipynb``::

    from mbrl_course.grading.instructor import hidden_checks
    planning_hidden = hidden_checks("planning")

What is here and not in :mod:`mbrl_course.grading.planning` (the visible checks, which the
hidden tests also call on other seeds and sizes):

- comparisons with the reference implementation :mod:`mbrl_course.planning` (random shooting's
  plans, CEM's convergence, MPC in closed loop driven by the reference CEM);
- oracles a student could otherwise call in place of their own code (:func:`rollout_returns`, the
  return of an action sequence in a model, for any model and state);
- the generator checks of the planners (the samplers' are visible).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from mbrl_course.grading.checks import expect_finite, expect_in_bounds, expect_shape
from mbrl_course.grading.planning import (
    DTYPE,
    MPC_BATCHES,
    _call,
    _cem_call,
    _expect_uses_generator,
    _generator,
    _objective_returns,
    _rms,
    _run_mpc_step,
    linear_model,
    quadratic_objective,
    random_bounds,
)
from mbrl_course.grading.report import GradingError
from mbrl_course.planning import CEM, RandomShooting


# ------------------------------------------------------------------------------ random shooting
def check_random_shooting_generator(random_shooting: Callable, seed: int = 0) -> None:
    """All of random_shooting's randomness comes from the generator it is given."""
    low, high = random_bounds(2, seed)
    objective = quadratic_objective(torch.zeros(3, 2, dtype=DTYPE))
    _expect_uses_generator("random_shooting", lambda g: random_shooting(objective, 3, low, high, 30, g), seed)


def check_random_shooting_vs_reference(random_shooting: Callable, seed: int = 0, runs: int = 8) -> None:
    """Over several seeds, its plans score as well as those of ``mbrl_course.planning.RandomShooting``."""
    horizon, action_dim, population = 4, 2, 100
    student, reference = [], []
    for run in range(runs):
        low, high = random_bounds(action_dim, seed + run)
        target = torch.rand(horizon, action_dim, generator=_generator(seed + 100 + run), dtype=DTYPE) * (high - low) + low
        objective = quadratic_objective(target)
        plan = _call("random_shooting", random_shooting, objective, horizon, low, high, population, _generator(seed + run))
        plan = expect_shape("random_shooting", plan, (horizon, action_dim), "(horizon, action_dim)")
        expect_in_bounds("random_shooting", plan, low, high)
        student.append(float(objective(plan.detach().to(DTYPE)[None])[0]))
        planner = RandomShooting(horizon, low, high, population=population, device="cpu", seed=seed + run, dtype=DTYPE)
        reference.append(float(objective(planner.plan(objective)[None])[0]))
    s, r = torch.tensor(student), torch.tensor(reference)
    standard_error = math.sqrt(float(s.var() + r.var()) / runs) + 1e-9
    if float(r.mean() - s.mean()) > 4 * standard_error:
        raise GradingError(
            f"random_shooting finds worse plans than the reference: mean return {s.mean():.4g} over {runs} "
            f"problems, the reference RandomShooting with the same population gets {r.mean():.4g}. "
            "Sample uniformly in the bounds and keep the sequence with the largest return."
        )


# ------------------------------------------------------------------------------ CEM
def check_cem_generator(cem: Callable, seed: int = 0) -> None:
    """All of cem's randomness comes from the generator it is given."""
    low, high = random_bounds(2, seed)
    objective = quadratic_objective(torch.zeros(3, 2, dtype=DTYPE))
    _expect_uses_generator("cem", lambda g: cem(objective, 3, low, high, 30, 5, 2, g), seed)


def cem_errors(
    cem: Callable | None,
    seed: int,
    runs: int,
    *,
    beyond_bounds: bool = False,
    horizon: int = 5,
    action_dim: int = 2,
    population: int = 150,
    elites: int = 15,
    iterations: int = 6,
) -> list[float]:
    """RMS distance to the best feasible plan of a quadratic, per run; ``cem=None``: the reference CEM."""
    errors = []
    for run in range(runs):
        low, high = random_bounds(action_dim, seed + run)
        gen = _generator(30_000 + seed + run)
        width, middle = high - low, (low + high) / 2
        target = middle + (torch.rand(horizon, action_dim, generator=gen, dtype=DTYPE) - 0.5) * 0.8 * width
        if beyond_bounds:  # half the optimum lies beyond a bound: the best plan sits on it
            push = torch.where(torch.rand(horizon, action_dim, generator=gen, dtype=DTYPE) < 0.5, 1.0, 0.0)
            target = target + push * 1.5 * width
        best = torch.minimum(torch.maximum(target, low), high)
        objective = quadratic_objective(target)
        if cem is None:
            planner = CEM(horizon, low, high, population=population, elites=elites, iterations=iterations,
                          device="cpu", seed=seed + run, momentum=0.0, dtype=DTYPE)
            plan = planner.plan(objective)
        else:
            plan = _cem_call(cem, objective, horizon, low, high, population, elites, iterations, seed + run)
        errors.append(_rms(plan, best))
    return errors


def check_cem_converges(cem: Callable, seed: int = 0, runs: int = 3, beyond_bounds: bool = False) -> None:
    """On quadratics, CEM gets as close to the optimum as the reference CEM (same N, E, J; momentum 0)."""
    student = sum(cem_errors(cem, seed, runs, beyond_bounds=beyond_bounds)) / runs
    reference = sum(cem_errors(None, seed, runs, beyond_bounds=beyond_bounds)) / runs
    if student > 3 * reference + 0.02:
        where = " (part of the optimum lies beyond the bounds: the best plan sits on a bound)" if beyond_bounds else ""
        raise GradingError(
            f"cem does not converge{where}: after 6 iterations your plans are {student:.3g} (RMS) from the "
            f"optimum; the reference CEM with the same population, elites and iterations gets within "
            f"{reference:.3g}. Check that you keep the elites with the LARGEST returns and refit both the "
            "mean and the std to them in every iteration."
        )


# ------------------------------------------------------------------------------ MPC step
def rollout_returns(model, reward_fn, state: torch.Tensor, actions: torch.Tensor, steps: int | None = None) -> torch.Tensor:
    """G_n = Σ_{t=1}^{H} g(i_t, u^n_t, i_{t+1}), i_1 = state, i_{t+1} = f(i_t, u^n_t): an explicit loop, (N,)."""
    n, horizon, _ = actions.shape
    steps = horizon if steps is None else steps
    total = torch.zeros(n, dtype=actions.dtype)
    for i in range(n):
        s = state.clone()
        for t in range(steps):
            s_next = model(s[None], actions[i, t][None])[0]
            total[i] += reward_fn(s[None], actions[i, t][None], s_next[None])[0]
            s = s_next
    return total


def check_mpc_objective_models(mpc_step: Callable, seed: int = 0, state_dim: int = 3, action_dim: int = 2) -> None:
    """On a random linear model with a quadratic reward, the objective mpc_step builds returns
    Σ_{t=1}^{H} g(i_t, u_t, i_{t+1}) rolled out from ``state`` (compared with an explicit loop), (N,)."""
    model, reward_fn = linear_model(state_dim, action_dim, seed)
    gen = _generator(seed)
    state = torch.randn(state_dim, generator=gen, dtype=DTYPE)
    batches = [torch.randn(n, h, action_dim, generator=gen, dtype=DTYPE) for n, h in MPC_BATCHES]
    _, outcomes = _run_mpc_step(mpc_step, model, reward_fn, state, batches, torch.zeros(4, action_dim, dtype=DTYPE))
    for actions, outcome in zip(batches, outcomes):
        got = _objective_returns("the objective from mpc_step", outcome, actions)
        want = rollout_returns(model, reward_fn, state, actions)
        if torch.allclose(got, want, rtol=1e-5, atol=1e-6):
            continue
        horizon = actions.shape[1]
        if horizon > 1 and torch.allclose(got, rollout_returns(model, reward_fn, state, actions, horizon - 1),
                                          rtol=1e-5, atol=1e-6):
            raise GradingError(
                "the objective from mpc_step sums the rewards of H - 1 steps; a sequence u_1..u_H has H rewards "
                "g(i_t, u_t, i_{t+1}), t = 1..H (off by one in the horizon loop)."
            )
        raise GradingError(
            f"the objective from mpc_step returns {got[:3].tolist()} for {actions.shape[0]} sequences of horizon "
            f"{horizon} (first 3), expected {want[:3].tolist()} = Σ_{{t=1}}^{{H}} g(i_t, u_t, i_{{t+1}}) with "
            "i_1 = state and i_{t+1} = model(i_t, u_t). Roll the model forward from the given state for every "
            "sequence of the batch."
        )


def check_mpc_closed_loop(mpc_step: Callable, model, reward_fn, state: torch.Tensor, action_low, action_high,
                          target: float, steps: int = 30, seed: int = 0) -> None:
    """Driven by the reference CEM, repeated mpc_step brings the model's state to ``target`` (position, state[0])."""
    reference = CEM(horizon=12, action_low=action_low, action_high=action_high, population=200, elites=20,
                    iterations=4, momentum=0.0, device="cpu", seed=seed, dtype=state.dtype)

    def planner(objective: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        return reference.plan(objective)

    start = state.clone()
    action_dim = len(torch.as_tensor(action_low).reshape(-1))
    for _ in range(steps):
        action = _call("mpc_step", mpc_step, model, reward_fn, state, planner)
        action = expect_shape("mpc_step", action, (action_dim,), "(action_dim,)")
        expect_finite("mpc_step", action)
        state = model(state[None], action.detach().to(state.dtype)[None])[0]
    gap, start_gap = abs(float(state[0]) - target), abs(float(start[0]) - target)
    if gap > 0.25 * start_gap:
        raise GradingError(
            f"with the reference CEM as planner, {steps} steps of mpc_step moved the position from "
            f"{float(start[0]):.3g} to {float(state[0]):.3g}, the target is {target:g}. The objective should "
            "reward getting close to the target: check how you roll the model forward and sum the rewards."
        )
