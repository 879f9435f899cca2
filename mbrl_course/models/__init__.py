"""Dynamics models f_ψ(i, u) of the lecture, their training and batched imagination.

- :class:`DeltaMLP`: MBMF's deterministic i' = i + f_ψ(i, u).
- :class:`GaussianEnsemble`: PETS/MBPO's p(i', g | i, u) = 1/K Σ_k N(μ_ψ^k, Σ_ψ^k), built from :class:`EnsembleLinear`.
- :func:`fit_model`: ψ := argmin_ψ L(f_ψ, D_real) with bootstraps, holdout early stopping and elites.
- :func:`imagine_returns` / :func:`step_particles`: trajectory sampling (TS1, TS∞, expectation).
"""

from mbrl_course.models.ensemble import EnsembleLinear, FoldedParams, GaussianEnsemble, gaussian_nll
from mbrl_course.models.imagination import PROPAGATIONS, imagine_returns, step_particles
from mbrl_course.models.mlp import ACTIVATIONS, DeltaMLP
from mbrl_course.models.training import FitReport, fit_model

__all__ = [
    "ACTIVATIONS",
    "PROPAGATIONS",
    "DeltaMLP",
    "EnsembleLinear",
    "FitReport",
    "FoldedParams",
    "GaussianEnsemble",
    "fit_model",
    "gaussian_nll",
    "imagine_returns",
    "step_particles",
]
