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

from dataclasses import dataclass

import gymnasium as gym
import torch

from mbrl_course.agents.mpc import MPCAgent
from mbrl_course.budget import Tier, by_budget
from mbrl_course.envs import reward_fn, termination_fn
from mbrl_course.models import DeltaMLP
from mbrl_course.planning import RandomShooting


@dataclass
class MBMFConfig:
    """Hyperparameters of MBMF's model-based controller. :meth:`for_budget` gives the tier's defaults."""

    hidden_sizes: tuple[int, ...] = (500, 500)
    """Hidden layer widths of f_ψ (the paper's 2 × 500)."""
    horizon: int = 20
    """H, the planning horizon in env steps."""
    population: int = 4096
    """N, random action sequences per planned action."""
    seed_episodes: int = 1
    """Episodes of random actions that seed D_real."""
    epochs: int = 60
    """Maximum training epochs per model refit."""
    batch_size: int = 64
    """Minibatch size for model training (small: D_real holds only a few thousand transitions)."""
    lr: float = 1e-3
    """Adam learning rate of the model."""
    weight_decay: float = 0.0
    """Adam weight decay of the model."""
    patience: int = 5
    """Epochs without holdout improvement before early stopping."""

    @classmethod
    def for_budget(cls, tier: Tier | None = None) -> MBMFConfig:
        """The config of a compute tier (``budget()`` when ``tier`` is None)."""
        return by_budget(
            smoke=cls(hidden_sizes=(64, 64), horizon=8, population=200, epochs=5),
            default=cls(hidden_sizes=(256, 256), horizon=15, population=1000, epochs=30),
            full=cls(),
            tier=tier,
        )


def make_mbmf(env: gym.Env, env_id: str, config: MBMFConfig, *, device="cpu", seed: int | None = 0) -> MPCAgent:
    """Build MBMF's MPC controller for ``env``: delta MLP f_ψ + random shooting."""
    obs_dim = env.observation_space.shape[0]
    act_dim = env.action_space.shape[0]
    if seed is not None:
        torch.manual_seed(seed)
    model = DeltaMLP(obs_dim, act_dim, hidden_sizes=tuple(config.hidden_sizes), device=device)
    planner = RandomShooting(
        horizon=config.horizon, action_low=env.action_space.low, action_high=env.action_space.high,
        population=config.population, device=device, seed=seed, keep_history=False,
    )
    return MPCAgent(
        model, planner, reward_fn=reward_fn(env_id), termination_fn=termination_fn(env_id),
        particles=1, propagation="ts_inf",
        fit_kwargs=dict(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                        weight_decay=config.weight_decay, patience=config.patience),
        device=device, seed=seed,
    )
