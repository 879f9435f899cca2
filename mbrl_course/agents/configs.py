"""The parts the named agents' configs are composed of: a model f_ψ, its fit, a planner.

A named agent's config holds one config per part it plugs together, plus the settings of its own loop:

    PETSConfig(model=EnsembleConfig(...), fit=FitConfig(...), planner=CEMConfig(...), particles=20, ...)
    MBMFConfig(model=DeltaMLPConfig(...), fit=FitConfig(...), planner=RandomShootingConfig(...), ...)
    MBPOConfig(model=EnsembleConfig(...), fit=FitConfig(...), learner=SACConfig(...), rollout_batch_size=..., ...)

so each setting is declared once: the ensemble's size is ``config.model.ensemble_size`` in PETS and in
MBPO alike, and ``mbrl-course train mbpo --set model.ensemble_size=7`` reaches it. The learners'
configs (:class:`~mbrl_course.rl.SACConfig`, :class:`~mbrl_course.rl.PPOConfig`) live with the
learners, which take them whole. Models and planners keep their plain keyword arguments (a lecture
builds them by hand); the configs here hold those arguments and ``build`` the part for an agent.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from mbrl_course._checks import check_positive_float, check_positive_int
from mbrl_course.models import DeltaMLP, GaussianEnsemble
from mbrl_course.planning import CEM, RandomShooting

__all__ = ["CEMConfig", "DeltaMLPConfig", "EnsembleConfig", "FitConfig", "RandomShootingConfig"]


@dataclass
class EnsembleConfig:
    """f_ψ of PETS and MBPO: a :class:`~mbrl_course.models.GaussianEnsemble` (defaults: PETS's)."""

    ensemble_size: int = 5
    """K, the number of Gaussian MLPs in the ensemble."""
    num_elites: int | None = None
    """Members with the best holdout error (MBPO imagines with these only); None: all K."""
    hidden_size: int = 200
    """Width of each member's hidden layers."""
    num_layers: int = 4
    """Number of hidden layers of each member."""

    def build(self, obs_dim: int, act_dim: int, *, device: torch.device | str = "cpu") -> GaussianEnsemble:
        """The ensemble over the state change and the reward, p(i' − i, g | i, u)."""
        return GaussianEnsemble(obs_dim, act_dim, ensemble_size=self.ensemble_size, hidden_size=self.hidden_size,
                                num_layers=self.num_layers, num_elites=self.num_elites, predict_reward=True,
                                device=device)


@dataclass
class DeltaMLPConfig:
    """f_ψ of MBMF: a deterministic :class:`~mbrl_course.models.DeltaMLP`, i' = i + f_ψ(i, u)."""

    hidden_sizes: tuple[int, ...] = (500, 500)
    """Hidden layer widths of f_ψ (the paper's 2 × 500)."""

    def build(self, obs_dim: int, act_dim: int, *, device: torch.device | str = "cpu") -> DeltaMLP:
        """The delta network."""
        return DeltaMLP(obs_dim, act_dim, hidden_sizes=tuple(self.hidden_sizes), device=device)


@dataclass
class FitConfig:
    """ψ := argmin_ψ L(f_ψ, D_real): the settings of every model refit (:func:`~mbrl_course.models.fit_model`)."""

    epochs: int = 50
    """Most passes over D_real per refit (holdout early stopping may end sooner)."""
    batch_size: int = 256
    """Minibatch size of model training (per member for ensembles)."""
    lr: float = 1e-3
    """Adam learning rate of f_ψ."""
    weight_decay: float = 5e-5
    """L2 penalty on f_ψ's weights."""
    patience: int = 5
    """Epochs without holdout improvement before a refit stops."""
    max_updates: int | None = None
    """Most gradient steps per refit (None: no limit)."""

    def __post_init__(self) -> None:  # fit_model's checks, before the first refit rather than after an episode
        self.epochs = check_positive_int("epochs", self.epochs)
        self.batch_size = check_positive_int("batch_size", self.batch_size)
        self.lr = check_positive_float("lr", self.lr)
        self.weight_decay = check_positive_float("weight_decay", self.weight_decay, allow_zero=True)
        self.patience = check_positive_int("patience", self.patience)
        if self.max_updates is not None:
            self.max_updates = check_positive_int("max_updates", self.max_updates)

    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :func:`~mbrl_course.models.fit_model`."""
        return dataclasses.asdict(self)


@dataclass
class CEMConfig:
    """planning-algo of PETS: the :class:`~mbrl_course.planning.CEM` (defaults: PETS's)."""

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

    def build(self, action_low, action_high, *, device: torch.device | str = "cpu", seed: int | None = 0) -> CEM:
        """The planner over the env's action box ``[action_low, action_high]`` (no history kept)."""
        return CEM(horizon=self.horizon, action_low=action_low, action_high=action_high, population=self.population,
                   elites=self.elites, iterations=self.iterations, momentum=self.momentum, device=device, seed=seed,
                   keep_history=False)


@dataclass
class RandomShootingConfig:
    """planning-algo of MBMF: :class:`~mbrl_course.planning.RandomShooting` (defaults: MBMF's)."""

    horizon: int = 20
    """H, the planning horizon in env steps."""
    population: int = 4096
    """N, random action sequences per planned action."""

    def build(self, action_low, action_high, *, device: torch.device | str = "cpu",
              seed: int | None = 0) -> RandomShooting:
        """The planner over the env's action box ``[action_low, action_high]`` (no history kept)."""
        return RandomShooting(horizon=self.horizon, action_low=action_low, action_high=action_high,
                              population=self.population, device=device, seed=seed, keep_history=False)
