"""Approximate posteriors q(s_{0:T} | Y_{1:T}, ψ) = q(s_0 | Y_{1:T}, ψ) Π_t q(s_t | s_{0:t-1}, Y_{1:T}, ψ).

Three amortised families of the slides, and the exact posterior of a linear-Gaussian model:

- :class:`MeanFieldPosterior`       q(s_t | Y_{1:T}, ψ)                   (slide: "Alternative 1: Mean-field")
- :class:`MarkovianPosterior`       q(s_t | s_{t-1}, Y_{1:T}, ψ)           (slide: "Alternative 2: Markovian", DKS/DMM)
- :class:`AutoregressivePosterior`  q(s_t | s_{0:t-1}, Y_{1:T}, ψ)         (slide: temporal auto-regressive, g_ψ)
- :class:`ExactLinearGaussianPosterior`  q(s_t | s_{t-1}, Y_{1:T}) = p(s_t | s_{t-1}, Y_{1:T}) from the RTS smoother

Every q(s_t | ·) is Gaussian, N(μ_t, L_t L_tᵀ), and every family samples the same way, by reparameterised
ancestral sampling (the slide's ε̃_t ~ p(ε), s̃_t = g_ψ(s̃_{0:t-1}, Y_{1:T}, ε̃_t)):

    s_0 = μ_0(Y) + L_0(Y) ε_0,    s_t = μ_t(s_{0:t-1}, Y) + L_t(s_{0:t-1}, Y) ε_t,   t = 1..T,

in :meth:`Posterior.sample` (``sample(Y, mask, num_samples, generator) -> PosteriorSample``: the samples
s_{0:T} and the parameters μ_t, L_t of each q(s_t | ·) along them), so the ELBO never needs to know the
family. :meth:`Posterior.evaluate` gives the same parameters along states given from outside (for
log q(s_{0:T}) of fixed samples, e.g. the score-function gradient).

The encoder (:class:`SequenceEncoder`) is a GRU over x_t = [y_t, mask_t, u_t]; its state is held through
masked steps (h_t = h_{t+1} where y_t is missing), so padding at the end changes nothing and a missing
step sees the summary of its neighbours. Directions: a *backward* GRU, h_t summarising Y_{t:T}, suffices
for the Markovian and the auto-regressive families: the true posterior's factor p(s_t | s_{t-1}, Y_{1:T}) =
p(s_t | s_{t-1}, Y_{t:T}) needs no past observations once s_{t-1} is known (DKS's "ST-R"). The mean-field
family sees no s_{t-1}, so it gets a *bidirectional* GRU, [forward state over Y_{1:t}, backward over Y_{t:T}].
q(s_0 | Y) reads the summary of the whole sequence (the backward state at t = 1, with the forward state
at t = T when bidirectional). Covariances are diagonal by default (``covariance="full"``: a full Cholesky
factor from the network).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as nnf
from torch import nn

from mbrl_course._checks import check_choice, check_positive_int
from mbrl_course.filters._gaussian import matvec, symmetrize
from mbrl_course.filters.kalman import rts_smoother
from mbrl_course.filters.params import LinearGaussianSSM
from mbrl_course.ssm._gaussian import MIN_SCALE, log_prob, rsample
from mbrl_course.ssm.generative import Sequences, check_definite, check_dtype, check_sequences

COVARIANCES = ("diag", "full")


@dataclass
class PosteriorSample:
    """N reparameterised sample paths s_{0:T} ~ q and the Gaussian q(s_t | ·) = N(μ_t, L_t L_tᵀ) along each."""

    states: torch.Tensor
    """s_{0:T}: (N, B, T+1, dx)"""
    means: torch.Tensor
    """μ_t of q(s_t | s_{0:t-1}, Y_{1:T}) for t = 0..T (t = 0: q(s_0 | Y)): (N, B, T+1, dx)"""
    scale_trils: torch.Tensor
    """L_t, lower-triangular Cholesky factors of the covariances: (N, B, T+1, dx, dx)"""

    def log_prob(self) -> torch.Tensor:
        """log q(s_t | s_{0:t-1}, Y_{1:T}) at the sampled s_t, t = 0..T: (N, B, T+1)."""
        return log_prob(self.states, self.means, self.scale_trils)


class GaussianHead(nn.Module):
    """features -> (μ, L) of a Gaussian over dx: a linear layer; L = diag(softplus(·) + MIN_SCALE) (+ strict
    lower triangle from the same layer when ``covariance="full"``)."""

    def __init__(self, in_dim: int, state_dim: int, covariance: str = "diag") -> None:
        super().__init__()
        self.state_dim = state_dim
        self.full = check_choice("covariance", covariance, COVARIANCES) == "full"
        self.num_off = state_dim * (state_dim - 1) // 2 if self.full else 0
        self.linear = nn.Linear(in_dim, 2 * state_dim + self.num_off)
        with torch.no_grad():  # start at standard deviations of about 0.5
            self.linear.bias[state_dim:2 * state_dim].fill_(-0.43)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``features: (..., in_dim)`` -> (μ: (..., dx), L: (..., dx, dx))."""
        dx = self.state_dim
        out = self.linear(features)
        mean, raw_scale = out[..., :dx], out[..., dx:2 * dx]
        L = torch.diag_embed(nnf.softplus(raw_scale) + MIN_SCALE)
        if self.full:
            rows, cols = torch.tril_indices(dx, dx, -1, device=out.device)
            off = torch.zeros(out.shape[:-1] + (dx, dx), dtype=out.dtype, device=out.device)
            off[..., rows, cols] = out[..., 2 * dx:]
            L = L + off
        return mean, L


