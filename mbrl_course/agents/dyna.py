"""The lecture's Approach 1, Dyna-style MBRL, as one loop.

.. code-block:: text

    D_real := ∅
    repeat
        u ~ μ_θ(u | i)
        i' := env.step(i, u)                               ▷ act in the real environment
        D_real := D_real ∪ (i, u, g_i, i')
        ψ := argmin_ψ L(f_ψ(·,·), D_real)                 ▷ dynamics model update
        D_sim := ∅
        for k = 1 → K:
            u ~ μ_θ(u | i);  i', g_i ~ f_ψ(i, u)           ▷ imagination in the world model
            D_sim := D_sim ∪ (i, u, g_i, i')
            θ, φ := policy-iteration-algo(μ_θ, Q_φ, D_sim) ▷ policy update
    until |D_real| = τ

:func:`dyna_loop` is that loop, written on :func:`~mbrl_course.agents.mpc.run_episode` (which acts and
grows D_real): after every real step the model update, then K policy updates. What it plugs together
is a :class:`DynaAgent`: the model f_ψ (any :class:`~mbrl_course.models.DynamicsModel`, or None for
model-free learning) and a :class:`Learner`, anything with ``policy_update(model, D_real)``: the
learner decides what it imagines in f_ψ and keeps (MBPO's FIFO D_sim of branched rollouts lives in
:mod:`mbrl_course.agents.mbpo`; PILCO and Dreamer need no D_sim at all). The schedules are the
agent's: refit f_ψ every ``model_every`` env steps, K = ``updates_per_step``, or once per episode for
an ``episodic`` learner. :func:`imagine_rollouts` is the imagination of policy-driven rollouts from
real states (MBPO's branched rollouts), one :func:`~mbrl_course.models.rollout`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import torch

from mbrl_course._checks import (
    check_choice,
    check_positive_int,
    resolve_device,
)
from mbrl_course.agents.mpc import EpisodeResult, RandomAgent, run_episode
from mbrl_course.data import Batch, ReplayBuffer
from mbrl_course.models import rollout
from mbrl_course.models.imagination import PROPAGATIONS
from mbrl_course.rl.networks import PolicySample
from mbrl_course.rl.onpolicy import Trajectories

__all__ = ["DynaAgent", "GreedyActor", "Learner", "Rollouts", "dyna_loop", "imagine_rollouts"]

PolicyFn = Callable[[torch.Tensor], PolicySample]


# ---------------------------------------------------------------------------------------------
# Imagination: K rollouts of μ_θ in f_ψ
# ---------------------------------------------------------------------------------------------


@dataclass
class Rollouts:
    """H steps of N imagined rollouts, padded: step t of rollout n is real data only where ``valid[t, n]``.

    A rollout that terminates at step t keeps that transition (with ``terminated`` True) and has no
    steps after it.
    """

    obs: torch.Tensor
    """i_t: (H, N, O)"""
    action: torch.Tensor
    """u_t, the action f_ψ received: (H, N, A)"""
    raw_action: torch.Tensor
    """the policy's sample behind u_t (see :class:`~mbrl_course.rl.PolicySample`): (H, N, A)"""
    log_prob: torch.Tensor
    """log μ_θ(raw_action_t | i_t): (H, N)"""
    reward: torch.Tensor
    """g_t: (H, N)"""
    next_obs: torch.Tensor
    """i'_t: (H, N, O)"""
    terminated: torch.Tensor
    """True where the termination function fired on (i_t, u_t, i'_t): (H, N) bool"""
    valid: torch.Tensor
    """True where the rollout was still running at step t: (H, N) bool"""

    def transitions(self) -> Batch:
        """The valid steps as a flat batch of transitions (i, u, g_i, i', d), time-major: D_sim's rows."""
        v = self.valid
        return Batch(obs=self.obs[v], action=self.action[v], reward=self.reward[v], next_obs=self.next_obs[v],
                     terminated=self.terminated[v])

    def trajectories(self) -> Trajectories:
        """The rollouts as on-policy :class:`~mbrl_course.rl.Trajectories` (a rollout ends where it
        terminated or at its last step H, where it is cut short and bootstraps on V_φ)."""
        last = torch.zeros_like(self.valid)
        last[-1] = True
        return Trajectories(obs=self.obs, raw_action=self.raw_action, log_prob=self.log_prob, reward=self.reward,
                            next_obs=self.next_obs, terminated=self.terminated & self.valid,
                            ended=(self.terminated | last) & self.valid, valid=self.valid)


