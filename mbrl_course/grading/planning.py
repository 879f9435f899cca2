"""Visible checks of Assignment 1, "Planning with a learned model" (``solutions/01-planning``).

The student implements, for an objective ``objective(actions: (N, H, A)) -> returns: (N,)`` to
maximise (the return G_n of each action sequence u^n_{1:H}):

- ``sample_uniform(population, horizon, action_low, action_high, generator) -> (N, H, A)``
- ``random_shooting(objective, horizon, action_low, action_high, population, generator) -> (H, A)``
- ``sample_gaussian(mean, std, population, action_low, action_high, generator) -> (N, H, A)``
- ``select_elites(samples, returns, elites) -> (E, H, A)``
- ``refit(elite_samples) -> (mean, std)``, each ``(H, A)``
- ``cem(objective, horizon, action_low, action_high, population, elites, iterations, generator,
  init_mean=None, init_std=None) -> (H, A)``
- ``mpc_step(model, reward_fn, state, planner) -> (A,)``

Each ``check_*`` function draws its own small example from ``seed`` (and the sizes it is given),
runs the student's function on it and raises :class:`~mbrl_course.grading.report.GradingError`
with a message that names the mistake where it recognises one. A check never takes the
student's inputs and never returns an expected answer: nothing here computes what a student's
function should return for inputs of the student's choosing, and nothing here imports the
reference implementation :mod:`mbrl_course.planning` (graded notebooks run where it is absent).
Where sampling makes results random, the checks test properties (shapes, bounds, statistics with
tolerances of several standard errors, the argmax of the sequences the student's own code
scored, the refit to its own elites), so that a correct solution passes whatever it draws.

The released test cells call these checks on one example each; the hidden tests, which only the
instructor has (``solutions/hidden_checks/planning.py``, loaded with
:func:`mbrl_course.grading.instructor.hidden_checks`), call them again on other seeds and sizes
and add comparisons with the reference implementation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from mbrl_course.grading.checks import call_student as _call
from mbrl_course.grading.checks import (
    expect_close,
    expect_in_bounds,
    expect_independent,
    expect_shape,
    expect_tensor,
    expect_uses_generator,
    fmt,
)
from mbrl_course.grading.report import GradingError

DTYPE = torch.float64


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_bounds(action_dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Asymmetric bounds [u_min, u_max] of shape (A,), different in every dimension."""
    gen = _generator(10_000 + seed)
    low = -0.5 - 1.5 * torch.rand(action_dim, generator=gen, dtype=DTYPE)
    high = 0.25 + 1.5 * torch.rand(action_dim, generator=gen, dtype=DTYPE)
    return low, high


