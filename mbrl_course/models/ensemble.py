"""The probabilistic ensemble of PETS and MBPO (Chua et al., 2018; Janner et al., 2019).

The slides' model for both algorithms is a uniform mixture of K Gaussians over the state change and
the reward,

    p(i', g_i | i, u) = 1/K Σ_k N([Δi, g_i] | μ_ψ^k(i, u), Σ_ψ^k(i, u)),   Δi = i' − i,

with diagonal Σ_ψ^k = diag(exp(logvar_ψ^k)). Each member k is an MLP; all K run in one batched pass:
an :class:`EnsembleLinear` layer holds weights W (K, in, out) and biases b (K, 1, out) and computes
y_k = b_k + x_k W_k for every member at once with ``torch.baddbmm``.

Normalisation. The network sees x̃ = ([i, u] − m_x) / s_x and predicts the normalised target
ỹ = ([Δi, g] − m_y) / s_y; :meth:`GaussianEnsemble.forward` returns mean and log-variance in this
*normalised* output space, :meth:`GaussianEnsemble.predict` in raw units.

Log-variance bounds (PETS). Outside the data the raw log-variance could run off to ±∞; it is squashed
softly into learned bounds [min_lv, max_lv] (one pair per member and output dimension):

    lv := max_lv − softplus(max_lv − lv),   lv := min_lv + softplus(lv − min_lv),

and the loss adds 0.01 (Σ max_lv − Σ min_lv) so the bounds tighten around what the data need.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
from torch import nn

from mbrl_course._checks import (
    as_tensor,
    check_choice,
    check_positive_int,
    check_shape,
    resolve_device,
)
from mbrl_course.data import Batch, Normalizer
from mbrl_course.models.mlp import ACTIVATIONS, activation_fn

__all__ = ["EnsembleLinear", "FoldedParams", "GaussianEnsemble", "gaussian_nll"]

_LOG_2PI = math.log(2 * math.pi)

Members = Literal["all", "elites"] | torch.Tensor


class EnsembleLinear(nn.Module):
    """K independent affine maps in one call: y_k = x_k W_k + b_k for k = 1..K.

    ``weight: (K, in, out)``, ``bias: (K, 1, out)``; initialised like PETS: W ~ truncated
    N(0, (1 / (2 √in))²), b = 0.
    """

    def __init__(self, ensemble_size: int, in_features: int, out_features: int,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.ensemble_size = check_positive_int("ensemble_size", ensemble_size)
        self.in_features = check_positive_int("in_features", in_features)
        self.out_features = check_positive_int("out_features", out_features)
        device = resolve_device(device)
        std = 1.0 / (2.0 * math.sqrt(in_features))
        weight = torch.empty(ensemble_size, in_features, out_features, device=device, dtype=dtype)
        nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(torch.zeros(ensemble_size, 1, out_features, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """y = b + x W, batched over members: ``x: (K, B, in) -> (K, B, out)``."""
        return torch.baddbmm(self.bias, x, self.weight)

    def extra_repr(self) -> str:
        return f"ensemble_size={self.ensemble_size}, in={self.in_features}, out={self.out_features}"


def gaussian_nll(mean: torch.Tensor, logvar: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """−log N(y | μ, exp(lv)) per entry: ½ [(y − μ)² exp(−lv) + lv + log 2π]; same shape as the inputs."""
    return 0.5 * ((target - mean).square() * torch.exp(-logvar) + logvar + _LOG_2PI)


def _bound_logvar(logvar: torch.Tensor, max_lv: torch.Tensor, min_lv: torch.Tensor) -> torch.Tensor:
    """PETS's soft bounds: lv := max_lv − softplus(max_lv − lv), then lv := min_lv + softplus(lv − min_lv)."""
    logvar = max_lv - nn.functional.softplus(max_lv - logvar)
    return min_lv + nn.functional.softplus(logvar - min_lv)


class FoldedParams(NamedTuple):
    """The ensemble's weights for imagination, normalisations folded in (see :meth:`GaussianEnsemble.fold`)."""

    weights: tuple[torch.Tensor, ...]
    """per layer (K', in, out); the first takes raw [i, u], the head gives raw [Δi, g] means and lṽ"""
    biases: tuple[torch.Tensor, ...]
    """per layer (K', 1, out)"""
    max_logvar: torch.Tensor
    """(K', 1, D)"""
    min_logvar: torch.Tensor
    """(K', 1, D)"""
    log_std_out: torch.Tensor
    """log s_y, (D,): σ_raw = exp(lṽ / 2 + log s_y)"""


