"""MBMF's model-based part: a delta network and random shooting (Nagabandi et al., 2018).

The lecture's [MPC] recipe:

    i' = i + f_ψ(i, u)        (a deterministic neural network predicting the state change)
    planning-algo := Random-Shooting

:class:`mbrl_course.models.DeltaMLP` trained by mean squared error on normalised deltas,
:class:`mbrl_course.planning.RandomShooting` over action sequences, one deterministic rollout per
sequence, all inside :func:`mbrl_course.agents.mpc.mpc_loop`. (The model-free fine-tuning stage of
MBMF comes with the Dyna loop.)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import gymnasium as gym
import torch

from mbrl_course.agents.configs import DeltaMLPConfig, FitConfig, RandomShootingConfig
from mbrl_course.agents.mpc import MPCAgent
from mbrl_course.budget import Tier, by_budget
from mbrl_course.envs import reward_fn, termination_fn


@dataclass
class MBMFConfig:
    """Hyperparameters of MBMF's model-based controller (defaults: the paper's). :meth:`for_budget` gives the tier's."""

    model: DeltaMLPConfig = field(default_factory=DeltaMLPConfig)
    """f_ψ, the delta network."""
    fit: FitConfig = field(default_factory=lambda: FitConfig(epochs=60, batch_size=64, weight_decay=0.0))
    """Each refit of f_ψ (minibatches of 64: D_real holds only a few thousand transitions)."""
    planner: RandomShootingConfig = field(default_factory=RandomShootingConfig)
    """Random shooting over action sequences."""
    seed_episodes: int = 1
    """Episodes of random actions that seed D_real."""

    @classmethod
    def for_budget(cls, tier: Tier | None = None) -> MBMFConfig:
        """The config of a compute tier (``budget()`` when ``tier`` is None): the paper's, smaller."""
        paper = cls()
        return by_budget(
            smoke=cls(model=DeltaMLPConfig(hidden_sizes=(64, 64)), fit=replace(paper.fit, epochs=5),
                      planner=RandomShootingConfig(horizon=8, population=200)),
            default=cls(model=DeltaMLPConfig(hidden_sizes=(256, 256)), fit=replace(paper.fit, epochs=30),
                        planner=RandomShootingConfig(horizon=15, population=1000)),
            full=paper,
            tier=tier,
        )


def make_mbmf(env: gym.Env, env_id: str, config: MBMFConfig, *, device="cpu", seed: int | None = 0) -> MPCAgent:
    """Build MBMF's MPC controller for ``env``: delta MLP f_ψ + random shooting."""
    if seed is not None:
        torch.manual_seed(seed)
    model = config.model.build(env.observation_space.shape[0], env.action_space.shape[0], device=device)
    planner = config.planner.build(env.action_space.low, env.action_space.high, device=device, seed=seed)
    return MPCAgent(
        model, planner, reward_fn=reward_fn(env_id), termination_fn=termination_fn(env_id),
        particles=1, propagation="ts_inf", fit_kwargs=config.fit.kwargs(), device=device, seed=seed,
    )