class SequenceEncoder(nn.Module):
    """A GRU over x_t = [y_t, mask_t, u_t], backward (h_t from Y_{t:T}) or bidirectional; held through masked steps.

    Backward: h_t = GRU(x_t, h_{t+1}) where mask_t, else h_{t+1}; h_{T+1} = 0. Forward likewise from h_0 = 0.
    Returns features e_{0:T}: (B, T+1, H') with e_t = [h_t^fwd, h_t^bwd, mask_t] for t = 1..T and
    e_0 = [h_T^fwd, h_1^bwd, 1], the summary of the whole sequence (H' = H or 2H, plus 1).
    """

    def __init__(self, obs_dim: int, control_dim: int = 0, hidden_size: int = 64, bidirectional: bool = False) -> None:
        super().__init__()
        in_dim = obs_dim + 1 + control_dim
        self.hidden_size = check_positive_int("hidden_size", hidden_size)
        self.backward_cell = nn.GRUCell(in_dim, hidden_size)
        self.forward_cell = nn.GRUCell(in_dim, hidden_size) if bidirectional else None
        self.out_dim = hidden_size * (2 if bidirectional else 1) + 1

    def _scan(self, cell: nn.GRUCell, x: torch.Tensor, mask: torch.Tensor, order: range) -> list[torch.Tensor]:
        h = x.new_zeros(x.shape[0], self.hidden_size)
        out: list[torch.Tensor] = [h] * x.shape[1]
        for t in order:
            h = torch.where(mask[:, t, None], cell(x[:, t], h), h)
            out[t] = h
        return out

    def forward(self, seq: Sequences) -> torch.Tensor:
        """e_{0:T} for checked sequences: (B, T+1, H')."""
        y, mask = seq.observations, seq.mask
        parts = [y, mask.unsqueeze(-1).to(y.dtype)] + ([seq.controls] if seq.controls is not None else [])
        x = torch.cat(parts, -1)
        T = y.shape[1]
        bwd = torch.stack(self._scan(self.backward_cell, x, mask, range(T - 1, -1, -1)), 1)  # (B, T, H)
        first = [bwd[:, :1]]
        feats = [bwd]
        if self.forward_cell is not None:
            fwd = torch.stack(self._scan(self.forward_cell, x, mask, range(T)), 1)
            feats = [fwd, bwd]
            first = [fwd[:, -1:], bwd[:, :1]]
        ones = y.new_ones(y.shape[0], 1, 1)
        e0 = torch.cat(first + [ones], -1)
        e = torch.cat(feats + [mask.unsqueeze(-1).to(y.dtype)], -1)
        return torch.cat([e0, e], 1)


