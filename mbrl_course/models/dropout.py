"""Deep PILCO's dynamics model: a dropout network read as a Bayesian neural network.

Gal, McAllister & Rasmussen (2016), "Improving PILCO with Bayesian neural network dynamics models",
replace PILCO's GP by a network trained with dropout, whose masks are samples of its weights
(Gal & Ghahramani's variational reading of dropout). The slide writes the model as

    i' = f_ψ(i, u) := p(i' | i, u) = 1/K Σ_k N(i' | μ^k_ψ(i, u), Σ^k_ψ(i, u)),   ψ ~ Dropout(ψ).

**The network.** A :class:`~mbrl_course.models.DeltaMLP` with dropout and output noise: on normalised inputs
x̃ = ([i, u] − m_x) / s_x,

    h_0 = x̃,   h_l = a(W_l h_{l−1} + b_l) ⊙ z_l / (1 − p),   z_l ~ Bernoulli(1 − p)   (every hidden layer),
    μ̃^z = W_L h_{L−1} + b_L,   Δĩ ~ N(μ̃^z, diag σ̃²),   i' = i + m_Δ + s_Δ (μ̃^z + σ̃ ε),   ε ~ N(0, I),

so one mask z = (z_1, .., z_{L−1}) is one network ψ_k ~ Dropout(ψ) with mean μ^k = i + m_Δ + s_Δ μ̃^{z_k}
and covariance Σ^k = diag(s_Δ² σ̃²). The output noise σ̃ = exp(``log_noise_std``) is *homoscedastic*: one
learned standard deviation per state dimension, in normalised units, the same for every input and every
mask (the paper's output noise; all the input dependence of the spread comes from the masks).

**Training** (the dropout objective): a fresh mask per example and minibatch (``model.train()``), the
Gaussian negative log-likelihood of the normalised state change Δĩ = (i' − i − m_Δ) / s_Δ,

    L(ψ) = mean_{n, d} ½ [ (Δĩ_nd − μ̃^{z_n}_d)² / σ̃_d² + log σ̃_d² + log 2π ],

plus weight decay on the weight matrices (the L2 term of the KL to the prior in Gal's reading), by
:func:`~mbrl_course.models.train_model` (Adam, holdout early stopping on the dropout-free MSE). Then the
output noise is set to its maximum-likelihood value given the weights kept, σ̃_d² = mean_n (Δĩ_nd − μ̃^{z_n}_d)²
over the training part with fresh masks (:meth:`DropoutDynamics.refit_noise`): early stopping keeps an
early epoch's weights, when the noise had not yet moved far from its start.

**Propagation** (:meth:`DropoutDynamics.propagator`), the paper's particle method. Every row r of a rollout is
a particle:

1. once per rollout, row r draws its own mask z^r, held fixed for the whole horizon: the particle follows
   one function ψ_r ~ Dropout(ψ) (the paper's key fix: with a fresh mask at every step, each step's
   model error would act as independent noise that averages out, and the particles' spread would
   understate the uncertainty about the function over the horizon);
2. each step, i'_r = i_r + m_Δ + s_Δ (μ̃^{z_r}(i_r, u_r) + σ̃ ε_r), with ε_r ~ N(0, I) reparameterised;
3. with ``moment_matching=True`` (the paper does this at every step) the R particles are refit by a Gaussian,
   μ = 1/R Σ_r i'_r,  Σ = 1/(R − 1) Σ_r (i'_r − μ)(i'_r − μ)ᵀ, and resampled, i'_r := a fresh draw of
   N(μ, Σ), reparameterised (:func:`moment_match_resample`): every row is then one particle of ONE state distribution,
   as in a Deep PILCO rollout (do not use it for rows that are different trajectories, e.g. a planner's).

All steps are differentiable (reparameterised): gradients reach the policy and everything upstream.

**The predictive distribution** (:meth:`DropoutDynamics.next_state_distribution`) is the slide's mixture itself,
1/S Σ_k N(μ^k, Σ^k) over S masks drawn with the generator, shared by every row of the batch (so each component
is one network ψ_k), as a ``MixtureSameFamily``; its ``mean`` and ``variance`` are the mixture's moments.

Everything is float64 by default, batched over rows, and runs on any device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from mbrl_course._checks import check_positive_float, check_positive_int, check_shape
from mbrl_course.data import Batch
from mbrl_course.models.base import Propagator
from mbrl_course.models.ensemble import gaussian_nll
from mbrl_course.models.imagination import _standard_normal
from mbrl_course.models.mlp import DeltaMLP
from mbrl_course.models.training import _rand_on, train_model

__all__ = ["DropoutDynamics", "DropoutPropagator", "moment_match_resample"]

Masks = tuple[torch.Tensor, ...]
"""One scaled mask z_l / (1 − p) per hidden layer, each ``(..., H_l)`` with entries 0 or 1 / (1 − p)."""


def moment_match_resample(particles: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Refit a Gaussian to R particles and resample them from it: x'_r ~ N(μ, Σ), reparameterised.

    μ = 1/R Σ_r x_r,  Σ = 1/(R − 1) Σ_r (x_r − μ)(x_r − μ)ᵀ,  and

        x'_r = μ + 1/√(R − 1) Σ_{r'} η_{rr'} (x_{r'} − μ),   η_{rr'} ~ N(0, 1),

    whose rows are independent draws of N(μ, Σ) given the particles, as μ + L ε with L Lᵀ = Σ are, but without
    a Cholesky factor: it stays defined, and its gradient bounded, when the particles span fewer than D
    dimensions (R ≤ D) or Σ is ill-conditioned. Linear in the particles: gradients pass to them.

    Args:
        particles: x_r, ``(..., R, D)`` with R ≥ 2 (leading dimensions are independent clouds).
        noise: η, standard normal ``(..., R, R)``: row r mixes the R centred particles into x'_r.
    Returns:
        ``(..., R, D)``: R draws of N(μ, Σ).
    """
    rows = particles.shape[-2]
    if rows < 2:
        raise ValueError(f"particles: moment matching needs at least 2 particles (rows), got shape "
                         f"{tuple(particles.shape)}")
    check_shape("noise", noise, (*particles.shape[:-1], rows))
    mean = particles.mean(-2, keepdim=True)  # μ: (..., 1, D)
    return mean + noise @ (particles - mean) / math.sqrt(rows - 1)  # μ + Cᵀη_r / √(R − 1) for every row