class GaussianEnsemble(nn.Module):
    """p(i', g | i, u) = 1/K Σ_k N([Δi, g] | μ_ψ^k, Σ_ψ^k): K Gaussian MLPs evaluated in one batched pass.

    Args:
        obs_dim: O, size of the state i.
        act_dim: A, size of the action u.
        ensemble_size: K, number of members.
        hidden_size: width of every hidden layer.
        num_layers: number of hidden layers (PETS: 4, i.e. 4×200 with the defaults).
        predict_reward: also model the reward g (then D = O + 1, else D = O).
        num_elites: how many members (best validation MSE) imagination uses; ``None`` means all K.
        activation: one of :data:`~mbrl_course.models.mlp.ACTIVATIONS` (PETS/MBPO: silu, "swish").
        device: where parameters, normalisers and elites live.
        dtype: floating dtype of the parameters.
    """

    elite_indices: torch.Tensor

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        ensemble_size: int = 5,
        hidden_size: int = 200,
        num_layers: int = 4,
        predict_reward: bool = True,
        num_elites: int | None = None,
        activation: str = "silu",
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.obs_dim = check_positive_int("obs_dim", obs_dim)
        self.act_dim = check_positive_int("act_dim", act_dim)
        self.ensemble_size = check_positive_int("ensemble_size", ensemble_size)
        self.hidden_size = check_positive_int("hidden_size", hidden_size)
        self.num_layers = check_positive_int("num_layers", num_layers)
        self.predict_reward = bool(predict_reward)
        self.num_elites = ensemble_size if num_elites is None else check_positive_int("num_elites", num_elites)
        if self.num_elites > ensemble_size:
            raise ValueError(f"num_elites: expected at most ensemble_size={ensemble_size}, got {num_elites}")
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        self._act = activation_fn(activation)
        device = resolve_device(device)
        self.out_dim = obs_dim + 1 if self.predict_reward else obs_dim
        K, D, H = ensemble_size, self.out_dim, hidden_size
        sizes = (obs_dim + act_dim,) + (H,) * num_layers
        self.hidden = nn.ModuleList(
            EnsembleLinear(K, a, b, device=device, dtype=dtype) for a, b in zip(sizes[:-1], sizes[1:])
        )
        self.head = EnsembleLinear(K, H, 2 * D, device=device, dtype=dtype)  # [μ̃, lṽ] in one product
        self.max_logvar = nn.Parameter(torch.full((K, 1, D), 0.5, device=device, dtype=dtype))
        self.min_logvar = nn.Parameter(torch.full((K, 1, D), -10.0, device=device, dtype=dtype))
        self.input_normalizer = Normalizer(obs_dim + act_dim, device=device, dtype=dtype)
        self.output_normalizer = Normalizer(D, device=device, dtype=dtype)
        self.register_buffer("elite_indices", torch.arange(self.num_elites, device=device))

    # ------------------------------------------------------------------ properties
    @property
    def device(self) -> torch.device:
        """Where the parameters live (follows ``.to(device)``)."""
        return self.head.weight.device

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of the parameters (follows ``.to(dtype)``)."""
        return self.head.weight.dtype

    def member_indices(self, members: Members = "all") -> torch.Tensor | None:
        """Resolve ``members`` ("all", "elites" or an index tensor) to indices; ``None`` means all K in order."""
        if isinstance(members, str):
            check_choice("members", members, ("all", "elites"))
            if members == "all" or self.elite_indices.shape[0] == self.ensemble_size:
                return None
            return self.elite_indices
        idx = as_tensor("members", members, device=self.device)
        if idx.dtype not in (torch.int64, torch.int32) or idx.dim() != 1 or idx.numel() == 0:
            raise ValueError(f"members: expected 'all', 'elites' or a non-empty 1-D integer tensor, "
                             f"got dtype {idx.dtype}, shape {tuple(idx.shape)}")
        return idx.long()

    def num_members(self, members: torch.Tensor | None) -> int:
        """K' = how many members a resolved ``members`` (see :meth:`member_indices`) selects."""
        return self.ensemble_size if members is None else int(members.shape[0])

    # ------------------------------------------------------------------ the network
    def _normalized_forward(self, x_norm: torch.Tensor, members: torch.Tensor | None
                            ) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ̃, lṽ) for normalised inputs ``x_norm: (K', B, O+A)``; lṽ soft-bounded. Shapes (K', B, D)."""
        inplace = not torch.is_grad_enabled()
        h = x_norm
        for layer in self.hidden:
            weight, bias = (layer.weight, layer.bias) if members is None else (
                layer.weight[members], layer.bias[members])
            h = self._act(torch.baddbmm(bias, h, weight), inplace)
        weight, bias = (self.head.weight, self.head.bias) if members is None else (
            self.head.weight[members], self.head.bias[members])
        out = torch.baddbmm(bias, h, weight)
        max_lv, min_lv = (self.max_logvar, self.min_logvar) if members is None else (
            self.max_logvar[members], self.min_logvar[members])
        D = self.out_dim
        return out[..., :D], _bound_logvar(out[..., D:], max_lv, min_lv)

    def forward(self, x: torch.Tensor, members: Members = "all") -> tuple[torch.Tensor, torch.Tensor]:
        """(μ̃^k, lṽ^k): each member's mean and log-variance of the *normalised* target ỹ.

        Args:
            x: raw inputs [i, u] per member, ``(K', B, O+A)`` with K' = K for ``members="all"``.
            members: which members run on the K' slices ("all", "elites" or an index tensor).
        Returns:
            mean, logvar: ``(K', B, D)`` in normalised output units, ỹ = ([Δi, g] − m_y) / s_y.
        """
        idx = self.member_indices(members)
        x = as_tensor("x", x, dtype=self.dtype, device=self.device)
        check_shape("x", x, (self.num_members(idx), "B", self.obs_dim + self.act_dim))
        return self._normalized_forward(self.input_normalizer.normalize(x), idx)

    def _targets(self, batch: Batch) -> torch.Tensor:
        """ỹ = ([i' − i, g] − m_y) / s_y for a batch (any leading axes)."""
        target = batch.next_obs - batch.obs
        if self.predict_reward:
            target = torch.cat([target, batch.reward.unsqueeze(-1)], dim=-1)
        return self.output_normalizer.normalize(target)

    # ------------------------------------------------------------------ training
    def nll(self, batch_k: Batch) -> torch.Tensor:
        """Per-member mean Gaussian NLL, (K,): mean_{n,d} −log N(ỹ_nd | μ̃^k_nd, exp(lṽ^k_nd)).

        ``batch_k`` has a leading K axis (member k's bootstrap minibatch: obs (K, B, O), ...).
        """
        check_shape("batch_k.obs", batch_k.obs, (self.ensemble_size, "B", self.obs_dim))
        x = torch.cat([batch_k.obs, batch_k.action], dim=-1)
        mean, logvar = self._normalized_forward(self.input_normalizer.normalize(x), None)
        return gaussian_nll(mean, logvar, self._targets(batch_k)).mean(dim=(1, 2))

    def logvar_bound_penalty(self) -> torch.Tensor:
        """0.01 (Σ max_lv − Σ min_lv): keeps the learned log-variance bounds tight."""
        return 0.01 * (self.max_logvar.sum() - self.min_logvar.sum())

    def loss(self, batch_k: Batch) -> torch.Tensor:
        """L(ψ) = Σ_k mean_{n,d} −log N(ỹ | μ̃^k, exp(lṽ^k)) + 0.01 (Σ max_lv − Σ min_lv), a scalar."""
        return self.nll(batch_k).sum() + self.logvar_bound_penalty()

    @torch.no_grad()
    def eval_mse(self, batch: Batch, chunk_size: int = 8192) -> torch.Tensor:
        """Per-member validation MSE of the mean, (K,): mean_{n,d} (μ̃^k_nd − ỹ_nd)² in normalised units.

        ``batch`` is plain (every member sees the same transitions) or has a leading K axis.
        Evaluated in chunks of ``chunk_size`` transitions to bound memory.
        """
        K = self.ensemble_size
        n = len(batch)
        if n == 0:
            raise ValueError("batch: expected at least one transition, got none")
        total = torch.zeros(K, device=self.device, dtype=self.dtype)
        for start in range(0, n, chunk_size):
            part = batch.slice(start, start + chunk_size)
            x = torch.cat([part.obs, part.action], dim=-1)
            if x.dim() == 2:
                x = x.expand(K, *x.shape)
            mean, _ = self._normalized_forward(self.input_normalizer.normalize(x), None)
            total += (mean - self._targets(part)).square().sum(dim=(1, 2))
        return total / (n * self.out_dim)

    def set_elites(self, val_mse: torch.Tensor) -> torch.Tensor:
        """elite_indices := the ``num_elites`` members with the lowest ``val_mse: (K,)``, in ascending index order."""
        val_mse = as_tensor("val_mse", val_mse, device=self.device)
        check_shape("val_mse", val_mse, (self.ensemble_size,))
        best = torch.argsort(val_mse, stable=True)[: self.num_elites]
        self.elite_indices = torch.sort(best).values
        return self.elite_indices

    @torch.no_grad()
    def fit_normalizers(self, batch: Batch) -> None:
        """Fit m_x, s_x on [i, u] and m_y, s_y on [Δi, g] of a plain ``batch`` (no K axis)."""
        check_shape("batch.obs", batch.obs, ("B", self.obs_dim))
        self.input_normalizer.fit(torch.cat([batch.obs, batch.action], dim=-1))
        target = batch.next_obs - batch.obs
        if self.predict_reward:
            target = torch.cat([target, batch.reward.unsqueeze(-1)], dim=-1)
        self.output_normalizer.fit(target)

    # ------------------------------------------------------------------ prediction
    @torch.no_grad()
    def predict(self, obs: torch.Tensor, action: torch.Tensor, *, members: Members = "all"
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each member's Gaussian over [i', g] in raw units.

        mean^k = [i + m_Δ + s_Δ μ̃^k_Δ, m_g + s_g μ̃^k_g],  var^k = s_y² exp(lṽ^k).

        Args:
            obs: i, ``(B, O)``. action: u, ``(B, A)``.
            members: "all", "elites" or an index tensor of K' members.
        Returns:
            mean, var: ``(K', B, D)``; ``[..., :O]`` is the next state, ``[..., O]`` the reward (if predicted).
            No gradients (for plots and checks); differentiate through :meth:`forward` or :meth:`step_members`.
        """
        idx = self.member_indices(members)
        obs = as_tensor("obs", obs, dtype=self.dtype, device=self.device)
        action = as_tensor("action", action, dtype=self.dtype, device=self.device)
        check_shape("obs", obs, ("B", self.obs_dim))
        check_shape("action", action, (obs.shape[0], self.act_dim))
        K = self.num_members(idx)
        x = torch.cat([obs, action], dim=-1).expand(K, -1, -1)
        mean, logvar = self._normalized_forward(self.input_normalizer.normalize(x), idx)
        mean = self.output_normalizer.denormalize(mean)
        var = self.output_normalizer.scale_variance(torch.exp(logvar))
        mean = torch.cat([mean[..., : self.obs_dim] + obs, mean[..., self.obs_dim:]], dim=-1)
        return mean, var

    @torch.no_grad()
    def mixture_moments(self, obs: torch.Tensor, action: torch.Tensor, *, members: Members = "all"
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Moments of the mixture 1/K' Σ_k N(mean^k, var^k) in raw units, each ``(B, D)``.

        mean = 1/K' Σ_k mean^k; aleatoric = 1/K' Σ_k var^k; epistemic = 1/K' Σ_k (mean^k − mean)²;
        the mixture's variance is aleatoric + epistemic.
        """
        means, variances = self.predict(obs, action, members=members)
        mean = means.mean(0)
        return mean, variances.mean(0), (means - mean).square().mean(0)

    # ------------------------------------------------------------------ the model contract
    def fit(self, data, *, generator: torch.Generator | None = None, progress: bool = False, **options):
        """ψ := argmin_ψ Σ_k L_k(ψ_k, D_real): member k trains on its own bootstrap resample of D_real by
        Gaussian NLL, with holdout early stopping member by member; then the elites are the
        ``num_elites`` members with the lowest holdout MSE. ``options``: see
        :func:`~mbrl_course.models.training.train_model` (epochs, batch_size, lr, ...)."""
        from mbrl_course.models.training import train_model

        report = train_model(self, data, members=self.ensemble_size, generator=generator, progress=progress,
                             **options)
        report.elites = self.set_elites(torch.as_tensor(report.member_scores, device=self.device)).tolist()
        return report

    def next_state_distribution(self, obs: torch.Tensor, action: torch.Tensor, *, members: Members = "elites"
                                ) -> torch.distributions.Distribution:
        """p(i', g | i, u) = 1/K' Σ_k N(mean^k, diag var^k) over [i', g] (raw units), event shape ``(D,)``:
        a ``MixtureSameFamily`` of the members' Gaussians (:meth:`predict`), uniform weights."""
        mean, var = self.predict(obs, action, members=members)  # (K', B, D)
        D = torch.distributions
        component = D.Independent(D.Normal(mean.transpose(0, 1), var.sqrt().transpose(0, 1)), 1)
        weights = D.Categorical(logits=torch.zeros(mean.shape[1], mean.shape[0], device=mean.device,
                                                   dtype=mean.dtype))
        return D.MixtureSameFamily(weights, component)

    def propagator(self, *, generator: torch.Generator | None = None, propagation: str = "ts_inf",
                   members: Members = "elites", sample_reward: bool = False,
                   member_of_particle: torch.Tensor | None = None, **_ignored):
        """An :class:`~mbrl_course.models.imagination.EnsemblePropagator` for one rollout: TS1, TS∞ or the
        expectation over the ``members`` (see :mod:`mbrl_course.models.imagination`)."""
        from mbrl_course.models.imagination import EnsemblePropagator

        return EnsemblePropagator(self, propagation=propagation, members=members, generator=generator,
                                  sample_reward=sample_reward, member_of_particle=member_of_particle)

    def fold(self, members: torch.Tensor | None = None) -> FoldedParams:
        """The members' weights with both normalisations folded into the first and last layers.

        First layer: x̃ W + b = x (W / s_x) + (b − (m_x / s_x) W), so it takes raw x = [i, u].
        Head, mean part: m_y + s_y (h W + b) = h (W s_y) + (b s_y + m_y), so it gives raw [Δi, g].
        One imagined step then needs no normalising at all; fold once per rollout (the planners call
        :func:`~mbrl_course.models.imagination.imagine_returns`, which does).
        """
        def pick(t: torch.Tensor) -> torch.Tensor:
            return t if members is None else t[members]

        weights = [pick(layer.weight) for layer in (*self.hidden, self.head)]
        biases = [pick(layer.bias) for layer in (*self.hidden, self.head)]
        m_x, s_x = self.input_normalizer.mean, self.input_normalizer.std
        m_y, s_y = self.output_normalizer.mean, self.output_normalizer.std
        biases[0] = biases[0] - torch.matmul(m_x / s_x, weights[0]).unsqueeze(1)
        weights[0] = weights[0] / s_x.unsqueeze(-1)
        scale = torch.cat([s_y, torch.ones_like(s_y)])  # the lṽ columns stay in normalised units
        shift = torch.cat([m_y, torch.zeros_like(m_y)])
        weights[-1] = weights[-1] * scale
        biases[-1] = biases[-1] * scale + shift
        return FoldedParams(tuple(weights), tuple(biases), pick(self.max_logvar), pick(self.min_logvar),
                            torch.log(s_y))

    def step_members(self, obs: torch.Tensor, action: torch.Tensor, *, members: torch.Tensor | None = None,
                     noise: torch.Tensor | None = None, folded: FoldedParams | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One imagined step with member k' advancing its own particles (no argument checks: inner loop).

        [i', g] = [i, 0] + m_y + s_y (μ̃^k + exp(lṽ^k / 2) ε), ε = ``noise`` (or ε = 0 when ``noise`` is None).
        A ``noise`` of width O samples the next state and keeps the reward at its mean; width D samples both.
        Computed with :meth:`fold`-ed weights (raw units in and out); pass ``folded`` to reuse them.

        Args:
            obs: ``(K', n, O)`` raw states, slice k' for member ``members[k']`` (all K when None).
            action: ``(K', n, A)``.
            members: resolved member indices (see :meth:`member_indices`) or None for all K.
            noise: standard normal ``(K', n, O)`` or ``(K', n, D)`` for a sample; None for the mean.
            folded: ``self.fold(members)``, computed here when None.
        Returns:
            next_obs ``(K', n, O)`` and reward ``(K', n)`` (None when the model does not predict reward).
        """
        if folded is None:
            folded = self.fold(members)
        inplace = not torch.is_grad_enabled()
        h = torch.cat([obs, action], dim=-1)
        for weight, bias in zip(folded.weights[:-1], folded.biases[:-1]):
            h = self._act(torch.baddbmm(bias, h, weight), inplace)
        out = torch.baddbmm(folded.biases[-1], h, folded.weights[-1])  # [raw mean of (Δi, g), lṽ]
        O, D = self.obs_dim, self.out_dim
        next_obs = obs + out[..., :O]
        reward = out[..., O] if self.predict_reward else None
        if noise is not None:  # σ ε in raw units, σ = exp(lṽ / 2 + log s_y)
            d = noise.shape[-1]
            logvar = _bound_logvar(out[..., D:D + d], folded.max_logvar[..., :d], folded.min_logvar[..., :d])
            sample = torch.exp(torch.add(folded.log_std_out[:d], logvar, alpha=0.5)) * noise
            next_obs = next_obs + sample[..., :O]
            if d > O and reward is not None:
                reward = reward + sample[..., O]
        return next_obs, reward

    def extra_repr(self) -> str:
        return (f"obs_dim={self.obs_dim}, act_dim={self.act_dim}, predict_reward={self.predict_reward}, "
                f"num_elites={self.num_elites}, activation={self.activation!r}")
