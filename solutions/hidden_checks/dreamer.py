"""Hidden checks of Assignment 6 (Dreamer's λ-returns and losses, PlaNet's latent objective): the instructor's
oracles, the catalogues of typical mistakes, and the checks that use them. Not installed with the package: the
hidden test regions of ``solutions/06-dreamer`` load this file with
``mbrl_course.grading.instructor.hidden_checks("dreamer")``.

The oracles are the reference implementation: :mod:`mbrl_course.rl.actor_critic` (``lambda_returns``,
``discount_weights``, ``value_loss``, ``actor_loss``) and :func:`mbrl_course.planning.latent.latent_return_objective`
on the checks' own copy of a tiny RSSM. Where an answer is wrong, a check compares it with the answers of the
mistakes in the catalogue and names the one that matches: :func:`slipped_returns`, :func:`slipped_value_loss`,
:func:`slipped_actor_loss` and :func:`slipped_objective` compute them as a student would with a set of slips
(bootstrapping from v(s_t), the continuation on the bootstrap only, the recursion started from 0 so that λ = 1
drops the bootstrap, λ and 1 − λ swapped, weights that include c_t or are not cumulative, the sum for the mean,
the sign flipped, the plan started from the prior or the old belief, the imagined rewards averaged, the mean
path, a closed loop through the posterior on the model's own predictions); without slips they are second,
loop-by-loop implementations that agree with the reference. The visible checks (:mod:`mbrl_course.grading.dreamer`)
are reused here on other inputs.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterable

import torch

from mbrl_course.grading import dreamer as visible
from mbrl_course.grading.checks import expect_independent
from mbrl_course.grading.kalman import _expect_value
from mbrl_course.grading.report import GradingError
from mbrl_course.planning.latent import latent_return_objective
from mbrl_course.rl.actor_critic import actor_loss, discount_weights, lambda_returns, value_loss

DTYPE = torch.float64
_call, _generator = visible._call, visible._generator

REFERENCE_PACKAGES = ("mbrl_course.rl.actor_critic", "mbrl_course.planning.latent", "mbrl_course.agents")
"""The reference implementation students must not call (``reference_modules`` of ``nbgrader_config.py``)."""


# ------------------------------------------------------------------------------ λ-returns
RETURN_SLIPS = ("bootstrap_current", "continuation_on_bootstrap_only", "no_continuation", "starts_from_zero",
                "lambda_swapped", "discounted_reward")
"""The slips :func:`slipped_returns` knows."""
RETURN_MESSAGES = {
    "bootstrap_current": "you bootstrap from v(s_t), the value of the state the step starts in; the step from s_t "
                         "ends in s_{t+1}: V_λ(s_t) = r_t + c_t ((1 − λ) v(s_{t+1}) + λ V_λ(s_{t+1})), values[t + 1].",
    "continuation_on_bootstrap_only": "c_t multiplies only the bootstrap (1 − λ) v(s_{t+1}), not λ V_λ(s_{t+1}): at an "
                                      "episode's end (c_t = 0) your return still carries the rewards after it.",
    "no_continuation": "the continuation c_t is missing: it discounts the future and cuts it off where an episode "
                       "ends, r_t + c_t (...).",
    "starts_from_zero": "your recursion starts from V_λ(s_H) = 0, so the last step weights v(s_H) by (1 − λ) and λ = 1 "
                        "drops the bootstrap entirely; start from V_λ(s_H) = v(s_H).",
    "lambda_swapped": "λ and 1 − λ are swapped: V_λ(s_t) = r_t + c_t ((1 − λ) v(s_{t+1}) + λ V_λ(s_{t+1})).",
    "discounted_reward": "you discount the reward r_t by c_t; r_t is earned by the step from s_t and counts fully, "
                         "only what comes after it is discounted: V_λ(s_t) = r_t + c_t (...).",
}


def slipped_returns(rewards, values, continuation, lam, slips: Iterable[str] = ()) -> torch.Tensor:
    """The λ-returns as a student would write them, loop over t, with the given slips (see :data:`RETURN_SLIPS`);
    without slips the exact recursion."""
    slips = set(slips)
    unknown = slips - set(RETURN_SLIPS)
    if unknown:
        raise ValueError(f"slips: expected names from {RETURN_SLIPS}, got {sorted(unknown)}")
    H = rewards.shape[0]
    c = torch.ones_like(continuation) if "no_continuation" in slips else continuation
    mix, keep = (lam, 1 - lam) if "lambda_swapped" in slips else (1 - lam, lam)
    following = torch.zeros_like(values[H]) if "starts_from_zero" in slips else values[H]
    out = []
    for t in reversed(range(H)):
        boot = values[t] if "bootstrap_current" in slips else values[t + 1]
        reward = c[t] * rewards[t] if "discounted_reward" in slips else rewards[t]
        if "continuation_on_bootstrap_only" in slips:
            following = reward + c[t] * mix * boot + keep * following
        else:
            following = reward + c[t] * (mix * boot + keep * following)
        out.append(following)
    return torch.stack(out[::-1])


def return_mistakes(trajectory: visible.Trajectory, lam: float) -> dict[str, tuple[torch.Tensor, str]]:
    return {slip: (slipped_returns(*trajectory.args(), lam, [slip]), message) for slip, message in RETURN_MESSAGES.items()}


def check_returns_exact(fn: Callable, name: str = "lambda_returns", seed: int = 0, horizon: int = 7) -> None:
    """Equals the reference λ-returns for λ ∈ {0, 0.37, 0.95, 1} on random trajectories with batch shapes (),
    (4,) and (2, 3), episode ends inside the horizon."""
    gen = _generator(700_000 + seed)
    for k, (batch, lam) in enumerate((((), 0.37), ((4,), 0.95), ((2, 3), 1.0), ((4,), 0.0))):
        H = horizon + k
        trajectory = visible.random_trajectory(seed + 10 * k, horizon=H, batch=batch,
                                               end=int(torch.randint(0, H - 1, (), generator=gen)))
        got = visible._returns(fn, name, trajectory, lam).detach()
        want = lambda_returns(*trajectory.args(), lam)
        _expect_value(f"{name} (H = {H}, batch {batch}, λ = {lam})", got, want, "λ-returns",
                      lambda trajectory=trajectory, lam=lam: return_mistakes(trajectory, lam), hint=visible.RETURNS_HINT)


def check_returns_gradient_exact(fn: Callable, name: str = "lambda_returns", seed: int = 0) -> None:
    """Autograd's gradients in the rewards, values and continuation equal the reference's (a weighted sum)."""
    trajectory = visible.random_trajectory(seed + 3, horizon=5, batch=(2,), end=2)
    weight = torch.randn(trajectory.rewards.shape, generator=_generator(710_000 + seed), dtype=DTYPE)

    def gradients(call) -> tuple[torch.Tensor, ...]:
        leaves = [x.clone().requires_grad_(True) for x in trajectory.args()]
        out = expect_tensor_grad(name, _call(name, call, *leaves, 0.8))
        grads = torch.autograd.grad((out * weight).sum(), leaves, allow_unused=True)
        return tuple(torch.zeros_like(x) if g is None else g for x, g in zip(leaves, grads))

    got, want = gradients(fn), gradients(lambda_returns)
    for label, g, w in zip(("rewards", "values", "continuation"), got, want):
        _expect_value(f"{name} (gradient in the {label})", g, w, "gradient", hint=visible.GRADIENT_HINT)


def expect_tensor_grad(name: str, value) -> torch.Tensor:
    value = visible.expect_tensor(name, value)
    if not value.requires_grad:
        raise GradingError(f"{name}: the result carries no gradient. {visible.GRADIENT_HINT}")
    return value


# ------------------------------------------------------------------------------ the losses
LOSS_SLIPS = ("weights_include_current", "weights_not_cumulative", "no_weights", "summed", "no_half", "sign_flipped")
"""The slips :func:`slipped_value_loss` and :func:`slipped_actor_loss` know."""
LOSS_MESSAGES = {
    "weights_include_current": "your weights include c_t itself (Π_{i≤t} c_i); w_t = Π_{i<t} c_i, so w_0 = 1: the "
                               "first imagined step counts fully.",
    "weights_not_cumulative": "your weights are not cumulative (w_t = c_{t−1}); w_t = Π_{i<t} c_i, so that every step "
                              "after an episode's end gets weight 0.",
    "no_weights": "the weights w_t = Π_{i<t} c_i are missing: later imagined steps count less, and steps after an "
                  "episode's end not at all.",
    "summed": "you summed over the steps and the batch; the loss is the mean.",
    "no_half": "the factor ½ is missing: ½ (v_ψ(s_t) − V_λ(s_t))².",
    "sign_flipped": "the sign is flipped: the actor maximises the weighted λ-returns, so its loss is −mean(w_t V_λ(s_t)).",
}


def slipped_weights(continuation: torch.Tensor, slips: set[str]) -> torch.Tensor:
    c = continuation.detach()
    if "no_weights" in slips:
        return torch.ones_like(c)
    if "weights_include_current" in slips:
        return torch.cumprod(c, 0)
    if "weights_not_cumulative" in slips:
        return torch.cat([torch.ones_like(c[:1]), c[:-1]], 0)
    return discount_weights(c)[:-1]


def _reduce(x: torch.Tensor, slips: set[str]) -> torch.Tensor:
    return x.sum() if "summed" in slips else x.mean()


def slipped_value_loss(values, returns, continuation, slips: Iterable[str] = ()) -> torch.Tensor:
    slips = set(slips)
    half = 1.0 if "no_half" in slips else 0.5
    return _reduce(slipped_weights(continuation, slips) * half * (values - returns.detach()) ** 2, slips)


def slipped_actor_loss(returns, continuation, slips: Iterable[str] = ()) -> torch.Tensor:
    slips = set(slips)
    sign = 1.0 if "sign_flipped" in slips else -1.0
    return sign * _reduce(slipped_weights(continuation, slips) * returns, slips)


def _loss_case(seed: int, batch: tuple[int, ...]):
    values, returns, continuation = visible._loss_inputs(seed, horizon=6, batch=batch)
    return values.detach(), returns.detach(), continuation.detach()


def check_value_loss_exact(fn: Callable, seed: int = 0) -> None:
    """Equals the reference value loss on batch shapes (3,) and (2, 2) and on a single trajectory (H,)."""
    for k, batch in enumerate(((3,), (2, 2), ())):
        values, returns, continuation = _loss_case(720 + seed + k, batch)
        got = visible._loss(fn, "value_loss", values, returns, continuation).detach()
        want = value_loss(values, returns, discount_weights(continuation)[:-1])
        _expect_value(f"value_loss (batch {batch})", got, want, "loss",
                      lambda v=values, r=returns, c=continuation: {
                          s: (slipped_value_loss(v, r, c, [s]), m) for s, m in LOSS_MESSAGES.items()
                          if s != "sign_flipped"}, hint=f"{visible.VALUE_HINT} {visible.WEIGHTS_HINT}")


def check_actor_loss_exact(fn: Callable, seed: int = 0) -> None:
    """Equals the reference actor loss on batch shapes (3,) and (2, 2) and on a single trajectory (H,)."""
    for k, batch in enumerate(((3,), (2, 2), ())):
        _, returns, continuation = _loss_case(730 + seed + k, batch)
        got = visible._loss(fn, "actor_loss", returns, continuation).detach()
        want = actor_loss(returns, discount_weights(continuation)[:-1])
        _expect_value(f"actor_loss (batch {batch})", got, want, "loss",
                      lambda r=returns, c=continuation: {
                          s: (slipped_actor_loss(r, c, [s]), m) for s, m in LOSS_MESSAGES.items() if s != "no_half"},
                      hint=f"{visible.ACTOR_HINT} {visible.WEIGHTS_HINT}")


# ------------------------------------------------------------------------------ the latent objective
OBJECTIVE_SLIPS = ("start_from_prior", "no_filter", "horizon_mean", "mean_path", "posterior_rollout")
"""The slips :func:`slipped_objective` knows."""
OBJECTIVE_MESSAGES = {
    "start_from_prior": "you imagine from the prior p(s_t | h_t) (observe_step's second result), which has not seen "
                        "y_t; start from the posterior q(s_t | h_t, e_t), its first result.",
    "no_filter": "you imagine from the old belief (h_{t−1}, s_{t−1}): filter the new observation y_t first "
                 "(model.observe_step) and start from its posterior.",
    "horizon_mean": "you averaged the imagined rewards over the horizon; G is their sum.",
    "mean_path": "you followed the prior's means (sample=False); PlaNet samples one latent trajectory per candidate "
                 "(model.imagine's default, with the generator).",
    "posterior_rollout": "you rolled forward through the posterior on the model's own decoded predictions "
                         "(observe_step in a loop); imagination is open loop in the prior p(s_{t+k} | h_{t+k}): "
                         "model.imagine.",
}


def objective_oracle(problem: visible.PlanningProblem, seed: int, observation=None) -> tuple[torch.Tensor, object]:
    """The reference: (G (N,), the posterior) on the checks' copy, with a generator seeded ``seed``."""
    gen = _generator(seed)
    y = problem.observation if observation is None else observation
    posterior, _ = problem.model.observe_step(problem.belief, problem.action, y, gen)
    objective = latent_return_objective(problem.model, posterior, generator=gen)
    return objective(problem.candidates), posterior