def quadratic_objective(target: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """G(u) = -Σ_{t,a} (u_{t,a} - target_{t,a})², maximised at u = target (H, A)."""

    def objective(actions: torch.Tensor) -> torch.Tensor:
        return -((actions - target.to(actions.dtype)) ** 2).sum(dim=(1, 2))

    return objective


@dataclass
class Scored:
    """What a spied objective was asked to score: each batch of sequences and the returns it gave."""

    samples: list[torch.Tensor] = field(default_factory=list)
    """Each batch of action sequences, (N, H, A), in the order they were scored."""
    returns: list[torch.Tensor] = field(default_factory=list)
    """The returns of each batch, (N,)."""


def spied(objective: Callable[[torch.Tensor], torch.Tensor]) -> tuple[Callable[[torch.Tensor], torch.Tensor], Scored]:
    """A plain function that scores like ``objective`` and records every batch in the :class:`Scored` it returns.

    The student's code only calls it, so the record holds exactly what the student scored, even
    where the student's function runs in another process.
    """
    scored = Scored()

    def spy(actions: torch.Tensor) -> torch.Tensor:
        if not isinstance(actions, torch.Tensor):
            raise GradingError(
                f"the objective was called with a {type(actions).__name__}; "
                "call it with a torch.Tensor of action sequences of shape (N, H, A)"
            )
        if actions.dim() != 3:
            raise GradingError(
                f"the objective was called with shape {tuple(actions.shape)}; it scores a batch "
                "of action sequences of shape (N, H, A)"
            )
        returns = objective(actions)
        scored.samples.append(actions.detach().clone())
        scored.returns.append(returns.detach().clone())
        return returns

    return spy, scored


def _rows_of(chosen: torch.Tensor, samples: torch.Tensor, atol: float = 1e-9) -> list[int | None]:
    """For each sequence of ``chosen`` (K, H, A), the index of the equal row of ``samples`` (N, H, A), or None."""
    match = (chosen.detach().to(DTYPE)[:, None] - samples.to(DTYPE)[None]).abs().amax(dim=(2, 3)) <= atol  # (K, N)
    return [int(row.nonzero()[0, 0]) if bool(row.any()) else None for row in match]


# ------------------------------------------------------------------------------ randomness
def _expect_uses_generator(name: str, draw: Callable[[torch.Generator], torch.Tensor], seed: int) -> None:
    """Same seed -> same samples, other seed -> other samples: all randomness comes from ``generator``."""
    expect_uses_generator(name, draw, seed)


# ------------------------------------------------------------------------------ sample_uniform
def check_sample_uniform_shape(sample_uniform: Callable, seed: int = 0) -> None:
    """sample_uniform returns (population, horizon, action_dim) samples inside the bounds."""
    low, high = random_bounds(2, seed)
    samples = _call("sample_uniform", sample_uniform, 50, 7, low, high, _generator(seed))
    expect_shape("sample_uniform", samples, (50, 7, 2), "(population, horizon, action_dim)")
    expect_in_bounds("sample_uniform", samples, low, high)


def check_sample_uniform_statistics(sample_uniform: Callable, seed: int = 0, action_dim: int = 3) -> None:
    """u ~ U(u_min, u_max) in every dimension: mean (u_min+u_max)/2, std (u_max-u_min)/√12, covers the box."""
    low, high = random_bounds(action_dim, seed)
    population, horizon = 4000, 3
    samples = _call("sample_uniform", sample_uniform, population, horizon, low, high, _generator(seed))
    expect_shape("sample_uniform", samples, (population, horizon, action_dim), "(population, horizon, action_dim)")
    expect_in_bounds("sample_uniform", samples, low, high)
    flat = samples.detach().to(DTYPE).reshape(-1, action_dim)
    width = high - low
    want_mean, want_std = (low + high) / 2, width / math.sqrt(12)
    standard_error = want_std / math.sqrt(flat.shape[0])
    for a in range(action_dim):
        mean, std = flat[:, a].mean(), flat[:, a].std()
        if abs(float(mean - want_mean[a])) > 6 * float(standard_error[a]):
            raise GradingError(
                f"sample_uniform: in action dimension {a} (bounds [{fmt(low[a])}, {fmt(high[a])}]) the samples "
                f"have mean {fmt(mean)}, but U(u_min, u_max) has mean {fmt(want_mean[a])}. "
                "Scale torch.rand by (action_high - action_low) and shift it by action_low."
            )
        if abs(float(std / want_std[a]) - 1) > 0.08:
            raise GradingError(
                f"sample_uniform: in action dimension {a} the samples have standard deviation {fmt(std)}, "
                f"but U(u_min, u_max) has (u_max - u_min)/√12 = {fmt(want_std[a])}. "
                "Every entry must be an independent uniform draw over the whole interval."
            )
        if float(flat[:, a].min() - low[a]) > 0.01 * float(width[a]) or float(high[a] - flat[:, a].max()) > 0.01 * float(width[a]):
            raise GradingError(
                f"sample_uniform: in action dimension {a} the samples do not cover [u_min, u_max] = "
                f"[{fmt(low[a])}, {fmt(high[a])}] (they span [{fmt(flat[:, a].min())}, {fmt(flat[:, a].max())}])."
            )
    per_sequence = samples.detach().to(DTYPE).std(dim=0).mean()
    if float(per_sequence) < 0.5 * float(want_std.mean()):
        raise GradingError("sample_uniform: the sequences look alike; draw every sequence independently.")


def check_sample_uniform_generator(sample_uniform: Callable, seed: int = 0) -> None:
    """All of sample_uniform's randomness comes from the generator it is given."""
    low, high = random_bounds(2, seed)
    _expect_uses_generator("sample_uniform", lambda g: sample_uniform(20, 4, low, high, g), seed)


# ------------------------------------------------------------------------------ random shooting
def check_random_shooting_shape(random_shooting: Callable, seed: int = 0) -> None:
    """random_shooting returns one sequence (horizon, action_dim) inside the bounds."""
    low, high = random_bounds(2, seed)
    target = torch.zeros(6, 2, dtype=DTYPE)
    plan = _call("random_shooting", random_shooting, quadratic_objective(target), 6, low, high, 64, _generator(seed))
    expect_shape("random_shooting", plan, (6, 2), "(horizon, action_dim): one action sequence")
    expect_in_bounds("random_shooting", plan, low, high)


def check_random_shooting_scores_population(random_shooting: Callable, seed: int = 0) -> None:
    """The objective scores exactly ``population`` sequences of shape (H, A), all inside the bounds."""
    low, high = random_bounds(3, seed)
    spy, scored = spied(quadratic_objective(torch.zeros(4, 3, dtype=DTYPE)))
    _call("random_shooting", random_shooting, spy, 4, low, high, 80, _generator(seed))
    if not scored.samples:
        raise GradingError("random_shooting never called the objective: score your sampled sequences with it.")
    total = sum(s.shape[0] for s in scored.samples)
    for batch in scored.samples:
        if tuple(batch.shape[1:]) != (4, 3):
            raise GradingError(
                f"random_shooting called the objective with shape {tuple(batch.shape)}; each sequence must "
                "have shape (horizon, action_dim) = (4, 3)."
            )
        expect_in_bounds("random_shooting (the sequences it scored)", batch, low, high)
    if total != 80:
        raise GradingError(
            f"random_shooting scored {total} sequences in {len(scored.samples)} call(s) of the objective; "
            "expected population = 80 (N trials)."
        )


def check_random_shooting_best(random_shooting: Callable, seed: int = 0, horizon: int = 5, action_dim: int = 2,
                               population: int = 100) -> None:
    """It returns u^{n*} with n* = argmax_n G_n over the sequences it scored."""
    low, high = random_bounds(action_dim, seed)
    target = torch.rand(horizon, action_dim, generator=_generator(seed + 1), dtype=DTYPE) * (high - low) + low
    spy, scored = spied(quadratic_objective(target))
    plan = _call("random_shooting", random_shooting, spy, horizon, low, high, population, _generator(seed))
    plan = expect_shape("random_shooting", plan, (horizon, action_dim), "(horizon, action_dim)")
    if not scored.samples:
        raise GradingError("random_shooting never called the objective.")
    samples = torch.cat(scored.samples).to(DTYPE)
    returns = torch.cat(scored.returns).to(DTYPE)
    (row,) = _rows_of(plan[None], samples, atol=1e-6)
    if row is not None and bool(returns[row] >= returns.max()):
        return
    if row is not None and bool(returns[row] <= returns.min()):
        raise GradingError(
            "random_shooting returned the sequence with the SMALLEST return (argmin). The objective gives returns "
            "to maximise: keep n* = argmax_n G_n (the slide's argmin is over costs)."
        )
    if row is not None:
        rank = int((returns > returns[row]).sum())
        raise GradingError(
            f"random_shooting returned a scored sequence, but not the best one ({rank} sequences have a larger "
            "return). Return samples[argmax(returns)]."
        )
    raise GradingError(
        "random_shooting returned a sequence the objective never scored. Return the best of the sequences "
        "you sampled and scored, samples[argmax(returns)]."
    )


# ------------------------------------------------------------------------------ sample_gaussian
def _gaussian_problem(seed: int, horizon: int = 4, action_dim: int = 2):
    low, high = random_bounds(action_dim, seed)
    gen = _generator(20_000 + seed)
    width = high - low
    middle = (low + high) / 2
    mean = middle + (torch.rand(horizon, action_dim, generator=gen, dtype=DTYPE) - 0.5) * 0.3 * width
    std = width * (0.03 + 0.05 * torch.rand(horizon, action_dim, generator=gen, dtype=DTYPE))
    return mean, std, low, high


def check_sample_gaussian_shape(sample_gaussian: Callable, seed: int = 0) -> None:
    """sample_gaussian returns (population, H, A) samples, inside the bounds even when σ is large."""
    mean, std, low, high = _gaussian_problem(seed)
    samples = _call("sample_gaussian", sample_gaussian, mean, std, 30, low, high, _generator(seed))
    expect_shape("sample_gaussian", samples, (30, 4, 2), "(population, horizon, action_dim)")
    wide = _call("sample_gaussian", sample_gaussian, mean, std * 30, 500, low, high, _generator(seed))
    expect_shape("sample_gaussian", wide, (500, 4, 2), "(population, horizon, action_dim)")
    expect_in_bounds("sample_gaussian (with a large std)", wide, low, high)


def check_sample_gaussian_statistics(sample_gaussian: Callable, seed: int = 0, horizon: int = 5,
                                     action_dim: int = 3) -> None:
    """Away from the bounds, every entry (t, a) has mean μ_{t,a} and standard deviation σ_{t,a}."""
    mean, std, low, high = _gaussian_problem(seed, horizon=horizon, action_dim=action_dim)
    population = 4000
    samples = _call("sample_gaussian", sample_gaussian, mean, std, population, low, high, _generator(seed))
    samples = expect_shape("sample_gaussian", samples, (population, horizon, action_dim),
                           "(population, horizon, action_dim)")
    expect_in_bounds("sample_gaussian", samples, low, high)
    got_std, got_mean = torch.std_mean(samples.detach().to(DTYPE), dim=0)
    z = ((got_mean - mean) / (std / math.sqrt(population))).abs()
    if float(z.max()) > 6:
        index = tuple(int(i) for i in torch.unravel_index(z.argmax(), z.shape))
        raise GradingError(
            f"sample_gaussian: entry {index} of the samples has mean {fmt(got_mean[index])}, expected μ = "
            f"{fmt(mean[index])}. Each entry (t, a) is drawn from N(mean[t, a], std[t, a]²): mean + std * ε."
        )
    ratio = got_std / std
    if float((ratio - 1).abs().max()) > 0.1:
        index = tuple(int(i) for i in torch.unravel_index((ratio - 1).abs().argmax(), ratio.shape))
        hint = ""
        if torch.allclose(got_std, std**2, rtol=0.1):
            hint = " It matches std², the variance: multiply ε by std (σ), not by its square."
        elif float(got_std.std() / got_std.mean()) < 0.05:
            hint = " All entries have the same spread: use std[t, a] of each entry, broadcast over the population."
        raise GradingError(
            f"sample_gaussian: entry {index} of the samples has standard deviation {fmt(got_std[index])}, "
            f"expected σ = {fmt(std[index])}.{hint}"
        )


def check_sample_gaussian_generator(sample_gaussian: Callable, seed: int = 0) -> None:
    """All of sample_gaussian's randomness comes from the generator it is given."""
    low, high = random_bounds(2, seed)
    mean, std = torch.zeros(3, 2, dtype=DTYPE), torch.ones(3, 2, dtype=DTYPE)
    _expect_uses_generator("sample_gaussian", lambda g: sample_gaussian(mean, std, 25, low, high, g), seed)


# ------------------------------------------------------------------------------ select_elites
def check_select_elites_count(select_elites: Callable, seed: int = 0) -> None:
    """select_elites returns E sequences, (E, H, A)."""
    gen = _generator(seed)
    samples = torch.randn(40, 3, 2, generator=gen, dtype=DTYPE)
    returns = torch.randn(40, generator=gen, dtype=DTYPE)
    for elites in (7, 1, 40):
        chosen = _call("select_elites", select_elites, samples, returns, elites)
        chosen = expect_tensor("select_elites", chosen)
        if chosen.dim() == 3 and chosen.shape[1:] == samples.shape[1:] and chosen.shape[0] != elites:
            raise GradingError(
                f"select_elites returned {chosen.shape[0]} sequences for elites = {elites}; expected exactly "
                f"E = {elites} (the E sequences with the largest returns). Check your slicing, e.g. [:elites]."
            )
        expect_shape("select_elites", chosen, (elites, 3, 2), "(elites, horizon, action_dim)")


def check_select_elites_top(select_elites: Callable, seed: int = 0, population: int = 60, elites: int = 9) -> None:
    """The elites are the E sequences with the largest returns (in any order), for negative returns too."""
    gen = _generator(seed)
    samples = torch.randn(population, 4, 3, generator=gen, dtype=DTYPE)
    returns = -10 * torch.rand(population, generator=gen, dtype=DTYPE)  # negative, distinct returns
    chosen = expect_shape("select_elites", _call("select_elites", select_elites, samples, returns, elites),
                          (elites, 4, 3), "(elites, horizon, action_dim)")
    rows = _rows_of(chosen, samples)
    if None in rows:
        raise GradingError("select_elites returned sequences that are not rows of `samples`: return samples[indices].")
    picked = set(rows)
    top = set(torch.topk(returns, elites).indices.tolist())
    bottom = set(torch.topk(-returns, elites).indices.tolist())
    if picked == top:
        return
    if picked == bottom:
        raise GradingError(
            "select_elites: you chose the elites with the SMALLEST returns (argmin, or topk(largest=False)). "
            "Returns are to be maximised: take the E largest, e.g. torch.topk(returns, elites) or "
            "argsort(descending=True)[:elites]."
        )
    if len(picked) < elites:
        raise GradingError("select_elites returned the same sequence more than once; pick E distinct sequences.")
    raise GradingError(
        f"select_elites: {len(picked - top)} of the {elites} sequences you picked are not among the {elites} "
        "with the largest returns. Select by the returns (not by the samples' values)."
    )


# ------------------------------------------------------------------------------ refit
def _refit(refit: Callable, elites: torch.Tensor) -> tuple:
    result = _call("refit", refit, elites)
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise GradingError(f"refit returned a {type(result).__name__}; expected a pair (mean, std).")
    return tuple(result)


def check_refit_mean(refit: Callable, seed: int = 0, elites: int = 12) -> None:
    """refit returns (mean, std), each (H, A); mean μ = (1/E) Σ_n u^n."""
    elite_samples = torch.randn(elites, 5, 2, generator=_generator(seed), dtype=DTYPE) * 0.7 + 0.2
    mean, _ = _refit(refit, elite_samples)
    if isinstance(mean, torch.Tensor) and tuple(mean.shape) != (5, 2):
        raise GradingError(
            f"refit: mean has shape {tuple(mean.shape)}; expected (horizon, action_dim) = (5, 2). "
            "Average over the elites, the first dimension (dim=0)."
        )
    expect_close("refit", mean, elite_samples.mean(dim=0), what="mean", hint="μ is the average of the elites over dim 0.")


def check_refit_std(refit: Callable, seed: int = 0, elites: int = 6) -> None:
    """std σ = sqrt((1/E) Σ_n (u^n - μ)²), the elites' (biased) standard deviation, (H, A)."""
    elite_samples = torch.randn(elites, 3, 4, generator=_generator(seed), dtype=DTYPE) * 1.3 - 0.4
    _, std = _refit(refit, elite_samples)
    std = expect_shape("refit (std)", std, (3, 4), "(horizon, action_dim)")
    want = elite_samples.std(dim=0, correction=0)
    got = std.detach().to(DTYPE)
    if torch.allclose(got, want, rtol=1e-4):
        return
    if torch.allclose(got, elite_samples.std(dim=0, correction=1), rtol=1e-4):
        raise GradingError(
            "refit: σ uses 1/(E-1); CEM's refit uses 1/E: std(dim=0, correction=0) (or unbiased=False). "
            "torch.std divides by E - 1 by default (the unbiased estimate); the refit takes the elites' own "
            "spread, σ = sqrt((1/E) Σ (u - μ)²)."
        )
    if torch.allclose(got, want**2, rtol=1e-4):
        raise GradingError("refit: you returned the variance σ²; return the standard deviation σ (its square root).")
    expect_close("refit", got, want, what="std", hint="σ = sqrt((1/E) Σ_n (u^n - μ)²) over the elites (dim 0).")


# ------------------------------------------------------------------------------ CEM
def _cem_call(cem: Callable, objective, horizon, low, high, population, elites, iterations, seed, **kwargs):
    plan = _call("cem", cem, objective, horizon, low, high, population, elites, iterations, _generator(seed), **kwargs)
    plan = expect_shape("cem", plan, (horizon, low.shape[0]), "(horizon, action_dim): one action sequence")
    expect_in_bounds("cem", plan, low, high)
    return plan.detach().to(DTYPE)


def _rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b) ** 2).mean().sqrt())


