"""Checks for Assignment 1, "Planning with a learned model" (``solutions/01-planning``).

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

Each ``check_*`` function runs the student's function on inputs drawn from a fixed seed and
raises :class:`~mbrl_course.grading.report.GradingError` with a message that says what is wrong.
Where sampling makes results random, the checks test properties (shapes, bounds, elite
selection, the refit, the argmax of the student's own samples) and compare statistics with the
reference implementation in :mod:`mbrl_course.planning` with tolerances of several standard
errors, so that a correct solution passes whatever random numbers it draws.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from mbrl_course.grading.checks import (
    expect_close,
    expect_finite,
    expect_in_bounds,
    expect_independent,
    expect_shape,
    expect_tensor,
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


class SpyObjective:
    """Wraps an objective and records every batch it scores (and the returns it gave)."""

    def __init__(self, objective: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.objective = objective
        self.samples: list[torch.Tensor] = []
        self.returns: list[torch.Tensor] = []

    def __call__(self, actions: torch.Tensor) -> torch.Tensor:
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
        returns = self.objective(actions)
        self.samples.append(actions.detach().clone())
        self.returns.append(returns.detach().clone())
        return returns


def _call(name: str, fn: Callable, *args, **kwargs):
    """Call the student's function; a crash becomes a message naming the function."""
    try:
        return fn(*args, **kwargs)
    except GradingError:
        raise
    except NotImplementedError:
        raise GradingError(f"{name}: not implemented yet: replace `raise NotImplementedError()` with your code") from None


# ------------------------------------------------------------------------------ sample_uniform
def check_sample_uniform_shape(sample_uniform: Callable, seed: int = 0) -> None:
    """sample_uniform returns (population, horizon, action_dim) samples inside the bounds."""
    low, high = random_bounds(2, seed)
    samples = _call("sample_uniform", sample_uniform, 50, 7, low, high, _generator(seed))
    expect_shape("sample_uniform", samples, (50, 7, 2), "(population, horizon, action_dim)")
    expect_in_bounds("sample_uniform", samples, low, high)


def check_sample_uniform_statistics(sample_uniform: Callable, seed: int = 0) -> None:
    """u ~ U(u_min, u_max) in every dimension: mean (u_min+u_max)/2, std (u_max-u_min)/√12, covers the box."""
    low, high = random_bounds(3, seed)
    population, horizon = 4000, 3
    samples = _call("sample_uniform", sample_uniform, population, horizon, low, high, _generator(seed))
    expect_shape("sample_uniform", samples, (population, horizon, 3), "(population, horizon, action_dim)")
    expect_in_bounds("sample_uniform", samples, low, high)
    flat = samples.detach().to(DTYPE).reshape(-1, 3)
    width = high - low
    want_mean, want_std = (low + high) / 2, width / math.sqrt(12)
    standard_error = want_std / math.sqrt(flat.shape[0])
    for a in range(3):
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


def check_uses_generator(name: str, draw: Callable[[torch.Generator], torch.Tensor], seed: int = 0) -> None:
    """Same seed -> same samples, other seed -> other samples: all randomness comes from ``generator``."""
    first = expect_tensor(name, _call(name, draw, _generator(seed)))
    again = expect_tensor(name, _call(name, draw, _generator(seed)))
    other = expect_tensor(name, _call(name, draw, _generator(seed + 1)))
    if first.shape != again.shape or not torch.equal(first, again):
        raise GradingError(
            f"{name}: two calls with generators seeded alike gave different samples. Draw all random "
            "numbers from the generator you are given, e.g. torch.rand(..., generator=generator)."
        )
    if first.shape == other.shape and torch.equal(first, other):
        raise GradingError(
            f"{name}: generators with different seeds gave the same samples. Draw your random numbers "
            "from the generator you are given (do not create or reseed your own)."
        )


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
    spy = SpyObjective(quadratic_objective(torch.zeros(4, 3, dtype=DTYPE)))
    _call("random_shooting", random_shooting, spy, 4, low, high, 80, _generator(seed))
    if not spy.samples:
        raise GradingError("random_shooting never called the objective: score your sampled sequences with it.")
    total = sum(s.shape[0] for s in spy.samples)
    for batch in spy.samples:
        if tuple(batch.shape[1:]) != (4, 3):
            raise GradingError(
                f"random_shooting called the objective with shape {tuple(batch.shape)}; each sequence must "
                "have shape (horizon, action_dim) = (4, 3)."
            )
        expect_in_bounds("random_shooting (the sequences it scored)", batch, low, high)
    if total != 80:
        raise GradingError(
            f"random_shooting scored {total} sequences in {len(spy.samples)} call(s) of the objective; "
            "expected population = 80 (N trials)."
        )


