"""Visible checks of Assignment 6, "Dreamer and PlaNet in latent space" (``solutions/06-dreamer``).

In Dreamer's notation (Hafner et al., 2020): along one imagined trajectory s_0, a_0, r_0, s_1, …, s_H, with
the value v(s_t), the reward r_t of the step from s_t to s_{t+1} and its continuation c_t ∈ [0, 1] (the discount
γ, times 1 − done where an episode ends), the student writes

- ``lambda_returns(rewards, values, continuation, lam) -> (H, ...)``: the backward recursion
  V_λ(s_H) = v(s_H), V_λ(s_t) = r_t + c_t ((1 − λ) v(s_{t+1}) + λ V_λ(s_{t+1}));
- ``lambda_returns_vectorised(...)``: the same, without a Python loop over time;
- ``value_loss(values, returns, continuation) -> ()``: (1/N) Σ w_t ½ (v_ψ(s_t) − sg(V_λ(s_t)))², with the
  weights w_t = Π_{i<t} c_i, held fixed (no gradient), and the target sg(V_λ) a stop-gradient;
- ``actor_loss(returns, continuation) -> ()``: −(1/N) Σ w_t V_λ(s_t), gradients through the returns, none
  through the weights;
- ``latent_objective(model, belief, action, observation, generator) -> (objective, posterior)``: PlaNet's
  planning objective: filter y_t (``model.observe_step``), then G(a_{t:t+H−1}) = Σ_{k=1}^{H} r̂_{t+k} imagined
  open loop in the prior from the posterior tiled to the N candidates (``model.imagine``).

These are the checks students see. Each draws its own example from a fixed seed and tests a property every
correct solution has: a worked example, the recursion on the student's own output, the closed forms at λ = 0
and λ = 1, what an episode's end cuts off, batch dimensions, gradients by autograd against finite differences
and closed forms, and for the objective a reward head that predicts a constant (G = H c), candidates scored
independently, the new observation used, the generator used. Nothing here imports the reference
implementation (:mod:`mbrl_course.rl.actor_critic`, :mod:`mbrl_course.planning.latent`); exact comparisons with
it and the catalogues of mistakes are the instructor's (``solutions/hidden_checks/dreamer.py``).

The checks pass the student's functions tensors (and, for the objective, a tiny RSSM built in the student's
own process, :func:`planning_problem`), so that they work when the student's code runs in another process.
"""

from __future__ import annotations

import ast
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import torch

from mbrl_course.grading import remote
from mbrl_course.grading.checks import call_student as _call
from mbrl_course.grading.checks import expect_finite, expect_shape, expect_tensor, expect_uses_generator
from mbrl_course.grading.ensembles import _close, _generator, _worst
from mbrl_course.grading.report import GradingError
from mbrl_course.ssm.rssm import make_world_model

DTYPE = torch.float64

RETURNS_HINT = ("V_λ(s_H) = v(s_H), then backwards for t = H−1, …, 0: V_λ(s_t) = r_t + c_t ((1 − λ) v(s_{t+1}) "
                "+ λ V_λ(s_{t+1})); values[t] is v(s_t), values has one more step than rewards.")
BATCH_HINT = (" Write it for any trailing batch dimensions: time is dimension 0, index it as x[t] and let the "
              "rest broadcast.")
GRADIENT_HINT = ("Part of the computation is cut off from autograd: no .detach(), .item(), float(...), .numpy() or "
                 "torch.tensor(...) of the inputs, no in-place writes into a tensor you created with torch.zeros "
                 "without gradient (collect the steps in a list and torch.stack them).")
WEIGHTS_HINT = "w_t = Π_{i<t} c_i (w_0 = 1: the first step counts fully), held fixed: computed from continuation.detach()."
VALUE_HINT = "loss = mean over steps and batch of w_t · ½ (v_ψ(s_t) − sg(V_λ(s_t)))², sg = .detach()."
ACTOR_HINT = "loss = −mean over steps and batch of w_t V_λ(s_t): minimising it maximises the weighted λ-returns."
OBJECTIVE_HINT = ("posterior, prior = model.observe_step(belief, action, observation, generator); then for the "
                  "candidates (N, H, A): model.imagine(posterior.repeat(N), actions=..., generator=generator)"
                  ".rewards.sum(-1).")