def check_cem_iterations(cem: Callable, seed: int = 0) -> None:
    """CEM scores one batch of ``population`` sequences (H, A) per iteration, ``iterations`` times."""
    low, high = random_bounds(2, seed)
    spy, scored = spied(quadratic_objective(torch.zeros(3, 2, dtype=DTYPE)))
    _cem_call(cem, spy, 3, low, high, 40, 8, 4, seed)
    if len(scored.samples) != 4:
        raise GradingError(
            f"cem called the objective {len(scored.samples)} times for iterations = 4; expected one call per "
            "iteration, each on a batch of `population` sequences."
        )
    for j, batch in enumerate(scored.samples):
        if tuple(batch.shape) != (40, 3, 2):
            raise GradingError(
                f"cem: iteration {j + 1} scored a batch of shape {tuple(batch.shape)}; expected "
                "(population, horizon, action_dim) = (40, 3, 2)."
            )
        expect_in_bounds(f"cem (the samples of iteration {j + 1})", batch, low, high)


def check_cem_refits(cem: Callable, seed: int = 0, horizon: int = 4, action_dim: int = 2) -> None:
    """Iteration j+1 samples from N(μ_ℰ, σ_ℰ²), the mean and std of iteration j's E best samples;
    cem returns the last iteration's elite mean."""
    population, elites, iterations = 1500, 150, 3
    low, high = random_bounds(action_dim, seed)
    gen = _generator(40_000 + seed)
    target = (low + high) / 2 + (torch.rand(horizon, action_dim, generator=gen, dtype=DTYPE) - 0.5) * 0.5 * (high - low)
    spy, scored = spied(quadratic_objective(target))
    plan = _cem_call(cem, spy, horizon, low, high, population, elites, iterations, seed)
    if len(scored.samples) != iterations:
        raise GradingError(f"cem called the objective {len(scored.samples)} times for iterations = {iterations}.")
    for j in range(iterations):
        samples, returns = scored.samples[j].to(DTYPE), scored.returns[j].to(DTYPE)
        top = samples[torch.topk(returns, elites).indices]
        elite_std, elite_mean = torch.std_mean(top, dim=0, correction=0)
        if j == iterations - 1:
            want = elite_mean.clamp(low, high)
            if _rms(plan, want) > 1e-4 * float((high - low).mean()) + 1e-6:
                raise GradingError(
                    "cem should return the mean of the last iteration's elites (clamped into the bounds); "
                    f"your plan is {_rms(plan, want):.3g} (RMS) away from it. Did you return the best single "
                    "sample, or the mean from before the last refit?"
                )
            break
        nxt = scored.samples[j + 1].to(DTYPE)
        got_std, got_mean = torch.std_mean(nxt, dim=0, correction=0)
        this_std = samples.std(dim=0, correction=0)
        inside = ((elite_mean - 3 * elite_std) > low) & ((elite_mean + 3 * elite_std) < high)
        if int(inside.sum()) == 0:
            continue
        mean_gap = float((((got_mean - elite_mean).abs() / elite_std.clamp_min(1e-12))[inside]).median())
        std_ratio = float((got_std / elite_std.clamp_min(1e-12))[inside].median())
        if mean_gap > 0.25:
            bottom = samples[torch.topk(-returns, elites).indices].mean(dim=0)
            worst = float((((got_mean - bottom).abs() / elite_std.clamp_min(1e-12))[inside]).median()) < 0.25
            hint = (" It is centred on the elites with the SMALLEST returns: keep the E largest."
                    if worst else " Refit the mean to the elites every iteration and sample the next iteration around it.")
            raise GradingError(
                f"cem: the samples of iteration {j + 2} are not centred on the mean of iteration {j + 1}'s elites, "
                f"the E sequences with the largest returns (typical gap {mean_gap:.2g} standard deviations).{hint}"
            )
        if abs(std_ratio - 1) > 0.2:
            unchanged = float((got_std / this_std.clamp_min(1e-12))[inside].median())
            hint = (
                f" It looks like the std is never refit: iteration {j + 2} samples as wide as iteration {j + 1}."
                if abs(unchanged - 1) < 0.1 else " Refit σ = the elites' standard deviation and sample with it."
            )
            raise GradingError(
                f"cem: the samples of iteration {j + 2} spread {std_ratio:.2g} times as wide as iteration {j + 1}'s "
                f"elites; expected the elites' standard deviation.{hint}"
            )