def check_random_shooting_best(random_shooting: Callable, seed: int = 0) -> None:
    """It returns u^{n*} with n* = argmax_n G_n over the sequences it scored."""
    low, high = random_bounds(2, seed)
    target = torch.rand(5, 2, generator=_generator(seed + 1), dtype=DTYPE) * (high - low) + low
    spy = SpyObjective(quadratic_objective(target))
    plan = _call("random_shooting", random_shooting, spy, 5, low, high, 100, _generator(seed))
    plan = expect_shape("random_shooting", plan, (5, 2), "(horizon, action_dim)")
    if not spy.samples:
        raise GradingError("random_shooting never called the objective.")
    samples = torch.cat(spy.samples).to(DTYPE)
    returns = torch.cat(spy.returns).to(DTYPE)
    best, worst = samples[returns.argmax()], samples[returns.argmin()]
    got = plan.detach().to(DTYPE)
    if torch.allclose(got, best, atol=1e-6):
        return
    if torch.allclose(got, worst, atol=1e-6):
        raise GradingError(
            "random_shooting returned the sequence with the SMALLEST return. The objective gives returns to "
            "maximise: keep n* = argmax_n G_n (the slide's argmin is over costs)."
        )
    matches = (samples - got).abs().amax(dim=(1, 2)) < 1e-6
    if bool(matches.any()):
        rank = int((returns > returns[matches.nonzero()[0, 0]]).sum())
        raise GradingError(
            f"random_shooting returned a scored sequence, but not the best one ({rank} sequences have a larger "
            "return). Return samples[argmax(returns)]."
        )
    raise GradingError(
        "random_shooting returned a sequence the objective never scored. Return the best of the sequences "
        "you sampled and scored, samples[argmax(returns)]."
    )


def check_random_shooting_vs_reference(random_shooting: Callable, seed: int = 0, runs: int = 8) -> None:
    """Over several seeds, its plans score as well as those of ``mbrl_course.planning.RandomShooting``."""
    from mbrl_course.planning import RandomShooting

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
            f"random_shooting finds worse plans than the reference: mean return {fmt(s.mean())} over {runs} "
            f"problems, the reference RandomShooting with the same population gets {fmt(r.mean())}. "
            "Sample uniformly in the bounds and keep the sequence with the largest return."
        )


# ------------------------------------------------------------------------------ CEM pieces
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


def check_sample_gaussian_statistics(sample_gaussian: Callable, seed: int = 0) -> None:
    """Away from the bounds, every entry (t, a) has mean μ_{t,a} and standard deviation σ_{t,a}."""
    mean, std, low, high = _gaussian_problem(seed, horizon=5, action_dim=3)
    population = 4000
    samples = _call("sample_gaussian", sample_gaussian, mean, std, population, low, high, _generator(seed))
    samples = expect_shape("sample_gaussian", samples, (population, 5, 3), "(population, horizon, action_dim)")
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


