"""One planning call captured in a CUDA graph and replayed: the MPC loop's planner without launch overhead.

A planned action, u ~ planning-algo(f_ψ, i), is the same fixed sequence of GPU kernels every env step:
for each of CEM's J iterations, sampling N action sequences, H imagined steps of the model (a few
small matrix products each) and the refit to the elites. On a GPU these kernels are short, and
launching them one by one from Python costs more than running them: on an H100 the planning
benchmark spent 0.058 s per action where the same matrix products alone took 0.019 s. A CUDA graph
records the whole sequence once and launches it as one unit on every later call.

:class:`CapturedPlan` does that for ``planner.plan(objective_for(state))``:

- the start state i and the warm-start mean μ (the previous plan, shifted) are copied into static
  buffers that the graph reads; the plan comes back from a static buffer;
- the planner's generator and the objective's (the model's noise) are registered with the graph, so
  every replay draws fresh random numbers exactly as the eager code would from the same state;
- it checks itself: the first call plans eagerly, then replays the graph from the same generator
  states, and uses the graph only if both give the same plan and leave the generators in the same
  state. If capture is not possible (no CUDA, an operation that synchronises with the host, an older
  torch) or the results differ, it warns once and plans eagerly from then on. So results never
  depend on whether the graph is used.

The objective must not synchronise with the host (no ``bool(tensor)``, ``.item()`` or ``.cpu()``):
:func:`~mbrl_course.models.imagine_returns` with ``check=False`` is such an objective. Whatever the
graph reads must keep its memory between calls: parameters updated in place are fine, but a model
refit that may replace tensors (normalisers, elites) must be followed by :meth:`CapturedPlan.invalidate`
(the MPC agent does this after every ``update``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch

from mbrl_course.planning.base import Objective, Planner

__all__ = ["CapturedPlan"]


class CapturedPlan:
    """``planner.plan(objective_for(state))``, captured in a CUDA graph on first use and replayed after.

    Args:
        planner: a planner on a CUDA device with ``keep_history=False``.
        objective_for: ``state -> objective``; the objective reads ``state`` when called and never
            synchronises with the host.
        generators: the other generators the objective draws from (e.g. the model's noise).
    """

    def __init__(self, planner: Planner, objective_for: Callable[[torch.Tensor], Objective], *,
                 generators: Sequence[torch.Generator] = ()):
        self.planner = planner
        self.objective_for = objective_for
        self.generators = [planner.generator, *generators]
        self.mode = "new"
        """"new" (not captured yet), "graph" (replaying) or "eager" (capture failed or disagreed)."""
        self.reason: str | None = None
        """Why the graph is not used, when ``mode == "eager"``."""
        self._graph = None
        self._state: torch.Tensor | None = None
        self._mean: torch.Tensor | None = None
        self._plan: torch.Tensor | None = None

    def invalidate(self) -> None:
        """Capture again at the next call (after something the graph reads was replaced, e.g. a model refit)."""
        if self.mode == "graph":
            self.mode = "new"
        self._graph = None

    def __call__(self, state: torch.Tensor) -> torch.Tensor:
        """The plan ``(H, A)`` from ``state``, the planner's bookkeeping (warm start, return checks) as ``plan``'s."""
        if self.mode == "eager" or self.planner.device.type != "cuda" or self.planner.keep_history:
            return self.planner.plan(self.objective_for(state))
        if self.mode == "graph":
            return self._replay(state)
        return self._capture_and_check(state)

    # ------------------------------------------------------------------ internals
    def _replay(self, state: torch.Tensor) -> torch.Tensor:
        planner = self.planner
        with torch.no_grad():
            self._state.copy_(state)
            self._mean.copy_(planner.initial_mean())
            self._graph.replay()
            planner._check_returns()
        planner.history = []
        solution = self._plan.clone()
        planner._previous_plan = solution.clone()
        return solution

    def _capture(self, state: torch.Tensor) -> None:
        planner = self.planner
        device = planner.device
        self._state = torch.empty_like(state)
        self._mean = torch.empty((planner.horizon, planner.action_dim), dtype=planner.dtype, device=device)
        objective = self.objective_for(self._state)
        self._state.copy_(state)
        self._mean.copy_(planner.initial_mean())
        side = torch.cuda.Stream(device)  # warm up on a side stream (library handles, workspaces), then capture
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side), torch.no_grad():
            planner._optimize(objective, self._mean)
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        for generator in self.generators:
            graph.register_generator_state(generator)
        with torch.no_grad(), torch.cuda.graph(graph):
            self._plan = planner._optimize(objective, self._mean)
        self._graph = graph

    def _capture_and_check(self, state: torch.Tensor) -> torch.Tensor:
        planner = self.planner
        before = [g.get_state() for g in self.generators]
        previous = planner._previous_plan
        expected = planner.plan(self.objective_for(state))  # the eager plan: the reference
        after = [g.get_state() for g in self.generators]
        try:
            self._capture(state)
            for generator, saved in zip(self.generators, before):
                generator.set_state(saved)
            planner._previous_plan = previous
            got = self._replay(state)
            same_rng = all(torch.equal(g.get_state(), s) for g, s in zip(self.generators, after))
            if torch.equal(got, expected) and same_rng:
                self.mode = "graph"
                return got
            problem = "the replayed plan differs from the eager one" if same_rng else \
                "the replay left the random generators in another state than the eager plan"
        except Exception as err:  # noqa: BLE001 (whatever capture refuses, planning goes on eagerly)
            problem = f"capture failed: {type(err).__name__}: {err}"
        self.mode, self.reason, self._graph = "eager", problem, None
        for generator, saved in zip(self.generators, after):
            generator.set_state(saved)
        planner._previous_plan = expected.clone()
        planner.history = []
        warnings.warn(f"planning is not captured in a CUDA graph ({problem}); planning eagerly instead "
                      f"(same results, more kernel-launch overhead)", RuntimeWarning, stacklevel=3)
        return expected