class DropoutDynamics(DeltaMLP):
    """f_ψ of Deep PILCO: an MLP with dropout on every hidden layer and homoscedastic output noise.

    A :class:`~mbrl_course.models.DeltaMLP` (normalised inputs and state changes, i' = i + m_Δ + s_Δ μ̃) with
    dropout masks on its hidden units and a learned output noise σ̃; see the module docstring for the equations.

    Args:
        obs_dim: O, size of the observation i (angles stay as (cos, sin) pairs).
        act_dim: A, size of the action u.
        hidden_sizes: widths of the hidden layers (the paper: 200, 200).
        dropout: p, the probability that a hidden unit is dropped, in [0, 1).
        activation: one of :data:`~mbrl_course.models.ACTIVATIONS`.
        init_noise_std: σ̃ before training, in normalised units (1: as wide as the data's state changes).
        device: where parameters and normalisers live.
        dtype: floating dtype (float64 by default, as the PILCO family needs).
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        *,
        hidden_sizes: Sequence[int] = (200, 200),
        dropout: float = 0.05,
        activation: str = "relu",
        init_noise_std: float = 1.0,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float64,
    ) -> None:
        if not tuple(hidden_sizes):
            raise ValueError("hidden_sizes: expected at least one hidden layer (dropout acts on hidden units), "
                             "got none")
        super().__init__(obs_dim, act_dim, hidden_sizes, activation, device, dtype)
        self.dropout = check_positive_float("dropout", dropout, allow_zero=True)
        if self.dropout >= 1:
            raise ValueError(f"dropout: expected a probability in [0, 1), got {dropout!r}")
        init_noise_std = check_positive_float("init_noise_std", init_noise_std)
        self.log_noise_std = nn.Parameter(torch.full((self.obs_dim,), math.log(init_noise_std), device=self.device,
                                                     dtype=dtype))
        """log σ̃: the output noise's log standard deviation per state dimension, normalised units: (O,)"""

    # ------------------------------------------------------------------ the network
    def draw_masks(self, shape: Sequence[int], generator: torch.Generator | None = None) -> Masks:
        """Scaled dropout masks z_l / (1 − p), z_l ~ Bernoulli(1 − p), one per hidden layer.

        Args:
            shape: leading shape, e.g. ``(R,)`` for one mask per row, ``(S, 1)`` for S masks shared by a batch.
            generator: torch generator for the Bernoulli draws.
        Returns:
            a tuple of ``(*shape, H_l)`` tensors of the model's dtype and device.
        """
        keep = 1.0 - self.dropout
        return tuple((_rand_on((*shape, h), generator, self.device) < keep).to(self.dtype) / keep
                     for h in self.hidden_sizes)

    def normalized_delta(self, obs: torch.Tensor, action: torch.Tensor, masks: Masks | None = None) -> torch.Tensor:
        """μ̃^z(x̃): the predicted normalised state change for ``obs (..., O)``, ``action (..., A)``.

        ``masks``: scaled masks from :meth:`draw_masks`, broadcastable to ``(..., H_l)``. Without masks, a fresh
        mask per row in training mode (``model.train()``), none in evaluation mode (the dropout-free network,
        whose units carry their expected value since masks are scaled by 1 / (1 − p)).
        """
        h = self.input_normalizer.normalize(torch.cat([obs, action], dim=-1))
        for k, layer in enumerate(self.layers[:-1]):
            h = self._act(layer(h), False)
            if masks is not None:
                h = h * masks[k]
            elif self.training and self.dropout > 0:
                h = nn.functional.dropout(h, self.dropout, training=True)
        return self.layers[-1](h)

    def output_std(self) -> torch.Tensor:
        """The output noise in raw units, s_Δ σ̃: ``(O,)``."""
        return self.output_normalizer.std * self.log_noise_std.exp()

    def step(self, obs: torch.Tensor, action: torch.Tensor, masks: Masks | None = None,
             noise: torch.Tensor | None = None) -> torch.Tensor:
        """i' = i + m_Δ + s_Δ (μ̃^z(x̃) + σ̃ ε), no argument checks (the propagator's inner loop).

        Args:
            obs: ``(..., O)``; action: ``(..., A)``; masks: as in :meth:`normalized_delta`.
            noise: ε, ``(..., O)``, or None for the component's mean (ε = 0).
        Returns:
            next observations ``(..., O)``.
        """
        delta = self.normalized_delta(obs, action, masks)
        if noise is not None:
            delta = delta + self.log_noise_std.exp() * noise
        return obs + self.output_normalizer.denormalize(delta)

    # ------------------------------------------------------------------ training (train_model's protocol)
    def loss(self, batch: Batch) -> torch.Tensor:
        """L(ψ) = mean_{n,d} ½ [(Δĩ_nd − μ̃^{z_n}_d)² / σ̃_d² + log σ̃_d² + log 2π], a fresh mask per example in
        training mode (a scalar). Weight decay, the rest of the dropout objective, is the optimiser's."""
        target = self.output_normalizer.normalize(batch.next_obs - batch.obs)
        mean = self.normalized_delta(batch.obs, batch.action)
        return gaussian_nll(mean, 2.0 * self.log_noise_std, target).mean()

    @torch.no_grad()
    def eval_mse(self, batch: Batch) -> torch.Tensor:
        """Holdout MSE of the dropout-free mean on normalised state changes (call in ``eval()`` mode), shape (1,)."""
        if len(batch) == 0:
            raise ValueError("batch: expected at least one transition, got none")
        return DeltaMLP.loss(self, batch).reshape(1)

    # ------------------------------------------------------------------ the model contract
    def fit(self, data, *, generator: torch.Generator | None = None, progress: bool = False, **options):
        """ψ := argmin_ψ L(ψ) + weight decay on D_real, dropout on, by Adam with holdout early stopping.
        ``options``: see :func:`~mbrl_course.models.training.train_model` (epochs, lr, weight_decay, ...)."""
        report = train_model(self, data, members=None, generator=generator, progress=progress, **options)
        slots = torch.arange(len(data), device=data.device)
        if report.val_indices is not None:  # the training part: every filled slot not held out
            slots = slots[~torch.isin(slots, report.val_indices.to(data.device))]
        self.refit_noise(data.batch(slots, check=False).to(self.device, self.dtype), generator=generator)
        return report

    @torch.no_grad()
    def refit_noise(self, batch: Batch, generator: torch.Generator | None = None,
                    chunk_size: int = 8192) -> torch.Tensor:
        """σ̃_d² := mean_n (Δĩ_nd − μ̃^{z_n}_d(x̃_n))², a fresh mask z_n per transition: the output noise's
        maximum-likelihood value under the dropout objective, given the weights.

        It is what training the noise jointly converges to; :meth:`fit` sets it after training, since holdout
        early stopping keeps the weights of an early epoch, when the noise (a slow parameter) still held its
        initial value. Returns σ̃ ``(O,)`` (normalised units).
        """
        n = len(batch)
        if n == 0:
            raise ValueError("batch: expected at least one transition, got none")
        total = torch.zeros(self.obs_dim, device=self.device, dtype=self.dtype)
        for start in range(0, n, chunk_size):
            part = batch.slice(start, start + chunk_size)
            target = self.output_normalizer.normalize(part.next_obs - part.obs)
            masks = self.draw_masks((len(part),), generator)
            total += (self.normalized_delta(part.obs, part.action, masks) - target).square().sum(0)
        self.log_noise_std.copy_(0.5 * (total / n).clamp_min(1e-12).log())
        return self.log_noise_std.exp()

    @torch.no_grad()
    def next_state_distribution(self, obs: torch.Tensor, action: torch.Tensor, *, masks: int = 32,
                                generator: torch.Generator | None = None) -> torch.distributions.Distribution:
        """p(i' | i, u) = 1/S Σ_k N(i' | μ^k, Σ^k): the slide's mixture over S = ``masks`` dropout masks.

        μ^k = i + m_Δ + s_Δ μ̃^{z_k}(x̃), Σ^k = diag(s_Δ² σ̃²). Mask k is shared by every row of the batch
        (component k is one network ψ_k ~ Dropout(ψ)); the masks are drawn with ``generator``.

        Args:
            obs: ``(B, O)``; action: ``(B, A)``.
        Returns:
            a ``MixtureSameFamily`` with batch shape ``(B,)`` and event shape ``(O,)``.
        """
        masks = check_positive_int("masks", masks)
        obs, action = self._check_inputs(obs, action)
        means = self.step(obs, action, self.draw_masks((masks, 1), generator))  # μ^k: (S, B, O)
        std = self.output_std().expand_as(means)
        D = torch.distributions
        component = D.Independent(D.Normal(means.transpose(0, 1), std.transpose(0, 1)), 1)
        weights = D.Categorical(logits=torch.zeros(obs.shape[0], masks, device=self.device, dtype=self.dtype))
        return D.MixtureSameFamily(weights, component)

    def propagator(self, *, generator: torch.Generator | None = None, moment_matching: bool = True,
                   output_noise: bool = True, **_ignored) -> DropoutPropagator:
        """A :class:`DropoutPropagator` for one rollout: one mask per row held over the horizon, the output noise
        (``output_noise``) and, with ``moment_matching``, the Gaussian refit of the rows after every step.
        Other options (an ensemble's ``propagation``, ...) are accepted and ignored."""
        return DropoutPropagator(self, generator=generator, moment_matching=moment_matching,
                                 output_noise=output_noise)

    def extra_repr(self) -> str:
        return (f"obs_dim={self.obs_dim}, act_dim={self.act_dim}, dropout={self.dropout}, "
                f"activation={self.activation!r}")


