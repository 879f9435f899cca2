"""MBPO: Model-Based Policy Optimisation (Janner et al., 2019).

The lecture's [Dyna] recipe:

    i', g_i = f_ψ(i, u) := p(i', g_i | i, u) = 1/K Σ_{k=1}^{K} N(i', g_i | μ_ψ^k(i, u), Σ_ψ^k(i, u))
    policy-iteration-algo := SAC

inside the generic :func:`mbrl_course.agents.dyna.dyna_loop`: a probabilistic ensemble over the
state change and the reward (:class:`mbrl_course.models.GaussianEnsemble`) refit on D_real every
``model_every`` env steps, and ``updates_per_step`` policy updates per env step by
:class:`MBPOLearner`, which holds MBPO's own schedule: every ``rollout_every`` steps, K short
rollouts of the current policy branched from real states (length k from :func:`rollout_length`'s
schedule), each step drawn from a random *elite* member (TS1 over the elites, the reward sampled
too), stopped where the env's termination function fires, go into a FIFO D_sim; each SAC update
takes a minibatch with a ``real_ratio`` share of real transitions (the paper's 0.05), the rest imagined.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from mbrl_course._checks import check_choice, check_positive_float, check_positive_int, resolve_device
from mbrl_course.agents.configs import EnsembleConfig, FitConfig
from mbrl_course.agents.dyna import DynaAgent, Rollouts, imagine_rollouts
from mbrl_course.budget import Tier, by_budget
from mbrl_course.data import Batch, ReplayBuffer
from mbrl_course.envs import check_bounded_box_actions, reward_fn, termination_fn
from mbrl_course.models import PROPAGATIONS
from mbrl_course.rl import SAC, SACConfig

__all__ = ["MBPOConfig", "MBPOLearner", "check_schedule", "make_mbpo", "rollout_length"]


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


def _cat(a: Batch, b: Batch) -> Batch:
    return Batch(**{f.name: torch.cat([getattr(a, f.name), getattr(b, f.name)]) for f in fields(Batch)})


class MBPOLearner:
    """MBPO's policy update: branched rollouts in f_ψ into a FIFO D_sim, then the policy-iteration-algo.

    ``policy_update(model, D_real)`` (the Dyna loop's :class:`~mbrl_course.agents.dyna.Learner`):

    1. every ``rollout_every`` env steps (|D_real| is the step count): D_sim ∪= K = ``rollout_batch_size``
       rollouts of μ_θ in f_ψ of length k (:func:`rollout_length`), branched from states drawn from D_real;
       D_sim keeps the last ``sim_rounds`` rounds (FIFO);
    2. one update of the algorithm on a minibatch of B = ``batch_size`` transitions, round(real_ratio · B)
       from D_real and the rest from D_sim.

    With an on-policy algorithm (REINFORCE, PPO) each update imagines fresh trajectories of the current
    policy instead; with no model (``model=None``) every minibatch comes from D_real: SAC alone.

    Args:
        algo: the policy-iteration-algo (:class:`~mbrl_course.rl.SAC`, :class:`~mbrl_course.rl.REINFORCE`,
            :class:`~mbrl_course.rl.PPO`: ``act``, ``policy_sample``, ``update``, ``nonfinite``, ``on_policy``).
        reward_fn: the env's batched reward g(i, u, i'); None uses the model's learned reward.
        termination_fn: the env's batched termination function, respected inside imagined rollouts.
        batch_size: B. real_ratio: the share of real transitions in each minibatch (all real while D_sim is empty).
        rollout_batch_size: K. rollout_schedule: (start, end, min_len, max_len). rollout_every: imagination period.
        sim_rounds: how many imagination rounds D_sim keeps.
        propagation, members, sample_reward: how imagined particles use the ensemble (MBPO: TS1 over the elites).
        device: where D_sim and the generator live. seed: seeds the generator.
    """

    episodic = False

    def __init__(
        self,
        algo,
        *,
        reward_fn: Callable | None = None,
        termination_fn: Callable | None = None,
        batch_size: int = 256,
        real_ratio: float = 0.05,
        rollout_batch_size: int = 400,
        rollout_schedule: tuple[int, int, int, int] = (0, 1, 1, 1),
        rollout_every: int = 250,
        sim_rounds: int = 1,
        propagation: str = "ts1",
        members="elites",
        sample_reward: bool = True,
        device: torch.device | str = "cpu",
        seed: int | None = 0,
    ):
        self.algo = algo
        self.reward_fn = reward_fn
        self.termination_fn = termination_fn
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.real_ratio = check_positive_float("real_ratio", real_ratio, allow_zero=True)
        if self.real_ratio > 1:
            raise ValueError(f"real_ratio: expected a number in [0, 1], got {real_ratio}")
        self.rollout_batch_size = check_positive_int("rollout_batch_size", rollout_batch_size)
        self.rollout_schedule = check_schedule(rollout_schedule)
        self.rollout_every = check_positive_int("rollout_every", rollout_every)
        self.sim_rounds = check_positive_int("sim_rounds", sim_rounds)
        self.propagation = check_choice("propagation", propagation, PROPAGATIONS)
        self.members, self.sample_reward = members, bool(sample_reward)
        self.device = resolve_device(device)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed((0 if seed is None else int(seed)) + 2)
        self.obs_dim, self.act_dim = algo.obs_dim, algo.act_dim
        self.sim: ReplayBuffer | None = None
        """D_sim (off-policy algorithms); not checkpointed: a resumed run imagines it again."""
        self.imagined_at: int | None = None
        """|D_real| at the last imagination round (None: none yet)."""
        self.last_rollout_length = 0

    # ------------------------------------------------------------------ the policy μ_θ
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        return self.algo.act(obs, deterministic=deterministic)

    def reset(self) -> None:
        self.algo.reset()

    # ------------------------------------------------------------------ imagination
    def _start_states(self, model, real_buffer: ReplayBuffer) -> torch.Tensor:
        """K states drawn uniformly from D_real: the branching points of the rollouts, (K, O)."""
        idx = torch.randint(0, len(real_buffer), (self.rollout_batch_size,), generator=self.generator,
                            device=self.generator.device).to(real_buffer.device)
        return real_buffer.batch(idx, check=False).obs.to(model.device, model.dtype)

    def rollouts(self, model, real_buffer: ReplayBuffer, horizon: int | None = None) -> Rollouts:
        """K rollouts of μ_θ in f_ψ of length k (the schedule's at |D_real|), branched from states of D_real."""
        horizon = rollout_length(len(real_buffer), self.rollout_schedule) if horizon is None else horizon
        self.last_rollout_length = horizon
        return imagine_rollouts(
            model, self.algo.policy_sample, self._start_states(model, real_buffer), horizon,
            reward_fn=self.reward_fn, termination_fn=self.termination_fn, generator=self.generator,
            propagation=self.propagation, members=self.members, sample_reward=self.sample_reward,
        )

    def imagine(self, model, real_buffer: ReplayBuffer) -> int:
        """D_sim := D_sim ∪ {K imagined rollouts}; returns how many transitions were added.

        D_sim is a FIFO holding ``sim_rounds`` rounds of K·k transitions (resized when k changes).
        """
        batch = self.rollouts(model, real_buffer).transitions()
        self.imagined_at = len(real_buffer)
        capacity = self.rollout_batch_size * self.last_rollout_length * self.sim_rounds
        if self.sim is None or self.sim.capacity != capacity:
            resized = ReplayBuffer(self.obs_dim, self.act_dim, capacity=capacity, device=self.device)
            if self.sim is not None and len(self.sim):
                resized.load_state_dict(self.sim.state_dict())
            self.sim = resized
        self.sim.add_batch(batch.obs, batch.action, batch.reward, batch.next_obs, batch.terminated)
        return len(batch)

    # ------------------------------------------------------------------ the policy update
    def _draw(self, buffer: ReplayBuffer, n: int) -> Batch:
        idx = torch.randint(0, len(buffer), (n,), generator=self.generator, device=self.generator.device)
        return buffer.batch(idx.to(buffer.device), check=False)

    def split_batch(self) -> tuple[int, int]:
        """(real, imagined) transitions per minibatch: (round(real_ratio · B), B − that), or (B, 0) without D_sim."""
        if self.sim is None or len(self.sim) == 0:
            return self.batch_size, 0
        n_real = int(round(self.real_ratio * self.batch_size))
        return n_real, self.batch_size - n_real

    def policy_batch(self, model, real_buffer: ReplayBuffer):
        """The data of one update: a minibatch mixing D_real and D_sim (off-policy algorithms), or fresh
        imagined trajectories of the current policy (on-policy algorithms)."""
        if self.algo.on_policy:
            if model is None:
                raise ValueError("learner: an on-policy learner in the Dyna loop needs a model to imagine "
                                 "its trajectories (use its own collection loop for real-env data)")
            return self.rollouts(model, real_buffer).trajectories()
        n_real, n_sim = self.split_batch()
        if n_sim == 0:
            return self._draw(real_buffer, n_real)
        sim = self._draw(self.sim, n_sim)
        if n_real == 0:
            return sim
        return _cat(self._draw(real_buffer, n_real).to(self.device), sim)

    def policy_update(self, model, real_buffer: ReplayBuffer) -> dict[str, torch.Tensor]:
        """Imagine when due (every ``rollout_every`` env steps), then θ, φ := algo.update(minibatch)."""
        due = self.imagined_at is None or len(real_buffer) - self.imagined_at >= self.rollout_every
        if model is not None and not self.algo.on_policy and due:
            self.imagine(model, real_buffer)  # D_sim ∪= K rollouts: u ~ μ_θ(u|i), i', g_i ~ f_ψ(i, u)
        return self.algo.update(self.policy_batch(model, real_buffer))

    def check_finite(self) -> None:
        """Raise ``FloatingPointError`` if the algorithm's losses became NaN/inf (one host sync)."""
        if bool(self.algo.nonfinite):
            raise FloatingPointError(
                f"{type(self.algo).__name__}: a loss became NaN/inf; the run stopped "
                f"(try smaller learning rates, or check the data for outliers)")

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The algorithm (policy, critics, optimisers, α) and the generator (not D_sim)."""
        return {"algo": self.algo.state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; D_sim starts empty (the next update imagines it again)."""
        self.algo.load_state_dict(state["algo"])
        self.generator.set_state(state["generator"])
        self.sim, self.imagined_at = None, None


@dataclass
class MBPOConfig:
    """Hyperparameters of MBPO (defaults: the paper's). :meth:`for_budget` gives the tier's defaults."""

    model: EnsembleConfig = field(default_factory=lambda: EnsembleConfig(ensemble_size=7, num_elites=5))
    """f_ψ, the probabilistic ensemble over the state change and the reward; only its elites imagine."""
    fit: FitConfig = field(default_factory=lambda: FitConfig(epochs=100))
    """Each refit of f_ψ (holdout early stopping usually ends it before ``epochs``)."""
    learner: SACConfig = field(default_factory=SACConfig)
    """The policy-iteration-algo, SAC (its target entropy is per action dimension)."""
    learned_reward: bool = True
    """Imagined rewards from f_ψ (MBPO); False: the env's reward function g(i, u, i')."""
    model_every: int = 250
    """F: refit f_ψ every F env steps."""
    rollout_every: int = 250
    """Imagine K rollouts every this many env steps."""
    rollout_batch_size: int = 100_000
    """K, rollouts per imagination round (start states drawn from D_real)."""
    rollout_schedule: tuple[int, ...] = (0, 1, 1, 1)
    """(start, end, min_len, max_len): k grows linearly from min_len at env step start to max_len at end."""
    sim_rounds: int = 4
    """Imagination rounds D_sim keeps (MBPO: one epoch of 1000 steps = 4 rounds)."""
    real_ratio: float = 0.05
    """Share of real transitions in each SAC minibatch."""
    batch_size: int = 256
    """SAC minibatch size."""
    updates_per_step: int = 20
    """G, SAC updates per env step."""
    seed_steps: int = 5000
    """Env steps of uniform random actions that seed D_real before learning starts."""

    def __post_init__(self) -> None:
        self.rollout_schedule = check_schedule(self.rollout_schedule)

    @classmethod
    def for_budget(cls, tier: Tier | None = None) -> MBPOConfig:
        """The config of a compute tier (``budget()`` when ``tier`` is None): the paper's, smaller."""
        paper = cls()
        return by_budget(
            smoke=cls(model=EnsembleConfig(ensemble_size=3, num_elites=2, hidden_size=64, num_layers=2),
                      fit=replace(paper.fit, epochs=40, max_updates=1000, batch_size=32),
                      learner=replace(paper.learner, hidden_sizes=(64, 64), lr=1e-3),
                      model_every=100, rollout_every=50, rollout_batch_size=400, rollout_schedule=(0, 1, 1, 1),
                      sim_rounds=8, batch_size=128, updates_per_step=10, seed_steps=200),
            default=cls(model=EnsembleConfig(ensemble_size=5, num_elites=4, hidden_size=200, num_layers=3),
                        fit=replace(paper.fit, epochs=50, max_updates=2000, batch_size=64),
                        learner=replace(paper.learner, hidden_sizes=(128, 128)),
                        model_every=250, rollout_every=250, rollout_batch_size=10_000, rollout_schedule=(0, 1, 1, 1),
                        sim_rounds=4, updates_per_step=10, seed_steps=1000),
            full=paper,
            tier=tier,
        )


def make_mbpo(env: gym.Env, env_id: str, config: MBPOConfig, *, device="cpu", seed: int | None = 0) -> DynaAgent:
    """Build MBPO for ``env``: ensemble f_ψ + SAC + the env's termination function, as a :class:`DynaAgent`."""
    check_bounded_box_actions(env)
    if seed is not None:
        torch.manual_seed(seed)
    model = config.model.build(env.observation_space.shape[0], env.action_space.shape[0], device=device)
    sac = SAC(env.observation_space.shape[0], env.action_space.low, env.action_space.high, config.learner,
              device=device, seed=seed)
    learner = MBPOLearner(
        sac, reward_fn=None if config.learned_reward else reward_fn(env_id), termination_fn=termination_fn(env_id),
        batch_size=config.batch_size, real_ratio=config.real_ratio, rollout_batch_size=config.rollout_batch_size,
        rollout_schedule=config.rollout_schedule, rollout_every=config.rollout_every, sim_rounds=config.sim_rounds,
        propagation="ts1", members="elites", sample_reward=True, device=device, seed=seed,
    )
    return DynaAgent(learner, model, fit_kwargs=config.fit.kwargs(), model_every=config.model_every,
                     updates_per_step=config.updates_per_step, device=device, seed=seed)


def mbpo_loop_kwargs(config: MBPOConfig) -> dict:
    """The Dyna loop's arguments for MBPO: the random steps that seed D_real."""
    return dict(seed_steps=config.seed_steps)
