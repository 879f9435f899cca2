"""MBMF's dynamics model: a deterministic delta network, i' = i + f_ψ(i, u) (Nagabandi et al., 2018).

The network sees the normalised input [i, u] and predicts the normalised state change Δi = i' − i;
training minimises the mean squared error on normalised deltas,

    L(ψ) = mean_n ‖ f̃_ψ(x̃_n) − Δĩ_n ‖²,    x̃ = ([i, u] − m_x) / s_x,   Δĩ = (i' − i − m_Δ) / s_Δ,

and prediction undoes the output normalisation: i' = i + m_Δ + s_Δ · f̃_ψ(x̃).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from mbrl_course._checks import as_tensor, check_choice, check_positive_int, check_shape, resolve_device
from mbrl_course.data import Batch, Normalizer
from mbrl_course.models.base import PointMass, Propagator

__all__ = ["DeltaMLP", "ACTIVATIONS", "activation_fn"]

ACTIVATIONS: tuple[str, ...] = ("relu", "silu", "swish", "tanh", "elu", "leaky_relu", "identity")


def activation_fn(name: str) -> Callable[[torch.Tensor, bool], torch.Tensor]:
    """The activation called ``name`` as ``act(x, inplace)``; ``inplace=True`` may overwrite ``x``."""
    check_choice("activation", name, ACTIVATIONS)
    functional = {
        "relu": torch.nn.functional.relu,
        "silu": torch.nn.functional.silu,
        "swish": torch.nn.functional.silu,
        "tanh": lambda x, inplace: x.tanh_() if inplace else x.tanh(),
        "elu": torch.nn.functional.elu,
        "leaky_relu": lambda x, inplace: torch.nn.functional.leaky_relu(x, inplace=inplace),
        "identity": lambda x, inplace: x,
    }[name]
    if name in ("relu", "silu", "swish", "elu"):
        return lambda x, inplace: functional(x, inplace=inplace)
    return functional


class DeltaMLP(nn.Module):
    """f_ψ of MBMF: i' = i + f_ψ(i, u), a deterministic MLP on normalised inputs and deltas.

    Args:
        obs_dim: O, size of the state i.
        act_dim: A, size of the action u.
        hidden_sizes: widths of the hidden layers.
        activation: one of :data:`ACTIVATIONS`.
        device: where parameters and normalisers live.
        dtype: floating dtype of the parameters.
    """

    predict_reward = False  # f_ψ models the state only: rollouts take the env's reward function

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden_sizes: Sequence[int] = (500, 500),
        activation: str = "relu",
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.obs_dim = check_positive_int("obs_dim", obs_dim)
        self.act_dim = check_positive_int("act_dim", act_dim)
        self.hidden_sizes = tuple(check_positive_int("hidden_sizes", h) for h in hidden_sizes)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        self._act = activation_fn(activation)
        device = resolve_device(device)
        sizes = (obs_dim + act_dim, *self.hidden_sizes, obs_dim)
        self.layers = nn.ModuleList(
            nn.Linear(a, b, device=device, dtype=dtype) for a, b in zip(sizes[:-1], sizes[1:])
        )
        self.input_normalizer = Normalizer(obs_dim + act_dim, device=device, dtype=dtype)
        self.output_normalizer = Normalizer(obs_dim, device=device, dtype=dtype)

    @property
    def device(self) -> torch.device:
        """Where the parameters live (follows ``.to(device)``)."""
        return self.input_normalizer.mean.device

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of the parameters (follows ``.to(dtype)``)."""
        return self.input_normalizer.mean.dtype

    def _check_inputs(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        obs = as_tensor("obs", obs, dtype=self.dtype, device=self.device)
        action = as_tensor("action", action, dtype=self.dtype, device=self.device)
        check_shape("obs", obs, ("B", self.obs_dim))
        check_shape("action", action, (obs.shape[0], self.act_dim))
        return obs, action

    def normalized_delta(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """f̃_ψ(x̃): the predicted normalised delta for ``obs: (..., O)``, ``action: (..., A)``."""
        h = self.input_normalizer.normalize(torch.cat([obs, action], dim=-1))
        inplace = not torch.is_grad_enabled()
        for layer in self.layers[:-1]:
            h = self._act(layer(h), inplace)
        return self.layers[-1](h)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """i' = i + m_Δ + s_Δ f̃_ψ(x̃): next states ``(B, O)`` for ``obs: (B, O)``, ``action: (B, A)``."""
        obs, action = self._check_inputs(obs, action)
        return self.step(obs, action)

    def step(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` without argument checks (imagination's inner loop); shapes ``(..., O)``, ``(..., A)``."""
        return obs + self.output_normalizer.denormalize(self.normalized_delta(obs, action))

    def loss(self, batch: Batch) -> torch.Tensor:
        """L(ψ) = mean_n ‖f̃_ψ(x̃_n) − Δĩ_n‖² / O: the MSE on normalised deltas (a scalar)."""
        target = self.output_normalizer.normalize(batch.next_obs - batch.obs)
        return (self.normalized_delta(batch.obs, batch.action) - target).square().mean()

    @torch.no_grad()
    def eval_mse(self, batch: Batch, chunk_size: int = 8192) -> torch.Tensor:
        """Validation MSE on normalised deltas, shape (1,) (one "member", like an ensemble's (K,)).

        Evaluated in chunks of ``chunk_size`` transitions to bound memory.
        """
        n = len(batch)
        if n == 0:
            raise ValueError("batch: expected at least one transition, got none")
        total = torch.zeros((), device=self.device, dtype=self.dtype)
        for start in range(0, n, chunk_size):
            part = batch.slice(start, start + chunk_size)
            total += self.loss(part) * len(part)
        return (total / n).reshape(1)

    # ------------------------------------------------------------------ the model contract
    def fit(self, data, *, generator: torch.Generator | None = None, progress: bool = False, **options):
        """ψ := argmin_ψ L(ψ) on D_real by Adam on shuffled minibatches, with holdout early stopping.
        ``options``: see :func:`~mbrl_course.models.training.train_model` (epochs, batch_size, lr, ...)."""
        from mbrl_course.models.training import train_model

        return train_model(self, data, members=None, generator=generator, progress=progress, **options)

    def next_state_distribution(self, obs: torch.Tensor, action: torch.Tensor) -> PointMass:
        """δ(i' − (i + f_ψ(i, u))): a deterministic prediction as a point mass, event shape ``(O,)``."""
        with torch.no_grad():
            return PointMass(self.forward(obs, action))

    def propagator(self, *, generator: torch.Generator | None = None, **_ignored) -> Propagator:
        """Every row steps by i' = i + f_ψ(i, u); propagation options are accepted and ignored."""
        return _DeltaPropagator(self)

    @torch.no_grad()
    def fit_normalizers(self, batch: Batch) -> None:
        """Fit m_x, s_x on [i, u] and m_Δ, s_Δ on Δi = i' − i of ``batch`` (plain, no K axis)."""
        self.input_normalizer.fit(torch.cat([batch.obs, batch.action], dim=-1))
        self.output_normalizer.fit(batch.next_obs - batch.obs)

    def extra_repr(self) -> str:
        return f"obs_dim={self.obs_dim}, act_dim={self.act_dim}, activation={self.activation!r}"


class _DeltaPropagator(Propagator):
    """i'_m = i_m + f_ψ(i_m, u_m) for every row; no reward (the env's reward function gives it)."""

    def __init__(self, model: DeltaMLP):
        self.model = model

    def step(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.model.step(obs, action), None
