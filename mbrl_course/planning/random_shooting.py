"""Planning Algo 1: Random Shooting (RS), as on the slide (MBMF's planner)."""

from __future__ import annotations

import torch

from mbrl_course.planning.base import Objective, Planner


class RandomShooting(Planner):
    """Random shooting: N uniform trials, keep the best one.

    The slide's pseudo-code (K = ``horizon``, N = ``population``, u_min/u_max =
    ``action_low``/``action_high``; the inner loop is what ``objective`` computes)::

        for n := 1 → N                                  ▷ trials
            i_1 := i;  G_n := 0
            for t := 1 → K
                u_t^n ~ U(u_min, u_max)
                i_{t+1}, g_{i_t} := f_ψ(i_t, u_t^n)
                G_n := G_n + g_{i_t}
        n_* := argmin_n G_n
        return u_1^{n_*}

    The slide takes ``argmin`` because it reads g as a cost; here G_n is a return, so
    n_* := argmax_n G_n (ties: the first such n). ``plan`` returns the whole sequence
    u_{1:K}^{n_*}, ``(H, A)``; the MPC loop executes its first row u_1^{n_*}. All N
    sequences are sampled at once, ``(N, H, A)``, and the objective scores them in one call.

    ``history`` holds one :class:`PlanIteration`: the samples, their returns, the uniform
    distribution's mean (u_min + u_max)/2 and std (u_max - u_min)/√12, and ``elite_indices``
    = [n_*]. RS ignores the warm start (every trial is uniform).

    Args:
        horizon: H (K on the slide), the number of planned steps.
        action_low, action_high: u_min, u_max, floats or arrays of shape (A,).
        population: N, the number of trials.
        device: "cpu", "cuda", ... (None: CUDA when available).
        seed: seeds the planner's generator; the same seed gives the same plans.
        dtype: floating dtype of samples and plans.
        keep_history: record ``history`` (turn off for speed).
    """

    def __init__(
        self,
        horizon: int,
        action_low,
        action_high,
        population: int = 1000,
        device: torch.device | str | None = None,
        seed: int | None = None,
        *,
        dtype: torch.dtype = torch.float32,
        keep_history: bool = True,
    ) -> None:
        super().__init__(
            horizon,
            action_low,
            action_high,
            population,
            1,
            device=device,
            seed=seed,
            dtype=dtype,
            keep_history=keep_history,
            warm_start=False,  # every trial is uniform: there is nothing to warm-start
        )
        self._uniform_std = ((self.action_high - self.action_low) / 12**0.5).expand(
            self.horizon, self.action_dim
        )

    def _optimize(self, objective: Objective, mean: torch.Tensor) -> torch.Tensor:
        # mean: the middle of the bounds, the uniform distribution's mean (recorded for figures)
        samples = self._sample_uniform()  # u^n_t ~ U(u_min, u_max): (N, H, A)
        returns = self._evaluate(objective, samples, 0)  # G_n: (N,)
        best = torch.argmax(returns).reshape(1)  # n_* (first on ties)
        self._record(samples, returns, mean, self._uniform_std, best)
        return torch.index_select(samples, 0, best)[0]  # a copy: the sample buffer may be reused
