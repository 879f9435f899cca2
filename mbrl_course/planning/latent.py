"""PlaNet's planning objective: the return of an action sequence imagined in a world model's latent space.

PlaNet plans with the project's CEM unchanged; only the objective differs from PETS's. From the filtered
latent state (h_t, s_t) of the current frame, each candidate u_{t:t+H−1} is rolled out open loop in the
model's prior and scored by the sum of the predicted rewards,

    G(u_{t:t+H−1}) = Σ_{k=1}^{H} E[r(h_{t+k}, s_{t+k})],   s_{t+k} ~ p(s_{t+k} | h_{t+k}),
    h_{t+k} = f_θ(h_{t+k−1}, s_{t+k−1}, u_{t+k−1}),

with one sampled latent trajectory per candidate (PlaNet's choice; ``sample=False`` follows the means).
The model is anything with ``imagine(initial_state, actions=..., generator=..., sample=...)`` returning
predicted ``rewards`` (:class:`~mbrl_course.ssm.rssm.RecurrentSSM`); the state is a ``LatentState`` with
``repeat(n)``. No import of :mod:`mbrl_course.ssm` is needed here, so planning stays below it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["latent_return_objective"]


def latent_return_objective(model, state, *, generator: torch.Generator | None = None,
                            sample: bool = True) -> Callable[[torch.Tensor], torch.Tensor]:
    """The objective ``(N, H, A) -> (N,)`` that a sampling planner maximises: G of each action sequence.

    ``model``: a world model with a reward head; ``state``: the filtered latent state of ONE time step (leading
    shape () or (1,)); ``generator`` seeds the imagined samples; ``sample``: sample s_{t+k} (True, PlaNet) or
    follow the prior means. The returned function runs without gradients.
    """
    if getattr(model, "reward_net", None) is None:
        raise ValueError("model: expected a world model with a reward head (WorldModelConfig(reward_head=True)), "
                         "got one without: nothing to plan for")

    @torch.no_grad()
    def objective(action_sequences: torch.Tensor) -> torch.Tensor:
        if action_sequences.ndim != 3:
            raise ValueError(f"action_sequences: expected shape (N, H, A), got {tuple(action_sequences.shape)}")
        start = state.repeat(action_sequences.shape[0])
        imagined = model.imagine(start, actions=action_sequences, generator=generator, sample=sample)
        return imagined.rewards.sum(-1)                                 # Σ_{k=1}^{H} r̂_{t+k}: (N,)

    return objective