def slipped_objective(problem: visible.PlanningProblem, seed: int, slips: Iterable[str] = ()) -> torch.Tensor:
    """G as a student would compute it, with the given slips (see :data:`OBJECTIVE_SLIPS`); without slips the
    exact objective, by imagine."""
    slips = set(slips)
    unknown = slips - set(OBJECTIVE_SLIPS)
    if unknown:
        raise ValueError(f"slips: expected names from {OBJECTIVE_SLIPS}, got {sorted(unknown)}")
    model, gen, N = problem.model, _generator(seed), problem.candidates.shape[0]
    with torch.no_grad():
        start = problem.belief
        if "no_filter" not in slips:
            posterior, prior = model.observe_step(problem.belief, problem.action, problem.observation, gen)
            start = prior if "start_from_prior" in slips else posterior
        if "posterior_rollout" in slips:
            state, rewards = start.repeat(N), []
            for k in range(problem.candidates.shape[1]):
                state, _ = model.observe_step(state, problem.candidates[:, k], model.decode(state.features), gen)
                rewards.append(model.reward(state.features))
            rewards = torch.stack(rewards, -1)
        else:
            rewards = model.imagine(start.repeat(N), actions=problem.candidates, generator=gen,
                                    sample="mean_path" not in slips).rewards
        return rewards.mean(-1) if "horizon_mean" in slips else rewards.sum(-1)