@torch.no_grad()
def imagine_rollouts(
    model,
    policy: PolicyFn,
    start_obs: torch.Tensor,
    horizon: int,
    *,
    reward_fn: Callable | None = None,
    termination_fn: Callable | None = None,
    generator: torch.Generator | None = None,
    propagation: str = "ts1",
    members="elites",
    sample_reward: bool = True,
) -> Rollouts:
    """K = N rollouts of ``horizon`` steps of μ_θ in f_ψ, from the real states ``start_obs``.

    For t = 1..H, for every rollout n still running:

        u_t ~ μ_θ(· | i_t),    i'_t, g_t ~ f_ψ(i_t, u_t),    d_t = termination_fn(i_t, u_t, i'_t)

    one :func:`~mbrl_course.models.rollout` driven by the policy (MBPO: TS1 over the elite members,
    the reward sampled too). A rollout whose step terminates keeps that transition with d_t = True and
    stops there; so does one whose prediction is not finite (that step is dropped). The reward is the
    model's unless ``reward_fn(i, u, i')`` is given.

    Args:
        model: f_ψ, any :class:`~mbrl_course.models.DynamicsModel` (one without a learned reward needs ``reward_fn``).
        policy: batched policy, ``obs (M, O) -> PolicySample`` (e.g. ``learner.policy_sample``).
        start_obs: i_1 for each rollout, ``(N, O)`` — states drawn from D_real (branched rollouts).
        horizon: H ≥ 1, the rollout length k.
        reward_fn, termination_fn: batched env functions, or None (model reward / never terminate).
        generator: torch generator for the model's noise and member draws.
        propagation, members, sample_reward: the ensemble's propagation options
            (:class:`~mbrl_course.models.EnsemblePropagator`); other models ignore them.
    Returns:
        :class:`Rollouts`, ``(H, N, ·)``.
    """
    horizon = check_positive_int("horizon", horizon)
    check_choice("propagation", propagation, PROPAGATIONS)
    samples: list[PolicySample] = []

    def act(obs: torch.Tensor) -> torch.Tensor:  # u ~ μ_θ(u | i), remembering the sample behind u
        sample = policy(obs)
        samples.append(sample)
        return sample.action.to(model.dtype)

    out = rollout(model, start_obs, policy=act, horizon=horizon, reward_fn=reward_fn,
                  termination_fn=termination_fn, generator=generator, stop_nonfinite=True,
                  propagate={"propagation": propagation, "members": members, "sample_reward": sample_reward})
    return Rollouts(obs=out.obs[:-1], action=out.action,
                    raw_action=torch.stack([s.raw_action for s in samples]).to(model.dtype),
                    log_prob=torch.stack([s.log_prob for s in samples]).to(model.dtype),
                    reward=out.reward, next_obs=out.next_obs, terminated=out.terminated, valid=out.alive)


