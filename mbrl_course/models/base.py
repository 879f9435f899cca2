"""The one contract every dynamics model f_ψ of the course satisfies.

Both loops of the lecture talk to "f_ψ(·, ·)" only through three things:

1. **fit** on the real data, ψ := argmin_ψ L(f_ψ(·, ·), D_real)          → :meth:`DynamicsModel.fit`
2. **predict** the next state (and the reward, where it is learned) as a distribution,
   p(i', g_i | i, u)                                                         → :meth:`DynamicsModel.next_state_distribution`
3. **propagate** a batch of imagined states under actions, i'_m, g_m ~ f_ψ(i_m, u_m), m = 1..M
   (how the M rows use the model — which ensemble member, which dropout mask — is the
   :class:`Propagator`'s business, made once per rollout)                   → :meth:`DynamicsModel.propagator`

:class:`~mbrl_course.models.GaussianEnsemble` (PETS, MBPO), :class:`~mbrl_course.models.DeltaMLP` (MBMF)
and :class:`~mbrl_course.models.TrueDynamics` (the env's own equations: the oracle of the benchmarks and
lectures) implement it; the rollout primitive :func:`~mbrl_course.models.rollout`, the planners' objective
:func:`~mbrl_course.models.imagine_returns`, the two loops and the lectures use nothing else. A new model
(a GP for PILCO, a dropout network for Deep PILCO) is a class with these members: nothing that uses
models has to learn about it.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch.distributions import Distribution, constraints

__all__ = ["DynamicsModel", "Propagator", "PointMass"]


class Propagator:
    """How the M rows of one imagined rollout step through a model: i'_m, g_m ~ f_ψ(i_m, u_m).

    Made by :meth:`DynamicsModel.propagator` once per rollout, so it can hold what must stay fixed
    along the rollout (TS∞'s member per particle, Deep PILCO's dropout masks) or be computed once
    (an ensemble's folded weights). Subclasses implement :meth:`step`; the defaults below describe a
    deterministic model that needs no particular row layout.
    """

    deterministic: bool = True
    """True when every row's next state is a function of (i, u) alone: one particle per start suffices."""
    components: int = 1
    """How many mixture components (an ensemble's K' members) the rows are dealt among; 1 for one model."""
    record_members: bool = False
    """Set True before stepping to have :meth:`rows_used` answer (it costs a little per step)."""

    def layout(self, rows: int) -> torch.Tensor | None:
        """Which trajectory each row of the rollout holds, chosen once before the first step.

        ``rows`` trajectories are to be imagined; the propagator may lay them out in its own order, and
        pad them with copies, so that :meth:`step` needs no gathering (TS∞ deals trajectories to
        ensemble members this way). Returns ``(R,)`` trajectory indices in 0..rows−1 with R ≥ rows, every
        trajectory at least once, or None for the identity (R = rows, row m holds trajectory m).
        """
        return None

    def step(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One imagined step of every row: ``obs (R, O)``, ``action (R, A)`` → next_obs ``(R, O)``, reward
        ``(R,)`` or None (when the model learns no reward). Differentiable when gradients are enabled."""
        raise NotImplementedError

    def rows_used(self) -> torch.Tensor | None:
        """After a :meth:`step`: which mixture component (ensemble member) each row used, ``(R,)``, or
        None where the model has no components (for plots and checks of TS1 vs TS∞)."""
        return None


@runtime_checkable
class DynamicsModel(Protocol):
    """f_ψ: what both loops, the planners and the lectures need of a dynamics model.

    Attributes: ``obs_dim`` (O), ``act_dim`` (A), ``predict_reward`` (True when the model learns g too),
    ``device`` and ``dtype`` (where and how its computations run).
    """

    obs_dim: int
    act_dim: int
    predict_reward: bool

    @property
    def device(self) -> torch.device: ...

    @property
    def dtype(self) -> torch.dtype: ...

    def fit(self, data, *, generator: torch.Generator | None = None, progress: bool = False, **options: Any):
        """ψ := argmin_ψ L(f_ψ(·,·), D_real) on a :class:`~mbrl_course.data.ReplayBuffer`; returns a
        :class:`~mbrl_course.models.FitReport`. ``options`` are the model's own (epochs, lr, ...)."""
        ...

    def next_state_distribution(self, obs: torch.Tensor, action: torch.Tensor) -> Distribution:
        """p(i', g | i, u) for ``obs (B, O)``, ``action (B, A)``: a distribution with event shape
        ``(O + 1,)`` ([i', g]) when ``predict_reward``, else ``(O,)``; its ``mean`` and ``variance`` are
        the predictive moments."""
        ...

    def propagator(self, *, generator: torch.Generator | None = None, **options: Any) -> Propagator:
        """A :class:`Propagator` for one rollout; ``options`` choose how (e.g. an ensemble's
        ``propagation="ts_inf"``). Options a model has no use for are accepted and ignored, so that
        one planner config serves every model."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps of ψ (and ``load_state_dict`` restores)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


class PointMass(Distribution):
    """δ(x − value): the "distribution" of a deterministic prediction (mean = value, variance = 0).

    ``sample()`` returns the value; ``log_prob`` is 0 at the value and −∞ elsewhere.
    """

    arg_constraints = {"value": constraints.real}
    has_rsample = True

    def __init__(self, value: torch.Tensor, event_dims: int = 1, validate_args: bool | None = None):
        self.value = value
        n = value.dim() - event_dims
        super().__init__(value.shape[:n], value.shape[n:], validate_args=validate_args)

    @property
    def mean(self) -> torch.Tensor:
        return self.value

    @property
    def variance(self) -> torch.Tensor:
        return torch.zeros_like(self.value)

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        return self.value.expand(*sample_shape, *self.value.shape)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        hit = (x == self.value).flatten(-len(self.event_shape)).all(-1) if self.event_shape else x == self.value
        return torch.where(hit, 0.0, float("-inf")).to(self.value.dtype)