def check_objective_exact(latent_objective: Callable, seed: int = 0, **sizes: int) -> None:
    """G of 6 candidates of 5 steps equals the reference (one sampled trajectory each, the same generator), and
    the returned posterior is the filtered state."""
    problem = visible.planning_problem(latent_objective, 740 + seed, population=6, horizon=5, **sizes)
    got, posterior = visible.run_objective(latent_objective, problem, generator=_generator(seed))
    want, want_posterior = objective_oracle(problem, seed)
    _expect_value("latent_objective", got, want.detach(), "returns G",
                  lambda: {s: (slipped_objective(problem, seed, [s]), m) for s, m in OBJECTIVE_MESSAGES.items()},
                  hint=visible.OBJECTIVE_HINT)
    for field in ("h", "s"):
        value = visible.expect_tensor(f"latent_objective (posterior.{field})", getattr(posterior, field))
        _expect_value(f"latent_objective (posterior.{field})", value.detach().to(DTYPE),
                      getattr(want_posterior, field).detach(), "posterior",
                      hint="return the posterior of model.observe_step(belief, action, observation, generator).")


# ------------------------------------------------------------------------------ independence
def _independence_args(name: str, seed: int, fn: Callable) -> tuple:
    trajectory = visible.random_trajectory(900 + seed, horizon=4, batch=(2,), end=1)
    values, returns, continuation = _loss_case(900 + seed, (2,))
    if name == "latent_objective":
        problem = visible.planning_problem(fn, 900 + seed)
        return (problem.student_model, problem.student_belief, problem.action, problem.observation)
    args = {
        "lambda_returns": (*trajectory.args(), 0.9),
        "lambda_returns_vectorised": (*trajectory.args(), 0.9),
        "value_loss": (values, returns, continuation),
        "actor_loss": (returns, continuation),
    }
    if name not in args:
        raise ValueError(f"name: expected one of {sorted(args) + ['latent_objective']}, got {name!r}")
    return args[name]


def check_no_reference_calls(name: str, fn: Callable, seed: int = 0,
                             packages: tuple[str, ...] = REFERENCE_PACKAGES) -> None:
    """``fn`` (the student's function called ``name``) runs without code of the reference packages (for the
    objective: the factory and the objective it returns)."""
    for package in packages:
        if importlib.util.find_spec(package) is None:
            continue
        args = _independence_args(name, seed, fn)
        expect_independent(name, lambda args=args: _attempt(name, fn, args, seed), package)


def _attempt(name: str, fn: Callable, args: tuple, seed: int) -> None:
    """Run the student's function (and the objective it returns) for what it calls; a crash is not this check's
    business (the other checks score it), only a use of the reference is."""
    try:
        if name == "latent_objective":
            objective, _ = fn(*args, generator=_generator(seed))
            objective(torch.zeros(3, 2, 2, dtype=DTYPE))
        else:
            fn(*args)
    except Exception:  # noqa: BLE001, S110 (see above)
        pass
