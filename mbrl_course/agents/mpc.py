"""The lecture's Approach 2, Model Predictive Control, as one loop.

.. code-block:: text

    D_real := ∅
    repeat
        u ~ planning-algo(f_ψ(·,·), i)
        i' := env.step(i, u)
        D_real := D_real ∪ (i, u, g_i, i')
        ψ := argmin_ψ L(f_ψ(·,·), D_real)          ▷ dynamics model update
    until |D_real| = τ

:func:`mpc_loop` is that loop; :class:`MPCAgent` is "planning-algo(f_ψ, i)" plus "ψ := argmin L":
a dynamics model, a planner and the env's reward function. PETS and MBMF are two choices
of model and planner plugged into it (see :mod:`mbrl_course.agents.pets` and
:mod:`mbrl_course.agents.mbmf`). As in both papers, the model is refit once per episode rather
than after every step: the loop's ``update_every`` says how often.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import torch

from mbrl_course.data import ReplayBuffer
from mbrl_course.models import fit_model, imagine_returns
from mbrl_course.planning import Planner
from mbrl_course.planning.graphs import CapturedPlan


class Agent(Protocol):
    """What the loop needs from an agent."""

    def act(self, obs: np.ndarray) -> np.ndarray: ...

    def reset(self) -> None: ...

    def update(self, buffer: ReplayBuffer) -> Any: ...


class CheckpointableAgent(Agent, Protocol):
    """What a run on disk (:mod:`mbrl_course.runs`) needs from every named agent, besides acting."""

    def evaluation_actor(self) -> Agent:
        """The agent that evaluation episodes use (a policy's mean action, or the controller itself)."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs: networks, optimisers and the agent's random generators."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class RandomAgent:
    """Uniform random actions in the env's Box: the episodes that seed D_real."""

    def __init__(self, action_space: gym.spaces.Box, seed: int | None = None):
        self.low = np.asarray(action_space.low, dtype=np.float32)
        self.high = np.asarray(action_space.high, dtype=np.float32)
        self.rng = np.random.default_rng(seed)

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self.rng.uniform(self.low, self.high).astype(np.float32)

    def reset(self) -> None:
        pass

    def update(self, buffer: ReplayBuffer) -> None:
        return None


class MPCAgent:
    """u ~ planning-algo(f_ψ(·,·), i): plan a whole action sequence in the model, execute its first action.

    The planner maximises the model's predicted return of an action sequence u_{1:H} from state i,

        G(u_{1:H}) = E[ Σ_{t=1}^{H} g(i_t, u_t, i_{t+1}) ],   i_1 = i,  i_{t+1} ~ f_ψ(i_t, u_t),

    estimated by :func:`mbrl_course.models.imagine_returns` with ``particles`` trajectory samples
    (PETS's TS1 / TS∞ propagation for an ensemble; one deterministic rollout for a delta MLP).

    On a CUDA device each planning call is captured in a CUDA graph and replayed
    (:class:`~mbrl_course.planning.graphs.CapturedPlan`: same plans as eager, checked on first use;
    ``cuda_graph=False`` plans eagerly). The graph is captured again after every model refit.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        planner: Planner,
        *,
        reward_fn: Callable | None,
        termination_fn: Callable | None = None,
        particles: int = 1,
        propagation: str = "ts_inf",
        fit_kwargs: dict[str, Any] | None = None,
        device: torch.device | str = "cpu",
        seed: int | None = None,
        cuda_graph: bool = True,
    ):
        self.model = model
        self.planner = planner
        self.reward_fn = reward_fn
        self.termination_fn = termination_fn
        self.particles = particles
        self.propagation = propagation
        self.fit_kwargs = dict(fit_kwargs or {})
        self.device = torch.device(device)
        self.generator = torch.Generator(device=self.device)
        self.fit_generator = torch.Generator(device=self.device)
        if seed is not None:
            self.generator.manual_seed(seed)
            self.fit_generator.manual_seed(seed + 1)
        self.last_fit = None
        self.captured = None
        """The planning call's CUDA graph (:class:`CapturedPlan`) on a CUDA device with ``cuda_graph``, else None."""
        if cuda_graph and self.device.type == "cuda" and not planner.keep_history:
            self.captured = CapturedPlan(planner, self._objective_for, generators=[self.generator])

    def reset(self) -> None:
        """Start of an episode: forget the warm-start plan."""
        self.planner.reset()

    def _objective_for(self, state: torch.Tensor):
        """G(u_{1:H}) from ``state`` (read when called), estimated in the model; no host sync."""
        def objective(action_sequences: torch.Tensor) -> torch.Tensor:
            return imagine_returns(
                self.model, state, action_sequences,
                reward_fn=self.reward_fn, termination_fn=self.termination_fn,
                particles=self.particles, propagation=self.propagation, generator=self.generator, check=False,
            )
        return objective

    @torch.inference_mode()
    def act(self, obs: np.ndarray) -> np.ndarray:
        """Plan from ``obs`` (O,) and return the first action of the best sequence (A,)."""
        obs = np.asarray(obs, dtype=np.float32)
        if not np.isfinite(obs).all():
            raise ValueError(f"obs: expected a finite state to plan from, got {obs}")
        state = torch.as_tensor(obs, device=self.device)
        plan = self.captured(state) if self.captured is not None else self.planner.plan(self._objective_for(state))
        return plan[0].cpu().numpy()  # (H, A) -> u_1: the one host transfer per env step

    def update(self, buffer: ReplayBuffer):
        """ψ := argmin_ψ L(f_ψ(·,·), D_real): refit the model on all real data so far."""
        self.last_fit = fit_model(self.model, buffer, generator=self.fit_generator, **self.fit_kwargs)
        if self.captured is not None:  # the refit may have replaced tensors the graph reads
            self.captured.invalidate()
        return self.last_fit

    def evaluation_actor(self) -> MPCAgent:
        """The agent that evaluation episodes use: the controller itself."""
        return self

    def state_dict(self) -> dict[str, Any]:
        """f_ψ's parameters and the generators of the model noise, the fit and the planner."""
        return {"model": self.model.state_dict(), "generator": self.generator.get_state(),
                "fit_generator": self.fit_generator.get_state(), "planner": self.planner.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`."""
        self.model.load_state_dict(state["model"])
        self.generator.set_state(state["generator"])
        self.fit_generator.set_state(state["fit_generator"])
        self.planner.generator.set_state(state["planner"])
        if self.captured is not None:
            self.captured.invalidate()


@dataclass
class EpisodeResult:
    """One episode in the real environment."""

    episode: int
    ret: float
    steps: int
    wall_s: float
    frames: list[np.ndarray] | None = None
    cut: bool = False
    """True when the interaction budget ended the episode before the env did: ``ret`` is partial."""


def run_episode(
    env: gym.Env,
    agent: Agent,
    buffer: ReplayBuffer | None,
    *,
    episode: int,
    seed: int | None,
    record: bool = False,
    max_steps: int | None = None,
    after_step: Callable[[bool], None] | None = None,
) -> EpisodeResult:
    """Act in the real env until it terminates or truncates; append every (i, u, g_i, i') to D_real.

    ``max_steps`` cuts the episode short (its :class:`EpisodeResult` then says ``cut``, and D_real marks
    the cut as a truncation); ``after_step(episode_end)`` is called after every step, once the transition
    is in D_real (the Dyna loop learns there).
    """
    start = time.perf_counter()
    obs, _ = env.reset(seed=None if seed is None else seed + episode)
    agent.reset()
    frames = [env.render()] if record else None
    total, steps, done, cut = 0.0, 0, False, False
    while not done:
        action = agent.act(obs)  # u ~ planning-algo(f_ψ, i) or μ_θ(u | i)
        next_obs, reward, terminated, truncated, _ = env.step(action)  # i' := env.step(i, u)
        steps += 1
        cut = max_steps is not None and steps >= max_steps and not (terminated or truncated)
        done = terminated or truncated or cut
        if buffer is not None:  # D_real ∪= (i, u, g_i, i')
            buffer.add(obs, action, float(reward), next_obs, bool(terminated), truncated=bool(truncated or cut))
        if after_step is not None:
            after_step(done)
        if record:
            frames.append(env.render())
        total += float(reward)
        obs = next_obs
    return EpisodeResult(episode, total, steps, time.perf_counter() - start, frames, cut=cut)


def mpc_loop(
    env: gym.Env,
    agent: Agent,
    buffer: ReplayBuffer,
    *,
    episodes: int,
    seed_episodes: int = 1,
    seed: int | None = 0,
    start_episode: int = 0,
    on_episode: Callable[[EpisodeResult], None] | None = None,
    record_last: bool = False,
    seed_agent: Agent | None = None,
) -> list[EpisodeResult]:
    """The lecture's MPC loop, one episode at a time, until the interaction budget τ is spent.

    The first ``seed_episodes`` episodes act with ``seed_agent`` (uniform random actions by default)
    to seed D_real; every later one plans with ``agent``. After each episode the dynamics model is
    refit on D_real (ψ := argmin L(f_ψ, D_real)) and ``on_episode`` is called (logging, checkpoints).
    ``start_episode`` resumes a run.
    """
    seed_agent = seed_agent or RandomAgent(env.action_space, seed=seed)
    results = []
    for episode in range(start_episode, episodes):
        actor = seed_agent if episode < seed_episodes else agent
        record = record_last and episode == episodes - 1
        result = run_episode(env, actor, buffer, episode=episode, seed=seed, record=record)
        agent.update(buffer)  # ψ := argmin_ψ L(f_ψ(·,·), D_real)
        results.append(result)
        if on_episode is not None:
            on_episode(result)
    return results
