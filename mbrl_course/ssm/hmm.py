"""Discrete-state models with exact inference: a Gaussian HMM fitted by EM, and a semi-Markov "disease progression" chain.

The model of both, with a discrete state s_t ∈ {1..K} (the lecture's slide on the attentive SSM writes its joint the
same way, with a richer transition)::

    p(Y_{1:T}, s_{1:T}) = p(s_1) p(y_1 | s_1) Π_{t=2}^T p(s_t | s_{t-1}) p(y_t | s_t)

- :func:`forward_algorithm`, :func:`backward_algorithm`: the Bayesian filter's recursion in log space on any
  finite state space (:func:`mbrl_course.filters.bayes.bayesian_filter` is the same recursion, probabilities
  and a prior on s_0 instead); they serve both models below.
- :class:`GaussianHMM`: π, A, Gaussian emissions N(μ_k, Σ_k) with diagonal or full Σ_k;
  :meth:`~GaussianHMM.log_likelihood` (forward algorithm), :meth:`~GaussianHMM.posterior` (forward-backward:
  γ_t(k), ξ_t(j, k)), :meth:`~GaussianHMM.fit_em` (Baum-Welch), :meth:`~GaussianHMM.from_data` (k-means++ start),
  :meth:`~GaussianHMM.sample`. Same conventions as hmmlearn's ``GaussianHMM`` (π is p(s_1); the M-step's
  ``covars_prior``), which the tests check it against.
- :class:`SemiMarkovChain`: K stages, each held for a duration d ~ p_k(d) on 1..D_max (peaked, not geometric:
  a first-order HMM on K states cannot represent it), then a jump to another stage with the probabilities M[k, k'].
  Its exact log-likelihood is the forward algorithm on the augmented state (stage k, time d already spent in it),
  an HMM on K·D_max states; :meth:`~SemiMarkovChain.brute_force_log_likelihood` sums over all K^T stage paths.

Shapes: observations ``Y: (B, T, dy)``, ``mask: (B, T)`` bool (False: y_t missing, p(y_t | s_t) := 1, so padding
at the end changes nothing), states ``(B, T)`` long. Log space throughout; float64 for the exact comparisons.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from mbrl_course._checks import (
    as_tensor,
    check_choice,
    check_finite,
    check_positive_float,
    check_positive_int,
)
from mbrl_course.filters.bayes import _check_probabilities
from mbrl_course.filters.models import _categorical
from mbrl_course.ssm._gaussian import log_prob

COVARIANCE_TYPES = ("diag", "full")


# --- checks -----------------------------------------------------------------------------------------------------
def check_observations(observations, obs_dim: int | None, mask=None, *, dtype: torch.dtype | None = None,
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """``observations: (B, T, dy)`` (dy = ``obs_dim`` when given) and ``mask: (B, T)`` bool -> both checked.

    Masked steps may hold NaN; they are replaced by 0 (their p(y_t | s_t) is set to 1 by the callers).
    """
    if not isinstance(observations, torch.Tensor):
        raise TypeError(f"observations: expected a tensor of shape (B, T, dy), got {type(observations).__name__}")
    if not observations.is_floating_point():
        raise TypeError(f"observations: expected a floating-point tensor, got dtype {observations.dtype}")
    want = "dy" if obs_dim is None else str(obs_dim)
    if observations.ndim != 3 or observations.shape[1] == 0 or (obs_dim is not None and observations.shape[2] != obs_dim):
        raise ValueError(f"observations: expected shape (B, T, {want}) with T >= 1, got {tuple(observations.shape)}")
    if dtype is not None and observations.dtype != dtype:
        raise ValueError(f"observations: expected dtype {dtype} (the model's), got {observations.dtype}; "
                         f"convert with .to({dtype})")
    B, T, _ = observations.shape
    if mask is None:
        mask = torch.ones(B, T, dtype=torch.bool, device=observations.device)
    elif not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or tuple(mask.shape) != (B, T):
        got = f"{tuple(mask.shape)} of dtype {mask.dtype}" if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(f"mask: expected a bool tensor of shape ({B}, {T}), got {got}")
    bad = (~torch.isfinite(observations)).any(-1) & mask
    if bool(bad.any()):
        b, t = (int(i) for i in bad.nonzero()[0])
        raise ValueError(f"observations: expected finite values where mask is True, got NaN/inf at sequence {b}, "
                         f"step {t}")
    clean = torch.where(mask.unsqueeze(-1), observations, torch.zeros((), dtype=observations.dtype))
    return clean, mask


def _probabilities(name: str, value, shape: tuple[int, ...], dtype: torch.dtype | None = None) -> torch.Tensor:
    """A probability vector or row-stochastic matrix of ``shape``, checked."""
    probs = as_tensor(name, value, dtype=dtype or torch.get_default_dtype())
    if tuple(probs.shape) != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {tuple(probs.shape)}")
    _check_probabilities(name, probs)
    return probs


def gaussian_emission_log_prob(observations: torch.Tensor, mask: torch.Tensor | None, means: torch.Tensor,
                               scale_tril: torch.Tensor) -> torch.Tensor:
    """log N(y_t | μ_k, L_k L_kᵀ) for every state k: (B, T, K) from ``observations: (B, T, dy)`` (checked),
    ``means: (K, dy)``, ``scale_tril: (K, dy, dy)``; 0 where ``mask`` is False (p(y_t | s_t) := 1)."""
    y, mask = check_observations(observations, means.shape[-1], mask, dtype=means.dtype)
    logb = log_prob(y.unsqueeze(-2), means, scale_tril)
    return torch.where(mask.unsqueeze(-1), logb, torch.zeros((), dtype=logb.dtype))


# --- exact inference on a finite state space --------------------------------------------------------------------
def forward_algorithm(log_initial: torch.Tensor, log_transition: torch.Tensor,
                      log_emission: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The forward recursion in log space: log α_t(k) = log p(y_{1:t}, s_t = k).

        log α_1(k) = log π_k + log p(y_1 | s_1 = k)
        log α_t(k) = log p(y_t | s_t = k) + logsumexp_j [log α_{t-1}(j) + log A_jk]      t = 2..T
        log p(Y_{1:T}) = logsumexp_k log α_T(k)

    (the Bayesian filter's prediction and update with the normaliser kept: α_t = p(y_t | Y_{1:t-1}) ·
    p(s_t | Y_{1:t}) · p(Y_{1:t-1})). ``log_initial: (S,)`` log π, ``log_transition: (S, S)`` log A with
    A[j, k] = p(s_t = k | s_{t-1} = j) (-inf for impossible jumps), ``log_emission: (B, T, S)`` log p(y_t | s_t)
    (0 where y_t is missing). Returns ``(log_alpha: (B, T, S), log_likelihood: (B,))``.
    """
    log_alpha = [log_initial + log_emission[:, 0]]
    for t in range(1, log_emission.shape[1]):
        log_alpha.append(log_emission[:, t] + torch.logsumexp(log_alpha[-1].unsqueeze(-1) + log_transition, -2))
    alpha = torch.stack(log_alpha, 1)
    return alpha, torch.logsumexp(alpha[:, -1], -1)