class Learner(Protocol):
    """The policy update of the Dyna loop, "θ, φ := policy-iteration-algo(...)", and the policy μ_θ it improves.

    :class:`~mbrl_course.agents.mbpo.MBPOLearner` (SAC on D_real ∪ D_sim), MBMF's fine-tuner and, in the
    issues ahead, PILCO (backpropagation through moment-matched rollouts) and Dreamer (actor-critic in
    imagination) are implementations: each decides for itself what to imagine in f_ψ.
    """

    episodic: bool
    """True: the loop calls :meth:`policy_update` once at the end of each episode (PILCO, DAgger, PPO on
    real episodes); False: after every env step."""

    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """u ~ μ_θ(u | i) in the real env (the mean action when ``deterministic``)."""
        ...

    def reset(self) -> None: ...

    def policy_update(self, model, real_buffer: ReplayBuffer) -> Any:
        """One policy update with the model f_ψ (None: model-free) and D_real."""
        ...

    def check_finite(self) -> None:
        """Raise ``FloatingPointError`` if a loss became NaN/inf."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class DynaAgent:
    """f_ψ + a learner: what :func:`dyna_loop` plugs together.

    Args:
        learner: the policy update and the policy (a :class:`Learner`).
        model: f_ψ, any :class:`~mbrl_course.models.DynamicsModel`, or None for model-free learning.
        fit_kwargs: options of ``model.fit`` (epochs, lr, ...).
        model_every: refit f_ψ every this many env steps once learning has started (the slide: 1; MBPO: 250).
        updates_per_step: K, policy updates per learning step (MBPO: G = 20 per env step; 1 for episodic learners).
        device: where the fit's generator lives. seed: seeds it.
    """

    def __init__(self, learner: Learner, model=None, *, fit_kwargs: dict[str, Any] | None = None,
                 model_every: int = 1, updates_per_step: int = 1, device: torch.device | str = "cpu",
                 seed: int | None = 0):
        self.learner = learner
        self.model = model
        self.fit_kwargs = dict(fit_kwargs or {"epochs": 50})
        self.model_every = check_positive_int("model_every", model_every)
        self.updates_per_step = check_positive_int("updates_per_step", updates_per_step, allow_zero=True)
        self.device = resolve_device(device)
        self.fit_generator = torch.Generator(device=self.device)
        self.fit_generator.manual_seed((0 if seed is None else int(seed)) + 3)
        self.env_steps = 0
        """|D_real| so far: env steps taken by the loop (kept in checkpoints)."""
        self.fitted_at: int | None = None
        """The env step of the last model fit (None: not fitted yet)."""
        self.last_fit = None

    def act(self, obs: np.ndarray) -> np.ndarray:
        """u ~ μ_θ(u | i) in the real env."""
        return self.learner.act(obs)

    def reset(self) -> None:
        """Start of an episode."""
        self.learner.reset()

    def model_update(self, real_buffer: ReplayBuffer):
        """ψ := argmin_ψ L(f_ψ(·,·), D_real), when ``model_every`` env steps have passed since the last fit."""
        if self.model is None or (self.fitted_at is not None and self.env_steps - self.fitted_at < self.model_every):
            return None
        self.last_fit = self.model.fit(real_buffer, generator=self.fit_generator, **self.fit_kwargs)
        self.fitted_at = self.env_steps
        return self.last_fit

    def evaluation_actor(self) -> GreedyActor:
        """The learner's deterministic policy as an agent (for evaluation episodes)."""
        return GreedyActor(self.learner)

    def state_dict(self) -> dict[str, Any]:
        """Learner, model, env-step count, last fit and the fit's generator."""
        return {"learner": self.learner.state_dict(),
                "model": None if self.model is None else self.model.state_dict(),
                "env_steps": self.env_steps, "fitted_at": self.fitted_at,
                "fit_generator": self.fit_generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`."""
        self.learner.load_state_dict(state["learner"])
        if self.model is not None:
            self.model.load_state_dict(state["model"])
        self.env_steps = int(state["env_steps"])
        self.fitted_at = state["fitted_at"]
        self.fit_generator.set_state(state["fit_generator"])


class GreedyActor:
    """The learner's deterministic policy (the mean action) as an agent: for evaluation episodes."""

    def __init__(self, learner):
        self.learner = learner

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self.learner.act(obs, deterministic=True)

    def reset(self) -> None:
        self.learner.reset()

    def update(self, buffer: ReplayBuffer) -> None:
        return None


class _SeedFirst:
    """Acts with ``seed_agent`` for the first ``seed_steps`` env steps of the run, then with ``agent``."""

    def __init__(self, seed_agent, agent: DynaAgent, seed_steps: int):
        self.seed_agent, self.agent, self.seed_steps = seed_agent, agent, seed_steps

    def act(self, obs: np.ndarray) -> np.ndarray:
        return (self.seed_agent if self.agent.env_steps < self.seed_steps else self.agent).act(obs)

    def reset(self) -> None:
        self.agent.reset()


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------


def dyna_loop(
    env: gym.Env,
    agent: DynaAgent,
    real_buffer: ReplayBuffer,
    *,
    episodes: int,
    seed_steps: int = 0,
    max_env_steps: int | None = None,
    seed: int | None = 0,
    start_episode: int = 0,
    on_episode: Callable[[EpisodeResult], None] | None = None,
    on_step: Callable[[DynaAgent], None] | None = None,
    record_last: bool = False,
    seed_agent=None,
) -> list[EpisodeResult]:
    """The lecture's Dyna loop, one real env step at a time, until the interaction budget τ is spent.

    Every env step of :func:`~mbrl_course.agents.mpc.run_episode` (u ~ μ_θ(u | i), i' := env.step(i, u),
    D_real ∪= (i, u, g_i, i')) is followed, once ``seed_steps`` random steps have seeded D_real, by the
    model update (``agent.model_update``: ψ := argmin L(f_ψ, D_real) when due) and K policy updates
    (``agent.learner.policy_update(f_ψ, D_real)``, each imagining in f_ψ what it needs); an episodic
    learner learns at the end of each episode only. The budget τ is ``episodes`` episodes, or
    ``max_env_steps`` env steps if that comes first (the episode in progress is cut there, and its
    :class:`EpisodeResult` says ``cut``). ``on_episode`` is called after every episode (logging,
    checkpoints), ``on_step`` after every env step (evaluations); ``start_episode`` resumes a run
    (``agent.env_steps`` holds the steps taken).

    Raises:
        FloatingPointError: a loss of the learner or of the model fit became NaN/inf.
    """
    episodes = check_positive_int("episodes", episodes)
    seed_steps = check_positive_int("seed_steps", seed_steps, allow_zero=True)
    actor = _SeedFirst(seed_agent or RandomAgent(env.action_space, seed=seed), agent, seed_steps)

    def learn(episode_end: bool) -> None:  # after i' := env.step(i, u) and D_real := D_real ∪ (i, u, g_i, i')
        agent.env_steps += 1
        if agent.env_steps >= max(seed_steps, 1) and (episode_end or not agent.learner.episodic):
            agent.model_update(real_buffer)  # ψ := argmin_ψ L(f_ψ(·,·), D_real)
            for _ in range(agent.updates_per_step):  # for k = 1 → K: imagine in f_ψ, then
                agent.learner.policy_update(agent.model, real_buffer)  # θ, φ := policy-iteration-algo(...)
            agent.learner.check_finite()
        if on_step is not None:
            on_step(agent)

    results = []
    for episode in range(start_episode, episodes):
        left = None if max_env_steps is None else max_env_steps - agent.env_steps
        if left is not None and left <= 0:
            break
        results.append(run_episode(env, actor, real_buffer, episode=episode, seed=seed, max_steps=left,
                                   record=record_last and episode == episodes - 1, after_step=learn))
        if on_episode is not None:
            on_episode(results[-1])
    return results