def check_cem_initial_distribution(cem: Callable, seed: int = 0) -> None:
    """Iteration 1 samples N(init_mean, init_std²); by default the middle of the bounds and (u_max-u_min)/4."""
    horizon, action_dim, population = 3, 2, 2000
    low, high = random_bounds(action_dim, seed)
    width, middle = high - low, (low + high) / 2
    init_mean = middle + 0.2 * width * torch.tensor([[1.0, -1.0]], dtype=DTYPE).expand(horizon, action_dim)
    init_std = (0.02 * width).expand(horizon, action_dim).clone()
    for kwargs, want_mean, want_std, label in (
        ({"init_mean": init_mean, "init_std": init_std}, init_mean, init_std, "init_mean and init_std"),
        ({}, middle.expand(horizon, action_dim), None, "the defaults (init_mean=None, init_std=None)"),
    ):
        spy, scored = spied(quadratic_objective(torch.zeros(horizon, action_dim, dtype=DTYPE)))
        _cem_call(cem, spy, horizon, low, high, population, 20, 1, seed, **kwargs)
        if not scored.samples:
            raise GradingError("cem never called the objective.")
        first = scored.samples[0].to(DTYPE)
        got_std, got_mean = torch.std_mean(first, dim=0)
        scale = want_std if want_std is not None else width / 4
        if float(((got_mean - want_mean).abs() / scale).max()) > 0.2:
            raise GradingError(
                f"cem with {label}: the first iteration's samples have mean {fmt(got_mean[0])} (first step), "
                f"expected {fmt(want_mean[0])}. Start from init_mean, or the middle of the bounds when it is None."
            )
        if want_std is not None and float((got_std / want_std - 1).abs().max()) > 0.2:
            raise GradingError(
                f"cem with {label}: the first iteration's samples have std {fmt(got_std[0])} (first step), expected "
                f"init_std = {fmt(want_std[0])}."
            )
        if want_std is None:  # N(middle, (width/4)²) clipped at ±2σ: std 0.96 · width/4 (truncated: 0.88)
            ratio = got_std / (width / 4)
            if float((ratio - 0.92).abs().max()) > 0.12:
                raise GradingError(
                    f"cem with init_std=None: the first iteration's samples have std {fmt(got_std[0])} (first step); "
                    f"expected about (action_high - action_low)/4 = {fmt(width / 4)} before clamping."
                )