class DropoutPropagator(Propagator):
    """Deep PILCO's particles: row r keeps its mask z^r for the whole rollout.

    Each :meth:`step`: i'_r = i_r + m_Δ + s_Δ (μ̃^{z_r}(i_r, u_r) + σ̃ ε_r), then, with moment matching, the
    Gaussian refit and resample of all rows (:func:`moment_match_resample`). The masks are drawn on the first
    step (or in :meth:`layout`) with the generator, one per row; every later step must have as many rows.

    Attributes: ``masks`` (the scaled masks, each ``(R, H_l)``, None before the first step), ``moment_matching``,
    ``output_noise``.
    """

    def __init__(self, model: DropoutDynamics, *, generator: torch.Generator | None = None,
                 moment_matching: bool = True, output_noise: bool = True):
        self.model = model
        self.generator = generator
        self.moment_matching = bool(moment_matching)
        self.output_noise = bool(output_noise)
        self.deterministic = not (self.output_noise or self.moment_matching or model.dropout > 0)
        self.masks: Masks | None = None

    def _draw(self, rows: int) -> None:
        if self.moment_matching and rows < 2:
            raise ValueError(f"rows: moment matching refits a Gaussian to the particles and needs at least 2 "
                             f"rows, got {rows} (repeat the start state, or pass moment_matching=False)")
        self.masks = self.model.draw_masks((rows,), self.generator)

    def layout(self, rows: int) -> None:
        """Draw the rows' masks (one per row) before the first step; the identity layout."""
        self._draw(rows)
        return None

    def step(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, None]:
        """One imagined step of every row: ``obs (R, O)``, ``action (R, A)`` → next_obs ``(R, O)``, no reward."""
        rows = obs.shape[0]
        if self.masks is None:
            self._draw(rows)
        elif self.masks[0].shape[0] != rows:
            raise ValueError(f"obs: this propagator holds masks for {self.masks[0].shape[0]} rows, got {rows} "
                             "(make one propagator per rollout)")
        noise = _standard_normal(tuple(obs.shape), self.generator, obs) if self.output_noise else None
        next_obs = self.model.step(obs, action, self.masks, noise)  # i'_r ~ N(μ^{z_r}(i_r, u_r), Σ)
        if self.moment_matching:  # i'_r := a draw of N(μ, Σ), μ and Σ the particles' moments
            next_obs = moment_match_resample(next_obs, _standard_normal((rows, rows), self.generator, obs))
        return next_obs, None