def backward_algorithm(log_transition: torch.Tensor, log_emission: torch.Tensor) -> torch.Tensor:
    """The backward recursion: log β_t(j) = log p(y_{t+1:T} | s_t = j).

        log β_T(j) = 0,   log β_t(j) = logsumexp_k [log A_jk + log p(y_{t+1} | s_{t+1} = k) + log β_{t+1}(k)]

    Same arguments as :func:`forward_algorithm`; returns ``log_beta: (B, T, S)``.
    """
    B, T, S = log_emission.shape
    log_beta = [log_emission.new_zeros(B, S)]
    for t in range(T - 2, -1, -1):
        log_beta.append(torch.logsumexp(log_transition + (log_emission[:, t + 1] + log_beta[-1]).unsqueeze(-2), -1))
    return torch.stack(log_beta[::-1], 1)


# --- the Gaussian HMM -------------------------------------------------------------------------------------------
@dataclass
class HMMPosterior:
    """What forward-backward gives: :meth:`GaussianHMM.posterior`."""

    state_probs: torch.Tensor
    """γ_t(k) = p(s_t = k | Y_{1:T}): (B, T, K)"""
    pair_probs: torch.Tensor
    """ξ_t(j, k) = p(s_t = j, s_{t+1} = k | Y_{1:T}), t = 1..T-1: (B, T-1, K, K)"""
    log_likelihood: torch.Tensor
    """log p(Y_{1:T}): (B,)"""