# ------------------------------------------------------------------------------ MPC step
def _run_mpc_step(mpc_step: Callable, model, reward_fn, state: torch.Tensor, batches: list[torch.Tensor],
                  plan: torch.Tensor) -> tuple[torch.Tensor, list]:
    """Run ``mpc_step`` with a planner that scores ``batches`` (N, H, A) with the objective it is given, then
    returns ``plan``. Returns (mpc_step's action, one entry per batch: its returns, or the exception raised).

    The planner scores the batches while mpc_step runs, so the student's objective is only ever
    called inside mpc_step (as a planner would call it).
    """
    calls: list[list] = []

    def planner(objective) -> torch.Tensor:
        if not callable(objective):
            raise GradingError(
                f"mpc_step gave the planner a {type(objective).__name__}; give it the objective, a function "
                "mapping action sequences (N, H, A) to returns (N,)."
            )
        outcome = []
        for actions in batches:
            try:
                outcome.append(objective(actions.clone()))
            except Exception as err:  # noqa: BLE001 (reported by the check, with the batch's shape)
                outcome.append(err)
        calls.append(outcome)
        return plan.clone()

    action = _call("mpc_step", mpc_step, model, reward_fn, state.clone(), planner)
    if not calls:
        raise GradingError("mpc_step never called the planner: call planner(objective) to get a plan (H, A).")
    return action, calls[0]