# ------------------------------------------------------------------------------ trajectories
@dataclass
class Trajectory:
    """One imagined trajectory's numbers (float64): what λ-returns are computed from."""

    rewards: torch.Tensor
    """r_0 .. r_{H−1}: (H, *batch)"""
    values: torch.Tensor
    """v(s_0) .. v(s_H): (H+1, *batch)"""
    continuation: torch.Tensor
    """c_0 .. c_{H−1}: (H, *batch), in [0, 1]"""

    def args(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.rewards, self.values, self.continuation


def random_trajectory(seed: int, horizon: int = 5, batch: tuple[int, ...] = (3,), gamma: float | None = None,
                      end: int | None = None) -> Trajectory:
    """Random rewards and values; continuation uniform in [0.5, 1] (or the constant ``gamma``), 0 at step ``end``."""
    gen = _generator(610_000 + seed)
    rewards = torch.randn(horizon, *batch, generator=gen, dtype=DTYPE)
    values = 2 * torch.randn(horizon + 1, *batch, generator=gen, dtype=DTYPE)
    if gamma is None:
        continuation = 0.5 + 0.5 * torch.rand(horizon, *batch, generator=gen, dtype=DTYPE)
    else:
        continuation = torch.full((horizon, *batch), gamma, dtype=DTYPE)
    if end is not None:
        continuation[end] = 0.0
    return Trajectory(rewards, values, continuation)


def _returns(fn: Callable, name: str, trajectory: Trajectory, lam: float) -> torch.Tensor:
    result = _call(name, fn, *trajectory.args(), lam)
    result = expect_shape(name, expect_tensor(name, result), tuple(trajectory.rewards.shape),
                          "(H, ...), one λ-return per step s_0 .. s_{H−1}, like rewards")
    expect_finite(name, result)
    return result


# ------------------------------------------------------------------------------ λ-returns
RETURNS_EXAMPLE = {"rewards": (1.0, 0.0, 2.0), "values": (0.5, 1.0, -1.0, 4.0), "continuation": (0.9, 0.8, 0.5),
                   "lam": 0.5}
"""A worked example, H = 3 ..."""
RETURNS_EXAMPLE_RESULT = (1.99, 1.2, 4.0)
"""... its λ-returns V_λ(s_0), V_λ(s_1), V_λ(s_2), by hand: V_λ(s_2) = 2 + 0.5 (0.5 · 4 + 0.5 · 4) = 4,
V_λ(s_1) = 0 + 0.8 (0.5 · (−1) + 0.5 · 4) = 1.2, V_λ(s_0) = 1 + 0.9 (0.5 · 1 + 0.5 · 1.2) = 1.99."""


def check_returns_example(fn: Callable, name: str = "lambda_returns") -> None:
    """The worked example of the notebook (H = 3, λ = 0.5)."""
    trajectory = Trajectory(*(torch.tensor(RETURNS_EXAMPLE[k], dtype=DTYPE) for k in ("rewards", "values",
                                                                                       "continuation")))
    got = _returns(fn, name, trajectory, RETURNS_EXAMPLE["lam"]).detach()
    want = torch.tensor(RETURNS_EXAMPLE_RESULT, dtype=DTYPE)
    if not _close(got, want, atol=1e-9):
        raise GradingError(f"{name}: for the worked example (rewards {RETURNS_EXAMPLE['rewards']}, values "
                           f"{RETURNS_EXAMPLE['values']}, continuation {RETURNS_EXAMPLE['continuation']}, λ = 0.5) the "
                           f"λ-returns are {RETURNS_EXAMPLE_RESULT};{_worst(got, want)}. {RETURNS_HINT}")


def _recursion_hint(got: torch.Tensor, r, v_now, v_next, c, following, lam: float) -> str:
    """Which usual slip of one step of the recursion ``got`` matches (``following``: the V_λ it continues from)."""
    slips = (
        (r + c * ((1 - lam) * v_now + lam * following),
         "You bootstrap from v(s_t), the value of the state the step starts in; the step from s_t ends in s_{t+1}: "
         "use values[t + 1]."),
        (r + c * (1 - lam) * v_next + lam * following,
         "c_t multiplies only the bootstrap value: the whole continuation (1 − λ) v(s_{t+1}) + λ V_λ(s_{t+1}) is cut "
         "by c_t, so that after an episode's end (c_t = 0) nothing of the future counts."),
        (r + c * (lam * v_next + (1 - lam) * following),
         "λ and 1 − λ are swapped: V_λ(s_t) = r_t + c_t ((1 − λ) v(s_{t+1}) + λ V_λ(s_{t+1}))."),
        (r + c * (1 - lam) * v_next,
         "Your last step weights v(s_H) by (1 − λ): it starts the recursion from V_λ(s_H) = 0. Start it from "
         "V_λ(s_H) = v(s_H), so that the last step bootstraps fully (and λ = 1 still bootstraps)."),
    )
    return next((hint for wrong, hint in slips if _close(got, wrong)), RETURNS_HINT)


def check_returns_recursion(fn: Callable, name: str = "lambda_returns", seed: int = 0) -> None:
    """On a random trajectory (H = 6, batch 3, λ = 0.7): the last step bootstraps fully, V_λ(s_{H−1}) =
    r_{H−1} + c_{H−1} v(s_H), and every earlier step satisfies the recursion with the next step's V_λ (checked on
    your own output)."""
    trajectory = random_trajectory(seed, horizon=6)
    lam = 0.7
    r, v, c = trajectory.args()
    got = _returns(fn, name, trajectory, lam).detach().to(DTYPE)
    last = r[-1] + c[-1] * v[-1]
    if not _close(got[-1], last):
        hint = _recursion_hint(got[-1], r[-1], v[-2], v[-1], c[-1], v[-1], lam)
        raise GradingError(f"{name}: the last step should be V_λ(s_{{H−1}}) = r_{{H−1}} + c_{{H−1}} v(s_H) for any λ "
                           f"(nothing comes after s_H but its value);{_worst(got[-1], last)}. {hint}")
    want = r[:-1] + c[:-1] * ((1 - lam) * v[1:-1] + lam * got[1:])
    if not _close(got[:-1], want):
        hint = _recursion_hint(got[:-1], r[:-1], v[:-2], v[1:-1], c[:-1], got[1:], lam)
        raise GradingError(f"{name}: your λ-returns do not satisfy the recursion V_λ(s_t) = r_t + c_t ((1 − λ) "
                           f"v(s_{{t+1}}) + λ V_λ(s_{{t+1}})) (checked with your own V_λ(s_{{t+1}}), λ = {lam});"
                           f"{_worst(got[:-1], want)}. {hint}")


def check_returns_special_lambdas(fn: Callable, name: str = "lambda_returns", seed: int = 0) -> None:
    """λ = 0: the one-step TD target r_t + c_t v(s_{t+1}); λ = 1 with a constant discount γ: the discounted
    H − t step return Σ_j γ^{j−t} r_j + γ^{H−t} v(s_H)."""
    trajectory = random_trajectory(seed + 1, horizon=5)
    r, v, c = trajectory.args()
    got = _returns(fn, name, trajectory, 0.0).detach()
    want = r + c * v[1:]
    if not _close(got, want):
        raise GradingError(f"{name}: with λ = 0 the λ-return is the TD target r_t + c_t v(s_{{t+1}});"
                           f"{_worst(got, want)}. {RETURNS_HINT}")
    gamma = 0.9
    trajectory = random_trajectory(seed + 2, horizon=5, gamma=gamma)
    r, v, _ = trajectory.args()
    H = r.shape[0]
    got = _returns(fn, name, trajectory, 1.0).detach()
    want = torch.stack([sum(gamma ** (j - t) * r[j] for j in range(t, H)) + gamma ** (H - t) * v[H]
                        for t in range(H)])
    if not _close(got, want):
        hint = RETURNS_HINT
        dropped = torch.stack([sum(gamma ** (j - t) * r[j] for j in range(t, H)) for t in range(H)])
        if _close(got, dropped):
            hint = ("With λ = 1 your returns lose the bootstrap γ^{H−t} v(s_H): start the recursion from "
                    "V_λ(s_H) = v(s_H) (not 0), and do not weight the last step's v(s_H) by 1 − λ.")
        raise GradingError(f"{name}: with λ = 1 and c_t = γ = {gamma} the λ-return is the discounted return "
                           f"Σ_j γ^(j−t) r_j + γ^(H−t) v(s_H);{_worst(got, want)}. {hint}")


def check_returns_termination(fn: Callable, name: str = "lambda_returns", seed: int = 0) -> None:
    """An episode ends after step k (c_k = 0): V_λ(s_k) = r_k, and V_λ(s_t), t ≤ k, does not change when the
    rewards and values after the end change."""
    end, lam = 2, 0.8
    trajectory = random_trajectory(seed + 3, horizon=6, end=end)
    got = _returns(fn, name, trajectory, lam).detach()
    r, v, c = trajectory.args()
    if not _close(got[end], r[end]):
        raise GradingError(f"{name}: with c_{end} = 0 (the episode ends after step {end}) V_λ(s_{end}) = r_{end}; "
                           f"{_worst(got[end], r[end]).strip()}. The continuation c_t multiplies everything after "
                           f"r_t: V_λ(s_t) = r_t + c_t ((1 − λ) v(s_{{t+1}}) + λ V_λ(s_{{t+1}})).")
    gen = _generator(620_000 + seed)
    later_r = r.clone()
    later_v = v.clone()
    later_r[end + 1:] += 5 * torch.randn(later_r[end + 1:].shape, generator=gen, dtype=DTYPE)
    later_v[end + 1:] += 5 * torch.randn(later_v[end + 1:].shape, generator=gen, dtype=DTYPE)
    moved = _returns(fn, name, Trajectory(later_r, later_v, c), lam).detach()
    if not _close(moved[:end + 1], got[:end + 1]):
        raise GradingError(f"{name}: the episode ends after step {end} (c_{end} = 0), but your V_λ(s_t) for t ≤ {end} "
                           "changed when the rewards and values after the end changed: the continuation must cut off "
                           "the whole future, c_t ((1 − λ) v(s_{t+1}) + λ V_λ(s_{t+1})).")


def check_returns_batched(fn: Callable, name: str = "lambda_returns", seed: int = 0) -> None:
    """Trailing batch dimensions (H, 2, 3): each entry equals the λ-returns of its own trajectory alone (H,);
    and the result is differentiable: autograd's gradient in the rewards and values agrees with finite
    differences."""
    trajectory = random_trajectory(seed + 4, horizon=4, batch=(2, 3))
    lam = 0.6
    try:
        got = _call(name, fn, *trajectory.args(), lam)
    except GradingError:
        raise
    except Exception as err:  # noqa: BLE001 (the student's code crashed on a batch)
        raise GradingError(f"{name} raised {type(err).__name__} for trajectories with batch dimensions (H, 2, 3): "
                           f"{str(err).splitlines()[0] if str(err) else ''}." + BATCH_HINT) from None
    got = expect_shape(name, expect_tensor(name, got), (4, 2, 3), "(H, 2, 3), like rewards").detach()
    for i in range(2):
        for j in range(3):
            alone = _returns(fn, name, Trajectory(*(x[:, i, j] for x in trajectory.args())), lam).detach()
            if not _close(got[:, i, j], alone):
                raise GradingError(f"{name}: entry [:, {i}, {j}] of the batched result differs from the λ-returns of "
                                   f"that trajectory alone;{_worst(got[:, i, j], alone)}." + BATCH_HINT)
    _expect_gradient(name, lambda r, v: fn(r, v, trajectory.continuation, lam), trajectory, seed)


def _expect_gradient(name: str, call: Callable, trajectory: Trajectory, seed: int) -> None:
    gen = _generator(630_000 + seed)
    weight = torch.randn(trajectory.rewards.shape, generator=gen, dtype=DTYPE)
    r = trajectory.rewards.clone().requires_grad_(True)
    v = trajectory.values.clone().requires_grad_(True)
    result = expect_tensor(name, _call(name, call, r, v))
    if not result.requires_grad:
        raise GradingError(f"{name}: the result carries no gradient with respect to the rewards and values. "
                           + GRADIENT_HINT)
    grads = torch.autograd.grad((result * weight).sum(), (r, v), allow_unused=True)
    directions = (torch.randn(r.shape, generator=gen, dtype=DTYPE), torch.randn(v.shape, generator=gen, dtype=DTYPE))
    analytic = sum(float((g * d).sum()) for g, d in zip(grads, directions) if g is not None)

    def at(step: float) -> float:
        with torch.no_grad():
            out = _call(name, call, trajectory.rewards + step * directions[0], trajectory.values + step * directions[1])
        return float((expect_tensor(name, out).detach().to(DTYPE) * weight).sum())

    h = 1e-6
    numeric = (at(h) - at(-h)) / (2 * h)
    if abs(numeric - analytic) > 1e-5 * max(1.0, abs(numeric)):
        raise GradingError(f"{name}: autograd's gradient with respect to the rewards and values disagrees with finite "
                           f"differences of your function ({analytic:.6g} by autograd, {numeric:.6g} by finite "
                           f"differences, along a random direction). {GRADIENT_HINT}")


# ------------------------------------------------------------------------------ no loop over time
def _student_source(fn: Callable, name: str) -> str | None:
    """The source of the student's function ``name``: from the notebook cell (in Jupyter), or from the submitted
    notebook when grading (the student's code runs elsewhere); None where it cannot be found."""
    session = remote.current()
    if session is not None and isinstance(fn, remote.RemoteObject):
        folder = Path(getattr(session, "source_dir", "") or ".")
        for path in sorted(folder.glob("*.ipynb")):
            try:
                nb = nbformat.read(path, as_version=4)
            except Exception:  # noqa: BLE001 (an unreadable notebook cannot be checked)
                continue
            for cell in nb.cells:
                if cell.get("cell_type") == "code" and f"def {name}(" in cell.get("source", ""):
                    return cell.source
        return None
    try:
        return inspect.getsource(fn)
    except (OSError, TypeError):
        return None


def _function_node(source: str, name: str) -> ast.FunctionDef | None:
    lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError:
        return None
    found = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == name]
    return found[-1] if found else None


