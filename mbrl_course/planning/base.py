"""The part every sampling-based planner shares: ``planning-algo(f_ψ, i)`` of the MPC loop.

A planner searches action sequences u_{1:K} (``actions: (H, A)``, H = K the horizon, A the
action dimension) that maximise an *objective*: a function that maps a batch of candidate
sequences ``(N, H, A)`` to their returns G_n ``(N,)``, usually by rolling a model f_ψ forward
from the current state i and summing the rewards g. The MPC loop executes the first action
u_1 of the returned plan, observes the next state and plans again.

The slide writes ``n_* := argmin_n G_n`` because it thinks of g as a cost; here G_n is a
*return* and every planner maximises it (pass ``-cost`` to minimise a cost).

What lives here, once: argument checks, the action bounds [u_min, u_max], seeding, the
warm start (the previous plan shifted by one step), sampling inside the bounds (uniform,
clipped Gaussian or truncated Gaussian), evaluating and checking the objective, and the
per-iteration ``history`` that lectures draw.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch

from mbrl_course._checks import (
    as_tensor,
    check_choice,
    check_finite,
    check_positive_float,
    check_positive_int,
    resolve_device,
)

Objective = Callable[[torch.Tensor], torch.Tensor]
"""``objective(actions: (N, H, A)) -> returns: (N,)``, to be maximised; -inf marks infeasible."""

SAMPLING_MODES = ("truncated", "clipped")


@dataclass
class PlanIteration:
    """One iteration of a planner, kept in ``Planner.history`` so that lectures can draw it."""

    samples: torch.Tensor
    """(N, H, A): the action sequences u^n sampled in this iteration (all inside the bounds)."""
    returns: torch.Tensor
    """(N,): their returns G_n, as the objective gave them."""
    mean: torch.Tensor
    """(H, A): mean μ of the sampling distribution of this iteration (before its update)."""
    std: torch.Tensor
    """(H, A): standard deviation σ of the sampling distribution of this iteration."""
    elite_indices: torch.Tensor | None
    """(E,): indices of the elites into ``samples`` (CEM; the best trial for RS; None for MPPI)."""
    weights: torch.Tensor | None = None
    """(N,): MPPI's weights w_n = softmax(G / λ)_n; None for RS and CEM."""