def check_select_elites_top(select_elites: Callable, seed: int = 0) -> None:
    """The elites are the E sequences with the largest returns (in any order)."""
    gen = _generator(seed)
    population, elites = 60, 9
    samples = torch.randn(population, 4, 3, generator=gen, dtype=DTYPE)
    returns = -10 * torch.rand(population, generator=gen, dtype=DTYPE)  # negative, distinct returns
    chosen = expect_shape("select_elites", _call("select_elites", select_elites, samples, returns, elites),
                          (elites, 4, 3), "(elites, horizon, action_dim)")
    match = (chosen.detach().to(DTYPE)[:, None] - samples[None]).abs().amax(dim=(2, 3)) < 1e-9  # (E, N)
    if not bool(match.any(dim=1).all()):
        raise GradingError("select_elites returned sequences that are not rows of `samples`: return samples[indices].")
    picked = set(match.float().argmax(dim=1).tolist())
    top = set(torch.topk(returns, elites).indices.tolist())
    bottom = set(torch.topk(-returns, elites).indices.tolist())
    if picked == top:
        return
    if picked == bottom:
        raise GradingError(
            "select_elites picked the E sequences with the SMALLEST returns. Returns are to be maximised: "
            "take the largest, e.g. torch.topk(returns, elites) or argsort(descending=True)."
        )
    if len(picked) < elites:
        raise GradingError("select_elites returned the same sequence more than once; pick E distinct sequences.")
    raise GradingError(
        f"select_elites: {len(picked - top)} of the {elites} sequences you picked are not among the {elites} "
        "with the largest returns. Select by the returns (not by the samples' values)."
    )


def check_refit_mean(refit: Callable, seed: int = 0) -> None:
    """refit returns (mean, std), each (H, A); mean μ = (1/E) Σ_n u^n."""
    elites = torch.randn(12, 5, 2, generator=_generator(seed), dtype=DTYPE) * 0.7 + 0.2
    result = _call("refit", refit, elites)
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise GradingError(f"refit returned a {type(result).__name__}; expected a pair (mean, std).")
    mean, _ = result
    if isinstance(mean, torch.Tensor) and tuple(mean.shape) != (5, 2):
        raise GradingError(
            f"refit: mean has shape {tuple(mean.shape)}; expected (horizon, action_dim) = (5, 2). "
            "Average over the elites, the first dimension (dim=0)."
        )
    expect_close("refit", mean, elites.mean(dim=0), what="mean", hint="μ is the average of the elites over dim 0.")


def check_refit_std(refit: Callable, seed: int = 0) -> None:
    """std σ = sqrt((1/E) Σ_n (u^n - μ)²), the elites' (biased) standard deviation, (H, A)."""
    elites = torch.randn(6, 3, 4, generator=_generator(seed), dtype=DTYPE) * 1.3 - 0.4
    result = _call("refit", refit, elites)
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise GradingError(f"refit returned a {type(result).__name__}; expected a pair (mean, std).")
    _, std = result
    std = expect_shape("refit (std)", std, (3, 4), "(horizon, action_dim)")
    want = elites.std(dim=0, correction=0)
    got = std.detach().to(DTYPE)
    if torch.allclose(got, elites.std(dim=0, correction=1), rtol=1e-4) and not torch.allclose(got, want, rtol=1e-4):
        raise GradingError(
            "refit: your std divides by E - 1 (torch.std's default, the unbiased estimate). The refit uses the "
            "elites' own spread, σ = sqrt((1/E) Σ (u - μ)²): use std(dim=0, correction=0) (or unbiased=False)."
        )
    if torch.allclose(got, want**2, rtol=1e-4) and not torch.allclose(got, want, rtol=1e-4):
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
    from mbrl_course.planning import CEM

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


def check_cem_iterations(cem: Callable, seed: int = 0) -> None:
    """CEM scores one batch of ``population`` sequences (H, A) per iteration, ``iterations`` times."""
    low, high = random_bounds(2, seed)
    spy = SpyObjective(quadratic_objective(torch.zeros(3, 2, dtype=DTYPE)))
    _cem_call(cem, spy, 3, low, high, 40, 8, 4, seed)
    if len(spy.samples) != 4:
        raise GradingError(
            f"cem called the objective {len(spy.samples)} times for iterations = 4; expected one call per "
            "iteration, each on a batch of `population` sequences."
        )
    for j, batch in enumerate(spy.samples):
        if tuple(batch.shape) != (40, 3, 2):
            raise GradingError(
                f"cem: iteration {j + 1} scored a batch of shape {tuple(batch.shape)}; expected "
                "(population, horizon, action_dim) = (40, 3, 2)."
            )
        expect_in_bounds(f"cem (the samples of iteration {j + 1})", batch, low, high)


