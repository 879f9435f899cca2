"""PETS: Probabilistic Ensembles with Trajectory Sampling (Chua et al., 2018).

The lecture's [MPC] recipe:

    i' = f_ψ(i, u) := p(i' | i, u) = 1/K Σ_{k=1}^{K} N(i' | μ_ψ^k(i, u), Σ_ψ^k(i, u))
    planning-algo  := Cross-Entropy-Method

A probabilistic ensemble (:class:`mbrl_course.models.GaussianEnsemble`) trained by Gaussian NLL on
bootstrapped D_real, CEM over action sequences, returns estimated by trajectory sampling (TS∞ by
default: every particle keeps one ensemble member for the whole horizon), all inside the generic
:func:`mbrl_course.agents.mpc.mpc_loop`.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import torch

from mbrl_course.agents.mpc import MPCAgent
from mbrl_course.budget import Tier, by_budget
from mbrl_course.envs import reward_fn, termination_fn
from mbrl_course.models import GaussianEnsemble
from mbrl_course.planning import CEM


@dataclass
class PETSConfig:
    """Hyperparameters of PETS. :meth:`for_budget` gives the compute tier's defaults."""

    ensemble_size: int = 5
    """K, the number of Gaussian MLPs in the ensemble."""
    hidden_size: int = 200
    """Width of each member's hidden layers."""
    num_layers: int = 4
    """Number of hidden layers of each member."""
    horizon: int = 30
    """H, the planning horizon in env steps."""
    population: int = 400
    """Action sequences CEM samples per iteration."""
    elites: int = 40
    """How many of the best sequences CEM refits its mean and std to."""
    iterations: int = 5
    """CEM iterations per planned action."""
    momentum: float = 0.1
    """CEM's smoothing of the refit mean and std (0: no smoothing)."""
    particles: int = 20
    """Trajectory samples per action sequence."""
    propagation: str = "ts_inf"
    """"ts1", "ts_inf" or "expectation" (PETS's propagation modes)."""
    seed_episodes: int = 1
    """Episodes of random actions that seed D_real."""
    epochs: int = 50
    """Maximum training epochs per model refit (holdout early stopping may end sooner)."""
    batch_size: int = 32
    """Minibatch size for model training (PETS's 32: many small steps while D_real is small)."""
    lr: float = 1e-3
    """Adam learning rate of the model."""
    weight_decay: float = 5e-5
    """Adam weight decay of the model."""
    patience: int = 5
    """Epochs without holdout improvement before early stopping."""

    @classmethod
    def for_budget(cls, tier: Tier | None = None) -> PETSConfig:
        """The config of a compute tier (``budget()`` when ``tier`` is None)."""
        return by_budget(
            smoke=cls(ensemble_size=3, hidden_size=32, num_layers=2, horizon=8, population=50, elites=5,
                      iterations=2, particles=3, epochs=5),
            # horizon 20, not 15: from rest at the bottom, even CEM on the true dynamics needs a
            # 1 s look-ahead to find the swing-up on Pendulum (benchmarks/pets_pendulum.py)
            default=cls(ensemble_size=5, hidden_size=200, num_layers=3, horizon=20, population=100, elites=10,
                        iterations=5, particles=10, epochs=25),
            full=cls(),
            tier=tier,
        )


def make_pets(env: gym.Env, env_id: str, config: PETSConfig, *, device="cpu", seed: int | None = 0) -> MPCAgent:
    """Build the PETS agent for ``env``: ensemble f_ψ + CEM + trajectory sampling."""
    obs_dim = env.observation_space.shape[0]
    act_dim = env.action_space.shape[0]
    if seed is not None:
        torch.manual_seed(seed)
    model = GaussianEnsemble(
        obs_dim, act_dim, ensemble_size=config.ensemble_size, hidden_size=config.hidden_size,
        num_layers=config.num_layers, predict_reward=True, device=device,
    )
    planner = CEM(
        horizon=config.horizon, action_low=env.action_space.low, action_high=env.action_space.high,
        population=config.population, elites=config.elites, iterations=config.iterations,
        momentum=config.momentum, device=device, seed=seed, keep_history=False,
    )
    return MPCAgent(
        model, planner, reward_fn=reward_fn(env_id), termination_fn=termination_fn(env_id),
        particles=config.particles, propagation=config.propagation,
        fit_kwargs=dict(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                        weight_decay=config.weight_decay, patience=config.patience),
        device=device, seed=seed,
    )