@dataclass
class EMResult:
    """What :meth:`GaussianHMM.fit_em` returns."""

    log_likelihoods: list[float] = field(default_factory=list)
    """Σ_b log p(Y_b) under the parameters before each iteration's M-step"""
    converged: bool = False
    """True when the last improvement was below ``tol``"""


def kmeans_plus_plus(points: torch.Tensor, num_clusters: int, generator: torch.Generator | None = None,
                     num_iters: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means++ seeding (each next centre drawn with probability ∝ squared distance to the nearest one), then
    ``num_iters`` Lloyd steps. ``points: (N, d)`` -> ``(centres: (K, d), labels: (N,))``."""
    first = torch.randint(points.shape[0], (1,), generator=generator)
    centres = points[first]
    for _ in range(1, num_clusters):
        dist = torch.cdist(points, centres).min(-1).values.square()
        nxt = torch.multinomial(dist / dist.sum() if float(dist.sum()) > 0 else torch.ones_like(dist), 1,
                                generator=generator)
        centres = torch.cat([centres, points[nxt]], 0)
    for _ in range(num_iters):
        labels = torch.cdist(points, centres).argmin(-1)
        for k in range(num_clusters):
            if bool((labels == k).any()):
                centres[k] = points[labels == k].mean(0)
    return centres, torch.cdist(points, centres).argmin(-1)


class GaussianHMM:
    """A first-order HMM with Gaussian emissions, exact inference and Baum-Welch.

        p(s_1 = k) = π_k,   p(s_t = k | s_{t-1} = j) = A_jk,   p(y_t | s_t = k) = N(y_t | μ_k, Σ_k)

    ``initial_probs: (K,)`` π, ``transition_matrix: (K, K)`` A (rows sum to 1), ``means: (K, dy)`` μ,
    ``covars``: the variances ``(K, dy)`` (``covariance_type="diag"``) or the matrices ``(K, dy, dy)`` ("full").
    All take the dtype of ``means``.
    """

    def __init__(self, initial_probs, transition_matrix, means, covars, covariance_type: str = "diag") -> None:
        self.covariance_type = check_choice("covariance_type", covariance_type, COVARIANCE_TYPES)
        self.means = as_tensor("means", means, dtype=torch.get_default_dtype()
                               if not isinstance(means, torch.Tensor) else None)
        if self.means.ndim != 2:
            raise ValueError(f"means: expected shape (K, dy), got {tuple(self.means.shape)}")
        K, dy = self.means.shape
        check_finite("means", self.means)
        dtype = self.means.dtype
        self.initial_probs = _probabilities("initial_probs", initial_probs, (K,), dtype)
        self.transition_matrix = _probabilities("transition_matrix", transition_matrix, (K, K), dtype)
        self.covars = as_tensor("covars", covars, dtype=dtype)
        want = (K, dy) if covariance_type == "diag" else (K, dy, dy)
        if tuple(self.covars.shape) != want:
            raise ValueError(f"covars: expected shape {want} for covariance_type={covariance_type!r}, "
                             f"got {tuple(self.covars.shape)}")
        if covariance_type == "diag" and not bool((self.covars > 0).all()):
            raise ValueError("covars: expected positive variances, got a value <= 0")
        if covariance_type == "full" and bool((torch.linalg.cholesky_ex(self.covars).info != 0).any()):
            raise ValueError("covars: expected positive-definite matrices, got a singular or indefinite one")

    @property
    def num_states(self) -> int:
        """K."""
        return self.means.shape[0]

    @property
    def obs_dim(self) -> int:
        """dy."""
        return self.means.shape[1]

    def scale_tril(self) -> torch.Tensor:
        """L_k with Σ_k = L_k L_kᵀ: (K, dy, dy)."""
        if self.covariance_type == "diag":
            return torch.diag_embed(self.covars.sqrt())
        return torch.linalg.cholesky(self.covars)

    def emission_log_prob(self, observations: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """log p(y_t | s_t = k) = log N(y_t | μ_k, Σ_k): (B, T, K); 0 where ``mask`` is False."""
        return gaussian_emission_log_prob(observations, mask, self.means, self.scale_tril())

    def log_likelihood(self, observations: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """log p(Y_{1:T}) per sequence by the forward algorithm (:func:`forward_algorithm`): (B,)."""
        logb = self.emission_log_prob(observations, mask)
        return forward_algorithm(self.initial_probs.log(), self.transition_matrix.log(), logb)[1]

    def posterior(self, observations: torch.Tensor, mask: torch.Tensor | None = None) -> HMMPosterior:
        """Forward-backward: γ_t(k) = α_t(k) β_t(k) / p(Y), ξ_t(j, k) = α_t(j) A_jk p(y_{t+1} | k) β_{t+1}(k) / p(Y)."""
        logb = self.emission_log_prob(observations, mask)
        log_A = self.transition_matrix.log()
        log_alpha, ll = forward_algorithm(self.initial_probs.log(), log_A, logb)
        log_beta = backward_algorithm(log_A, logb)
        gamma = (log_alpha + log_beta - ll[:, None, None]).exp()
        log_xi = (log_alpha[:, :-1, :, None] + log_A + (logb[:, 1:] + log_beta[:, 1:]).unsqueeze(-2)
                  - ll[:, None, None, None])
        return HMMPosterior(gamma, log_xi.exp(), ll)

    def sample(self, num_sequences: int, num_steps: int,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """s_1 ~ π, s_t ~ A[s_{t-1}], y_t ~ N(μ_{s_t}, Σ_{s_t}): ``(states: (B, T) long, observations: (B, T, dy))``."""
        B = check_positive_int("num_sequences", num_sequences)
        T = check_positive_int("num_steps", num_steps)
        s = [_categorical(self.initial_probs.expand(B, -1), generator)]
        for _ in range(1, T):
            s.append(_categorical(self.transition_matrix[s[-1]], generator))
        states = torch.stack(s, 1)
        noise = torch.randn((B, T, self.obs_dim), dtype=self.means.dtype, generator=generator)
        y = self.means[states] + (self.scale_tril()[states] @ noise.unsqueeze(-1)).squeeze(-1)
        return states, y

    @classmethod
    def from_data(cls, observations: torch.Tensor, num_states: int, covariance_type: str = "diag",
                  mask: torch.Tensor | None = None, generator: torch.Generator | None = None,
                  min_covar: float = 1e-3, self_transition: float = 0.9) -> GaussianHMM:
        """A starting point for EM: μ from k-means++ on all observed y_t, Σ_k the data's (co)variance + ``min_covar``,
        π uniform, A with ``self_transition`` on the diagonal and the rest spread evenly."""
        K = check_positive_int("num_states", num_states)
        check_choice("covariance_type", covariance_type, COVARIANCE_TYPES)
        y, mask = check_observations(observations, None, mask)
        points = y[mask]
        if points.shape[0] < K:
            raise ValueError(f"observations: expected at least num_states = {K} observed steps, got {points.shape[0]}")
        centres, _ = kmeans_plus_plus(points, K, generator)
        dy = points.shape[1]
        cov = torch.atleast_2d(torch.cov(points.T)) + min_covar * torch.eye(dy, dtype=y.dtype)
        covars = cov.diagonal().expand(K, dy).clone() if covariance_type == "diag" else cov.expand(K, dy, dy).clone()
        stay = check_positive_float("self_transition", self_transition)
        A = torch.full((K, K), (1 - stay) / max(K - 1, 1), dtype=y.dtype)
        A.fill_diagonal_(stay if K > 1 else 1.0)
        return cls(torch.full((K,), 1.0 / K, dtype=y.dtype), A, centres, covars, covariance_type)

    def fit_em(self, observations: torch.Tensor, num_iters: int = 100, tol: float = 1e-4,
               mask: torch.Tensor | None = None, covars_prior: float = 1e-2, min_covar: float = 1e-3,
               progress: bool = False) -> EMResult:
        """Baum-Welch, in place: E-step by :meth:`posterior`, then the M-step

            π_k = Σ_b γ_1(k) / B,   A_jk = Σ_{b,t} ξ_t(j, k) / Σ_{b,t,k'} ξ_t(j, k'),   μ_k = Σ γ_t(k) y_t / Σ γ_t(k),
            Σ_k = (c I + Σ γ_t(k) (y_t - μ_k)(y_t - μ_k)ᵀ) / Σ γ_t(k)     (diag: the diagonal only)

        with c = ``covars_prior`` (hmmlearn's default 1e-2 keeps a state with few points from collapsing), then
        variances floored at ``min_covar``. Stops after ``num_iters`` or when Σ_b log p(Y_b) rose by less than
        ``tol``. Each iteration cannot lower the log-likelihood (EM's monotonicity; the prior adds a small
        MAP term, so with ``covars_prior > 0`` it is the penalised likelihood that rises).
        """
        n = check_positive_int("num_iters", num_iters)
        tol = check_positive_float("tol", tol, allow_zero=True)
        c = check_positive_float("covars_prior", covars_prior, allow_zero=True)
        floor = check_positive_float("min_covar", min_covar, allow_zero=True)
        y, mask = check_observations(observations, self.obs_dim, mask, dtype=self.means.dtype)
        result = EMResult()
        eye = torch.eye(self.obs_dim, dtype=y.dtype)
        for _ in tqdm(range(n), desc="fit_em", disable=not progress):
            post = self.posterior(y, mask)
            total = float(post.log_likelihood.sum())
            if result.log_likelihoods and total - result.log_likelihoods[-1] < tol:
                result.log_likelihoods.append(total)
                result.converged = True
                break
            result.log_likelihoods.append(total)
            gamma = post.state_probs * mask.unsqueeze(-1)  # missing steps carry no emission statistics
            self.initial_probs = post.state_probs[:, 0].mean(0)
            trans = post.pair_probs.sum((0, 1))
            self.transition_matrix = trans / trans.sum(-1, keepdim=True)
            weight = gamma.sum((0, 1))  # Σ γ_t(k): (K,)
            self.means = torch.einsum("btk,btd->kd", gamma, y) / weight[:, None]
            diff = y.unsqueeze(-2) - self.means  # (B, T, K, dy)
            scatter = torch.einsum("btk,btki,btkj->kij", gamma, diff, diff)
            if self.covariance_type == "diag":
                self.covars = ((c + scatter.diagonal(dim1=-2, dim2=-1)) / weight[:, None]).clamp_min(floor)
            else:
                cov = (c * eye + scatter) / weight[:, None, None]
                self.covars = cov + torch.diag_embed((floor - cov.diagonal(dim1=-2, dim2=-1)).clamp_min(0))
        return result


# --- the semi-Markov "disease progression" chain ----------------------------------------------------------------
def discretised_duration(mean: float, std: float, max_duration: int) -> torch.Tensor:
    """p(d) ∝ exp(-(d - mean)² / (2 std²)) on d = 1..D_max, normalised: a peaked duration law, (D_max,) float64."""
    d = torch.arange(1, max_duration + 1, dtype=torch.float64)
    w = torch.exp(-0.5 * ((d - mean) / std) ** 2)
    return w / w.sum()


class SemiMarkovChain:
    """An explicit-duration (semi-Markov) chain of K stages with Gaussian observations: the known generator.

    Enter stage k = s_1 with probability π_k; stay for d ~ p_k(d), d ∈ 1..D_max; then jump to k' ≠ k with
    probability M[k, k'] and draw its duration; y_t ~ N(μ_{s_t}, diag σ²_{s_t}) every step. With the hazard
    h_k(d) = p_k(d) / Σ_{d' ≥ d} p_k(d') (the probability to leave after exactly d steps given d were reached),
    it is an HMM on the augmented state x_t = (s_t, d_t), d_t the time already spent in s_t including t:

        p(x_1 = (k, 1)) = π_k
        p(x_{t+1} = (k, d+1) | x_t = (k, d)) = 1 - h_k(d),   p(x_{t+1} = (k', 1) | x_t = (k, d)) = h_k(d) M[k, k']

    and p(y_t | x_t = (k, d)) = N(y_t | μ_k, σ_k²), so :func:`forward_algorithm` on K·D_max states gives log p(Y)
    exactly. ``initial_probs: (K,)``, ``durations: (K, D_max)`` rows p_k(d) (rows sum to 1),
    ``jump_matrix: (K, K)`` M (zero diagonal, rows sum to 1), ``means: (K, dy)``, ``stds: (K, dy)``; float64.
    """

    def __init__(self, initial_probs, durations, jump_matrix, means, stds) -> None:
        self.means = as_tensor("means", means, dtype=torch.float64)
        if self.means.ndim != 2:
            raise ValueError(f"means: expected shape (K, dy), got {tuple(self.means.shape)}")
        K, dy = self.means.shape
        self.initial_probs = _probabilities("initial_probs", initial_probs, (K,), torch.float64)
        dur = as_tensor("durations", durations, dtype=torch.float64)
        if dur.ndim != 2 or dur.shape[0] != K:
            raise ValueError(f"durations: expected shape ({K}, D_max), got {tuple(dur.shape)}")
        self.durations = _probabilities("durations", dur, tuple(dur.shape), torch.float64)
        self.jump_matrix = _probabilities("jump_matrix", jump_matrix, (K, K), torch.float64)
        if K > 1 and bool((self.jump_matrix.diagonal() != 0).any()):
            raise ValueError("jump_matrix: expected a zero diagonal (a stage is left for another one; staying is the "
                             "duration's business), got a non-zero M[k, k]")
        self.stds = as_tensor("stds", stds, dtype=torch.float64)
        if tuple(self.stds.shape) != (K, dy) or not bool((self.stds > 0).all()):
            raise ValueError(f"stds: expected positive values of shape ({K}, {dy}), got {tuple(self.stds.shape)}")

    @classmethod
    def disease_progression(cls, obs_noise: float = 0.6) -> SemiMarkovChain:
        """The course's example: healthy -> mild -> severe -> critical, relapsing and remitting, 2-D observations.

        Stages k = 0..3 with peaked durations (discretised Gaussians on 1..12, means 6, 4, 5, 3, std 0.8);
        on leaving: healthy -> mild; mild -> severe 0.6 / healthy 0.4; severe -> critical 0.5 / mild 0.5;
        critical -> healthy 0.7 / severe 0.3 (recovery after treatment). Observation means on a square of side
        2, standard deviation ``obs_noise`` in each coordinate (so neighbouring stages overlap a little).
        """
        durations = torch.stack([discretised_duration(m, 0.8, 12) for m in (6.0, 4.0, 5.0, 3.0)])
        jump = torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.4, 0.0, 0.6, 0.0], [0.0, 0.5, 0.0, 0.5], [0.7, 0.0, 0.3, 0.0]],
                            dtype=torch.float64)
        means = torch.tensor([[0.0, 0.0], [2.0, 0.0], [2.0, 2.0], [0.0, 2.0]], dtype=torch.float64)
        stds = torch.full((4, 2), float(obs_noise), dtype=torch.float64)
        return cls(torch.tensor([0.7, 0.2, 0.1, 0.0], dtype=torch.float64), durations, jump, means, stds)

    @property
    def num_stages(self) -> int:
        """K."""
        return self.means.shape[0]

    @property
    def max_duration(self) -> int:
        """D_max."""
        return self.durations.shape[1]

    @property
    def obs_dim(self) -> int:
        """dy."""
        return self.means.shape[1]

    def survival(self) -> torch.Tensor:
        """P(duration ≥ d) = Σ_{d' ≥ d} p_k(d'): (K, D_max)."""
        return self.durations.flip(-1).cumsum(-1).flip(-1)

    def hazard(self) -> torch.Tensor:
        """h_k(d) = p_k(d) / Σ_{d' ≥ d} p_k(d'): (K, D_max) (1 where the survival is 0)."""
        survival = self.survival()
        return torch.where(survival > 0, self.durations / survival.clamp_min(1e-300), torch.ones_like(survival))

    def augmented_hmm(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(π_x: (K·D,), A_x: (K·D, K·D)) of the augmented state x = (k, d) at index k·D + (d-1)."""
        K, D = self.num_stages, self.max_duration
        h = self.hazard()
        A = torch.zeros(K, D, K, D, dtype=torch.float64)
        for d in range(D - 1):
            A[torch.arange(K), d, torch.arange(K), d + 1] = 1 - h[:, d]
        A[:, :, :, 0] += h[:, :, None] * self.jump_matrix[:, None, :]
        pi = torch.zeros(K, D, dtype=torch.float64)
        pi[:, 0] = self.initial_probs
        return pi.reshape(K * D), A.reshape(K * D, K * D)

    def emission_log_prob(self, observations: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """log N(y_t | μ_k, diag σ_k²): (B, T, K); 0 where ``mask`` is False."""
        return gaussian_emission_log_prob(observations, mask, self.means, torch.diag_embed(self.stds))

    def log_likelihood(self, observations: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """log p(Y_{1:T}) exactly, by :func:`forward_algorithm` on the augmented state (k, d): (B,)."""
        logb = self.emission_log_prob(observations, mask).repeat_interleave(self.max_duration, -1)
        pi, A = self.augmented_hmm()
        return forward_algorithm(pi.log(), A.log(), logb)[1]

    def log_path_prob(self, stages: torch.Tensor) -> torch.Tensor:
        """log p(s_{1:T}) of stage paths ``stages: (N, T)`` long, segment by segment: (N,).

        A path is cut into runs; a completed run of stage k with length d contributes p_k(d) M[k, k'] (k' the next
        stage), the last (censored) run Σ_{d' ≥ d} p_k(d'); runs longer than D_max have probability 0.
        """
        survival = self.survival()
        out = torch.empty(stages.shape[0], dtype=torch.float64)
        for n, path in enumerate(stages.tolist()):
            p0 = float(self.initial_probs[path[0]])
            logp = math.log(p0) if p0 > 0 else -math.inf
            runs = [(k, len(list(g))) for k, g in itertools.groupby(path)]
            for (k, d), (k_next, _) in zip(runs[:-1], runs[1:]):
                p = float(self.durations[k, d - 1]) * float(self.jump_matrix[k, k_next]) if d <= self.max_duration else 0
                logp += math.log(p) if p > 0 else -math.inf
            k, d = runs[-1]
            p = float(survival[k, d - 1]) if d <= self.max_duration else 0.0
            out[n] = logp + (math.log(p) if p > 0 else -math.inf)
        return out

    def brute_force_log_likelihood(self, observations: torch.Tensor) -> torch.Tensor:
        """log p(Y) = log Σ_{s_{1:T}} p(s_{1:T}) Π_t p(y_t | s_t) over all K^T stage paths (T ≤ 6): (B,)."""
        y, _ = check_observations(observations, self.obs_dim, dtype=torch.float64)
        T = y.shape[1]
        if T > 6:
            raise ValueError(f"observations: brute force enumerates K^T paths, expected T <= 6, got T = {T}")
        paths = torch.tensor(list(itertools.product(range(self.num_stages), repeat=T)), dtype=torch.long)
        log_prior = self.log_path_prob(paths)  # (N,)
        logb = self.emission_log_prob(y)  # (B, T, K)
        log_emit = logb[:, torch.arange(T), paths].sum(-1)  # (B, N): Σ_t log p(y_t | s_t) along each path
        return torch.logsumexp(log_prior + log_emit, -1)

    def sample(self, num_sequences: int, num_steps: int,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Ancestral sampling of (stage, duration) and y_t: ``(stages: (B, T) long, observations: (B, T, dy))``."""
        B = check_positive_int("num_sequences", num_sequences)
        T = check_positive_int("num_steps", num_steps)
        k = _categorical(self.initial_probs.expand(B, -1), generator)
        left = _categorical(self.durations[k], generator) + 1  # steps left in the current stage, including t
        stages = []
        for _ in range(T):
            stages.append(k)
            left = left - 1
            leave = left == 0
            k_new = _categorical(self.jump_matrix[k], generator)
            k = torch.where(leave, k_new, k)
            left = torch.where(leave, _categorical(self.durations[k], generator) + 1, left)
        s = torch.stack(stages, 1)
        noise = torch.randn((B, T, self.obs_dim), dtype=torch.float64, generator=generator)
        return s, self.means[s] + self.stds[s] * noise
