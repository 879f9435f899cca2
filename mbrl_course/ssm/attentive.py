"""The attentive state-space model (Alaa & van der Schaar, 2019) with discrete states, as the slide writes it.

Generative model, s_t ∈ {1..K}, t = 1..T::

    p(Y_{1:T}, s_{1:T}) = Π_t p(y_t | s_t) p(s_t | s_{1:t-1}, Y_{1:t-1})
    p(s_1)                           = π                                        (bare parameters)
    p(s_t | s_{1:t-1}, Y_{1:t-1})    = α_{1:t-1}ᵀ P_λ(s_t, s_{1:t-1}) = Σ_{t'<t} α_{t,t'} p_λ(s_t | s_{t'})
    α_{t,1:t-1}                      = softmax_{t'}(seq2seq(Y_{1:t-1}))
    p(y_t | s_t = k)                 = N(y_t | μ_k, diag σ_k²)

**The kernels.** p_λ(s_t | s_{t'}) = P^{(ℓ)}[s_{t'}, s_t] with the lag ℓ = min(t - t', L): one bare K×K
transition matrix per lag, rows a softmax of free logits (``kernel_logits: (L, K, K)``), lags ≥ L sharing
P^{(L)}. The prior is a mixture over the earlier states, each pushed through the kernel of its lag (a mixture
transition distribution whose weights depend on the data). With P^{(1)} sticky and P^{(ℓ)} for some ℓ a "leave"
kernel, the attention can make the probability of leaving a state depend on how long the observations have
stayed in it: what a first-order HMM cannot do. Training starts there: P^{(1)} "stay" (0.9 on the diagonal for
K = 4), P^{(ℓ≥2)} "leave" (about 0.02 on it), the attention on lag 1 (an HMM with sticky states); the attention then
learns when to look past lag 1. (Equal kernels for every lag are a symmetric saddle: each lag gets the same
gradient, the attention over lags none; in our runs a start with random kernels stayed at the HMM's likelihood for
one seed out of two.)

**The seq2seq.** A forward GRU over the observations, g_t = GRU(y_t, g_{t-1}), g_0 = 0; for s_t the query is
g_{t-1} (it has seen Y_{1:t-1}), the key of t' is g_{t'}, and the score is a lag term plus a content term::

    e_{t,t'} = w_ℓ(g_{t-1}) + ⟨W_q g_{t-1}, W_k g_{t'}⟩ / √d_a,    ℓ = min(t - t', L)
    α_{t,t'} = softmax_{t' = 1..t-1} e_{t,t'}                        (Σ_{t'} α_{t,t'} = 1; no α at t = 1)

with w(·) a linear map to L lag scores. :meth:`AttentiveSSM.attention` returns α for plotting.

**The posterior** (the slide's q(s_{1:T} | Y) = q(s_1 | Y) Π_{t≥2} q(s_t | α_{1:t-1}, Y_{t:T})) is a product of
categorical factors q_t(k) = q(s_t = k | ·); the attention α is shared with the prior, and a backward GRU
b_t = GRU(y_t, b_{t+1}) summarises Y_{t:T}::

    π̃_t(k) = Σ_{t'<t} α_{t,t'} Σ_j q_{t'}(j) P^{(ℓ)}[j, k]        (the prior's prediction, through α, at the marginals)
    q_t(k) ∝ π̃_t(k) · N(y_t | μ_k, σ_k²) · exp(f_ψ(b_{t+1})_k)          (π̃_1 = π; b_{T+1} = 0)

so the past reaches q_t only through α_{t,1:t-1} (and the earlier factors it weighs), the present and the future
through the backward GRU; as a function of the data each q_t depends on all of Y, and the factors are independent
given Y (a structured mean field).

**The ELBO, what is exact and what is not.** With independent categorical factors, E_q[log p(y_t | s_t)] =
Σ_k q_t(k) log N(y_t | μ_k, σ_k²) and the entropy -Σ_k q_t(k) log q_t(k) are exact sums, as is E_q[log π_{s_1}].
The transition term E_q[log Σ_{t'} α_{t,t'} p_λ(s_t | s_{t'})] is not: the logarithm of a mixture over all earlier
states would need the sum over all K^t paths. We bound it instead, exactly, with the marginals: write the mixture
as a latent choice z_t = t' with p(z_t = t') = α_{t,t'}, give z_t a free variational factor r(z_t) independent of
s, and maximise over r in closed form (r ∝ α exp(·))::

    E_q[log Σ_{t'} α_{t,t'} p_λ(s_t | s_{t'})]  ≥  log Σ_{t'<t} α_{t,t'} exp(Σ_{j,k} q_{t'}(j) q_t(k) log P^{(ℓ)}[j, k])

(the inner expectation is linear in the product of the two marginals, exact because the factors are independent).
The bound is tight when q is certain (one-hot factors), and it is at least Jensen's Σ_{t'} α E_q[log p_λ]
(r = α). So :meth:`AttentiveSSM.elbo` returns L̃ ≤ ELBO(q) = E_q[log p(Y, s) - log q(s)] ≤ log p(Y), every term a
finite sum, no sampling; training maximises L̃.

**The log-likelihood.** The prior depends on the whole path, so no forward algorithm gives log p(Y) exactly.
:meth:`AttentiveSSM.log_likelihood` is an importance-sampling estimate, log (1/N) Σ_n p(Y, s^n) / r(s^n) with
discrete paths s^n ~ r: by default the ancestral proposal r(s_t | s_{<t}) ∝ p(s_t | s_{<t}, Y_{<t}) N(y_t | μ, σ²)
exp(f_ψ(b_{t+1})) (q's factor with the sampled past in place of the marginals), or ``proposal="posterior"``, the
factors q_t themselves. It is a stochastic lower bound in expectation (Jensen), consistent as N grows.
:meth:`AttentiveSSM.brute_force_log_likelihood` sums over all K^T paths (T ≤ 8): the tests' oracle.

Shapes: ``observations: (B, T, dy)`` equal-length, fully observed sequences (no mask); ``states: (N, B, T)`` long.
"""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from mbrl_course._checks import check_choice, check_positive_float, check_positive_int
from mbrl_course.budget import by_budget
from mbrl_course.filters.models import _categorical
from mbrl_course.ssm._gaussian import log_prob
from mbrl_course.ssm.hmm import check_observations, kmeans_plus_plus
from mbrl_course.ssm.training import TrainResult, ascent_steps, save_checkpoint