def _objective_returns(name: str, outcome, actions: torch.Tensor) -> torch.Tensor:
    """The objective's returns on ``actions`` (N, H, A), checked to be a tensor (N,)."""
    if isinstance(outcome, GradingError):
        raise outcome
    if isinstance(outcome, BaseException):
        raise GradingError(
            f"{name} raised {type(outcome).__name__} on actions of shape {tuple(actions.shape)}: {outcome}. "
            "It must accept any batch (N, H, A)."
        )
    returns = expect_shape(name, outcome, (actions.shape[0],), "(N,): one return per action sequence")
    return returns.detach().to(DTYPE)


def check_mpc_step_action(mpc_step: Callable, model, reward_fn, state: torch.Tensor, action_dim: int, seed: int = 0) -> None:
    """mpc_step hands the planner an objective and executes the first action u_1 of its plan, (A,)."""
    plan = torch.randn(6, action_dim, generator=_generator(seed), dtype=state.dtype)
    action, _ = _run_mpc_step(mpc_step, model, reward_fn, state, [], plan)
    action = expect_tensor("mpc_step", action)
    if tuple(action.shape) == tuple(plan.shape):
        raise GradingError(
            f"mpc_step returned the whole plan, shape {tuple(plan.shape)}; MPC executes only its first action "
            "plan[0], shape (action_dim,), and plans again at the next state."
        )
    expect_shape("mpc_step", action, (action_dim,), "(action_dim,): the first action of the plan")
    if torch.allclose(action.to(plan.dtype), plan[-1]) and not torch.allclose(plan[0], plan[-1]):
        raise GradingError("mpc_step returned the LAST action of the plan; execute the first one, plan[0].")
    expect_close("mpc_step", action, plan[0], what="action", hint="Return the planner's plan[0].")


