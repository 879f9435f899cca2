"""SAC alone: the Dyna loop without a model (D_sim = ∅, the learner learns from D_real).

The model-free baseline MBPO is measured against: the same :class:`mbrl_course.rl.SAC` and the same
:func:`mbrl_course.agents.dyna.dyna_loop`, with f_ψ = None, so every minibatch comes from D_real.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym

from mbrl_course.agents.dyna import DynaAgent
from mbrl_course.budget import Tier, by_budget
from mbrl_course.envs import check_bounded_box_actions
from mbrl_course.rl import SAC, SACConfig


@dataclass
class SACAgentConfig:
    """Hyperparameters of model-free SAC on the real env. :meth:`for_budget` gives the tier's defaults."""

    hidden_sizes: tuple[int, ...] = (256, 256)
    """Hidden widths of the actor and the critics."""
    gamma: float = 0.99
    """Discount γ."""
    tau: float = 0.005
    """Target-network rate τ."""
    lr: float = 3e-4
    """Adam learning rate (actor, critics and α)."""
    init_alpha: float = 1.0
    """Initial temperature α (tuned towards the target entropy)."""
    target_entropy: float = -1.0
    """H̄ per action dimension: α is tuned towards an entropy of target_entropy · A (SAC: −1)."""
    batch_size: int = 256
    """Minibatch size."""
    updates_per_step: int = 1
    """SAC updates per env step."""
    seed_steps: int = 5000
    """Env steps of uniform random actions before learning starts."""

    @classmethod
    def for_budget(cls, tier: Tier | None = None) -> SACAgentConfig:
        """The config of a compute tier (``budget()`` when ``tier`` is None)."""
        return by_budget(
            smoke=cls(hidden_sizes=(64, 64), lr=1e-3, batch_size=128, updates_per_step=3, seed_steps=200),
            default=cls(hidden_sizes=(128, 128), seed_steps=1000),
            full=cls(),
            tier=tier,
        )


def make_sac(env: gym.Env, env_id: str, config: SACAgentConfig, *, device="cpu", seed: int | None = 0) -> DynaAgent:
    """Build model-free SAC for ``env`` as a :class:`DynaAgent` without a model."""
    check_bounded_box_actions(env)
    learner = SAC(env.observation_space.shape[0], env.action_space.low, env.action_space.high,
                  SACConfig(hidden_sizes=tuple(config.hidden_sizes), gamma=config.gamma, tau=config.tau,
                            actor_lr=config.lr, critic_lr=config.lr, alpha_lr=config.lr,
                            init_alpha=config.init_alpha,
                            target_entropy=config.target_entropy * env.action_space.shape[0]),
                  device=device, seed=seed)
    return DynaAgent(learner, None, batch_size=config.batch_size, real_ratio=1.0, device=device, seed=seed)


def sac_loop_kwargs(config: SACAgentConfig) -> dict:
    """The step-level schedule of :func:`~mbrl_course.agents.dyna.dyna_loop` for SAC alone."""
    return dict(seed_steps=config.seed_steps, updates_per_step=config.updates_per_step)
