"""``planning-algo(f_ψ, i)``: sampling-based planners for the MPC loop, and iLQR on a differentiable model.

Every sampling planner maximises an objective over action sequences::

    planner = CEM(horizon=H, action_low=low, action_high=high, population=500, elites=50,
                  iterations=5, device="cpu", seed=0)
    actions = planner.plan(objective)   # objective: (N, H, A) -> returns (N,); actions: (H, A)
    planner.reset()                     # at the start of each episode (forgets the warm start)

- :class:`RandomShooting`: the slide's Planning Algo 1 (MBMF).
- :class:`CEM`: the cross-entropy method (PETS, PlaNet).
- :class:`MPPI`: model predictive path integral control (Williams et al.).

iLQR takes a differentiable dynamics model and cost instead of a black-box objective
(:func:`ilqr`, control-limited DDP; :class:`ILQRMPCAgent` for the MPC loop), and ``local_models``
holds GPS's time-varying linear-Gaussian dynamics and controllers with their KL trust region.
"""

from mbrl_course.planning.base import Objective, PlanIteration, Planner, truncated_normal_
from mbrl_course.planning.cem import CEM
from mbrl_course.planning.ilqr import (
    ILQRConfig,
    ILQRError,
    ILQRMPCAgent,
    ILQRPlanner,
    ILQRResult,
    cost_from_reward,
    ilqr,
    model_dynamics,
)
from mbrl_course.planning.local_models import (
    DynamicsPrior,
    LinearGaussianController,
    LinearGaussianDynamics,
    QuadraticCost,
    fit_dynamics,
    lqr_controller,
    quadratize_cost,
    trajectory_kl,
    trust_region_update,
)
from mbrl_course.planning.mppi import MPPI
from mbrl_course.planning.random_shooting import RandomShooting

__all__ = [
    "CEM", "MPPI", "Objective", "PlanIteration", "Planner", "RandomShooting", "truncated_normal_",
    "ILQRConfig", "ILQRError", "ILQRMPCAgent", "ILQRPlanner", "ILQRResult", "cost_from_reward", "ilqr",
    "model_dynamics",
    "DynamicsPrior", "LinearGaussianController", "LinearGaussianDynamics", "QuadraticCost", "fit_dynamics",
    "lqr_controller", "quadratize_cost", "trajectory_kl", "trust_region_update",
]
