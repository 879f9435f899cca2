"""Variational state-space models: the slides' "Variational State-Space Model Inference" as code.

When the filtering recursion of :mod:`mbrl_course.filters` is no longer tractable, approximate the posterior
over the latent states s_{0:T} given the observations Y_{1:T} by q(s_{0:T} | Y_{1:T}, ψ) and fit ψ (and the
model's θ) by maximising the ELBO. Slide -> code:

- the model p(s_0), p(s_t | s_{t-1}, θ), p(y_t | s_t): :class:`GenerativeModel` (:class:`InitialState`,
  :class:`GaussianTransition` with a linear or MLP mean and optional actions u_t, :class:`GaussianEmission`,
  :class:`BernoulliEmission` for binary images; :func:`make_generative_model`;
  :meth:`GenerativeModel.from_linear_gaussian` plugs in a :class:`~mbrl_course.filters.LinearGaussianSSM`)
- q(s_{0:T} | Y_{1:T}, ψ) = Π_t q(s_t | s_{0:t-1}, Y_{1:T}, ψ), reparameterised ancestral sampling
  ε̃_t ~ p(ε), s̃_t = g_ψ(s̃_{0:t-1}, Y_{1:T}, ε̃_t): :meth:`Posterior.sample` -> :class:`PosteriorSample`
- "temporal auto-regressive" q(s_t | s_{0:t-1}, Y_{1:T}, ψ): :class:`AutoregressivePosterior`
- "Alternative 1: Mean-field" q(s_t | Y_{1:T}, ψ): :class:`MeanFieldPosterior`
- "Alternative 2: Markovian" q(s_t | s_{t-1}, Y_{1:T}, ψ) (DKS/DMM combiner): :class:`MarkovianPosterior`
- the true posterior p(s_t | s_{t-1}, Y_{1:T}) of a linear-Gaussian model, from the RTS smoother:
  :class:`ExactLinearGaussianPosterior` (with it, the ELBO equals log p(Y_{1:T}): the oracle)
- L(λ) = Σ_t E_q[log p(y_t | s_t) - log q(s_t | s_{0:t-1}, ψ, Y_{1:T}) / p(s_t | s_{t-1}, θ)], λ = {ψ, θ}:
  :func:`estimate_elbo` (``kl="analytic"`` or ``"mc"``; per-step terms in :class:`ELBOResult`)
- p(y_{T+k} | Y_{1:T}) by sampling q up to T and p(s_t | s_{t-1}, θ_*) after: :func:`k_step_prediction`
- maximising L(λ) with Adam: :func:`train_vssm` with :class:`TrainConfig`
- "Recurrent SSMs i) Global random function modulation", f ~ GP: :class:`PRSSM` (Doerr et al., 2018; sparse GP
  transition, whole latent trajectories sampled through it); the slide's alternative, a deterministic f_θ with
  random parameters θ ~ q(θ), one θ per trajectory: :class:`RandomParameterSSM`; both trained by
  :func:`train_trajectory_model`, simulated free-running by :meth:`TrajectoryModel.simulate`, scored by
  :func:`free_run_scores`
- a system-identification task simulated here (no downloads), cascaded tanks with an overflow:
  :func:`make_two_tank_data`, and its linear-Gaussian baseline fitted by maximum likelihood,
  :func:`fit_linear_baseline`, :func:`linear_free_run`; a pendulum seen through a nonlinear sensor,
  (sin φ, −cos φ) + noise, for learning θ: :func:`make_pendulum_data`

Recurrent SSMs and memory (the slides' "Modeling long-term dependencies"):

- "ii) Deterministic transition with random state input", h_t = f_θ(h_{t-1}, s_{t-1}, a_{t-1}),
  s_t ~ p(s_t | h_t), y_t ~ p(y_t | s_t, h_t): :class:`RSSM` (PlaNet's world model, with a reward head, free nats
  and latent overshooting; ``observe``, ``observe_step``, ``imagine`` for PlaNet and Dreamer), :class:`VRNN`
  (Chung et al., 2015) and the ablations :class:`StochasticSSM` (no h) and ``RSSM(stochastic=False)`` (a
  deterministic RNN), one :class:`RecurrentSSM` with switches (:func:`make_world_model`), trained by
  :func:`train_world_model`, compared by :func:`open_loop_prediction`; 64×64×3 frames through
  :class:`ConvEncoder` / :class:`ConvDecoder`; pixel sequences from the pixel envs:
  :func:`mbrl_course.ssm.pixel_data.collect_pixel_sequences` (imported from its module, so that
  ``import mbrl_course.ssm`` needs no env)

- "iii) Memory modulation", the attentive SSM (Alaa & van der Schaar, 2019): discrete s_t whose transition
  p(s_t | s_{1:t-1}, Y_{1:t-1}) = α_{1:t-1}ᵀ P_λ(s_t, s_{1:t-1}) attends over earlier states, the posterior sharing
  a backward RNN: :class:`AttentiveSSM`, :func:`train_attentive_ssm`; its oracle, a semi-Markov chain whose exact
  likelihood comes from the forward algorithm on (stage, time spent): :class:`SemiMarkovChain`; its baseline, a
  first-order :class:`GaussianHMM` fitted by EM (forward-backward: :func:`forward_algorithm`,
  :func:`backward_algorithm`)
- "iii) Memory modulation", the Generative Temporal Model with Spatial Memory (Fraccaro et al., 2018):
  :class:`GTMSM` (p(s_t | s_{t-1}, a_t), q(z_t | x_t), p(z_t | s_t, M) over the K nearest context items
  :func:`knn_memory`, the two-phase ELBO), trained by :func:`train_gtmsm`; its generated 2-D world, an agent
  seeing 32×32 crops of a procedurally generated image: :func:`make_world`, :func:`explore`,
  :func:`revisit_trajectories`

Shapes: observations ``(B, T, dy)``, a ``mask (B, T)`` bool for padded or missing steps, controls
``(B, T, du)``; samples ``(N, B, T+1, dx)`` for s_{0:T}. Everything runs on any device and in float64
(``.double()`` the modules).
"""