def check_cem_refits(cem: Callable, seed: int = 0) -> None:
    """Iteration j+1 samples from N(μ_ℰ, σ_ℰ²), the mean and std of iteration j's E best samples."""
    horizon, action_dim, population, elites, iterations = 4, 2, 1500, 150, 3
    low, high = random_bounds(action_dim, seed)
    gen = _generator(40_000 + seed)
    target = (low + high) / 2 + (torch.rand(horizon, action_dim, generator=gen, dtype=DTYPE) - 0.5) * 0.5 * (high - low)
    spy = SpyObjective(quadratic_objective(target))
    plan = _cem_call(cem, spy, horizon, low, high, population, elites, iterations, seed)
    if len(spy.samples) != iterations:
        raise GradingError(f"cem called the objective {len(spy.samples)} times for iterations = {iterations}.")
    for j in range(iterations):
        samples, returns = spy.samples[j].to(DTYPE), spy.returns[j].to(DTYPE)
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
        nxt = spy.samples[j + 1].to(DTYPE)
        got_std, got_mean = torch.std_mean(nxt, dim=0, correction=0)
        this_std = samples.std(dim=0, correction=0)
        inside = ((elite_mean - 3 * elite_std) > low) & ((elite_mean + 3 * elite_std) < high)
        if int(inside.sum()) == 0:
            continue
        mean_gap = float((((got_mean - elite_mean).abs() / elite_std.clamp_min(1e-12))[inside]).median())
        std_ratio = float((got_std / elite_std.clamp_min(1e-12))[inside].median())
        if mean_gap > 0.25:
            raise GradingError(
                f"cem: the samples of iteration {j + 2} are not centred on the mean of iteration {j + 1}'s elites "
                f"(typical gap {mean_gap:.2g} standard deviations). Refit the mean to the elites every iteration "
                "and sample the next iteration around it."
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
        spy = SpyObjective(quadratic_objective(torch.zeros(horizon, action_dim, dtype=DTYPE)))
        _cem_call(cem, spy, horizon, low, high, population, 20, 1, seed, **kwargs)
        if not spy.samples:
            raise GradingError("cem never called the objective.")
        first = spy.samples[0].to(DTYPE)
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
    }
    if name not in args:
        raise ValueError(f"name: expected one of {sorted(args)}, got {name!r}")
    return args[name]()


def check_independent(name: str, fn: Callable, seed: int = 0) -> None:
    """``fn`` (the student's function called ``name``) runs without any code of ``mbrl_course.planning``."""
    args = _independence_args(name, seed)
    expect_independent(name, lambda: _call(name, fn, *args), "mbrl_course.planning")


# ------------------------------------------------------------------------------ MPC step
class SpyPlanner:
    """A planner that records the objective it is given and returns a fixed plan (H, A)."""

    def __init__(self, plan: torch.Tensor) -> None:
        self.plan = plan
        self.objectives: list[Callable] = []

    def __call__(self, objective: Callable) -> torch.Tensor:
        if not callable(objective):
            raise GradingError(
                f"mpc_step gave the planner a {type(objective).__name__}; give it the objective, a function "
                "mapping action sequences (N, H, A) to returns (N,)."
            )
        self.objectives.append(objective)
        return self.plan.clone()


