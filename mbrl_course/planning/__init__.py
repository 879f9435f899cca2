"""``planning-algo(f_ψ, i)``: sampling-based planners for the MPC loop.

Every planner maximises an objective over action sequences::

    planner = CEM(horizon=H, action_low=low, action_high=high, population=500, elites=50,
                  iterations=5, device="cpu", seed=0)
    actions = planner.plan(objective)   # objective: (N, H, A) -> returns (N,); actions: (H, A)
    planner.reset()                     # at the start of each episode (forgets the warm start)

- :class:`RandomShooting`: the slide's Planning Algo 1 (MBMF).
- :class:`CEM`: the cross-entropy method (PETS, PlaNet).
- :class:`MPPI`: model predictive path integral control (Williams et al.).
"""

from mbrl_course.planning.base import Objective, PlanIteration, Planner, truncated_normal_
from mbrl_course.planning.cem import CEM
from mbrl_course.planning.mppi import MPPI
from mbrl_course.planning.random_shooting import RandomShooting

__all__ = ["CEM", "MPPI", "Objective", "PlanIteration", "Planner", "RandomShooting", "truncated_normal_"]
