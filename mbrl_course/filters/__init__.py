"""Exact inference in state-space models: the second half of the lecture as code.

The slide's state-space model p(S_{1:T}, Y_{1:T}) = p(s_0) Π_t p(y_t | s_t) p(s_t | s_{t-1}) and its
Bayesian filtering recursion (marginalise -> predictive of y_t -> condition):

- models: :class:`LinearGaussianSSM` (θ = {m_0, S_0, E_t, F_t, C, D, B}, the one container every
  linear-Gaussian function takes), :class:`NonlinearGaussianSSM`, :class:`HiddenMarkovModel`,
  :class:`GridSSM`, each with ``sample``;
- the Bayesian filter on finite / discretised state spaces: :func:`bayesian_filter`;
- the Kalman filter and RTS smoother: :func:`kalman_filter` (the loop :func:`predict_step` ->
  :func:`update_step`; ``method="auto"`` runs the parallel scan where that is faster), :func:`rts_smoother`,
  and the parallel-in-time versions :func:`parallel_kalman_filter`, :func:`parallel_rts_smoother`;
- k-step prediction p(y_{T+k} | Y_{1:T}): :func:`predict`;
- the "Bayesian Kalman filter" with dE_t = f_θe(E_t) dt, dF_t = g_θf(F_t) dt:
  :class:`ODEParameterDynamics`, :func:`bayesian_kalman_filter`, :class:`BayesianKalmanFilter`;
- fitting θ by maximising p(Y_{1:T} | θ): :func:`fit` with :class:`LinearGaussianModel`;
- nonlinear models: :func:`extended_kalman_filter`, :func:`particle_filter`.

Notation (the slide's): p(s_0) = N(m_0, S_0); p(s_t | s_{t-1}) = N(E_t s_{t-1} (+ B u_t), F_t);
p(y_t | s_t) = N(C s_t, D); p(s_t | Y_{1:t-1}) = N(μ_t, Σ_t); p(y_t | Y_{1:t-1}) = N(ŷ_t, V_t) (the slides' u_t);
p(s_t | Y_{1:t}) = N(m_t, S_t).
"""

from mbrl_course.filters.bayes import BayesianFilterResult, bayesian_filter
from mbrl_course.filters.fitting import FitConfig, FitResult, LinearGaussianModel, fit
from mbrl_course.filters.kalman import (
    KalmanFilterResult,
    PredictionResult,
    SmootherResult,
    choose_method,
    kalman_filter,
    predict,
    predict_step,
    rts_smoother,
    update_step,
)
from mbrl_course.filters.models import GridSSM, HiddenMarkovModel, NonlinearGaussianSSM
from mbrl_course.filters.nonlinear import ParticleFilterResult, extended_kalman_filter, particle_filter
from mbrl_course.filters.ode import (
    BayesianKalmanFilter,
    LinearMatrixField,
    LyapunovField,
    MLPMatrixField,
    ODEParameterDynamics,
    bayesian_kalman_filter,
)
from mbrl_course.filters.parallel import (
    associative_scan,
    filtering_combine,
    parallel_kalman_filter,
    parallel_rts_smoother,
    smoothing_combine,
)
from mbrl_course.filters.params import LinearGaussianSSM, positive_definite, positive_definite_inverse

__all__ = [
    "BayesianFilterResult",
    "BayesianKalmanFilter",
    "FitConfig",
    "FitResult",
    "GridSSM",
    "HiddenMarkovModel",
    "KalmanFilterResult",
    "LinearGaussianModel",
    "LinearGaussianSSM",
    "LinearMatrixField",
    "LyapunovField",
    "MLPMatrixField",
    "NonlinearGaussianSSM",
    "ODEParameterDynamics",
    "ParticleFilterResult",
    "PredictionResult",
    "SmootherResult",
    "associative_scan",
    "bayesian_filter",
    "bayesian_kalman_filter",
    "choose_method",
    "extended_kalman_filter",
    "filtering_combine",
    "fit",
    "kalman_filter",
    "parallel_kalman_filter",
    "parallel_rts_smoother",
    "particle_filter",
    "positive_definite",
    "positive_definite_inverse",
    "predict",
    "predict_step",
    "rts_smoother",
    "smoothing_combine",
    "update_step",
]
