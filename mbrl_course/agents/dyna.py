"""The lecture's Approach 1, Dyna-style MBRL, as one loop.

.. code-block:: text

    D_real := ∅
    repeat
        u ~ μ_θ(u | i)
        i' := env.step(i, u)                               ▷ act in the real environment
        D_real := D_real ∪ (i, u, g_i, i')
        ψ := argmin_ψ L(f_ψ(·,·), D_real)                 ▷ dynamics model update
        for k = 1 → K:                                      ▷ imagination in the world model
            u ~ μ_θ(u | i);  i', g_i ~ f_ψ(i, u);  D_sim := D_sim ∪ (i, u, g_i, i')
        θ, φ := policy-iteration-algo(μ_θ, Q_φ, D_sim)     ▷ policy update
    until |D_real| = τ

:func:`dyna_loop` is that loop, step by step. What it plugs together lives in a :class:`DynaAgent`:
the policy-iteration-algo (a learner of :mod:`mbrl_course.rl`: SAC, REINFORCE, PPO), the model f_ψ
(or None: then the learner learns from D_real alone, i.e. plain model-free RL) and D_sim.
Its step-level schedule is a choice of the loop's arguments: refit f_ψ every ``model_every`` env
steps, imagine every ``rollout_every`` steps, then ``updates_per_step`` policy updates per env step
(MBPO: 250, 250, 20). :func:`imagine_rollouts` is the imagination: K rollouts of μ_θ in f_ψ, each
started from a real state (MBPO's branched rollouts), that stop where the env's termination
function fires.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from mbrl_course._checks import (
    check_choice,
    check_positive_float,
    check_positive_int,
    resolve_device,
)
from mbrl_course.agents.mpc import EpisodeResult, RandomAgent
from mbrl_course.data import Batch, ReplayBuffer
from mbrl_course.models import fit_model, rollout
from mbrl_course.models.imagination import PROPAGATIONS
from mbrl_course.rl.networks import PolicySample
from mbrl_course.rl.onpolicy import Trajectories

__all__ = ["DynaAgent", "GreedyActor", "Rollouts", "dyna_loop", "imagine_rollouts", "rollout_length"]

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


def rollout_length(env_steps: int, schedule: tuple[int, int, int, int]) -> int:
    """MBPO's rollout-length schedule k(t): from ``min_len`` at env step ``start`` linearly to ``max_len`` at ``end``.

    ``schedule = (start, end, min_len, max_len)``:
    k = min_len for t ≤ start, k = max_len for t ≥ end, and in between
    k = ⌊min_len + (t − start) / (end − start) · (max_len − min_len)⌋.
    """
    start, end, min_len, max_len = (int(v) for v in schedule)
    if env_steps <= start:
        return min_len
    if env_steps >= end:
        return max_len
    frac = (env_steps - start) / (end - start)
    return int(min_len + frac * (max_len - min_len))


def check_schedule(schedule) -> tuple[int, int, int, int]:
    """Validate a rollout schedule ``(start, end, min_len, max_len)``."""
    values = tuple(schedule)
    if len(values) != 4:
        raise ValueError(f"rollout_schedule: expected (start, end, min_len, max_len), got {values!r}")
    start, end, min_len, max_len = (check_positive_int("rollout_schedule", v, allow_zero=True) for v in values)
    if min_len < 1 or max_len < 1:
        raise ValueError(f"rollout_schedule: rollout lengths must be >= 1, got min_len={min_len}, max_len={max_len}")
    if end < start:
        raise ValueError(f"rollout_schedule: expected start <= end, got start={start}, end={end}")
    return start, end, min_len, max_len


# ---------------------------------------------------------------------------------------------
# What the loop plugs together
# ---------------------------------------------------------------------------------------------


def _cat(a: Batch, b: Batch) -> Batch:
    return Batch(**{f.name: torch.cat([getattr(a, f.name), getattr(b, f.name)]) for f in fields(Batch)})


class DynaAgent:
    """policy-iteration-algo + f_ψ + D_sim: what :func:`dyna_loop` needs.

    Args:
        learner: the policy-iteration-algo (:class:`~mbrl_course.rl.SAC`, :class:`~mbrl_course.rl.REINFORCE`,
            :class:`~mbrl_course.rl.PPO`, or anything with ``act``, ``policy_sample``, ``update``,
            ``state_dict``, ``nonfinite`` and ``on_policy``).
        model: f_ψ (a ``GaussianEnsemble``), or None for model-free learning from D_real alone.
        reward_fn: the env's batched reward g(i, u, i'); None uses the model's learned reward.
        termination_fn: the env's batched termination function, respected inside imagined rollouts.
        batch_size: B, transitions per policy update (off-policy learners).
        real_ratio: the share of each minibatch drawn from D_real; exactly round(real_ratio · B) real
            transitions and the rest from D_sim (all real while D_sim is empty or there is no model).
        rollout_batch_size: K, imagined rollouts per imagination round (their start states drawn from D_real).
        rollout_schedule: (start, end, min_len, max_len), see :func:`rollout_length`.
        sim_rounds: how many imagination rounds D_sim keeps (FIFO; its capacity follows the current length).
        fit_kwargs: keyword arguments of :func:`~mbrl_course.models.fit_model`.
        propagation, members, sample_reward: how imagined particles use the ensemble (MBPO: TS1 over the elites).
        device: where D_sim and the generators live. seed: seeds the generators.
    """

    def __init__(
        self,
        learner,
        model=None,
        *,
        reward_fn: Callable | None = None,
        termination_fn: Callable | None = None,
        batch_size: int = 256,
        real_ratio: float = 0.05,
        rollout_batch_size: int = 400,
        rollout_schedule: tuple[int, int, int, int] = (0, 1, 1, 1),
        sim_rounds: int = 1,
        fit_kwargs: dict[str, Any] | None = None,
        propagation: str = "ts1",
        members="elites",
        sample_reward: bool = True,
        device: torch.device | str = "cpu",
        seed: int | None = 0,
    ):
        self.learner = learner
        self.model = model
        self.reward_fn = reward_fn
        self.termination_fn = termination_fn
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.real_ratio = check_positive_float("real_ratio", real_ratio, allow_zero=True)
        if self.real_ratio > 1:
            raise ValueError(f"real_ratio: expected a number in [0, 1], got {real_ratio}")
        self.rollout_batch_size = check_positive_int("rollout_batch_size", rollout_batch_size)
        self.rollout_schedule = check_schedule(rollout_schedule)
        self.sim_rounds = check_positive_int("sim_rounds", sim_rounds)
        self.fit_kwargs = dict(fit_kwargs or {"epochs": 50})
        self.propagation = check_choice("propagation", propagation, PROPAGATIONS)
        self.members, self.sample_reward = members, bool(sample_reward)
        self.device = resolve_device(device)
        self.generator = torch.Generator(device=self.device)
        self.fit_generator = torch.Generator(device=self.device)
        seed = 0 if seed is None else int(seed)
        self.generator.manual_seed(seed + 2)
        self.fit_generator.manual_seed(seed + 3)
        self.obs_dim, self.act_dim = learner.obs_dim, learner.act_dim
        self.sim: ReplayBuffer | None = None  # D_sim (transitions, off-policy learners)
        self.env_steps = 0
        """|D_real| so far: env steps taken by the loop (kept in checkpoints)."""
        self.last_fit = None
        self.last_rollout_length = 0

    # ------------------------------------------------------------------ acting
    def act(self, obs: np.ndarray) -> np.ndarray:
        """u ~ μ_θ(u | i) in the real env."""
        return self.learner.act(obs)

    def reset(self) -> None:
        """Start of an episode."""
        self.learner.reset()

    def update(self, buffer: ReplayBuffer) -> None:
        """(The MPC loop's once-per-episode hook; the Dyna loop updates step by step instead.)"""

    # ------------------------------------------------------------------ the loop's steps
    def fit_model(self, real_buffer: ReplayBuffer):
        """ψ := argmin_ψ L(f_ψ(·,·), D_real)."""
        self.model.train()
        self.last_fit = fit_model(self.model, real_buffer, generator=self.fit_generator, **self.fit_kwargs)
        self.model.eval()
        return self.last_fit

    def rollout_length(self) -> int:
        """k at the current env step (:func:`rollout_length` of the schedule)."""
        return rollout_length(self.env_steps, self.rollout_schedule)

    def _start_states(self, real_buffer: ReplayBuffer) -> torch.Tensor:
        """K states drawn uniformly from D_real: the branching points of the rollouts, (K, O)."""
        idx = torch.randint(0, len(real_buffer), (self.rollout_batch_size,), generator=self.generator,
                            device=self.generator.device).to(real_buffer.device)
        return real_buffer.batch(idx, check=False).obs.to(self.model.device, self.model.dtype)

    def rollouts(self, real_buffer: ReplayBuffer, horizon: int | None = None) -> Rollouts:
        """K rollouts of μ_θ in f_ψ of length k, branched from states of D_real."""
        horizon = self.rollout_length() if horizon is None else horizon
        self.last_rollout_length = horizon
        return imagine_rollouts(
            self.model, self.learner.policy_sample, self._start_states(real_buffer), horizon,
            reward_fn=self.reward_fn, termination_fn=self.termination_fn, generator=self.generator,
            propagation=self.propagation, members=self.members, sample_reward=self.sample_reward,
        )

    def imagine(self, real_buffer: ReplayBuffer) -> int:
        """D_sim := D_sim ∪ {K imagined rollouts}; returns how many transitions were added.

        D_sim is a FIFO holding ``sim_rounds`` rounds of K·k transitions (resized when k changes).
        """
        batch = self.rollouts(real_buffer).transitions()
        capacity = self.rollout_batch_size * self.last_rollout_length * self.sim_rounds
        if self.sim is None or self.sim.capacity != capacity:
            resized = ReplayBuffer(self.obs_dim, self.act_dim, capacity=capacity, device=self.device)
            if self.sim is not None and len(self.sim):
                resized.load_state_dict(self.sim.state_dict())
            self.sim = resized
        self.sim.add_batch(batch.obs, batch.action, batch.reward, batch.next_obs, batch.terminated)
        return len(batch)

    def _draw(self, buffer: ReplayBuffer, n: int) -> Batch:
        idx = torch.randint(0, len(buffer), (n,), generator=self.generator, device=self.generator.device)
        return buffer.batch(idx.to(buffer.device), check=False)

    def split_batch(self) -> tuple[int, int]:
        """(real, imagined) transitions per minibatch: (round(real_ratio · B), B − that), or (B, 0) without D_sim."""
        if self.model is None or self.sim is None or len(self.sim) == 0:
            return self.batch_size, 0
        n_real = int(round(self.real_ratio * self.batch_size))
        return n_real, self.batch_size - n_real

    def policy_batch(self, real_buffer: ReplayBuffer):
        """The data of one policy update: a minibatch mixing D_real and D_sim (off-policy learners),
        or fresh imagined trajectories of the current policy (on-policy learners)."""
        if self.learner.on_policy:
            if self.model is None:
                raise ValueError("learner: an on-policy learner in the Dyna loop needs a model to imagine "
                                 "its trajectories (use its own collection loop for real-env data)")
            return self.rollouts(real_buffer).trajectories()
        n_real, n_sim = self.split_batch()
        if n_sim == 0:
            return self._draw(real_buffer, n_real)
        sim = self._draw(self.sim, n_sim)
        if n_real == 0:
            return sim
        return _cat(self._draw(real_buffer, n_real).to(self.device), sim)

    def evaluation_actor(self) -> GreedyActor:
        """The learner's deterministic policy as an agent (for evaluation episodes)."""
        return GreedyActor(self.learner)

    def check_finite(self) -> None:
        """Raise ``FloatingPointError`` if the learner's losses became NaN/inf (one host sync)."""
        if bool(self.learner.nonfinite):
            raise FloatingPointError(
                f"{type(self.learner).__name__}: a loss became NaN/inf at env step {self.env_steps}; the run stopped "
                f"(try smaller learning rates, or check the data for outliers)")

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Learner (policy, critics, optimisers, α), model, env-step count and generator states (not D_sim)."""
        return {
            "learner": self.learner.state_dict(),
            "model": None if self.model is None else self.model.state_dict(),
            "env_steps": self.env_steps,
            "generator": self.generator.get_state(),
            "fit_generator": self.fit_generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; D_sim starts empty (the loop imagines it again)."""
        self.learner.load_state_dict(state["learner"])
        if self.model is not None:
            self.model.load_state_dict(state["model"])
            self.model.eval()
        self.env_steps = int(state["env_steps"])
        self.generator.set_state(state["generator"])
        self.fit_generator.set_state(state["fit_generator"])
        self.sim = None


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
    learning_starts: int | None = None,
    model_every: int = 250,
    rollout_every: int = 250,
    updates_per_step: int = 1,
    max_env_steps: int | None = None,
    seed: int | None = 0,
    start_episode: int = 0,
    on_episode: Callable[[EpisodeResult], None] | None = None,
    on_step: Callable[[DynaAgent], None] | None = None,
    record_last: bool = False,
    seed_agent=None,
) -> list[EpisodeResult]:
    """The lecture's Dyna loop, one real env step at a time, until the interaction budget τ is spent.

    The first ``seed_steps`` env steps act with ``seed_agent`` (uniform random actions by default).
    From env step ``learning_starts`` (default: ``seed_steps``, at least one step) on, after every env step:
    f_ψ is refit every ``model_every`` steps and K rollouts are imagined every ``rollout_every`` steps
    (both counted from ``learning_starts``, so both happen there first; skipped without a model),
    then the learner takes ``updates_per_step`` updates. The budget τ is ``episodes`` episodes, or
    ``max_env_steps`` env steps if that comes first (the episode in progress is cut there, and its
    :class:`EpisodeResult` says ``cut``: its return is partial).
    ``on_episode`` is called after every episode (logging, checkpoints), ``on_step`` after every env
    step (evaluations). ``start_episode`` resumes a run (``agent.env_steps`` holds the steps taken).

    Raises:
        FloatingPointError: a loss of the learner or of the model fit became NaN/inf.
    """
    episodes = check_positive_int("episodes", episodes)
    seed_steps = check_positive_int("seed_steps", seed_steps, allow_zero=True)
    learning_starts = max(seed_steps, 1) if learning_starts is None else check_positive_int("learning_starts",
                                                                                              learning_starts)
    model_every = check_positive_int("model_every", model_every)
    rollout_every = check_positive_int("rollout_every", rollout_every)
    updates_per_step = check_positive_int("updates_per_step", updates_per_step, allow_zero=True)
    seed_agent = seed_agent or RandomAgent(env.action_space, seed=seed)
    has_model = agent.model is not None
    if has_model and not agent.learner.on_policy and agent.env_steps >= learning_starts and agent.sim is None:
        agent.imagine(real_buffer)  # resumed run: D_sim is not checkpointed, imagine it again

    results = []
    for episode in range(start_episode, episodes):
        if max_env_steps is not None and agent.env_steps >= max_env_steps:
            break
        start = time.perf_counter()
        obs, _ = env.reset(seed=None if seed is None else seed + episode)
        agent.reset()
        record = record_last and episode == episodes - 1
        frames = [env.render()] if record else None
        total, steps, done = 0.0, 0, False
        while not done:
            actor = seed_agent if agent.env_steps < seed_steps else agent
            action = actor.act(obs)  # u ~ μ_θ(u | i)
            next_obs, reward, terminated, truncated, _ = env.step(action)  # i' := env.step(i, u)
            real_buffer.add(obs, action, float(reward), next_obs, bool(terminated))  # D_real ∪= (i, u, g_i, i')
            agent.env_steps += 1
            t = agent.env_steps - learning_starts
            if t >= 0:
                if has_model and t % model_every == 0:
                    agent.fit_model(real_buffer)  # ψ := argmin_ψ L(f_ψ(·,·), D_real)
                if has_model and not agent.learner.on_policy and t % rollout_every == 0:
                    agent.imagine(real_buffer)  # D_sim ∪= K rollouts: u ~ μ_θ(u|i), i', g_i ~ f_ψ(i, u)
                for _ in range(updates_per_step):
                    agent.learner.update(agent.policy_batch(real_buffer))  # θ, φ := policy-iteration-algo(D_sim)
                agent.check_finite()
            if record:
                frames.append(env.render())
            if on_step is not None:
                on_step(agent)
            total += float(reward)
            steps += 1
            obs = next_obs
            out_of_budget = max_env_steps is not None and agent.env_steps >= max_env_steps
            done = terminated or truncated or out_of_budget
        result = EpisodeResult(episode, total, steps, time.perf_counter() - start, frames,
                               cut=out_of_budget and not (terminated or truncated))
        results.append(result)
        if on_episode is not None:
            on_episode(result)
    return results