LOOPS = (ast.For, ast.AsyncFor, ast.While, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def check_no_time_loop(fn: Callable, name: str = "lambda_returns_vectorised", loop_version: str = "lambda_returns") -> None:
    """The function runs (on the worked example), has no Python loop (for, while, comprehension) and does not
    call the loop version."""
    example = Trajectory(*(torch.tensor(RETURNS_EXAMPLE[k], dtype=DTYPE) for k in ("rewards", "values",
                                                                                    "continuation")))
    _returns(fn, name, example, RETURNS_EXAMPLE["lam"])
    source = _student_source(fn, name)
    node = _function_node(source, name) if source else None
    if node is None:
        return  # nothing to inspect (e.g. defined outside a notebook cell): the value checks still apply
    loops = [n for n in ast.walk(node) if isinstance(n, LOOPS)]
    if loops:
        kind = {ast.For: "a for loop", ast.While: "a while loop"}.get(type(loops[0]), "a comprehension")
        raise GradingError(f"{name}: line {loops[0].lineno - node.lineno + 1} of your function has {kind}; the "
                           "vectorised form has no Python loop over time: build the matrix of products Π λ c_i "
                           "(torch.cumprod, torch.tril/triu or a mask) and multiply it with the vector x_k.")
    calls = [n for n in ast.walk(node) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
             and n.func.id == loop_version]
    if calls:
        raise GradingError(f"{name}: calls {loop_version}, the loop version; write the unrolled sum with tensor "
                           "operations instead.")


# ------------------------------------------------------------------------------ the losses
def _weights(continuation: torch.Tensor) -> torch.Tensor:
    """w_t = Π_{i<t} c_i, t = 0..H−1, detached: (H, ...)."""
    c = continuation.detach()
    return torch.cat([torch.ones_like(c[:1]), torch.cumprod(c[:-1], 0)], 0)


def _loss(fn: Callable, name: str, *args) -> torch.Tensor:
    result = expect_tensor(name, _call(name, fn, *args))
    if result.numel() == 1:
        result = result.reshape(())
    result = expect_shape(name, result, (), "a scalar loss (the mean over steps and batch)")
    expect_finite(name, result)
    return result


LOSS_EXAMPLE = {"values": ((1.0, 2.0), (0.0, -1.0), (3.0, 0.5)), "returns": ((2.0, 2.0), (1.0, 1.0), (0.0, 1.5)),
                "continuation": ((0.5, 1.0), (0.0, 0.8), (1.0, 1.0))}
"""A worked example, H = 3 steps of a batch of 2 (weights w = ((1, 1), (0.5, 1), (0, 0.8))) ..."""
VALUE_LOSS_EXAMPLE_RESULT = 1.0 / 6.0 * (0.5 + 0 + 0.5 * 0.5 + 0.5 * 4 + 0 + 0.8 * 0.5)
"""... its value loss (1/6) Σ w_t ½ (v − V)² ..."""
ACTOR_LOSS_EXAMPLE_RESULT = -1.0 / 6.0 * (2.0 + 2.0 + 0.5 + 1.0 + 0.0 + 0.8 * 1.5)
"""... and its actor loss −(1/6) Σ w_t V."""


def _example(key: str) -> torch.Tensor:
    return torch.tensor(LOSS_EXAMPLE[key], dtype=DTYPE)


def check_value_loss_example(value_loss: Callable) -> None:
    """The worked example (H = 3, batch 2, an episode end in the first trajectory)."""
    got = float(_loss(value_loss, "value_loss", _example("values"), _example("returns"), _example("continuation")))
    if abs(got - VALUE_LOSS_EXAMPLE_RESULT) > 1e-9:
        raise GradingError(f"value_loss: for the worked example the loss is {VALUE_LOSS_EXAMPLE_RESULT:.6g} "
                           f"(weights w = ((1, 1), (0.5, 1), (0, 0.8))); you have {got:.6g}. {VALUE_HINT} {WEIGHTS_HINT}")


def _loss_inputs(seed: int, horizon: int = 5, batch: tuple[int, ...] = (4,)) -> tuple[torch.Tensor, ...]:
    trajectory = random_trajectory(seed + 5, horizon=horizon, batch=batch, end=1)
    values = trajectory.values[:-1].clone().requires_grad_(True)
    returns = (trajectory.values[1:] + trajectory.rewards).clone().requires_grad_(True)
    continuation = trajectory.continuation.clone().requires_grad_(True)
    return values, returns, continuation


def check_value_loss_gradients(value_loss: Callable, seed: int = 0) -> None:
    """The gradient in v_ψ(s_t) is w_t (v_ψ(s_t) − V_λ(s_t)) / N (N = steps × batch); none reaches the target
    V_λ (a stop-gradient) or the continuation (the weights are fixed)."""
    values, returns, continuation = _loss_inputs(seed)
    loss = _loss(value_loss, "value_loss", values, returns, continuation)
    if not loss.requires_grad:
        raise GradingError("value_loss: the loss carries no gradient to the values v_ψ(s_t). " + GRADIENT_HINT)
    g_values, g_returns, g_cont = torch.autograd.grad(loss, (values, returns, continuation), allow_unused=True)
    if g_returns is not None and float(g_returns.abs().max()) > 0:
        raise GradingError("value_loss: gradient flows into the target V_λ(s_t): the λ-returns are a fixed target, "
                           "sg(V_λ(s_t)) = returns.detach(); otherwise the loss also moves the target (through the "
                           "rewards, the model and the value's own bootstraps) towards the prediction.")
    if g_cont is not None and float(g_cont.abs().max()) > 0:
        raise GradingError("value_loss: gradient flows into the continuation through the weights w_t: they only say "
                           "how much each step counts, and are held fixed. " + WEIGHTS_HINT)
    want = _weights(continuation) * (values - returns).detach() / values.numel()
    got = torch.zeros_like(values) if g_values is None else g_values
    if not _close(got, want):
        hint = f"{VALUE_HINT} {WEIGHTS_HINT}"
        if _close(got, want * values.numel()):
            hint = "Your loss is N times too large: average over the steps and the batch (.mean()), do not sum."
        elif _close(got, (values - returns).detach() / values.numel()):
            hint = "The weights w_t are missing: later steps, and the steps after an episode's end, count less. " \
                   + WEIGHTS_HINT
        elif _close(got, 2 * want):
            hint = "The factor ½ is missing: ½ (v − V)² has the gradient (v − V)."
        raise GradingError(f"value_loss: the gradient in v_ψ(s_t) should be w_t (v_ψ(s_t) − V_λ(s_t)) / N;"
                           f"{_worst(got, want)}. {hint}")


def check_actor_loss_example(actor_loss: Callable) -> None:
    """The worked example (H = 3, batch 2, an episode end in the first trajectory)."""
    got = float(_loss(actor_loss, "actor_loss", _example("returns"), _example("continuation")))
    if abs(got - ACTOR_LOSS_EXAMPLE_RESULT) > 1e-9:
        hint = ACTOR_HINT
        if abs(got + ACTOR_LOSS_EXAMPLE_RESULT) <= 1e-9:
            hint = ("Your loss has the wrong sign: the actor maximises the returns, so the loss to minimise is "
                    "−mean(w_t V_λ(s_t)).")
        raise GradingError(f"actor_loss: for the worked example the loss is {ACTOR_LOSS_EXAMPLE_RESULT:.6g}; you have "
                           f"{got:.6g}. {hint} {WEIGHTS_HINT}")


def check_actor_loss_gradients(actor_loss: Callable, seed: int = 0) -> None:
    """The gradient in V_λ(s_t) is −w_t / N (the actor learns through the returns); none reaches the
    continuation (the weights are fixed)."""
    _, returns, continuation = _loss_inputs(seed + 1)
    loss = _loss(actor_loss, "actor_loss", returns, continuation)
    if not loss.requires_grad:
        raise GradingError("actor_loss: the loss carries no gradient to the returns: the actor learns by "
                           "backpropagating through V_λ (do not detach the returns). " + GRADIENT_HINT)
    g_returns, g_cont = torch.autograd.grad(loss, (returns, continuation), allow_unused=True)
    if g_cont is not None and float(g_cont.abs().max()) > 0:
        raise GradingError("actor_loss: gradient flows into the continuation through the weights w_t: the actor "
                           "would learn to end episodes early (or never) just to change how much a step counts. "
                           "Detach the weights. " + WEIGHTS_HINT)
    want = -_weights(continuation) / returns.numel()
    got = torch.zeros_like(returns) if g_returns is None else g_returns
    if not _close(got, want):
        hint = f"{ACTOR_HINT} {WEIGHTS_HINT}"
        if _close(got, -want):
            hint = ("Your loss has the wrong sign: minimising it would lower the returns. The actor maximises them: "
                    "loss = −mean(w_t V_λ(s_t)).")
        elif _close(got, want * returns.numel()):
            hint = "Your loss is N times too large: average over the steps and the batch (.mean()), do not sum."
        raise GradingError(f"actor_loss: the gradient in V_λ(s_t) should be −w_t / N;{_worst(got, want)}. {hint}")


# ------------------------------------------------------------------------------ the latent objective
MODEL_SIZES = {"action_dim": 2, "obs_dim": 3, "deterministic_size": 8, "stochastic_size": 4, "hidden_size": 16,
               "embed_size": 8}
"""The tiny vector-observation RSSM the objective's checks plan with."""


@dataclass
class PlanningProblem:
    """A tiny world model (twice: the checks' own copy, and the same model where the student's code runs), a
    belief (h_{t−1}, s_{t−1}) after one observation, the last action, a new observation y_t and candidates."""

    model: Any
    """the checks' copy (a RecurrentSSM, float64)"""
    student_model: Any
    """the same model in the student's process (when grading, a handle; in a notebook, another copy)"""
    belief: Any
    """(h_{t−1}, s_{t−1}) in the checks' copy: a LatentState of leading shape (1,)"""
    student_belief: Any
    """the same belief, made by the student's copy"""
    action: torch.Tensor
    """a_{t−1}: (1, A)"""
    observation: torch.Tensor
    """y_t: (1, dy)"""
    candidates: torch.Tensor
    """action sequences (N, H, A)"""


def _builder(fn: Callable) -> Callable:
    """make_world_model where ``fn`` runs: the student's process when grading, this one in a notebook."""
    session = remote.current()
    if session is None or not isinstance(fn, remote.RemoteObject):
        return make_world_model
    found = session.lookup(["make_world_model"]).get("make_world_model")
    if found is None:
        raise GradingError("latent_objective: make_world_model is not defined in your notebook: run the imports "
                           "cell unchanged (the checks build a tiny RSSM with it).")
    return found


def tiny_model(seed: int, kind: str = "rssm", **sizes: int):
    """A tiny RSSM (float64) with weights drawn from ``seed`` (W ~ N(0, 1/fan_in), biases N(0, 0.1²))."""
    model = make_world_model(kind, **{**MODEL_SIZES, **sizes}).double()
    gen = _generator(640_000 + seed)
    with torch.no_grad():
        for parameter in model.parameters():
            scale = 1 / math.sqrt(parameter.shape[-1]) if parameter.ndim > 1 else 0.1
            parameter.copy_(scale * torch.randn(parameter.shape, generator=gen, dtype=DTYPE))
    return model


def planning_problem(fn: Callable, seed: int, kind: str = "rssm", population: int = 5, horizon: int = 4,
                     **sizes: int) -> PlanningProblem:
    """The model of :func:`tiny_model`, copied where ``fn`` runs, a belief after one observation made alike in
    both copies, and ``population`` candidates of ``horizon`` actions."""
    model = tiny_model(seed, kind, **sizes)
    student_model = _builder(fn)(kind, **{**MODEL_SIZES, **sizes}).double()
    student_model.load_state_dict(dict(model.state_dict()))
    cfg = {**MODEL_SIZES, **sizes}
    gen = _generator(650_000 + seed)
    first_action = torch.randn(1, cfg["action_dim"], generator=gen, dtype=DTYPE)
    first_obs = torch.randn(1, cfg["obs_dim"], generator=gen, dtype=DTYPE)
    belief, _ = model.observe_step(model.initial_state(1), first_action, first_obs, _generator(seed))
    student_belief, _ = student_model.observe_step(student_model.initial_state(1), first_action, first_obs,
                                                   _generator(seed))
    return PlanningProblem(
        model, student_model, belief.detach(), student_belief,
        torch.randn(1, cfg["action_dim"], generator=gen, dtype=DTYPE).clamp(-1, 1),
        torch.randn(1, cfg["obs_dim"], generator=gen, dtype=DTYPE),
        torch.rand(population, horizon, cfg["action_dim"], generator=gen, dtype=DTYPE) * 2 - 1)


def run_objective(latent_objective: Callable, problem: PlanningProblem, generator: torch.Generator | None = None,
                  observation: torch.Tensor | None = None, candidates: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, Any]:
    """(G of the candidates (N,), the posterior the student returned)."""
    name = "latent_objective"
    candidates = problem.candidates if candidates is None else candidates
    observation = problem.observation if observation is None else observation
    result = _call(name, latent_objective, problem.student_model, problem.student_belief, problem.action,
                   observation, generator=_generator(0) if generator is None else generator)
    if not isinstance(result, (tuple, list)) or len(result) != 2 or not callable(result[0]):
        raise GradingError(f"{name} returned a {type(result).__name__}; expected a pair (objective, posterior): the "
                           "function G of the action sequences, and the filtered state.")
    objective, posterior = result
    try:
        values = _call(f"{name}'s objective", objective, candidates)
    except GradingError:
        raise
    except Exception as err:  # noqa: BLE001 (the student's code crashed: name the usual cause, else pass it on)
        if "initial state's leading dims" not in str(err):
            raise
        raise GradingError(f"{name}'s objective: model.imagine got one starting state for {candidates.shape[0]} "
                           "candidates (it raised: " + str(err).splitlines()[0] + "): imagine one copy of the "
                           "filtered state per candidate, posterior.repeat(N).") from None
    values = expect_tensor(f"{name}'s objective", values)
    N, H = candidates.shape[:2]
    if values.ndim == 1 and values.shape[0] == H and H != N:
        raise GradingError(f"{name}'s objective returned shape ({H},) for {N} candidates of {H} steps: you summed over "
                           "the candidates (dimension 0) instead of the horizon; G has one entry per candidate, the sum "
                           "over its H imagined rewards (dimension −1).")
    values = expect_shape(f"{name}'s objective", values, (N,), "(N,), one return G per candidate")
    expect_finite(f"{name}'s objective", values)
    return values.detach().to(DTYPE), posterior


def check_objective_constant_reward(latent_objective: Callable, seed: int = 0) -> None:
    """A reward head that predicts the constant c = 0.7 for every latent state: G = H c for every candidate
    (5 candidates of H = 4 steps); the function returns (objective, posterior)."""
    problem = planning_problem(latent_objective, seed)
    constant = 0.7
    last = [name for name, module in problem.model.reward_net.named_modules() if isinstance(module, torch.nn.Linear)][-1]
    head = dict(problem.model.state_dict())
    head[f"reward_net.{last}.weight"] = torch.zeros_like(head[f"reward_net.{last}.weight"])  # r̂ = 0 · features + c
    head[f"reward_net.{last}.bias"] = torch.full_like(head[f"reward_net.{last}.bias"], constant)
    problem.student_model.load_state_dict(head)
    got, _ = run_objective(latent_objective, problem)
    H = problem.candidates.shape[1]
    want = torch.full_like(got, H * constant)
    if not _close(got, want, atol=1e-9):
        hint = OBJECTIVE_HINT
        if _close(got, torch.full_like(got, constant), atol=1e-9):
            hint = "You averaged the imagined rewards over the horizon; G is their sum, Σ_{k=1}^{H} r̂_{t+k}."
        raise GradingError(f"latent_objective: with a reward head that predicts r̂ = {constant} everywhere, every "
                           f"candidate's G = H r̂ = {H * constant:.4g} (H = {H});{_worst(got, want)}. {hint}")


def check_objective_candidates_independent(latent_objective: Callable, seed: int = 0) -> None:
    """On a deterministic RSSM (s_t = the mean, "rnn"): each candidate's G equals its G when it is scored alone,
    and the posterior returned is a single state (1, ·)."""
    problem = planning_problem(latent_objective, seed + 1, kind="rnn")
    got, posterior = run_objective(latent_objective, problem)
    s = expect_tensor("latent_objective (posterior.s)", posterior.s)
    if tuple(s.shape) != (1, MODEL_SIZES["stochastic_size"]):
        raise GradingError(f"latent_objective: the posterior should be the filtered state at t, leading shape (1,): its "
                           f"s has shape {tuple(s.shape)}. Return observe_step's posterior, not the tiled copies.")
    for i in range(problem.candidates.shape[0]):
        alone, _ = run_objective(latent_objective, problem, candidates=problem.candidates[i:i + 1])
        if not _close(got[i:i + 1], alone):
            raise GradingError(f"latent_objective: candidate {i} scored among {problem.candidates.shape[0]} gets G = "
                               f"{float(got[i]):.6g}, scored alone {float(alone[0]):.6g} (a deterministic model): each "
                               "candidate must be imagined from the same filtered state, one copy per candidate "
                               "(posterior.repeat(N)), independently of the others. " + OBJECTIVE_HINT)


def check_objective_uses_observation(latent_objective: Callable, seed: int = 0) -> None:
    """The new observation y_t matters: on a deterministic RSSM another y_t gives another posterior and other G
    (the plan starts from the filtered posterior q(s_t | h_t, e_t), not from the prior or the old belief)."""
    problem = planning_problem(latent_objective, seed + 2, kind="rnn")
    got, posterior = run_objective(latent_objective, problem)
    other, other_posterior = run_objective(latent_objective, problem, observation=problem.observation + 1.5)
    if _close(got, other, atol=1e-12, rtol=0):
        raise GradingError("latent_objective: G does not change when the new observation y_t changes: the plan must "
                           "start from the posterior q(s_t | h_t, e_t) of model.observe_step (its first result), which "
                           "has seen y_t; the prior p(s_t | h_t) (its second result) and the old belief have not. "
                           + OBJECTIVE_HINT)
    if _close(expect_tensor("latent_objective (posterior.s)", posterior.s).detach().to(DTYPE),
              expect_tensor("latent_objective (posterior.s)", other_posterior.s).detach().to(DTYPE), atol=1e-12, rtol=0):
        raise GradingError("latent_objective: the posterior you return does not depend on y_t: return the filtered "
                           "state of observe_step (its first result).")


def check_objective_generator(latent_objective: Callable, seed: int = 0) -> None:
    """The samples (the filter's and the imagination's) come from the generator it is given: the same seed gives
    the same G, another seed other G."""
    problem = planning_problem(latent_objective, seed + 3)
    expect_uses_generator("latent_objective", lambda g: run_objective(latent_objective, problem, generator=g)[0],
                          seed, atol=1e-12, example="model.imagine")
