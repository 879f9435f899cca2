"""Dynamics models f_ψ(i, u) of the lecture, their training and batched imagination.

- :class:`DeltaMLP`: MBMF's deterministic i' = i + f_ψ(i, u).
- :class:`GaussianEnsemble`: PETS/MBPO's p(i', g | i, u) = 1/K Σ_k N(μ_ψ^k, Σ_ψ^k), built from :class:`EnsembleLinear`.
- :func:`fit_model`: ψ := argmin_ψ L(f_ψ, D_real) with bootstraps, holdout early stopping and elites.
- :class:`DropoutDynamics`: Deep PILCO's dropout network, 1/K Σ_k N(μ^k_ψ, Σ), ψ ~ Dropout(ψ), particles with fixed masks.
- :class:`TrueDynamics`: the env's own equations, the oracle f_ψ := f.
- :class:`GPDynamics`: PILCO's i' = f_ψ(i, u) := GP, on a :class:`GaussianProcess` (exact or FITC) with moment matching.
- :class:`DynamicsModel`: the one contract all of them satisfy (fit, next_state_distribution, propagator).
- :func:`rollout`: the one rollout primitive, driven by action sequences or a policy, gradients when wanted.
- :func:`imagine_returns` / :func:`step_particles`: trajectory sampling (TS1, TS∞, expectation).
"""

from mbrl_course.models.base import DynamicsModel, PointMass, Propagator
from mbrl_course.models.dropout import DropoutDynamics, DropoutPropagator, moment_match_resample
from mbrl_course.models.ensemble import EnsembleLinear, FoldedParams, GaussianEnsemble, gaussian_nll
from mbrl_course.models.gp import (
    GaussianProcess,
    GPCholeskyError,
    GPDynamics,
    GPFitReport,
    JitterWarning,
    obs_from_state,
    state_angle_indices,
    state_from_obs,
    wrap_angle,
)
from mbrl_course.models.imagination import PROPAGATIONS, EnsemblePropagator, imagine_returns, step_particles
from mbrl_course.models.mlp import ACTIVATIONS, DeltaMLP
from mbrl_course.models.rollout import Rollout, rollout
from mbrl_course.models.training import FitReport, fit_model, train_model
from mbrl_course.models.true_dynamics import TrueDynamics

__all__ = [
    "ACTIVATIONS",
    "PROPAGATIONS",
    "DeltaMLP",
    "DropoutDynamics",
    "DropoutPropagator",
    "DynamicsModel",
    "EnsemblePropagator",
    "EnsembleLinear",
    "FitReport",
    "FoldedParams",
    "GaussianEnsemble",
    "GaussianProcess",
    "GPCholeskyError",
    "GPDynamics",
    "GPFitReport",
    "JitterWarning",
    "PointMass",
    "Propagator",
    "Rollout",
    "TrueDynamics",
    "fit_model",
    "gaussian_nll",
    "imagine_returns",
    "moment_match_resample",
    "obs_from_state",
    "rollout",
    "state_angle_indices",
    "state_from_obs",
    "step_particles",
    "train_model",
    "wrap_angle",
]