def linear_model(state_dim: int, action_dim: int, seed: int):
    """A random stable linear model i' = F i + B u and a quadratic reward g(i, u, i') = -|i'|² - 0.1|u|²."""
    gen = _generator(50_000 + seed)
    F = torch.eye(state_dim, dtype=DTYPE) + 0.1 * torch.randn(state_dim, state_dim, generator=gen, dtype=DTYPE)
    B = torch.randn(state_dim, action_dim, generator=gen, dtype=DTYPE)

    def model(state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return state @ F.T + action @ B.T

    def reward_fn(state: torch.Tensor, action: torch.Tensor, next_state: torch.Tensor) -> torch.Tensor:
        return -(next_state**2).sum(-1) - 0.1 * (action**2).sum(-1) + 0.01 * state[..., 0]

    return model, reward_fn


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


def check_mpc_step_action(mpc_step: Callable, model, reward_fn, state: torch.Tensor, action_dim: int, seed: int = 0) -> None:
    """mpc_step hands the planner an objective and executes the first action u_1 of its plan, (A,)."""
    plan = torch.randn(6, action_dim, generator=_generator(seed), dtype=state.dtype)
    planner = SpyPlanner(plan)
    action = _call("mpc_step", mpc_step, model, reward_fn, state, planner)
    if not planner.objectives:
        raise GradingError("mpc_step never called the planner: call planner(objective) to get a plan (H, A).")
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


def check_mpc_objective(mpc_step: Callable, seed: int = 0, state_dim: int = 3, action_dim: int = 2) -> None:
    """The objective mpc_step builds returns Σ_{t=1}^{H} g(i_t, u_t, i_{t+1}) rolled out from ``state``, (N,)."""
    model, reward_fn = linear_model(state_dim, action_dim, seed)
    gen = _generator(seed)
    state = torch.randn(state_dim, generator=gen, dtype=DTYPE)
    planner = SpyPlanner(torch.zeros(4, action_dim, dtype=DTYPE))
    _call("mpc_step", mpc_step, model, reward_fn, state.clone(), planner)
    if not planner.objectives:
        raise GradingError("mpc_step never called the planner: call planner(objective).")
    objective = planner.objectives[0]
    for n, horizon in ((7, 5), (1, 3), (3, 1)):
        actions = torch.randn(n, horizon, action_dim, generator=gen, dtype=DTYPE)
        try:
            returns = objective(actions.clone())
        except GradingError:
            raise
        except Exception as err:  # noqa: BLE001
            raise GradingError(
                f"the objective from mpc_step raised {type(err).__name__} on actions of shape {tuple(actions.shape)}: "
                f"{err}. It must accept any batch (N, H, A)."
            ) from None
        returns = expect_shape("the objective from mpc_step", returns, (n,), "(N,): one return per action sequence")
        want = rollout_returns(model, reward_fn, state, actions)
        got = returns.detach().to(DTYPE)
        if torch.allclose(got, want, rtol=1e-5, atol=1e-6):
            continue
        for steps, what in ((horizon - 1, "H - 1"), (horizon + 1, "H + 1")):
            if 0 < steps <= horizon and torch.allclose(got, rollout_returns(model, reward_fn, state, actions, steps), rtol=1e-5, atol=1e-6):
                raise GradingError(
                    f"the objective from mpc_step sums the rewards of {what} steps; a sequence u_1..u_H has "
                    "H rewards g(i_t, u_t, i_{t+1}), t = 1..H (off by one in the horizon loop)."
                )
        raise GradingError(
            f"the objective from mpc_step returns {fmt(got)} for {n} sequences of horizon {horizon}, expected "
            f"{fmt(want)} = Σ_{{t=1}}^{{H}} g(i_t, u_t, i_{{t+1}}) with i_1 = state and i_{{t+1}} = model(i_t, u_t). "
            "Roll the model forward from the given state for every sequence of the batch."
        )


def check_mpc_closed_loop(mpc_step: Callable, model, reward_fn, state: torch.Tensor, action_low, action_high,
                          target: float, steps: int = 30, seed: int = 0) -> None:
    """Driven by the reference CEM, repeated mpc_step brings the model's state to ``target`` (position, state[0])."""
    from mbrl_course.planning import CEM

    planner = CEM(horizon=12, action_low=action_low, action_high=action_high, population=200, elites=20,
                  iterations=4, momentum=0.0, device="cpu", seed=seed, dtype=state.dtype)
    start = state.clone()
    for _ in range(steps):
        action = _call("mpc_step", mpc_step, model, reward_fn, state, planner.plan)
        action = expect_shape("mpc_step", action, (len(torch.as_tensor(action_low).reshape(-1)),), "(action_dim,)")
        expect_finite("mpc_step", action)
        state = model(state[None], action.detach().to(state.dtype)[None])[0]
    gap, start_gap = abs(float(state[0]) - target), abs(float(start[0]) - target)
    if gap > 0.25 * start_gap:
        raise GradingError(
            f"with the reference CEM as planner, {steps} steps of mpc_step moved the position from "
            f"{float(start[0]):.3g} to {float(state[0]):.3g}, the target is {target:g}. The objective should "
            "reward getting close to the target: check how you roll the model forward and sum the rewards."
        )
