"""SAC alone: the Dyna loop without a model (D_sim = ∅, the learner learns from D_real).

The model-free baseline MBPO is measured against: the same :class:`mbrl_course.rl.SAC` and the same
:func:`mbrl_course.agents.dyna.dyna_loop`, with f_ψ = None, so every minibatch comes from D_real.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import gymnasium as gym

from mbrl_course.agents.dyna import DynaAgent
from mbrl_course.agents.mbpo import MBPOLearner
from mbrl_course.budget import Tier, by_budget
from mbrl_course.envs import check_bounded_box_actions
from mbrl_course.rl import SAC, SACConfig


@dataclass
class SACAgentConfig:
    """Hyperparameters of model-free SAC on the real env. :meth:`for_budget` gives the tier's defaults."""

    learner: SACConfig = field(default_factory=SACConfig)
    """SAC itself: networks, γ, τ, learning rates, temperature (its target entropy is per action dimension)."""
    batch_size: int = 256
    """Minibatch size."""
    updates_per_step: int = 1
    """SAC updates per env step."""
    seed_steps: int = 5000
    """Env steps of uniform random actions before learning starts."""

    @classmethod
    def for_budget(cls, tier: Tier | None = None) -> SACAgentConfig:
        """The config of a compute tier (``budget()`` when ``tier`` is None)."""
        paper = cls()
        return by_budget(
            smoke=cls(learner=replace(paper.learner, hidden_sizes=(64, 64), lr=1e-3), batch_size=128,
                      updates_per_step=3, seed_steps=200),
            default=cls(learner=replace(paper.learner, hidden_sizes=(128, 128)), seed_steps=1000),
            full=paper,
            tier=tier,
        )


def make_sac(env: gym.Env, env_id: str, config: SACAgentConfig, *, device="cpu", seed: int | None = 0) -> DynaAgent:
    """Build model-free SAC for ``env`` as a :class:`DynaAgent` without a model."""
    check_bounded_box_actions(env)
    sac = SAC(env.observation_space.shape[0], env.action_space.low, env.action_space.high, config.learner,
              device=device, seed=seed)
    learner = MBPOLearner(sac, batch_size=config.batch_size, real_ratio=1.0, device=device, seed=seed)
    return DynaAgent(learner, None, updates_per_step=config.updates_per_step, device=device, seed=seed)


def sac_loop_kwargs(config: SACAgentConfig) -> dict:
    """The Dyna loop's arguments for SAC alone: the random steps that seed D_real."""
    return dict(seed_steps=config.seed_steps)
