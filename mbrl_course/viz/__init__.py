"""Figures and animations the lectures and the command line draw.

- :mod:`~mbrl_course.viz.curves`     learning curves from ``returns.csv``
- :mod:`~mbrl_course.viz.animation`  rollouts as GIFs and notebook animations
- :mod:`~mbrl_course.viz.planning`   CEM iterations (static grid and widget explorer), planner sweeps
- :mod:`~mbrl_course.viz.rollouts`   the loops' code side by side, k-step model predictions
- :mod:`~mbrl_course.viz.filtering`  filtering posteriors, Kalman bands, noise sliders, likelihood surfaces
- :mod:`~mbrl_course.viz.pilco`      GP regression, moment matching against Monte Carlo, PILCO's predictions per trial
- :mod:`~mbrl_course.viz.ssm`        variational SSM posteriors against the exact smoother, ELBO gaps, prediction
                                     fans with T/k sliders, free-run simulations (PR-SSM)
- :mod:`~mbrl_course.viz.recurrent_ssm` recurrent SSM families as graphs, open-loop video predictions with a horizon
                                     slider, attention weights over a semi-Markov sequence, GTM-SM's map from memory
- :mod:`~mbrl_course.viz.ilqr`       iLQR iterations, the box QP, plans with clamped controls, local linear-Gaussian
                                     models against the truth, the KL trust region, GPS's guiding samples and weights
- :mod:`~mbrl_course.viz.planet_dreamer` real frames vs reconstructions vs open-loop imagination, PlaNet's latent CEM,
                                     Dreamer's imagined trajectories with their values, λ-returns with λ/horizon sliders

Nothing in the core package imports this module; it may import anything.
"""

from mbrl_course.viz._widgets import widgets_available
from mbrl_course.viz.animation import animate_frames, save_gif
from mbrl_course.viz.curves import plot_learning_curve, plot_learning_curves, read_returns_csv
from mbrl_course.viz.filtering import (
    noise_explorer,
    plot_bayesian_kalman_filter,
    plot_filter_steps,
    plot_grid_filter,
    plot_k_step_prediction,
    plot_kalman_filter,
    plot_likelihood_surface,
    plot_noise_settings,
)
from mbrl_course.viz.pilco import (
    PILCOTrial,
    plot_cost_per_trial,
    plot_gp_regression,
    plot_moment_matching_1d,
    plot_moment_matching_2d,
    plot_particles_vs_moments,
    plot_pilco_trials,
    policy_particles,
    record_trial,
    sample_at_gaussian_input,
)
from mbrl_course.viz.planning import (
    PlannerSweep,
    cem_explorer,
    plot_cem_iterations,
    plot_plan_iteration,
    plot_planner_sweeps,
    sweep_planners,
    true_dynamics_objective,
)
from mbrl_course.viz.rollouts import (
    animation_html,
    code_side_by_side,
    k_step_errors,
    plot_model_predictions,
    rollout_particles,
)
from mbrl_course.viz.ssm import (
    PredictionFans,
    compute_prediction_fans,
    mean_field_gap_floor,
    plot_elbo_gaps,
    plot_free_run,
    plot_posterior_families,
    plot_prediction_fans,
    prediction_explorer,
)

__all__ = [
    "animate_frames", "save_gif", "plot_learning_curve", "plot_learning_curves", "read_returns_csv",
    "PlannerSweep", "cem_explorer", "plot_cem_iterations", "plot_plan_iteration", "plot_planner_sweeps",
    "sweep_planners", "true_dynamics_objective", "widgets_available",
    "animation_html", "code_side_by_side", "k_step_errors", "plot_model_predictions", "rollout_particles",
    "noise_explorer", "plot_bayesian_kalman_filter", "plot_filter_steps", "plot_grid_filter",
    "plot_k_step_prediction", "plot_kalman_filter", "plot_likelihood_surface", "plot_noise_settings",
    "PILCOTrial", "plot_cost_per_trial", "plot_gp_regression", "plot_moment_matching_1d", "plot_moment_matching_2d",
    "plot_particles_vs_moments", "plot_pilco_trials", "policy_particles", "record_trial", "sample_at_gaussian_input",
    "PredictionFans", "compute_prediction_fans", "mean_field_gap_floor", "plot_elbo_gaps", "plot_free_run",
    "plot_posterior_families", "plot_prediction_fans", "prediction_explorer",
]
