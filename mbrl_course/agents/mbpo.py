"""MBPO: Model-Based Policy Optimisation (Janner et al., 2019).

The lecture's [Dyna] recipe:

    i', g_i = f_ψ(i, u) := p(i', g_i | i, u) = 1/K Σ_{k=1}^{K} N(i', g_i | μ_ψ^k(i, u), Σ_ψ^k(i, u))
    policy-iteration-algo := SAC

inside the generic :func:`mbrl_course.agents.dyna.dyna_loop`: a probabilistic ensemble over the
state change and the reward (:class:`mbrl_course.models.GaussianEnsemble`) refit on D_real every
``model_every`` env steps; every ``rollout_every`` steps, K short rollouts of the current policy
branched from real states (length k from a schedule), each step drawn from a random *elite* member
(TS1 over the elites, the reward sampled too), stopped where the env's termination function fires;
then ``updates_per_step`` SAC updates per env step on minibatches with a ``real_ratio`` share of
real transitions (the paper's 0.05) and the rest imagined.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import gymnasium as gym
import torch

from mbrl_course.agents.configs import EnsembleConfig, FitConfig
from mbrl_course.agents.dyna import DynaAgent, check_schedule
from mbrl_course.budget import Tier, by_budget
from mbrl_course.envs import check_bounded_box_actions, reward_fn, termination_fn
from mbrl_course.rl import SAC, SACConfig


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
    learner = SAC(env.observation_space.shape[0], env.action_space.low, env.action_space.high, config.learner,
                  device=device, seed=seed)
    return DynaAgent(
        learner, model,
        reward_fn=None if config.learned_reward else reward_fn(env_id),
        termination_fn=termination_fn(env_id),
        batch_size=config.batch_size, real_ratio=config.real_ratio,
        rollout_batch_size=config.rollout_batch_size, rollout_schedule=config.rollout_schedule,
        sim_rounds=config.sim_rounds, fit_kwargs=config.fit.kwargs(), propagation="ts1", members="elites",
        sample_reward=True, device=device, seed=seed,
    )


def mbpo_loop_kwargs(config: MBPOConfig) -> dict:
    """The step-level schedule of :func:`~mbrl_course.agents.dyna.dyna_loop` for MBPO."""
    return dict(seed_steps=config.seed_steps, model_every=config.model_every, rollout_every=config.rollout_every,
                updates_per_step=config.updates_per_step)