from mbrl_course.ssm.attentive import (
    AttentivePosterior,
    AttentiveSSM,
    AttentiveTrainConfig,
    AttentiveTrainResult,
    train_attentive_ssm,
)
from mbrl_course.ssm.conv import ConvDecoder, ConvEncoder, postprocess_frames, preprocess_frames
from mbrl_course.ssm.datasets import PendulumData, make_pendulum_data
from mbrl_course.ssm.elbo import ELBOResult, elbo_terms, estimate_elbo
from mbrl_course.ssm.generative import (
    BernoulliEmission,
    GaussianEmission,
    GaussianTransition,
    GenerativeModel,
    InitialState,
    Sequences,
    check_sequences,
    make_generative_model,
)
from mbrl_course.ssm.gtmsm import (
    GTMSM,
    GTMSMELBO,
    GTMSMConfig,
    GTMSMTrainConfig,
    Neighbours,
    knn_memory,
    train_gtmsm,
)
from mbrl_course.ssm.hmm import (
    EMResult,
    GaussianHMM,
    HMMPosterior,
    SemiMarkovChain,
    backward_algorithm,
    forward_algorithm,
)
from mbrl_course.ssm.posteriors import (
    AutoregressivePosterior,
    ExactLinearGaussianPosterior,
    MarkovianPosterior,
    MeanFieldPosterior,
    Posterior,
    PosteriorSample,
    SequenceEncoder,
    make_posterior,
)
from mbrl_course.ssm.predict import PredictionSamples, k_step_prediction
from mbrl_course.ssm.prssm import (
    PRSSM,
    SimulationResult,
    TrajectoryModel,
    TrajectoryTrainConfig,
    TrajectoryTrainResult,
    free_run_scores,
    train_trajectory_model,
)
from mbrl_course.ssm.random_params import RandomParameterSSM
from mbrl_course.ssm.rssm import (
    RSSM,
    VRNN,
    Imagination,
    LatentState,
    RecurrentSSM,
    StochasticSSM,
    WorldModelConfig,
    WorldModelLoss,
    WorldModelTrainConfig,
    WorldModelTrainResult,
    make_world_model,
    open_loop_prediction,
    train_world_model,
)
from mbrl_course.ssm.systems import TwoTankData, fit_linear_baseline, linear_free_run, make_two_tank_data
from mbrl_course.ssm.training import TrainConfig, TrainResult, train_vssm
from mbrl_course.ssm.worlds import Trajectories, World, crop, explore, make_world, revisit_trajectories

__all__ = [
    "AttentivePosterior",
    "AttentiveSSM",
    "AttentiveTrainConfig",
    "AttentiveTrainResult",
    "AutoregressivePosterior",
    "BernoulliEmission",
    "ConvDecoder",
    "ConvEncoder",
    "ELBOResult",
    "EMResult",
    "ExactLinearGaussianPosterior",
    "GTMSM",
    "GTMSMConfig",
    "GTMSMELBO",
    "GTMSMTrainConfig",
    "GaussianEmission",
    "GaussianHMM",
    "GaussianTransition",
    "GenerativeModel",
    "HMMPosterior",
    "Imagination",
    "InitialState",
    "LatentState",
    "MarkovianPosterior",
    "MeanFieldPosterior",
    "Neighbours",
    "PRSSM",
    "PendulumData",
    "Posterior",
    "PosteriorSample",
    "PredictionSamples",
    "RSSM",
    "RandomParameterSSM",
    "RecurrentSSM",
    "SemiMarkovChain",
    "SequenceEncoder",
    "Sequences",
    "SimulationResult",
    "StochasticSSM",
    "TrainConfig",
    "TrainResult",
    "Trajectories",
    "TrajectoryModel",
    "TrajectoryTrainConfig",
    "TrajectoryTrainResult",
    "TwoTankData",
    "VRNN",
    "World",
    "WorldModelConfig",
    "WorldModelLoss",
    "WorldModelTrainConfig",
    "WorldModelTrainResult",
    "backward_algorithm",
    "check_sequences",
    "crop",
    "elbo_terms",
    "estimate_elbo",
    "explore",
    "fit_linear_baseline",
    "forward_algorithm",
    "free_run_scores",
    "k_step_prediction",
    "knn_memory",
    "linear_free_run",
    "make_generative_model",
    "make_pendulum_data",
    "make_posterior",
    "make_two_tank_data",
    "make_world",
    "make_world_model",
    "open_loop_prediction",
    "postprocess_frames",
    "preprocess_frames",
    "revisit_trajectories",
    "train_attentive_ssm",
    "train_gtmsm",
    "train_trajectory_model",
    "train_vssm",
    "train_world_model",
]