MPC_BATCHES = ((7, 5), (1, 3), (3, 1))
"""(N, H) of the batches of action sequences the objective's checks score: any N and H must work."""


def check_mpc_objective(mpc_step: Callable, seed: int = 0, state_dim: int = 2, action_dim: int = 2) -> None:
    """The objective mpc_step builds returns G_n = Σ_{t=1}^{H} g(i_t, u^n_t, i_{t+1}) rolled out from ``state``, (N,).

    On a model whose return has a closed form: i_{t+1} = i_t + B u_t and g(i, u, i') = αᵀi + βᵀu + γᵀi'.
    Then i_t = i_1 + B Σ_{k<t} u_k, so u_k enters the H - k states i_t with t > k and the H - k + 1
    states i_{t+1} with t >= k:
    G_n = H (α + γ)ᵀ i_1 + Σ_{k=1}^{H} ((H - k) Bᵀα + β + (H - k + 1) Bᵀγ)ᵀ u^n_k.
    """
    gen = _generator(60_000 + seed)
    B = torch.randn(state_dim, action_dim, generator=gen, dtype=DTYPE)
    alpha, gamma = torch.randn(state_dim, generator=gen, dtype=DTYPE), torch.randn(state_dim, generator=gen, dtype=DTYPE)
    beta = torch.randn(action_dim, generator=gen, dtype=DTYPE)
    state = torch.randn(state_dim, generator=gen, dtype=DTYPE)

    def model(states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return states + actions @ B.T

    def reward_fn(states: torch.Tensor, actions: torch.Tensor, next_states: torch.Tensor) -> torch.Tensor:
        return states @ alpha + actions @ beta + next_states @ gamma

    def closed_form(actions, steps: int, first=alpha, second=gamma, start=state, moves: bool = True):
        """G over the first ``steps`` steps (with the weights of i_t and i_{t+1}, the start state, and whether i_t moves)."""
        k = torch.arange(1, steps + 1, dtype=DTYPE)[:, None]  # (steps, 1)
        before, after = (steps - k, steps - k + 1) if moves else (torch.zeros_like(k), torch.ones_like(k))
        weights = before * (B.T @ first) + beta + after * (B.T @ second)  # (steps, A)
        return steps * (first + second) @ start + (actions[:, :steps] * weights).sum(dim=(1, 2))

    batches = [torch.randn(n, h, action_dim, generator=gen, dtype=DTYPE) for n, h in MPC_BATCHES]
    _, outcomes = _run_mpc_step(mpc_step, model, reward_fn, state, batches, torch.zeros(4, action_dim, dtype=DTYPE))
    for actions, outcome in zip(batches, outcomes):
        got = _objective_returns("the objective from mpc_step", outcome, actions)
        horizon = actions.shape[1]
        want = closed_form(actions, horizon)
        if torch.allclose(got, want, rtol=1e-5, atol=1e-6):
            continue
        mistakes = {
            "off by one": (closed_form(actions, horizon - 1),
                           "it sums the rewards of H - 1 steps; a sequence u_1..u_H has H rewards g(i_t, u_t, i_{t+1}), "
                           "t = 1..H (off by one in the horizon loop)."),
            "swapped": (closed_form(actions, horizon, first=gamma, second=alpha),
                        "it calls reward_fn(i_{t+1}, u_t, i_t); the reward is g(i_t, u_t, i_{t+1}): reward_fn(state, "
                        "action, next_state)."),
            "no move": (closed_form(actions, horizon, moves=False),
                        "every step starts from the given state: move on, i_t := i_{t+1} = model(i_t, u_t), after "
                        "each reward."),
            "zero start": (closed_form(actions, horizon, start=torch.zeros_like(state)),
                           "the rollout does not start from `state`: i_1 is the state mpc_step is given."),
        }
        for wrong, message in mistakes.values():
            if torch.allclose(got, wrong, rtol=1e-5, atol=1e-6):
                raise GradingError(f"the objective from mpc_step is wrong: {message}")
        raise GradingError(
            f"the objective from mpc_step returns {fmt(got)} for {actions.shape[0]} sequences of horizon {horizon}, "
            f"expected {fmt(want)} = Σ_{{t=1}}^{{H}} g(i_t, u_t, i_{{t+1}}) with i_1 = state and i_{{t+1}} = "
            "model(i_t, u_t). Roll the model forward from the given state for every sequence of the batch."
        )


def linear_model(state_dim: int, action_dim: int, seed: int):
    """A random stable linear model i' = F i + B u and a quadratic reward g(i, u, i') = -|i'|² - 0.1|u|² + 0.01 i_0."""
    gen = _generator(50_000 + seed)
    F = torch.eye(state_dim, dtype=DTYPE) + 0.1 * torch.randn(state_dim, state_dim, generator=gen, dtype=DTYPE)
    B = torch.randn(state_dim, action_dim, generator=gen, dtype=DTYPE)

    def model(state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return state @ F.T + action @ B.T

    def reward_fn(state: torch.Tensor, action: torch.Tensor, next_state: torch.Tensor) -> torch.Tensor:
        return -(next_state**2).sum(-1) - 0.1 * (action**2).sum(-1) + 0.01 * state[..., 0]

    return model, reward_fn


# ------------------------------------------------------------------------------ independence
def _candidates_planner(horizon: int, action_dim: int, seed: int) -> Callable[[Callable], torch.Tensor]:
    """A plain planner (no code of :mod:`mbrl_course.planning`): the best of 8 fixed random sequences (H, A)."""
    candidates = torch.randn(8, horizon, action_dim, generator=_generator(seed), dtype=DTYPE)

    def planner(objective: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        return candidates[torch.as_tensor(objective(candidates.clone())).argmax()].clone()

    return planner


def _independence_args(name: str, seed: int) -> tuple:
    """Small inputs for each of the student's planning functions, by name."""
    low, high = random_bounds(2, seed)
    objective = quadratic_objective(torch.zeros(3, 2, dtype=DTYPE))
    mean, std = torch.zeros(3, 2, dtype=DTYPE), torch.ones(3, 2, dtype=DTYPE)
    samples = torch.randn(20, 3, 2, generator=_generator(seed), dtype=DTYPE)
    args = {
        "sample_uniform": lambda: (20, 3, low, high, _generator(seed)),
        "random_shooting": lambda: (objective, 3, low, high, 20, _generator(seed)),
        "sample_gaussian": lambda: (mean, std, 20, low, high, _generator(seed)),
        "select_elites": lambda: (samples, objective(samples), 5),
        "refit": lambda: (samples[:5],),
        "cem": lambda: (objective, 3, low, high, 20, 5, 2, _generator(seed)),
        "mpc_step": lambda: (*linear_model(2, 1, seed), torch.randn(2, generator=_generator(seed), dtype=DTYPE),
                             _candidates_planner(4, 1, seed)),
    }
    if name not in args:
        raise ValueError(f"name: expected one of {sorted(args)}, got {name!r}")
    return args[name]()


def check_independent(name: str, fn: Callable, seed: int = 0) -> None:
    """``fn`` (the student's function called ``name``) runs without any code of ``mbrl_course.planning``."""
    args = _independence_args(name, seed)
    expect_independent(name, lambda: _call(name, fn, *args), "mbrl_course.planning")
