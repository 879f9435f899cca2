"""Planning Algo 2: the Cross-Entropy Method (CEM), PETS' planner."""

from __future__ import annotations

import torch

from mbrl_course._checks import check_positive_float, check_positive_int
from mbrl_course.planning.base import (
    Objective,
    Planner,
    _as_std,
    check_fraction,
    check_sampling,
)


class CEM(Planner):
    """Cross-Entropy Method: refit a Gaussian over action sequences to its best samples.

    Each iteration j = 1..J (J = ``iterations``) samples N sequences from a diagonal
    Gaussian kept in the bounds, scores them and refits the Gaussian to the E best
    (the elites, E = ``elites``)::

        u^n ~ N(μ, diag σ²) in [u_min, u_max],  n = 1..N          samples: (N, H, A)
        G_n := objective(u^n)                                      returns: (N,)
        ℰ := the E indices n with the largest G_n                  (torch.topk)
        μ_ℰ := (1/E) Σ_{n∈ℰ} u^n,   σ_ℰ := sqrt((1/E) Σ_{n∈ℰ} (u^n - μ_ℰ)²)
        μ ← α μ + (1 - α) μ_ℰ,      σ ← max(α σ + (1 - α) σ_ℰ, σ_min)

    with momentum α (``momentum``; α = 0 refits from the elites alone). The plan returned is
    μ_ℰ of the last iteration, clipped into [u_min, u_max]. The slide's planners pick the
    argmin of a cost; CEM here maximises returns G_n.

    Start: μ is the previous plan shifted by one step (warm start, see :class:`Planner`),
    σ = ``init_std`` (default (u_max - u_min)/4) at every ``plan``.

    ``sampling="clipped"`` (default) clips normal samples into the bounds, so samples pile up
    on a bound and CEM converges onto it when the optimum lies beyond it (torque limits);
    ``"truncated"`` samples the normal truncated to the bounds: every sample is spread over the
    box, but the refit mean stays strictly inside, so CEM approaches a bound optimum only as
    fast as σ shrinks. Either way no sample leaves the bounds.

    Args:
        horizon: H, the number of planned steps.
        action_low, action_high: u_min, u_max, floats or arrays of shape (A,).
        population: N, sequences sampled per iteration.
        elites: E <= N, sequences the Gaussian is refit to.
        iterations: J, refits per ``plan``.
        device: "cpu", "cuda", ... (None: CUDA when available).
        seed: seeds the planner's generator; the same seed gives the same plans.
        momentum: α in [0, 1) (PETS uses 0.1).
        init_std: σ at the first iteration, a float or shape (A,); None: (u_max - u_min)/4.
        min_std: σ_min >= 0, a floor on σ that keeps some exploration.
        sampling: "clipped" or "truncated".
        dtype: floating dtype of samples and plans.
        keep_history: record ``history`` (turn off for speed: then nothing is stored and
            the samples of every iteration share one buffer).
        warm_start: start from the shifted previous plan (else from the middle of the bounds).
    """

    def __init__(
        self,
        horizon: int,
        action_low,
        action_high,
        population: int = 500,
        elites: int = 50,
        iterations: int = 5,
        device: torch.device | str | None = None,
        seed: int | None = None,
        *,
        momentum: float = 0.1,
        init_std=None,
        min_std: float = 0.0,
        sampling: str = "clipped",
        dtype: torch.dtype = torch.float32,
        keep_history: bool = True,
        warm_start: bool = True,
    ) -> None:
        super().__init__(
            horizon,
            action_low,
            action_high,
            population,
            iterations,
            device=device,
            seed=seed,
            dtype=dtype,
            keep_history=keep_history,
            warm_start=warm_start,
        )
        self.elites = check_positive_int("elites", elites)
        if self.elites > self.population:
            raise ValueError(f"elites: expected at most population={self.population}, got {self.elites}")
        self.momentum = check_fraction("momentum", momentum)
        self.min_std = check_positive_float("min_std", min_std, allow_zero=True)
        self.sampling = check_sampling(sampling)
        if init_std is None:
            init_std = (self.action_high - self.action_low) / 4
        self.init_std = _as_std("init_std", init_std, self.action_dim, self.dtype, self.device)
        self._init_std = self.init_std.expand(self.horizon, self.action_dim).clamp_min(self.min_std)
        self._elite_buffer = (
            None
            if keep_history
            else torch.empty((self.elites, self.horizon, self.action_dim), dtype=self.dtype, device=self.device)
        )

    def _optimize(self, objective: Objective, mean: torch.Tensor) -> torch.Tensor:
        alpha = self.momentum
        std = self._init_std
        for iteration in range(self.iterations):
            samples = self._sample_gaussian(mean, std, self.sampling)  # u^n: (N, H, A)
            returns = self._evaluate(objective, samples, iteration)  # G_n: (N,)
            elite_indices = torch.topk(returns, self.elites, sorted=False).indices  # ℰ: (E,)
            elites = torch.index_select(samples, 0, elite_indices, out=self._elite_buffer)  # (E, H, A)
            elite_std, elite_mean = torch.std_mean(elites, dim=0, correction=0)  # σ_ℰ, μ_ℰ: (H, A)
            self._record(samples, returns, mean, std, elite_indices)
            if alpha == 0.0:
                mean, std = elite_mean, elite_std
            else:
                mean = alpha * mean + (1 - alpha) * elite_mean
                std = alpha * std + (1 - alpha) * elite_std
            if self.min_std > 0:
                std = std.clamp_min(self.min_std)
        return elite_mean.clamp(self.action_low, self.action_high)

    def _repr_fields(self) -> dict[str, object]:
        return {
            **super()._repr_fields(),
            "elites": self.elites,
            "momentum": self.momentum,
            "sampling": repr(self.sampling),
        }
