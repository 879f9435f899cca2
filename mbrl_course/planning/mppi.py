"""Model Predictive Path Integral control (MPPI), information-theoretic form (Williams et al., 2017)."""

from __future__ import annotations

import torch

from mbrl_course._checks import check_positive_float
from mbrl_course.planning.base import Objective, Planner, _as_std, check_sampling


class MPPI(Planner):
    """MPPI: move the mean to the return-weighted average of Gaussian perturbations.

    Each iteration perturbs the mean with Gaussian noise and averages the samples with
    weights that grow exponentially with their return (temperature λ = ``temperature``)::

        ε^n ~ N(0, diag σ²),  u^n := clip(μ + ε^n, u_min, u_max),  n = 1..N   samples: (N, H, A)
        G_n := objective(u^n)                                                returns: (N,)
        w_n := exp(G_n / λ) / Σ_m exp(G_m / λ)   (= softmax(G / λ)_n)         weights: (N,)
        μ ← Σ_n w_n u^n

    (Williams et al., "Information theoretic MPC for model-based reinforcement learning",
    ICRA 2017, write w_n ∝ exp(-S_n / λ) for a cost S; here G_n is a return to maximise.)
    Small λ approaches "keep the best sample", large λ the plain average. σ = ``noise_std``
    stays fixed. The plan returned is μ after the last iteration, clipped into the bounds
    (a weighted average of in-bound samples is in bounds anyway). Warm start as in
    :class:`Planner`: μ starts from the previous plan shifted by one step.

    Args:
        horizon: H, the number of planned steps.
        action_low, action_high: u_min, u_max, floats or arrays of shape (A,).
        population: N, perturbations per iteration.
        iterations: updates of μ per ``plan``.
        temperature: λ > 0, in units of the returns.
        noise_std: σ, a float or shape (A,); None: (u_max - u_min)/4.
        device: "cpu", "cuda", ... (None: CUDA when available).
        seed: seeds the planner's generator; the same seed gives the same plans.
        sampling: "clipped" (default, as above) or "truncated" (the truncated normal).
        dtype: floating dtype of samples and plans.
        keep_history: record ``history`` (turn off for speed).
        warm_start: start from the shifted previous plan (else from the middle of the bounds).
    """

    def __init__(
        self,
        horizon: int,
        action_low,
        action_high,
        population: int = 500,
        iterations: int = 5,
        temperature: float = 1.0,
        noise_std=None,
        device: torch.device | str | None = None,
        seed: int | None = None,
        *,
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
        self.temperature = check_positive_float("temperature", temperature)
        self.sampling = check_sampling(sampling)
        if noise_std is None:
            noise_std = (self.action_high - self.action_low) / 4
        self.noise_std = _as_std("noise_std", noise_std, self.action_dim, self.dtype, self.device)
        self._std = self.noise_std.expand(self.horizon, self.action_dim)

    def _optimize(self, objective: Objective, mean: torch.Tensor) -> torch.Tensor:
        lowest = torch.finfo(self.dtype).min
        for iteration in range(self.iterations):
            samples = self._sample_gaussian(mean, self._std, self.sampling)  # u^n: (N, H, A)
            returns = self._evaluate(objective, samples, iteration)  # G_n: (N,)
            # -inf -> the lowest float: if every sequence is infeasible the weights are uniform.
            weights = torch.softmax((returns / self.temperature).clamp_min(lowest), dim=0)  # w_n: (N,)
            self._record(samples, returns, mean, self._std, None, weights)
            mean = torch.tensordot(weights, samples, dims=1)  # μ = Σ_n w_n u^n: (H, A)
        return mean.clamp(self.action_low, self.action_high)

    def _repr_fields(self) -> dict[str, object]:
        return {**super()._repr_fields(), "temperature": self.temperature, "sampling": repr(self.sampling)}