PROPOSALS = ("ancestral", "posterior")


@dataclass
class AttentivePosterior:
    """What :meth:`AttentiveSSM.posterior` computes once per batch of sequences."""

    probs: torch.Tensor
    """q_t(k) = q(s_t = k | α_{1:t-1}, Y_{t:T}): (B, T, K)"""
    log_attention: torch.Tensor
    """log α_{t,t'}, -inf for t' ≥ t (row t = 1 all -inf): (B, T, T)"""
    emission_log_probs: torch.Tensor
    """log N(y_t | μ_k, σ_k²): (B, T, K)"""
    future_logits: torch.Tensor
    """f_ψ(b_{t+1}): the backward GRU's message about Y_{t+1:T}: (B, T, K)"""


class AttentiveSSM(nn.Module):
    """The attentive SSM: π, per-lag kernels P^{(ℓ)}, Gaussian emissions, the seq2seq attention and the posterior.

    ``num_states`` K, ``obs_dim`` dy, ``max_lag`` L (kernels P^{(1)}..P^{(L)}, lags ≥ L share the last),
    ``hidden_size`` of both GRUs, ``attention_dim`` d_a of the content score. See the module docstring for
    every equation.
    """

    def __init__(self, num_states: int, obs_dim: int, max_lag: int = 12, hidden_size: int = 32,
                 attention_dim: int = 16) -> None:
        super().__init__()
        K = self.num_states = check_positive_int("num_states", num_states)
        dy = self.obs_dim = check_positive_int("obs_dim", obs_dim)
        L = self.max_lag = check_positive_int("max_lag", max_lag)
        H = self.hidden_size = check_positive_int("hidden_size", hidden_size)
        self.attention_dim = check_positive_int("attention_dim", attention_dim)
        self.initial_logits = nn.Parameter(torch.zeros(K))
        # start: P^{(1)} "stay" (0.9 on the diagonal for K = 4), P^{(ℓ≥2)} "leave" (0.02 on it), the attention on
        # lag 1. Equal kernels would be a symmetric saddle (every lag the same gradient, the attention none).
        kernels = torch.randn(L, K, K) * 0.1 - 3.0 * torch.eye(K)
        kernels[0] = 3.3 * torch.eye(K)
        self.kernel_logits = nn.Parameter(kernels)
        self.means = nn.Parameter(torch.randn(K, dy))
        self.log_stds = nn.Parameter(torch.zeros(K, dy))
        self.encoder = nn.GRU(dy, H, batch_first=True)  # forward seq2seq over Y_{1:t}
        self.lag_scores = nn.Linear(H, L)
        with torch.no_grad():
            self.lag_scores.bias.copy_(torch.cat([torch.tensor([3.0]), torch.zeros(L - 1)]))
        self.query = nn.Linear(H, self.attention_dim)
        self.key = nn.Linear(H, self.attention_dim)
        self.backward_rnn = nn.GRU(dy, H, batch_first=True)  # b_t over Y_{t:T}
        self.future = nn.Sequential(nn.Linear(H, H), nn.Tanh(), nn.Linear(H, K))

    # --- parameters as distributions
    def log_initial(self) -> torch.Tensor:
        """log π: (K,)."""
        return torch.log_softmax(self.initial_logits, -1)

    def log_kernels(self) -> torch.Tensor:
        """log P^{(ℓ)}[j, k] = log p_λ(s_t = k | s_{t'} = j) for lag ℓ = 1..L: (L, K, K)."""
        return torch.log_softmax(self.kernel_logits, -1)

    def emission_log_prob(self, observations: torch.Tensor) -> torch.Tensor:
        """log N(y_t | μ_k, diag σ_k²): (B, T, K)."""
        return log_prob(observations.unsqueeze(-2), self.means, torch.diag_embed(self.log_stds.exp()))

    @torch.no_grad()
    def init_from_data(self, observations: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """μ_k from k-means++ on all y_t (the HMM's start, :func:`~mbrl_course.ssm.hmm.kmeans_plus_plus`), σ_k the
        mean within-cluster standard deviation."""
        y = self._check(observations)
        points = y.reshape(-1, self.obs_dim)
        centres, labels = kmeans_plus_plus(points, self.num_states, generator)
        self.means.copy_(centres)
        spread = (points - centres[labels]).std(0).clamp_min(1e-3)
        self.log_stds.copy_(spread.log().expand(self.num_states, -1))

    def _check(self, observations: torch.Tensor) -> torch.Tensor:
        if not isinstance(observations, torch.Tensor):
            raise TypeError(f"observations: expected a tensor of shape (B, T, {self.obs_dim}), "
                            f"got {type(observations).__name__}")
        dtype = self.means.dtype
        if observations.is_floating_point() and torch.isnan(observations).any():
            raise ValueError("observations: expected fully observed sequences (the attentive SSM takes no mask), "
                             "got NaN entries")
        return check_observations(observations, self.obs_dim, None, dtype=dtype)[0]

    # --- the seq2seq attention
    def _lags(self, T: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(lag index ℓ - 1 = min(t - t', L) - 1 clamped at 0: (T, T) long, valid t' < t: (T, T) bool)."""
        t = torch.arange(T, device=device)
        diff = t[:, None] - t[None, :]
        return (diff.clamp(1, self.max_lag) - 1), diff > 0

    def _log_attention(self, y: torch.Tensor) -> torch.Tensor:
        """log α_{t,t'} on checked observations: (B, T, T), -inf where t' ≥ t."""
        B, T, _ = y.shape
        g, _ = self.encoder(y)  # g_t summarises y_{1:t}: (B, T, H)
        g_prev = torch.cat([g.new_zeros(B, 1, g.shape[-1]), g[:, :-1]], 1)  # query for s_t: g_{t-1}
        lag, valid = self._lags(T, y.device)
        lag_term = self.lag_scores(g_prev).gather(-1, lag.expand(B, T, T))  # w_ℓ(g_{t-1}): (B, T, T)
        content = self.query(g_prev) @ self.key(g).mT / math.sqrt(self.attention_dim)
        scores = (lag_term + content).masked_fill(~valid, -math.inf)
        scores[:, 0, 0] = 0.0  # row t = 1 has no earlier step: a dummy entry, removed below
        return torch.log_softmax(scores, -1).masked_fill(~valid, -math.inf)

    @torch.no_grad()
    def attention(self, observations: torch.Tensor) -> torch.Tensor:
        """α_{t,t'} = softmax_{t'<t}(seq2seq(Y_{1:t-1})): (B, T, T), row t sums to 1 over t' < t (row 1 is 0);
        without gradients (for plotting: row t is where the prior of s_t looks)."""
        return self._log_attention(self._check(observations)).exp()

    # --- the posterior
    def posterior(self, observations: torch.Tensor) -> AttentivePosterior:
        """q_t(k) ∝ π̃_t(k) N(y_t | μ_k, σ_k²) exp(f_ψ(b_{t+1})_k), π̃_t = Σ_{t'<t} α_{t,t'} q_{t'} P^{(ℓ)}, π̃_1 = π."""
        y = self._check(observations)
        B, T, _ = y.shape
        log_alpha = self._log_attention(y)
        alpha = log_alpha.exp()
        logb = self.emission_log_prob(y)
        b, _ = self.backward_rnn(y.flip(1))
        b = b.flip(1)  # b_t summarises y_{t:T}
        b_next = torch.cat([b[:, 1:], b.new_zeros(B, 1, b.shape[-1])], 1)
        future = self.future(b_next)
        kernels = self.log_kernels().exp()
        lag, _ = self._lags(T, y.device)
        q = [torch.softmax(self.log_initial() + logb[:, 0] + future[:, 0], -1)]
        for t in range(1, T):
            earlier = torch.stack(q, 1)  # q_{1:t-1}: (B, t, K)
            predicted = torch.einsum("bs,bsj,sjk->bk", alpha[:, t, :t], earlier, kernels[lag[t, :t]])  # π̃_t
            q.append(torch.softmax(predicted.clamp_min(1e-30).log() + logb[:, t] + future[:, t], -1))
        return AttentivePosterior(torch.stack(q, 1), log_alpha, logb, future)

    # --- the ELBO
    def elbo(self, observations: torch.Tensor) -> torch.Tensor:
        """L̃ = Σ_t Σ_k q_t(k) log p(y_t | k) + Σ_k q_1(k) log π_k + Σ_{t≥2} log Σ_{t'<t} α_{t,t'} exp(E_{q_{t'} q_t}
        [log P^{(ℓ)}]) + Σ_t H(q_t) ≤ log p(Y): (B,). Every term an exact sum (module docstring)."""
        post = self.posterior(observations)
        q = post.probs
        B, T, K = q.shape
        log_q = q.clamp_min(1e-30).log()
        reconstruction = (q * post.emission_log_probs).sum((-2, -1))  # Σ_t E_q[log p(y_t | s_t)]
        entropy = -(q * log_q).sum((-2, -1))  # Σ_t H(q_t)
        initial = (q[:, 0] * self.log_initial()).sum(-1)  # E_q[log π_{s_1}]
        lag, valid = self._lags(T, q.device)
        # E_{q_{t'} q_t}[log P^{(ℓ)}[s_{t'}, s_t]] for every lag ℓ, then the lag of each (t, t') picked: (B, T, T)
        per_lag = torch.einsum("btk,bsj,ljk->blts", q, q, self.log_kernels())
        expected = per_lag.gather(1, lag.expand(B, 1, T, T)).squeeze(1)
        transition = torch.logsumexp((post.log_attention + expected).masked_fill(~valid, -math.inf)[:, 1:], -1)
        return reconstruction + entropy + initial + transition.sum(-1)

    # --- exact along paths, estimated over paths
    def _log_joint(self, post: AttentivePosterior, states: torch.Tensor) -> torch.Tensor:
        N, B, T = states.shape
        lag, valid = self._lags(T, states.device)
        log_P = self.log_kernels()
        emission = post.emission_log_probs.expand(N, B, T, self.num_states).gather(-1, states.unsqueeze(-1))
        trans = log_P[lag, states.unsqueeze(-2), states.unsqueeze(-1)]  # [n, b, t, t'] = log P^{(ℓ)}[s_{t'}, s_t]
        prior = torch.logsumexp((post.log_attention + trans).masked_fill(~valid, -math.inf)[..., 1:, :], -1)
        return self.log_initial()[states[..., 0]] + emission.squeeze(-1).sum(-1) + prior.sum(-1)

    def log_joint(self, observations: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        """log p(Y, s_{1:T}) = log π_{s_1} + Σ_t log p(y_t | s_t) + Σ_{t≥2} log Σ_{t'<t} α_{t,t'} P^{(ℓ)}[s_{t'}, s_t]
        for paths ``states: (N, B, T)`` long: (N, B)."""
        y = self._check(observations)
        if not isinstance(states, torch.Tensor) or states.dtype != torch.long or states.ndim != 3 \
                or tuple(states.shape[1:]) != tuple(y.shape[:2]):
            got = (f"{tuple(states.shape)} of dtype {states.dtype}" if isinstance(states, torch.Tensor)
                   else type(states).__name__)
            raise ValueError(f"states: expected a long tensor of shape (N, {y.shape[0]}, {y.shape[1]}), got {got}")
        if bool(((states < 0) | (states >= self.num_states)).any()):
            raise ValueError(f"states: expected values in 0..{self.num_states - 1}, got {int(states.min())}.."
                             f"{int(states.max())}")
        return self._log_joint(self.posterior(y), states)

    def brute_force_log_likelihood(self, observations: torch.Tensor) -> torch.Tensor:
        """log p(Y) = log Σ_{s_{1:T}} p(Y, s_{1:T}) over all K^T paths (T ≤ 8): (B,)."""
        y = self._check(observations)
        B, T, _ = y.shape
        if self.num_states ** T > 70000:
            raise ValueError(f"observations: brute force enumerates K^T = {self.num_states}^{T} paths, expected at "
                             "most 70000 (shorter sequences)")
        paths = torch.tensor(list(itertools.product(range(self.num_states), repeat=T)), device=y.device)
        return torch.logsumexp(self.log_joint(y, paths.unsqueeze(1).expand(-1, B, T).contiguous()), 0)

    @torch.no_grad()
    def log_likelihood(self, observations: torch.Tensor, num_samples: int = 256, proposal: str = "ancestral",
                       generator: torch.Generator | None = None, chunk: int = 64) -> torch.Tensor:
        """Importance-sampling estimate log (1/N) Σ_n p(Y, s^n) / r(s^n), s^n ~ r (module docstring): (B,).

        ``proposal`` "ancestral" (r(s_t | s_{<t}) ∝ p(s_t | s_{<t}, Y_{<t}) p(y_t | s_t) exp(f_ψ(b_{t+1}))) or
        "posterior" (the factors q_t); ``num_samples`` N, drawn ``chunk`` at a time.
        """
        N = check_positive_int("num_samples", num_samples)
        check_choice("proposal", proposal, PROPOSALS)
        y = self._check(observations)
        post = self.posterior(y)
        B, T, K = post.probs.shape
        log_w = []
        for start in range(0, N, check_positive_int("chunk", chunk)):
            n = min(chunk, N - start)
            if proposal == "posterior":
                s = _categorical(post.probs.expand(n, B, T, K), generator)
                log_r = post.probs.clamp_min(1e-30).log().expand(n, B, T, K).gather(-1, s.unsqueeze(-1)).squeeze(-1)
            else:
                s, log_r = self._sample_ancestral(post, n, generator)
            log_w.append(self._log_joint(post, s) - log_r.sum(-1))
        return torch.logsumexp(torch.cat(log_w, 0), 0) - math.log(N)

    def _sample_ancestral(self, post: AttentivePosterior, n: int,
                          generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """s^n ~ r(s_t | s_{<t}) ∝ p(s_t | s_{<t}, Y_{<t}) p(y_t | s_t) exp(f_ψ(b_{t+1})): (states (n, B, T), log r (n, B, T))."""
        B, T, K = post.probs.shape
        lag, _ = self._lags(T, post.probs.device)
        kernels = self.log_kernels().exp()
        alpha = post.log_attention.exp()
        evidence = post.emission_log_probs + post.future_logits  # (B, T, K)
        states, log_r = [], []
        log_prior = self.log_initial().expand(n, B, K)
        for t in range(T):
            if t > 0:
                earlier = torch.stack(states, -1)  # (n, B, t)
                rows = kernels[lag[t, :t], earlier]  # P^{(ℓ)}[s_{t'}, ·]: (n, B, t, K)
                log_prior = (alpha[:, t, :t].unsqueeze(-1) * rows).sum(-2).clamp_min(1e-30).log()
            log_r_t = torch.log_softmax(log_prior + evidence[:, t], -1)
            s = _categorical(log_r_t.exp(), generator)
            states.append(s)
            log_r.append(log_r_t.gather(-1, s.unsqueeze(-1)).squeeze(-1))
        return torch.stack(states, -1), torch.stack(log_r, -1)


# --- training ---------------------------------------------------------------------------------------------------
@dataclass
class AttentiveTrainConfig:
    """How :func:`train_attentive_ssm` climbs L̃; ``num_steps``, ``restarts`` and ``restart_steps`` default to the
    compute tier's."""

    num_steps: int = field(default_factory=lambda: by_budget(smoke=20, default=1000, full=4000))
    """Adam steps of the kept run, its restart phase included (smoke 20, default 1000, full 4000)"""
    restarts: int = field(default_factory=lambda: by_budget(smoke=1, default=3, full=3))
    """candidate runs of the restart phase (smoke 1, default 3, full 3); 1: no restart phase"""
    restart_steps: int = field(default_factory=lambda: by_budget(smoke=10, default=100, full=200))
    """Adam steps of each candidate before the selection (smoke 10, default 100, full 200; at most num_steps)"""
    learning_rate: float = 1e-2
    """Adam's step size"""
    batch_size: int | None = 64
    """sequences per step, drawn without replacement; None: all of them"""
    grad_clip: float | None = 10.0
    """clip the gradient's global norm to this (None: no clipping)"""
    checkpoint_every: int = 100
    """write the checkpoint every this many steps (and at the end)"""
    progress: bool = True
    """show a tqdm progress bar"""
    seed: int = 0
    """seed of the generator for the mini-batches (every candidate draws the same ones) and of the candidates'
    initialisations"""


@dataclass
class AttentiveTrainResult(TrainResult):
    """What :func:`train_attentive_ssm` returns: :class:`~mbrl_course.ssm.TrainResult` plus the restart phase."""

    restart_bounds: list[float] = field(default_factory=list)
    """L̃ / T on all training sequences of each candidate after ``config.restart_steps`` ([] when restarts = 1)"""
    selected_restart: int = 0
    """the kept candidate, argmax of ``restart_bounds`` (0: the model as passed in)"""


def restart_candidate(model: AttentiveSSM, observations: torch.Tensor, seed: int) -> AttentiveSSM:
    """A fresh :class:`AttentiveSSM` of ``model``'s sizes, dtype and device: its parameters drawn as ``__init__``
    draws them under ``torch.manual_seed(seed)`` (the global generator is left as it was), then the means by
    k-means++ (:meth:`AttentiveSSM.init_from_data`, generator seeded ``seed``) on ``observations: (B, T, dy)``."""
    y = model._check(observations)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = AttentiveSSM(model.num_states, model.obs_dim, model.max_lag, model.hidden_size, model.attention_dim)
    fresh = fresh.to(device=model.means.device, dtype=model.means.dtype)
    fresh.init_from_data(y, torch.Generator(device=y.device).manual_seed(seed))
    return fresh


@torch.no_grad()
def training_bound(model: AttentiveSSM, observations: torch.Tensor, chunk: int = 256) -> float:
    """L̃ / T averaged over all sequences ``observations: (B, T, dy)``, ``chunk`` sequences at a time."""
    y = model._check(observations)
    step = check_positive_int("chunk", chunk)
    return float(torch.cat([model.elbo(y[i:i + step]) for i in range(0, y.shape[0], step)]).mean()) / y.shape[1]


def _adam_steps(model: AttentiveSSM, y: torch.Tensor, optimizer: torch.optim.Optimizer, generator: torch.Generator,
                steps: range, cfg: AttentiveTrainConfig, history: list[float], desc: str,
                checkpoint=None) -> None:
    """Adam on -L̃ / T for the step numbers ``steps``, one mini-batch each; appends L̃ / T to ``history`` and calls
    ``checkpoint(step + 1)`` every ``cfg.checkpoint_every`` steps."""
    B, T, _ = y.shape
    batch_size = B if cfg.batch_size is None else min(cfg.batch_size, B)

    def objective(step: int) -> torch.Tensor:
        idx = torch.randperm(B, generator=generator)[:batch_size].to(y.device)
        return model.elbo(y[idx]).mean() / T  # L̃ / T

    ascent_steps(objective, list(model.parameters()), optimizer, steps, history, grad_clip=cfg.grad_clip,
                 progress=cfg.progress, desc=desc, checkpoint=checkpoint, checkpoint_every=cfg.checkpoint_every)


def train_attentive_ssm(model: AttentiveSSM, observations: torch.Tensor, config: AttentiveTrainConfig | None = None,
                        *, checkpoint_path: str | os.PathLike | None = None,
                        resume: bool = True) -> AttentiveTrainResult:
    """Maximise L̃ (:meth:`AttentiveSSM.elbo`) per time step with Adam over all parameters (π, P^{(ℓ)}, μ, σ, both
    GRUs and the heads), on mini-batches of ``observations: (B, T, dy)`` in the model's dtype.

    **Restarts.** L̃ has poor local optima (a run can stay at the HMM's level, the attention never leaving lag 1).
    With ``config.restarts`` R > 1, R candidates each take ``config.restart_steps`` Adam steps: candidate 0 is
    ``model`` as passed in, candidate r ≥ 1 a fresh draw (:func:`restart_candidate`, seed
    1_000_003 · config.seed + r, means by k-means++ on ``observations``); all draw the same mini-batches. The one
    with the highest L̃ / T on all the *training* sequences (:func:`training_bound`; nothing held out is looked
    at) is kept, copied into ``model`` with its optimiser and generator, and continued to ``config.num_steps``
    steps in all. R = 1 is plain training.

    **Checkpoints** as :func:`~mbrl_course.ssm.train_vssm` (model, optimiser, generator, history, and here the
    restart bounds): the restart phase is not checkpointed; the first checkpoint is written right after the
    selection, then every ``config.checkpoint_every`` steps and at the end. When ``checkpoint_path`` exists and
    ``resume``, the run continues from it and skips the restart phase (the kept run is in the file; ``model``'s own
    parameters are overwritten); a run interrupted during the restart phase starts it again.

    Returns an :class:`AttentiveTrainResult`: ``history`` holds the kept run's L̃ / T averaged over each batch (its
    restart steps included), ``restart_bounds`` every candidate's L̃ / T, ``selected_restart`` the kept one.
    """
    cfg = config or AttentiveTrainConfig()
    num_steps = check_positive_int("config.num_steps", cfg.num_steps)
    restarts = check_positive_int("config.restarts", cfg.restarts)
    restart_steps = min(check_positive_int("config.restart_steps", cfg.restart_steps), num_steps)
    lr = check_positive_float("config.learning_rate", cfg.learning_rate)
    check_positive_int("config.checkpoint_every", cfg.checkpoint_every)
    if cfg.batch_size is not None:
        check_positive_int("config.batch_size", cfg.batch_size)
    y = model._check(observations)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(cfg.seed)
    history: list[float] = []
    bounds: list[float] = []
    selected = start = resumed_from = 0
    path = Path(checkpoint_path) if checkpoint_path is not None else None

    def checkpoint(step: int) -> None:
        if path is not None:
            save_checkpoint(path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "generator": generator.get_state(), "history": history, "step": step,
                         "restart_bounds": bounds, "selected_restart": selected, "config": asdict(cfg)})

    if path is not None and resume and path.exists():
        ckpt = torch.load(path, map_location=y.device, weights_only=False)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        generator.set_state(ckpt["generator"])
        history, start = list(ckpt["history"]), int(ckpt["step"])
        resumed_from = start
        bounds, selected = list(ckpt.get("restart_bounds", [])), int(ckpt.get("selected_restart", 0))
    elif restarts > 1:
        runs = []
        for r in range(restarts):
            candidate = model if r == 0 else restart_candidate(model, y, 1_000_003 * cfg.seed + r)
            run = (candidate, torch.optim.Adam(candidate.parameters(), lr=lr),
                   torch.Generator().manual_seed(cfg.seed), [])
            _adam_steps(candidate, y, run[1], run[2], range(restart_steps), cfg, run[3],
                        f"train_attentive_ssm restart {r + 1}/{restarts}")
            bounds.append(training_bound(candidate, y))
            runs.append(run)
        selected = max(range(restarts), key=bounds.__getitem__)
        best, best_optimizer, generator, history = runs[selected]
        if best is not model:
            model.load_state_dict(best.state_dict())
            optimizer.load_state_dict(best_optimizer.state_dict())
        else:
            optimizer = best_optimizer
        start = restart_steps
        checkpoint(start)
    _adam_steps(model, y, optimizer, generator, range(start, num_steps), cfg, history, "train_attentive_ssm",
                checkpoint)
    checkpoint(num_steps)
    return AttentiveTrainResult(history, num_steps, resumed_from, bounds, selected)
