"""policy-iteration-algo: the model-free learners the Dyna loop (and MBMF's fine-tuning) plug in.

Every learner has the same face, so the loops need not know which one they hold:

- ``act(obs, deterministic=False)``: u ~ μ_θ(· | i) for one real state (numpy in, numpy out);
- ``policy_sample(obs)``: a batch of actions for imagined states (tensors), with their log-probabilities;
- ``update(batch)``: one round of policy iteration on a batch — a :class:`~mbrl_course.data.Batch` of
  transitions for the off-policy :class:`SAC`, :class:`Trajectories` for the on-policy
  :class:`REINFORCE` and :class:`PPO` — real data or imagined data alike;
- ``state_dict()`` / ``load_state_dict()`` for checkpoints, and a ``nonfinite`` flag that turns True
  when a loss became NaN/inf.

Dreamer's :class:`ImaginationActorCritic` has the same ``act``/``state_dict``/``nonfinite`` face, but its
``update(model, start_state)`` learns from trajectories the world model imagines from posterior states
(``rl/actor_critic.py``: λ-returns, the actor's loss by backpropagation through the imagination, the value's
regression onto λ-returns).

PILCO's policies are not learners of this kind but deterministic controllers with exact moments at a
Gaussian input: :class:`LinearController` and :class:`RBFController` (``rl/controllers.py``).
"""

from mbrl_course.rl.actor_critic import (
    ActorCriticConfig,
    ImaginationActorCritic,
    ImaginedLosses,
    actor_loss,
    discount_weights,
    lambda_returns,
    lambda_returns_vectorised,
    value_loss,
)
from mbrl_course.rl.controllers import LinearController, RBFController, SquashedController
from mbrl_course.rl.networks import (
    ActionBox,
    EnsembleQ,
    GaussianPolicy,
    PolicySample,
    TanhGaussianPolicy,
    mlp,
)
from mbrl_course.rl.onpolicy import Trajectories, generalized_advantages
from mbrl_course.rl.ppo import PPO, PPOConfig
from mbrl_course.rl.reinforce import REINFORCE, REINFORCEConfig
from mbrl_course.rl.sac import SAC, SACConfig

__all__ = [
    "ActionBox", "EnsembleQ", "GaussianPolicy", "PolicySample", "TanhGaussianPolicy", "mlp",
    "Trajectories", "generalized_advantages",
    "SAC", "SACConfig", "REINFORCE", "REINFORCEConfig", "PPO", "PPOConfig",
    "LinearController", "RBFController", "SquashedController",
    "ActorCriticConfig", "ImaginationActorCritic", "ImaginedLosses",
    "actor_loss", "discount_weights", "lambda_returns", "lambda_returns_vectorised", "value_loss",
]