def truncated_normal_(
    out: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    low: torch.Tensor,
    high: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Fill ``out`` in place with samples of N(μ, σ²) truncated to [low, high]; return it.

    Inverse-CDF sampling with Φ the standard normal CDF:
        α = (low - μ)/σ,  β = (high - μ)/σ,  r ~ U(0, 1),
        x = μ + σ Φ⁻¹(Φ(α) + r (Φ(β) - Φ(α))).
    Where the interval lies mostly above μ (α + β > 0) the mirrored interval [-β, -α] is
    sampled and the sign flipped, so that Φ is evaluated in its accurate lower tail. The
    result is clamped into [low, high] (rounding), so no sample ever leaves the bounds, even
    for σ = 0 or μ far outside the bounds (the samples then sit on the nearer bound).

    Args:
        out: (N, H, A) tensor to fill (floating).
        mean: (H, A) μ; std: (H, A) σ >= 0; low, high: (A,) bounds.
        generator: random generator on ``out``'s device.
    """
    tiny = torch.finfo(out.dtype).tiny
    std = std.clamp_min(tiny)
    alpha = (low - mean) / std
    beta = (high - mean) / std
    flip = (alpha + beta) > 0
    a = torch.where(flip, -beta, alpha)
    b = torch.where(flip, -alpha, beta)
    cdf_a = torch.special.ndtr(a)
    cdf_b = torch.special.ndtr(b)
    sign = 1.0 - 2.0 * flip.to(out.dtype)
    torch.rand(out.shape, generator=generator, out=out)
    out.mul_(cdf_b - cdf_a).add_(cdf_a)
    # Keep Φ⁻¹ finite: r = 0 or a rounded-up 1 would give ∓inf.
    out.clamp_(tiny, 1.0 - torch.finfo(out.dtype).eps / 2)
    torch.special.ndtri(out, out=out)
    out.mul_(sign * std).add_(mean)
    return out.clamp_(low, high)


def _as_bounds(
    action_low, action_high, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check u_min = ``action_low`` and u_max = ``action_high``: shape (A,), finite, low < high."""
    bounds = []
    for name, value in (("action_low", action_low), ("action_high", action_high)):
        tensor = as_tensor(name, value, dtype=dtype, device=device)
        if tensor.dim() == 0:
            tensor = tensor.reshape(1)
        if tensor.dim() != 1 or tensor.numel() == 0:
            raise ValueError(
                f"{name}: expected a float or a 1-D array of shape (A,) with A >= 1, got shape {tuple(tensor.shape)}"
            )
        check_finite(name, tensor)
        bounds.append(tensor)
    low, high = bounds
    if low.shape != high.shape:
        raise ValueError(
            f"action_high: expected the shape of action_low {tuple(low.shape)}, got {tuple(high.shape)}"
        )
    if not bool((low < high).all()):
        bad = int((~(low < high)).nonzero()[0])
        raise ValueError(
            f"action_low: expected action_low < action_high elementwise, got action_low[{bad}]="
            f"{float(low[bad])} >= action_high[{bad}]={float(high[bad])}"
        )
    return low, high


def _as_std(name: str, value, action_dim: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A positive standard deviation: a float (every action dimension) or an array of shape (A,)."""
    tensor = as_tensor(name, value, dtype=dtype, device=device)
    if tensor.dim() == 0:
        tensor = tensor.expand(action_dim)
    if tuple(tensor.shape) != (action_dim,):
        raise ValueError(
            f"{name}: expected a float or shape ({action_dim},) like action_low, got shape {tuple(tensor.shape)}"
        )
    check_finite(name, tensor)
    if not bool((tensor > 0).all()):
        raise ValueError(f"{name}: expected positive values, got {tensor.tolist()}")
    return tensor


class Planner(ABC):
    """Base class of the sampling-based planners: ``actions = planner.plan(objective)``.

    ``objective(actions: (N, H, A)) -> returns: (N,)`` gives the return G_n of each candidate
    sequence; the planner **maximises** it (the slide's ``argmin_n G_n`` reads G as a cost).
    Returns must be finite or -inf (-inf marks an infeasible sequence); NaN or +inf, or a
    shape other than (N,), raise a ``ValueError``. ``plan`` returns the action sequence to
    execute, ``(H, A)``, inside [action_low, action_high]; the MPC loop executes its first row.

    Warm start: after each ``plan`` the planner keeps its solution; the next ``plan`` starts
    from it shifted by one step, the last step filled with the middle of the bounds.
    ``reset()`` forgets it (call it at the start of each episode).

    Attributes:
        horizon: H (K on the slide), the number of planned steps.
        action_dim: A.
        action_low, action_high: (A,) the bounds u_min, u_max.
        population: N, the number of sequences per objective call.
        iterations: how many times the objective is called per ``plan``.
        device, dtype: where and in which precision everything is computed.
        generator: the ``torch.Generator`` (on ``device``) all sampling draws from.
        history: list of :class:`PlanIteration`, one per iteration of the last ``plan``
            (empty when ``keep_history=False``).
    """

    def __init__(
        self,
        horizon: int,
        action_low,
        action_high,
        population: int,
        iterations: int,
        *,
        device: torch.device | str | None = None,
        seed: int | None = None,
        dtype: torch.dtype = torch.float32,
        keep_history: bool = True,
        warm_start: bool = True,
    ) -> None:
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point or dtype.is_complex:
            raise TypeError(f"dtype: expected a real floating torch.dtype such as torch.float32, got {dtype!r}")
        for name, flag in (("keep_history", keep_history), ("warm_start", warm_start)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name}: expected True or False, got {flag!r}")
        self.horizon = check_positive_int("horizon", horizon)
        self.population = check_positive_int("population", population)
        self.iterations = check_positive_int("iterations", iterations)
        if seed is not None:
            seed = check_positive_int("seed", seed, allow_zero=True)
        device = resolve_device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        self.device = device
        self.dtype = dtype
        self.action_low, self.action_high = _as_bounds(action_low, action_high, dtype, device)
        self.action_dim = int(self.action_low.shape[0])
        self.keep_history = keep_history
        self.warm_start = warm_start
        self.seed = seed
        self.generator = torch.Generator(device=device)
        self._seed_generator(seed)
        self.history: list[PlanIteration] = []
        self._previous_plan: torch.Tensor | None = None
        shape = (self.horizon, self.action_dim)
        self._middle = ((self.action_low + self.action_high) / 2).expand(shape).contiguous()
        # Max return of each iteration: NaN/+inf are checked once per plan (one device sync).
        self._max_returns = torch.empty(self.iterations, dtype=dtype, device=device)
        # With keep_history=False the samples of every iteration reuse one buffer.
        self._buffer = (
            None
            if keep_history
            else torch.empty((self.population, *shape), dtype=dtype, device=device)
        )

    # ----------------------------------------------------------------------------- public
    def plan(self, objective: Objective) -> torch.Tensor:
        """Search the action sequence that maximises ``objective``; return it, ``(H, A)``.

        Runs without autograd. The returned plan lies in [action_low, action_high].
        """
        if not callable(objective):
            raise TypeError(
                f"objective: expected a callable mapping actions (N, H, A) to returns (N,), "
                f"got {type(objective).__name__}"
            )
        self.history = []
        with torch.no_grad():
            solution = self._optimize(objective, self.initial_mean())
            self._check_returns()
        self._previous_plan = solution.clone()
        return solution

    def initial_mean(self) -> torch.Tensor:
        """(H, A): where the next ``plan`` starts: the previous plan shifted by one step.

        μ_{1:H-1} := u^prev_{2:H},  μ_H := (u_min + u_max)/2; the middle of the bounds
        everywhere after ``reset()``, before the first plan or with ``warm_start=False``.
        """
        if self._previous_plan is None or not self.warm_start:
            return self._middle.clone()
        return torch.cat((self._previous_plan[1:], self._middle[:1]), dim=0)

    def reset(self, seed: int | None = None) -> None:
        """Forget the previous plan (start of an episode); reseed the generator when ``seed`` is given."""
        self._previous_plan = None
        if seed is not None:
            self.seed = check_positive_int("seed", seed, allow_zero=True)
            self._seed_generator(self.seed)

    def __repr__(self) -> str:
        fields = ", ".join(f"{key}={value}" for key, value in self._repr_fields().items())
        return f"{type(self).__name__}({fields})"

    # ------------------------------------------------------------------- for subclasses
    @abstractmethod
    def _optimize(self, objective: Objective, mean: torch.Tensor) -> torch.Tensor:
        """Run the iterations from the initial mean ``(H, A)``; return the plan ``(H, A)``."""

    def _repr_fields(self) -> dict[str, object]:
        return {
            "horizon": self.horizon,
            "action_dim": self.action_dim,
            "population": self.population,
            "iterations": self.iterations,
            "device": str(self.device),
        }

    def _seed_generator(self, seed: int | None) -> None:
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(seed)

    def _new_samples(self) -> torch.Tensor:
        """An (N, H, A) tensor to sample into: fresh when history keeps it, else the reused buffer."""
        if self._buffer is not None:
            return self._buffer
        return torch.empty(
            (self.population, self.horizon, self.action_dim), dtype=self.dtype, device=self.device
        )

    def _sample_uniform(self) -> torch.Tensor:
        """(N, H, A): u_t^n ~ U(u_min, u_max), independently for every n, t and action dimension."""
        samples = self._new_samples()
        torch.rand(samples.shape, generator=self.generator, out=samples)
        return samples.mul_(self.action_high - self.action_low).add_(self.action_low)

    def _sample_gaussian(self, mean: torch.Tensor, std: torch.Tensor, sampling: str) -> torch.Tensor:
        """(N, H, A): u^n ~ N(μ, diag σ²) kept inside the bounds.

        ``sampling="truncated"``: the normal truncated to [u_min, u_max]; ``"clipped"``:
        u^n = clip(μ + σ ε^n, u_min, u_max) with ε^n ~ N(0, I).
        """
        samples = self._new_samples()
        if sampling == "truncated":
            return truncated_normal_(samples, mean, std, self.action_low, self.action_high, self.generator)
        torch.randn(samples.shape, generator=self.generator, out=samples)
        return samples.mul_(std).add_(mean).clamp_(self.action_low, self.action_high)

    def _evaluate(self, objective: Objective, samples: torch.Tensor, iteration: int) -> torch.Tensor:
        """G = objective(samples): check its shape (N,) now, its values (no NaN/+inf) at the end of ``plan``."""
        returns = objective(samples)
        if not isinstance(returns, torch.Tensor):
            raise TypeError(
                f"objective: expected a torch.Tensor of returns with shape ({self.population},), "
                f"got {type(returns).__name__}"
            )
        if tuple(returns.shape) != (self.population,):
            raise ValueError(
                f"objective: expected returns of shape ({self.population},), one per action sequence "
                f"of the batch of shape {tuple(samples.shape)}, but it returned shape {tuple(returns.shape)}"
            )
        if returns.device != self.device:
            raise ValueError(
                f"objective: expected returns on the planner's device {self.device}, got them on {returns.device}"
            )
        if returns.dtype != self.dtype:
            if returns.dtype == torch.bool or returns.dtype.is_complex:
                raise TypeError(f"objective: expected real-valued returns, got dtype {returns.dtype}")
            returns = returns.to(self.dtype)
        self._max_returns[iteration] = returns.max()
        return returns

    def _check_returns(self) -> None:
        """Refuse NaN or +inf returns (max over each iteration, checked with one device sync)."""
        valid = self._max_returns < math.inf  # False for NaN and +inf, True for finite and -inf
        if not bool(valid.all()):
            iteration = int((~valid).nonzero()[0])
            what = "NaN" if bool(torch.isnan(self._max_returns[iteration])) else "+inf"
            raise ValueError(
                f"objective: returned {what} returns in iteration {iteration + 1} of {self.iterations}; "
                f"expected finite returns, or -inf to mark an infeasible action sequence"
            )

    def _record(
        self,
        samples: torch.Tensor,
        returns: torch.Tensor,
        mean: torch.Tensor,
        std: torch.Tensor,
        elite_indices: torch.Tensor | None,
        weights: torch.Tensor | None = None,
    ) -> None:
        """Append one :class:`PlanIteration` to ``history`` (nothing when ``keep_history=False``)."""
        if self.keep_history:
            self.history.append(PlanIteration(samples, returns, mean, std, elite_indices, weights))


def check_sampling(sampling: str) -> str:
    """``sampling``: how Gaussian samples are kept in bounds, ``"truncated"`` or ``"clipped"``."""
    return check_choice("sampling", sampling, SAMPLING_MODES)


def check_fraction(name: str, value) -> float:
    """A number in [0, 1), e.g. CEM's momentum α."""
    out = check_positive_float(name, value, allow_zero=True)
    if out >= 1:
        raise ValueError(f"{name}: expected a number in [0, 1), got {value!r}")
    return out