class Posterior(nn.Module):
    """q(s_{0:T} | Y_{1:T}, ψ) = q(s_0 | Y) Π_t q(s_t | s_{0:t-1}, Y, ψ), Gaussian factors; the common interface.

    A family defines ``_context`` (what it computes once from Y, e.g. the encoder's features), ``_initial``
    (μ_0, L_0 of q(s_0 | Y)), ``_start`` (its recurrent state) and ``_step`` (μ_t, L_t of q(s_t | ·) from
    s_{t-1} and that state). :meth:`run` is the one ancestral-sampling loop for all of them.
    """

    def __init__(self, state_dim: int, obs_dim: int, control_dim: int = 0) -> None:
        super().__init__()
        self.state_dim = check_positive_int("state_dim", state_dim)
        self.obs_dim = check_positive_int("obs_dim", obs_dim)
        self.control_dim = check_positive_int("control_dim", control_dim, allow_zero=True)

    # --- the family's parts
    def _context(self, seq: Sequences) -> object:
        """What the family computes once from Y_{1:T} (encoder features, smoother moments)."""
        raise NotImplementedError

    def _initial(self, context) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ_0: (B, dx), L_0: (B, dx, dx)) of q(s_0 | Y_{1:T})."""
        raise NotImplementedError

    def _start(self, context, previous_state: torch.Tensor) -> object:
        """The recurrent state before step 1, given s̃_0: (N, B, dx) (None: the family has none)."""
        return None

    def _step(self, context, t: int, previous_state: torch.Tensor, carry) -> tuple[torch.Tensor, torch.Tensor, object]:
        """(μ_t, L_t, carry) of q(s_t | s̃_{0:t-1}, Y) from s̃_{t-1}: (N, B, dx); μ_t and L_t broadcast to
        (N, B, dx) and (N, B, dx, dx)."""
        raise NotImplementedError

    # --- the interface
    def run(self, seq: Sequences, num_samples: int = 1, generator: torch.Generator | None = None,
            noise: torch.Tensor | None = None, states: torch.Tensor | None = None) -> PosteriorSample:
        """Ancestral sampling on checked sequences (see :func:`~mbrl_course.ssm.generative.check_sequences`).

        s_0 = μ_0 + L_0 ε_0, then for t = 1..T: (μ_t, L_t) = q's parameters given s_{0:t-1}, s_t = μ_t + L_t ε_t.
        ``noise: (N, B, T+1, dx)`` gives the ε_t (default: drawn with ``generator``); ``states: (N, B, T+1, dx)``
        replaces the samples by these (teacher forcing: q's parameters along given paths).
        """
        B, T = seq.mask.shape
        N = check_positive_int("num_samples", num_samples)
        dx = self.state_dim
        y = seq.observations
        if states is not None:
            N = states.shape[0]
            if tuple(states.shape[1:]) != (B, T + 1, dx):
                raise ValueError(f"states: expected shape (N, {B}, {T + 1}, {dx}), got {tuple(states.shape)}")
        elif noise is None:
            noise = torch.randn((N, B, T + 1, dx), dtype=y.dtype, device=y.device, generator=generator)
        elif tuple(noise.shape) != (N, B, T + 1, dx):
            raise ValueError(f"noise: expected shape ({N}, {B}, {T + 1}, {dx}) (num_samples, B, T+1, dx), "
                             f"got {tuple(noise.shape)}")
        context = self._context(seq)
        mean, L = self._initial(context)
        mean, L = mean.expand(N, B, dx), L.expand(N, B, dx, dx)
        s = states[:, :, 0] if states is not None else rsample(mean, L, noise[:, :, 0])
        samples, means, scales = [s], [mean], [L]
        carry = self._start(context, s)
        for t in range(1, T + 1):
            mean, L, carry = self._step(context, t, s, carry)
            mean, L = mean.expand(N, B, dx), L.expand(N, B, dx, dx)
            s = states[:, :, t] if states is not None else rsample(mean, L, noise[:, :, t])
            samples.append(s)
            means.append(mean)
            scales.append(L)
        return PosteriorSample(torch.stack(samples, 2), torch.stack(means, 2), torch.stack(scales, 2))

    def sample(self, observations: torch.Tensor, mask: torch.Tensor | None = None, num_samples: int = 1,
               generator: torch.Generator | None = None, controls: torch.Tensor | None = None,
               noise: torch.Tensor | None = None) -> PosteriorSample:
        """N paths s_{0:T} ~ q(s_{0:T} | Y_{1:T}, ψ) by reparameterised ancestral sampling, and q's parameters.

        ``observations: (B, T, dy)`` Y_{1:T}; ``mask: (B, T)`` bool (see
        :func:`~mbrl_course.ssm.generative.check_sequences`); ``controls: (B, T, du)``; ``noise`` the ε_t.
        """
        return self.run(self.check(observations, mask, controls), num_samples, generator, noise)

    def evaluate(self, states: torch.Tensor, observations: torch.Tensor, mask: torch.Tensor | None = None,
                 controls: torch.Tensor | None = None) -> PosteriorSample:
        """q's parameters along given paths ``states: (N, B, T+1, dx)``; ``.log_prob()`` is log q(s_t | ·) there."""
        return self.run(self.check(observations, mask, controls), states=states)

    def check(self, observations: torch.Tensor, mask: torch.Tensor | None = None,
              controls: torch.Tensor | None = None) -> Sequences:
        """:func:`~mbrl_course.ssm.generative.check_sequences` against this posterior's sizes (and dtype)."""
        check_dtype(observations, posterior=self)
        return check_sequences(observations, mask, controls, self.obs_dim, self.control_dim)


class MeanFieldPosterior(Posterior):
    """Mean-field: q(s_t | s_{0:t-1}, Y_{1:T}, ψ) := q(s_t | Y_{1:T}, ψ) = N(μ_ψ(e_t), L_ψ(e_t) L_ψ(e_t)ᵀ).

    e_t from a bidirectional :class:`SequenceEncoder` (no s_{t-1} to carry the past, so the encoder must);
    q(s_0 | Y) from e_0, the summary of the whole sequence, through its own head.
    """

    def __init__(self, state_dim: int, obs_dim: int, control_dim: int = 0, hidden_size: int = 64,
                 covariance: str = "diag") -> None:
        super().__init__(state_dim, obs_dim, control_dim)
        self.encoder = SequenceEncoder(obs_dim, control_dim, hidden_size, bidirectional=True)
        self.initial_head = GaussianHead(self.encoder.out_dim, state_dim, covariance)
        self.head = nn.Sequential(nn.Linear(self.encoder.out_dim, hidden_size), nn.Tanh())
        self.step_head = GaussianHead(hidden_size, state_dim, covariance)

    def _context(self, seq: Sequences) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        e = self.encoder(seq)
        mean, L = self.step_head(self.head(e[:, 1:]))  # all steps at once: nothing depends on s_{t-1}
        return e, mean, L

    def _initial(self, context):
        return self.initial_head(context[0][:, 0])

    def _step(self, context, t, previous_state, carry):
        _, mean, L = context
        return mean[:, t - 1], L[:, t - 1], None


class MarkovianPosterior(Posterior):
    """Markovian (DKS/DMM): q(s_t | s_{t-1}, Y_{1:T}, ψ) = N(μ_t, L_t L_tᵀ) with the DMM combiner.

    h_t = ½ [tanh(W_s s_{t-1} + b_s) + tanh(W_e e_t + b_e)],  μ_t = W_μ h_t + A s_{t-1} + c,  L_t = L_ψ(h_t),

    e_t from a backward :class:`SequenceEncoder` (the summary of Y_{t:T}). The linear skip A s_{t-1} (A = 0 at
    the start) is our addition to Krishnan et al.'s combiner: the exact conditional of a linear-Gaussian model
    has a mean linear in s_{t-1}, which the tanh alone can only approximate.
    """

    def __init__(self, state_dim: int, obs_dim: int, control_dim: int = 0, hidden_size: int = 64,
                 covariance: str = "diag") -> None:
        super().__init__(state_dim, obs_dim, control_dim)
        self.encoder = SequenceEncoder(obs_dim, control_dim, hidden_size, bidirectional=False)
        self.initial_head = GaussianHead(self.encoder.out_dim, state_dim, covariance)
        self.state_in = nn.Linear(state_dim, hidden_size)
        self.data_in = nn.Linear(self.encoder.out_dim, hidden_size)
        self.step_head = GaussianHead(hidden_size, state_dim, covariance)
        self.skip = nn.Linear(state_dim, state_dim, bias=False)
        nn.init.zeros_(self.skip.weight)

    def _context(self, seq):
        e = self.encoder(seq)
        return e, torch.tanh(self.data_in(e))

    def _initial(self, context):
        return self.initial_head(context[0][:, 0])

    def _step(self, context, t, previous_state, carry):
        h = 0.5 * (torch.tanh(self.state_in(previous_state)) + context[1][:, t])
        mean, L = self.step_head(h)
        return mean + self.skip(previous_state), L, None


class AutoregressivePosterior(Posterior):
    """Temporal auto-regressive: q(s_t | s_{0:t-1}, Y_{1:T}, ψ), the slide's s_t = g_ψ(s_{0:t-1}, Y_{1:T}, ε_t).

    A forward GRU runs over the sampled states, g_t = GRU(s_{t-1}, g_{t-1}) (g_0 = 0), so g_t summarises
    s_{0:t-1}; then as the Markovian combiner with g_t in place of s_{t-1}:

    h_t = ½ [tanh(W_g g_t + b_g) + tanh(W_e e_t + b_e)],  μ_t = W_μ h_t + A s_{t-1} + c,  L_t = L_ψ(h_t),

    e_t from a backward :class:`SequenceEncoder` (Y_{t:T}; the past of Y reaches q through s_{0:t-1}).
    """

    def __init__(self, state_dim: int, obs_dim: int, control_dim: int = 0, hidden_size: int = 64,
                 covariance: str = "diag") -> None:
        super().__init__(state_dim, obs_dim, control_dim)
        self.encoder = SequenceEncoder(obs_dim, control_dim, hidden_size, bidirectional=False)
        self.initial_head = GaussianHead(self.encoder.out_dim, state_dim, covariance)
        self.state_rnn = nn.GRUCell(state_dim, hidden_size)
        self.history_in = nn.Linear(hidden_size, hidden_size)
        self.data_in = nn.Linear(self.encoder.out_dim, hidden_size)
        self.step_head = GaussianHead(hidden_size, state_dim, covariance)
        self.skip = nn.Linear(state_dim, state_dim, bias=False)
        nn.init.zeros_(self.skip.weight)
        self.hidden_size = hidden_size

    def _context(self, seq):
        e = self.encoder(seq)
        return e, torch.tanh(self.data_in(e))

    def _initial(self, context):
        return self.initial_head(context[0][:, 0])

    def _start(self, context, previous_state):
        return previous_state.new_zeros(previous_state.shape[:-1] + (self.hidden_size,))

    def _step(self, context, t, previous_state, carry):
        lead = previous_state.shape[:-1]
        g = self.state_rnn(previous_state.reshape(-1, self.state_dim), carry.reshape(-1, self.hidden_size))
        g = g.reshape(lead + (self.hidden_size,))  # g_t = GRU(s_{t-1}, g_{t-1})
        h = 0.5 * (torch.tanh(self.history_in(g)) + context[1][:, t])
        mean, L = self.step_head(h)
        return mean + self.skip(previous_state), L, g


class ExactLinearGaussianPosterior(Posterior):
    """The exact posterior of a linear-Gaussian model, Markovian: q(s_t | s_{t-1}, Y_{1:T}) = p(s_t | s_{t-1}, Y_{1:T}).

    From the RTS smoother's pairwise joint of (s_{t-1}, s_t) given Y_{1:T}, with means m^s, covariances P^s
    and cross-covariance X_t = Cov(s_t, s_{t-1} | Y_{1:T}), condition on s_{t-1}:

        A_t = X_t (P^s_{t-1})⁻¹,  μ_t = m^s_t + A_t (s_{t-1} - m^s_{t-1}),  Λ_t = P^s_t - A_t X_tᵀ,

    and q(s_0 | Y) = p(s_0 | Y_{1:T}) = N(m^s_0, P^s_0). Masked steps are given to the smoother as NaN
    (missing). With the generative model at ``ssm`` the ELBO of this q equals log p(Y_{1:T}) for every
    sample: the oracle of the tests. No parameters ψ; ``ssm`` needs positive-definite S_0 and F (the
    smoother's condition, and densities for q). The smoother runs in ``ssm``'s dtype and on its device
    (``.to()`` / ``.double()`` of this module do not move ``ssm``: build it where the data are).
    """

    def __init__(self, ssm: LinearGaussianSSM) -> None:
        if not isinstance(ssm, LinearGaussianSSM):
            raise TypeError(f"ssm: expected a LinearGaussianSSM, got {type(ssm).__name__}")
        check_definite(ssm)
        super().__init__(ssm.state_dim, ssm.obs_dim, ssm.control_dim or 0)
        self.ssm = ssm

    def _context(self, seq: Sequences):
        y = torch.where(seq.mask.unsqueeze(-1), seq.observations, float("nan")).to(self.ssm.initial_mean.dtype)
        sm = rts_smoother(self.ssm, y, seq.controls)
        means = torch.cat([sm.smoothed_initial_mean.unsqueeze(-2), sm.smoothed_means], -2)  # m^s_{0:T}
        covs = torch.cat([sm.smoothed_initial_cov.unsqueeze(-3), sm.smoothed_covs], -3)  # P^s_{0:T}
        X = sm.smoothed_cross_covs  # Cov(s_t, s_{t-1}), t = 1..T
        chol_prev = torch.linalg.cholesky(covs[..., :-1, :, :])
        A = torch.cholesky_solve(X.mT, chol_prev).mT  # A_t = X_t P_{t-1}⁻¹ (P symmetric)
        Lam = symmetrize(covs[..., 1:, :, :] - A @ X.mT)
        return means, torch.linalg.cholesky(covs[..., 0, :, :]), A, torch.linalg.cholesky(Lam)

    def _initial(self, context):
        return context[0][..., 0, :], context[1]

    def _step(self, context, t, previous_state, carry):
        means, _, A, L = context
        mean = means[..., t, :] + matvec(A[..., t - 1, :, :], previous_state - means[..., t - 1, :])
        return mean, L[..., t - 1, :, :], None


FAMILIES = {"mean_field": MeanFieldPosterior, "markovian": MarkovianPosterior,
            "autoregressive": AutoregressivePosterior}


def make_posterior(family: str, state_dim: int, obs_dim: int, control_dim: int = 0, hidden_size: int = 64,
                   covariance: str = "diag") -> Posterior:
    """An amortised posterior by name: ``family`` "mean_field" | "markovian" | "autoregressive"."""
    check_choice("family", family, tuple(FAMILIES))
    return FAMILIES[family](state_dim, obs_dim, control_dim, hidden_size, covariance)
