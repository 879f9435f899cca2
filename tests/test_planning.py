"""Tests of mbrl_course.planning: random shooting, CEM and MPPI behind one interface.

Oracles: a quadratic objective with a known (clipped) optimum, brute force over the sampled
sequences, numpy recomputations of the update equations, and scipy's truncated normal.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from mbrl_course.planning import CEM, MPPI, PlanIteration, Planner, RandomShooting, truncated_normal_

H, A = 10, 2
LOW = [-1.0, -0.5]
HIGH = [1.0, 2.0]


def quadratic(target: torch.Tensor):
    """G(u) = -||u - u*||², maximised at u* (clipped into the box when u* lies outside)."""

    def objective(actions: torch.Tensor) -> torch.Tensor:
        return -((actions - target.to(actions.dtype)) ** 2).sum(dim=(1, 2))

    return objective


def interior_target(seed: int = 123, dtype=torch.float64) -> torch.Tensor:
    """(H, A) optimum strictly inside [LOW, HIGH] (at least 0.1 of the range from each bound)."""
    gen = torch.Generator().manual_seed(seed)
    low, high = torch.tensor(LOW, dtype=dtype), torch.tensor(HIGH, dtype=dtype)
    return low + (high - low) * (0.1 + 0.8 * torch.rand(H, A, generator=gen, dtype=dtype))


def outside_target(seed: int = 1, spread: float = 2.0) -> torch.Tensor:
    """(H, A) optimum with about a third of its entries outside [LOW, HIGH]."""
    gen = torch.Generator().manual_seed(seed)
    low, high = torch.tensor(LOW), torch.tensor(HIGH)
    middle, half = (low + high) / 2, (high - low) / 2
    return middle + half * spread * (2 * torch.rand(H, A, generator=gen) - 1)


class Counting:
    """Wrap an objective and count the action sequences it scores."""

    def __init__(self, objective):
        self.objective = objective
        self.evaluations = 0

    def __call__(self, actions: torch.Tensor) -> torch.Tensor:
        self.evaluations += actions.shape[0]
        return self.objective(actions)


def make(kind: str, **kwargs) -> Planner:
    """A small planner of each kind with test defaults (override any argument)."""
    if kind == "rs":
        args = dict(horizon=H, action_low=LOW, action_high=HIGH, population=64, device="cpu", seed=0)
        args.update(kwargs)
        return RandomShooting(**args)
    if kind == "cem":
        args = dict(
            horizon=H, action_low=LOW, action_high=HIGH, population=64, elites=8, iterations=4, device="cpu", seed=0
        )
        args.update(kwargs)
        return CEM(**args)
    args = dict(
        horizon=H,
        action_low=LOW,
        action_high=HIGH,
        population=64,
        iterations=4,
        temperature=0.1,
        noise_std=0.2,
        device="cpu",
        seed=0,
    )
    args.update(kwargs)
    return MPPI(**args)


KINDS = ["rs", "cem", "mppi"]


def in_bounds(tensor: torch.Tensor, low, high) -> bool:
    low = torch.as_tensor(low, dtype=tensor.dtype, device=tensor.device)
    high = torch.as_tensor(high, dtype=tensor.dtype, device=tensor.device)
    return bool(((tensor >= low) & (tensor <= high)).all())


# ------------------------------------------------------------------------ optimisation quality
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cem_reaches_interior_optimum_and_beats_random_shooting_at_equal_budget(dtype):
    target = interior_target()
    objective = quadratic(target)
    cem_counter = Counting(objective)
    cem = CEM(H, LOW, HIGH, population=400, elites=40, iterations=20, device="cpu", seed=0, dtype=dtype)
    plan = cem.plan(cem_counter)
    assert plan.shape == (H, A) and plan.dtype == dtype
    assert (plan.double() - target).abs().max() < 1e-2

    rs_counter = Counting(objective)
    rs = RandomShooting(H, LOW, HIGH, population=400 * 20, device="cpu", seed=0, dtype=dtype)
    rs_plan = rs.plan(rs_counter)
    assert rs_counter.evaluations == cem_counter.evaluations == 400 * 20
    cem_return = objective(plan[None].double())
    rs_return = objective(rs_plan[None].double())
    assert rs_return < cem_return
    assert (rs_plan.double() - target).abs().max() > 1e-2


def test_mppi_gets_close_to_interior_optimum():
    """MPPI tolerance: 5e-2 max abs error (fixed noise σ = 0.05, λ = 0.01)."""
    target = interior_target()
    mppi = MPPI(H, LOW, HIGH, population=300, iterations=30, temperature=0.01, noise_std=0.05, device="cpu", seed=0)
    plan = mppi.plan(quadratic(target))
    assert (plan.double() - target).abs().max() < 5e-2
    # ... and far closer than where it started (the middle of the bounds).
    middle = (torch.tensor(LOW) + torch.tensor(HIGH)).double() / 2
    assert (plan.double() - target).abs().max() < 0.1 * (middle - target).abs().max()


def test_cem_converges_to_the_bound_when_the_optimum_lies_outside():
    target = outside_target()
    clipped = torch.clamp(target, torch.tensor(LOW), torch.tensor(HIGH))
    assert (clipped != target).float().mean() > 0.15  # the test means something
    cem = CEM(H, LOW, HIGH, population=400, elites=40, iterations=30, device="cpu", seed=0)
    plan = cem.plan(quadratic(target))
    assert (plan - clipped).abs().max() < 1e-2
    assert in_bounds(plan, LOW, HIGH)


@pytest.mark.parametrize(
    "kind, extra",
    [
        ("rs", {}),
        ("cem", {"sampling": "clipped"}),
        ("cem", {"sampling": "truncated"}),
        ("mppi", {"sampling": "clipped"}),
        ("mppi", {"sampling": "truncated"}),
    ],
)
@pytest.mark.parametrize("spread", [2.0, 100.0])
def test_plans_and_all_samples_stay_within_bounds(kind, extra, spread):
    target = outside_target(spread=spread)
    planner = make(kind, **extra)
    for _ in range(2):  # the second plan starts from a warm start next to the bound
        plan = planner.plan(quadratic(target))
        assert torch.isfinite(plan).all()
        assert in_bounds(plan, LOW, HIGH)
        assert len(planner.history) == planner.iterations
        for record in planner.history:
            assert torch.isfinite(record.samples).all()
            assert in_bounds(record.samples, LOW, HIGH)


@pytest.mark.parametrize(
    "mean, std, low, high",
    [
        (0.0, 1.0, -1.0, 2.0),  # two-sided
        (0.3, 0.5, -1.0, 1.0),  # wide interval, barely truncated
        (1.5, 0.4, -1.0, 1.0),  # mean above the interval
        (-2.0, 0.5, -1.0, 1.0),  # mean below the interval, deep in the tail
        (0.9, 2.0, 0.0, 1.0),  # std much wider than the interval
    ],
)
def test_truncated_normal_matches_scipy(mean, std, low, high):
    n = 40_000
    out = torch.empty(n, 1, 1, dtype=torch.float64)
    gen = torch.Generator().manual_seed(7)
    truncated_normal_(
        out,
        torch.full((1, 1), mean, dtype=torch.float64),
        torch.full((1, 1), std, dtype=torch.float64),
        torch.tensor([low], dtype=torch.float64),
        torch.tensor([high], dtype=torch.float64),
        gen,
    )
    x = out.flatten().numpy()
    assert low <= x.min() and x.max() <= high
    oracle = stats.truncnorm((low - mean) / std, (high - mean) / std, loc=mean, scale=std)
    assert stats.kstest(x, oracle.cdf).pvalue > 1e-3
    assert abs(x.mean() - oracle.mean()) < 5 * oracle.std() / np.sqrt(n)


def test_truncated_normal_degenerate_cases_stay_finite_and_in_bounds():
    out = torch.empty(1000, 1, 3)
    mean = torch.tensor([[40.0, -40.0, 0.25]])  # far above, far below, on the bound with σ = 0
    std = torch.tensor([[1.0, 1.0, 0.0]])
    low, high = torch.tensor([-1.0, -1.0, 0.25]), torch.tensor([1.0, 1.0, 1.0])
    truncated_normal_(out, mean, std, low, high, torch.Generator().manual_seed(0))
    assert torch.isfinite(out).all() and in_bounds(out, low, high)
    assert torch.allclose(out[..., 0], torch.tensor(1.0), atol=1e-3)  # piled on the nearer bound
    assert torch.allclose(out[..., 1], torch.tensor(-1.0), atol=1e-3)
    assert torch.equal(out[..., 2], torch.full((1000, 1), 0.25))


# ----------------------------------------------------------------------------- seeding
@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_plan_different_seed_different_samples(kind):
    objective = quadratic(interior_target())
    first, second, other = make(kind, seed=3), make(kind, seed=3), make(kind, seed=4)
    plan_first, plan_second = first.plan(objective), second.plan(objective)
    assert torch.equal(plan_first, plan_second)
    for a, b in zip(first.history, second.history):
        assert torch.equal(a.samples, b.samples)
    other.plan(objective)
    assert not torch.equal(first.history[0].samples, other.history[0].samples)


@pytest.mark.parametrize("kind", KINDS)
def test_keep_history_false_stores_nothing_and_plans_the_same(kind):
    objective = quadratic(interior_target())
    recorded, silent = make(kind, seed=5), make(kind, seed=5, keep_history=False)
    for _ in range(2):
        assert torch.equal(recorded.plan(objective), silent.plan(objective))
    assert silent.history == []
    assert len(recorded.history) == recorded.iterations


def test_reset_with_seed_replays_the_plan():
    objective = quadratic(interior_target())
    cem = make("cem", seed=9)
    first = cem.plan(objective)
    cem.reset(seed=9)
    assert torch.equal(cem.plan(objective), first)


# ----------------------------------------------------------------------------- warm start
@pytest.mark.parametrize("kind", ["cem", "mppi"])
def test_warm_start_shifts_the_previous_plan_and_reset_forgets_it(kind):
    objective = quadratic(interior_target())
    planner = make(kind)
    middle = (torch.tensor(LOW) + torch.tensor(HIGH)) / 2
    planner.plan(objective)
    assert torch.equal(planner.history[0].mean, middle.expand(H, A))  # first plan: the middle

    previous = planner.plan(objective)
    expected = torch.cat((previous[1:].clone(), middle[None]), dim=0)
    previous.zero_()  # the caller owns the returned plan; the planner kept its own copy
    planner.plan(objective)
    assert torch.equal(planner.history[0].mean, expected)

    planner.reset()
    planner.plan(objective)
    assert torch.equal(planner.history[0].mean, middle.expand(H, A))


def test_warm_start_can_be_turned_off():
    objective = quadratic(interior_target())
    cem = make("cem", warm_start=False)
    cem.plan(objective)
    cem.plan(objective)
    middle = (torch.tensor(LOW) + torch.tensor(HIGH)) / 2
    assert torch.equal(cem.history[0].mean, middle.expand(H, A))


# ------------------------------------------------------------------------------- history
@pytest.mark.parametrize("momentum", [0.0, 0.3])
def test_cem_history_follows_the_update_equations(momentum):
    objective = quadratic(interior_target())
    n, e, iterations = 50, 7, 6
    cem = CEM(
        H, LOW, HIGH, population=n, elites=e, iterations=iterations, device="cpu", seed=1,
        momentum=momentum, dtype=torch.float64,
    )  # fmt: skip
    plan = cem.plan(objective)
    assert len(cem.history) == iterations
    assert np.allclose(cem.history[0].std.numpy(), (np.array(HIGH) - np.array(LOW)) / 4)
    for k, record in enumerate(cem.history):
        assert isinstance(record, PlanIteration)
        assert record.samples.shape == (n, H, A) and record.returns.shape == (n,)
        assert record.mean.shape == (H, A) and record.std.shape == (H, A)
        assert record.elite_indices.shape == (e,) and record.weights is None
        samples, returns = record.samples.numpy(), record.returns.numpy()
        assert np.allclose(returns, objective(record.samples).numpy())
        # the elites are the e largest returns (returns are continuous: no ties)
        assert set(record.elite_indices.tolist()) == set(np.argsort(-returns)[:e].tolist())
        elites = samples[record.elite_indices.numpy()]
        elite_mean, elite_std = elites.mean(axis=0), elites.std(axis=0)
        if k + 1 < iterations:
            following = cem.history[k + 1]
            expect_mean = momentum * record.mean.numpy() + (1 - momentum) * elite_mean
            expect_std = momentum * record.std.numpy() + (1 - momentum) * elite_std
            assert np.allclose(following.mean.numpy(), expect_mean)
            assert np.allclose(following.std.numpy(), expect_std)
        else:  # the plan is the mean of the last elites
            assert np.allclose(plan.numpy(), elite_mean)
    assert cem.history[-1].std.max() < cem.history[0].std.min()  # the search narrows


def test_mppi_history_follows_the_weights():
    objective = quadratic(interior_target())
    temperature = 0.5
    mppi = make("mppi", temperature=temperature, dtype=torch.float64)
    plan = mppi.plan(objective)
    assert len(mppi.history) == mppi.iterations
    for k, record in enumerate(mppi.history):
        assert record.elite_indices is None and record.weights.shape == (mppi.population,)
        returns = record.returns.numpy()
        logits = returns / temperature
        weights = np.exp(logits - logits.max())
        weights /= weights.sum()
        assert np.allclose(record.weights.numpy(), weights)
        assert np.allclose(record.std.numpy(), 0.2)
        new_mean = np.einsum("n,nha->ha", weights, record.samples.numpy())
        if k + 1 < mppi.iterations:
            assert np.allclose(mppi.history[k + 1].mean.numpy(), new_mean)
        else:
            assert np.allclose(plan.numpy(), new_mean)


def test_mppi_and_cem_accept_minus_infinity_for_infeasible_sequences():
    """-inf marks infeasible sequences: they never get weight, and all -inf is not an error."""
    base = quadratic(interior_target())

    def constrained(actions):  # first action dimension must stay below 0.5
        returns = base(actions)
        return torch.where((actions[..., 0] > 0.5).any(dim=1), torch.tensor(-torch.inf, dtype=returns.dtype), returns)

    mppi = make("mppi", population=128)
    mppi.plan(constrained)
    for record in mppi.history:
        infeasible = torch.isinf(record.returns)
        assert infeasible.any()
        assert torch.all(record.weights[infeasible] == 0)
        assert torch.isclose(record.weights.sum(), torch.tensor(1.0))

    mppi.plan(lambda actions: torch.full((actions.shape[0],), -torch.inf))
    assert torch.allclose(mppi.history[0].weights, torch.tensor(1 / 128))

    cem = make("cem")
    assert torch.isfinite(cem.plan(constrained)).all()


def test_random_shooting_equals_brute_force_over_its_samples():
    """RS returns exactly the first argmax of the objective over the sequences it sampled."""

    def steps(actions):  # coarse, integer-valued returns: ties are common
        return torch.floor(2 * actions[..., 0]).sum(dim=1)

    rs = RandomShooting(horizon=2, action_low=-1.0, action_high=1.0, population=200, device="cpu", seed=2)
    plan = rs.plan(steps)
    assert rs.action_dim == 1 and plan.shape == (2, 1)
    samples = rs.history[0].samples.numpy()
    returns = np.floor(2 * samples[..., 0]).sum(axis=1)  # recomputed independently
    assert (returns == returns.max()).sum() > 1  # several best trials: the first one wins
    best = int(np.argmax(returns))
    assert np.array_equal(plan.numpy(), samples[best])
    assert rs.history[0].elite_indices.tolist() == [best]


def test_random_shooting_samples_uniformly_in_the_bounds():
    rs = RandomShooting(horizon=5, action_low=LOW, action_high=HIGH, population=4000, device="cpu", seed=0)
    rs.plan(lambda actions: actions.sum(dim=(1, 2)))
    samples = rs.history[0].samples
    for j in range(A):
        x = samples[..., j].flatten().double().numpy()
        assert stats.kstest(x, stats.uniform(LOW[j], HIGH[j] - LOW[j]).cdf).pvalue > 1e-3


def test_plan_runs_without_autograd_and_casts_returns():
    weight = torch.ones(A, dtype=torch.float64, requires_grad=True)

    def objective(actions):
        assert not torch.is_grad_enabled()
        return -(actions.double() * weight).pow(2).sum(dim=(1, 2))  # float64 returns for float32 samples

    cem = make("cem")
    plan = cem.plan(objective)
    assert plan.dtype == torch.float32 and not plan.requires_grad
    assert cem.history[0].returns.dtype == torch.float32


# ------------------------------------------------------------------------- bad objectives
@pytest.mark.parametrize("kind", KINDS)
def test_objective_with_wrong_shape_is_refused(kind):
    planner = make(kind)
    with pytest.raises(ValueError, match=r"objective.*\(64,\).*\(64, 1\)"):
        planner.plan(lambda actions: actions.sum(dim=(1, 2))[:, None])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_objective_returning_nan_or_plus_inf_is_refused(kind, bad):
    def objective(actions):
        returns = -actions.pow(2).sum(dim=(1, 2))
        returns[3] = bad
        return returns

    planner = make(kind)
    with pytest.raises(ValueError, match="objective.*(NaN|\\+inf)"):
        planner.plan(objective)


def test_objective_that_is_not_a_tensor_or_not_callable_is_refused():
    cem = make("cem")
    with pytest.raises(TypeError, match="objective"):
        cem.plan(lambda actions: actions.sum(dim=(1, 2)).numpy())
    with pytest.raises(TypeError, match="objective"):
        cem.plan("not a function")


# ------------------------------------------------------------------------------ bad input
BAD_ARGUMENTS = [
    ("horizon", {"horizon": 0}, ValueError),
    ("horizon", {"horizon": 2.5}, TypeError),
    ("population", {"population": 0}, ValueError),
    ("action_low", {"action_low": [-1.0, float("nan")]}, ValueError),
    ("action_high", {"action_high": [1.0, float("inf")]}, ValueError),
    ("action_high", {"action_high": [1.0, 2.0, 3.0]}, ValueError),
    ("action_low", {"action_low": [[-1.0, -0.5]]}, ValueError),
    ("action_low", {"action_low": [1.0, -0.5]}, ValueError),  # low >= high
    ("action_low", {"action_low": "low"}, TypeError),
    ("device", {"device": "tpu"}, ValueError),
    ("seed", {"seed": -1}, ValueError),
    ("seed", {"seed": 1.5}, TypeError),
    ("dtype", {"dtype": torch.int64}, TypeError),
    ("keep_history", {"keep_history": "yes"}, TypeError),
]
CEM_BAD = [
    ("iterations", {"iterations": 0}, ValueError),
    ("elites", {"elites": 0}, ValueError),
    ("elites", {"elites": 65}, ValueError),
    ("momentum", {"momentum": 1.0}, ValueError),
    ("momentum", {"momentum": -0.1}, ValueError),
    ("init_std", {"init_std": -1.0}, ValueError),
    ("init_std", {"init_std": [0.1, 0.1, 0.1]}, ValueError),
    ("min_std", {"min_std": -1.0}, ValueError),
    ("sampling", {"sampling": "uniform"}, ValueError),
]
MPPI_BAD = [
    ("iterations", {"iterations": 0}, ValueError),
    ("temperature", {"temperature": 0.0}, ValueError),
    ("noise_std", {"noise_std": 0.0}, ValueError),
    ("noise_std", {"noise_std": [0.1]}, ValueError),
    ("sampling", {"sampling": "uniform"}, ValueError),
]


@pytest.mark.parametrize(
    "kind, name, kwargs, error",
    [(kind, *case) for kind in KINDS for case in BAD_ARGUMENTS]
    + [("cem", *case) for case in CEM_BAD]
    + [("mppi", *case) for case in MPPI_BAD],
)
def test_bad_arguments_are_refused_with_their_name(kind, name, kwargs, error):
    with pytest.raises(error, match=name):
        make(kind, **kwargs)


def test_scalar_bounds_mean_one_action_dimension():
    cem = CEM(horizon=4, action_low=-2.0, action_high=2.0, population=16, elites=4, iterations=2, device="cpu", seed=0)
    plan = cem.plan(lambda actions: -actions.pow(2).sum(dim=(1, 2)))
    assert cem.action_dim == 1 and cem.horizon == 4 and plan.shape == (4, 1)
    assert cem.device == torch.device("cpu")
    assert "CEM(" in repr(cem)


# ------------------------------------------------------------------------------------ GPU
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU available")
@pytest.mark.parametrize("kind", KINDS)
def test_planning_on_cuda(kind):
    device = torch.device("cuda")
    target = interior_target(dtype=torch.float32).to(device)
    objective = quadratic(target)
    planner, twin = make(kind, device="cuda", seed=11), make(kind, device="cuda", seed=11)
    plan = planner.plan(objective)
    assert plan.device.type == "cuda" and plan.shape == (H, A)
    assert in_bounds(plan, LOW, HIGH)
    assert all(record.samples.device.type == "cuda" for record in planner.history)
    assert torch.equal(plan, twin.plan(objective))
    if kind == "cem":
        cem = CEM(H, LOW, HIGH, population=400, elites=40, iterations=20, device="cuda", seed=0)
        assert (cem.plan(objective) - target).abs().max() < 1e-2
