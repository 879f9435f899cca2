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

from dataclasses import dataclass, field, replace

import gymnasium as gym
import torch

from mbrl_course.agents.configs import CEMConfig, EnsembleConfig, FitConfig
from mbrl_course.agents.mpc import MPCAgent
from mbrl_course.budget import Tier, by_budget
from mbrl_course.envs import reward_fn, termination_fn


@dataclass
class PETSConfig:
    """Hyperparameters of PETS (defaults: the paper's). :meth:`for_budget` gives the compute tier's defaults."""

    model: EnsembleConfig = field(default_factory=EnsembleConfig)
    """f_ψ, the probabilistic ensemble."""
    fit: FitConfig = field(default_factory=lambda: FitConfig(epochs=50, batch_size=32))
    """Each refit of f_ψ (PETS's minibatch of 32: many small steps while D_real is small)."""
    planner: CEMConfig = field(default_factory=CEMConfig)
    """CEM over action sequences."""
    particles: int = 20
    """Trajectory samples per action sequence."""
    propagation: str = "ts_inf"
    """"ts1", "ts_inf" or "expectation" (PETS's propagation modes)."""
    seed_episodes: int = 1
    """Episodes of random actions that seed D_real."""

    @classmethod
    def for_budget(cls, tier: Tier | None = None) -> PETSConfig:
        """The config of a compute tier (``budget()`` when ``tier`` is None): the paper's, smaller."""
        paper = cls()
        return by_budget(
            smoke=cls(model=EnsembleConfig(ensemble_size=3, hidden_size=32, num_layers=2),
                      fit=replace(paper.fit, epochs=5),
                      planner=replace(paper.planner, horizon=8, population=50, elites=5, iterations=2), particles=3),
            # horizon 20, not 15: from rest at the bottom, even CEM on the true dynamics needs a
            # 1 s look-ahead to find the swing-up on Pendulum (benchmarks/pets_pendulum.py)
            default=cls(model=EnsembleConfig(ensemble_size=5, hidden_size=200, num_layers=3),
                        fit=replace(paper.fit, epochs=25),
                        planner=replace(paper.planner, horizon=20, population=100, elites=10, iterations=5),
                        particles=10),
            full=paper,
            tier=tier,
        )


def make_pets(env: gym.Env, env_id: str, config: PETSConfig, *, device="cpu", seed: int | None = 0) -> MPCAgent:
    """Build the PETS agent for ``env``: ensemble f_ψ + CEM + trajectory sampling."""
    if seed is not None:
        torch.manual_seed(seed)
    model = config.model.build(env.observation_space.shape[0], env.action_space.shape[0], device=device)
    planner = config.planner.build(env.action_space.low, env.action_space.high, device=device, seed=seed)
    return MPCAgent(
        model, planner, reward_fn=reward_fn(env_id), termination_fn=termination_fn(env_id),
        particles=config.particles, propagation=config.propagation, fit_kwargs=config.fit.kwargs(),
        device=device, seed=seed,
    )
