"""Visible checks of Assignment 5, "The ELBO of a variational state-space model" (``solutions/05-vssm-elbo``).

In the slide's notation: a linear-Gaussian generative model p(s_0) = N(m_0, S_0), p(s_t | s_{t-1}) =
N(E s_{t-1}, F), p(y_t | s_t) = N(C s_t, D), and a Markovian Gaussian posterior q(s_0 | Y_{1:T}) = N(m, P),
q(s_t | s_{t-1}, Y_{1:T}, ψ) = N(A_t s_{t-1} + b_t, Q_t), t = 1..T. The student writes

- ``gaussian_kl(mean_q, cov_q, mean_p, cov_p) -> (...)``: KL(N(μ_q, Σ_q) || N(μ_p, Σ_p)) in closed form,
  leading dimensions broadcast;
- ``sample_markovian(initial_mean, initial_cov, weights, offsets, covs, noise) -> (N, ..., T+1, d)``: the
  reparameterised ancestral sample s_0 = m + L_P ε_0, s_t = A_t s_{t-1} + b_t + L_{Q_t} ε_t (L the lower
  Cholesky factor) from the given standard-normal ``noise`` ε (N, ..., T+1, d);
- ``elbo(Y, m0, S0, E, F, C, D, initial_mean, initial_cov, weights, offsets, covs, noise) -> (...)``: the
  slide's ELBO on the samples of ``sample_markovian``: Σ_t log N(y_t | C s̃_t, D) − KL(q(s_0) || p(s_0))
  − Σ_t KL(q(s_t | s̃_{t-1}) || p(s_t | s̃_{t-1})), averaged over the N samples.

These are the checks students see. Each draws its own model and posterior from a fixed seed and tests a
property every correct solution has: a worked example, agreement with a **Monte Carlo** estimate (within
five standard errors), broadcasting, the sampler's exact first step and mean path, the joint moments of
its samples, gradients that agree with finite differences (the sample is reparameterised), and the
oracle of the lecture: with the exact posterior p(s_{0:T} | Y_{1:T}) every sample's ELBO is log p(Y_{1:T}),
and any other q's ELBO lies below it. The exact posterior and log p(Y_{1:T}) of a check's model come from
the dense joint Gaussian of all states and observations (no recursion, no Kalman filter). Nothing here
imports the reference implementation (:mod:`mbrl_course.ssm`, :mod:`mbrl_course.filters`); the exact
oracles for any input and the catalogues of mistakes are the instructor's
(``solutions/hidden_checks/vssm.py``).

The checks only pass the student's functions tensors and read the tensors they return, so that they work
when the student's code runs in another process.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from mbrl_course.grading.checks import call_student as _call
from mbrl_course.grading.checks import expect_finite, expect_shape, expect_tensor
from mbrl_course.grading.ensembles import _close, _generator, _worst
from mbrl_course.grading.kalman import BATCH_HINT, random_model, random_spd
from mbrl_course.grading.report import GradingError

DTYPE = torch.float64
MC_SAMPLES = 200_000
"""Samples behind the Monte Carlo estimate of a KL divergence."""
MC_TOLERANCE = 5.0
"""How many standard errors a result may lie from its Monte Carlo estimate."""
ELBO_ATOL = 1e-6
"""How far (per unit of |log p(Y)|, at least 1) the exact posterior's ELBO may lie from log p(Y)."""

SAMPLER_HINT = "s_0 = m + L_P ε_0 and s_t = A_t s_{t-1} + b_t + L_{Q_t} ε_t, L the lower Cholesky factor."
KL_HINT = "KL = ½ [tr(Σ_p⁻¹ Σ_q) + (μ_p − μ_q)ᵀ Σ_p⁻¹ (μ_p − μ_q) − d + log |Σ_p| − log |Σ_q|]."
ELBO_HINT = ("ELBO = mean over the samples of [Σ_t log N(y_t | C s̃_t, D) − KL(q(s_0) || p(s_0)) − Σ_t KL(N(A_t s̃_{t-1} "
             "+ b_t, Q_t) || N(E s̃_{t-1}, F))], with s̃ = sample_markovian(..., noise).")
GRADIENT_HINT = ("Part of the computation is cut off from autograd: compute s_t from the given ε with torch operations "
                 "(reparameterised), no .detach(), .item(), float(...), .numpy() or torch.tensor(...) of intermediate "
                 "results, and no fresh random numbers.")


# ------------------------------------------------------------------------------ Gaussians, models and posteriors
def _mvn(mean: torch.Tensor, cov: torch.Tensor) -> torch.distributions.MultivariateNormal:
    return torch.distributions.MultivariateNormal(mean, covariance_matrix=0.5 * (cov + cov.mT), validate_args=False)


def _matvec(matrix: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    return (matrix @ vector.unsqueeze(-1)).squeeze(-1)


@dataclass
class MarkovianGaussian:
    """q(s_0) = N(m, P), q(s_t | s_{t-1}) = N(A_t s_{t-1} + b_t, Q_t), t = 1..T: what ``sample_markovian`` is given."""

    initial_mean: torch.Tensor
    """m: (d,)"""
    initial_cov: torch.Tensor
    """P: (d, d)"""
    weights: torch.Tensor
    """A_{1:T}: (T, d, d)"""
    offsets: torch.Tensor
    """b_{1:T}: (T, d)"""
    covs: torch.Tensor
    """Q_{1:T}: (T, d, d)"""

    def args(self) -> tuple[torch.Tensor, ...]:
        return self.initial_mean, self.initial_cov, self.weights, self.offsets, self.covs

    @property
    def num_steps(self) -> int:
        return self.weights.shape[-3]


def _joint(q: MarkovianGaussian) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ((T+1) d,) and covariance ((T+1) d, (T+1) d) of the stacked [s_0; ...; s_T] under q, from the
    moment recursion E[s_t] = A_t E[s_{t-1}] + b_t, Cov(s_t, s_u) = A_t Cov(s_{t-1}, s_u) (u < t),
    Cov(s_t) = A_t Cov(s_{t-1}) A_tᵀ + Q_t."""
    T, d = q.num_steps, q.initial_mean.shape[-1]
    means = [q.initial_mean]
    blocks = [[q.initial_cov]]
    for t in range(1, T + 1):
        A = q.weights[t - 1]
        means.append(A @ means[-1] + q.offsets[t - 1])
        row = [A @ blocks[t - 1][u] for u in range(t)]
        row.append(A @ blocks[t - 1][t - 1] @ A.T + q.covs[t - 1])
        blocks.append(row)
    cov = torch.zeros((T + 1) * d, (T + 1) * d, dtype=DTYPE)
    for t in range(T + 1):
        for u in range(t + 1):
            cov[t * d:(t + 1) * d, u * d:(u + 1) * d] = blocks[t][u]
            cov[u * d:(u + 1) * d, t * d:(t + 1) * d] = blocks[t][u].T
    return torch.cat(means), cov


@dataclass
class Problem:
    """A linear-Gaussian model, its observations, and the exact answers of the lecture for it."""

    m0: torch.Tensor
    S0: torch.Tensor
    E: torch.Tensor
    F: torch.Tensor
    C: torch.Tensor
    D: torch.Tensor
    Y: torch.Tensor
    """y_1..y_T: (T, dy)"""
    log_evidence: float
    """log p(Y_{1:T})"""
    posterior: MarkovianGaussian
    """p(s_0 | Y) and p(s_t | s_{t-1}, Y_{1:T}): the exact posterior, Markovian"""
    posterior_mean: torch.Tensor
    posterior_cov: torch.Tensor
    """the exact posterior of the stacked [s_0; ...; s_T]"""

    def model_args(self) -> tuple[torch.Tensor, ...]:
        return self.Y, self.m0, self.S0, self.E, self.F, self.C, self.D

    def expected_elbo(self, q: MarkovianGaussian) -> float:
        """The exact ELBO of q, log p(Y) − KL(q(s_{0:T}) || p(s_{0:T} | Y)) (joint Gaussians)."""
        mean, cov = _joint(q)
        kl = torch.distributions.kl_divergence(_mvn(mean, cov), _mvn(self.posterior_mean, self.posterior_cov))
        return self.log_evidence - float(kl)


def random_problem(seed: int, state_dim: int = 2, obs_dim: int = 2, num_steps: int = 5) -> Problem:
    """A random linear-Gaussian model (float64), T observations sampled from it, log p(Y) and the exact
    posterior, from the dense joint Gaussian of (s_0, ..., s_T, y_1, ..., y_T)."""
    model = random_model(500 + seed, state_dim, obs_dim, num_steps)
    T, dx, dy = num_steps, state_dim, obs_dim
    prior = MarkovianGaussian(model.m0, model.S0, model.E.expand(T, dx, dx), torch.zeros(T, dx, dtype=DTYPE),
                              model.F.expand(T, dx, dx))
    mean, cov = _joint(prior)
    H = torch.zeros(T * dy, (T + 1) * dx, dtype=DTYPE)  # y = H s + v
    for t in range(1, T + 1):
        H[(t - 1) * dy:t * dy, t * dx:(t + 1) * dx] = model.C
    R = torch.kron(torch.eye(T, dtype=DTYPE), model.D)
    y = model.Y.reshape(-1)
    S_y = H @ cov @ H.T + R
    log_evidence = float(_mvn(H @ mean, S_y).log_prob(y))
    gain = torch.linalg.solve(S_y, H @ cov).T  # Σ Hᵀ S_y⁻¹
    post_mean = mean + gain @ (y - H @ mean)
    post_cov = cov - gain @ H @ cov
    post_cov = 0.5 * (post_cov + post_cov.T)

    def block(t, u):
        return post_cov[t * dx:(t + 1) * dx, u * dx:(u + 1) * dx]

    mu = post_mean.reshape(T + 1, dx)
    weights, offsets, covs = [], [], []
    for t in range(1, T + 1):
        A = torch.linalg.solve(block(t - 1, t - 1), block(t - 1, t)).T  # Cov(s_t, s_{t-1}) Cov(s_{t-1})⁻¹
        weights.append(A)
        offsets.append(mu[t] - A @ mu[t - 1])
        Q = block(t, t) - A @ block(t - 1, t)
        covs.append(0.5 * (Q + Q.T))
    posterior = MarkovianGaussian(mu[0], block(0, 0), torch.stack(weights), torch.stack(offsets), torch.stack(covs))
    return Problem(model.m0, model.S0, model.E, model.F, model.C, model.D, model.Y, log_evidence, posterior,
                   post_mean, post_cov)


def perturbed(q: MarkovianGaussian, seed: int, size: float = 0.3) -> MarkovianGaussian:
    """Another Markovian q: the means moved, the weights changed, the covariances widened."""
    gen = _generator(510_000 + seed)
    T, d = q.num_steps, q.initial_mean.shape[-1]
    return MarkovianGaussian(
        q.initial_mean + size * torch.randn(d, generator=gen, dtype=DTYPE),
        q.initial_cov * (1 + size),
        q.weights + size * torch.randn(T, d, d, generator=gen, dtype=DTYPE) / 2,
        q.offsets + size * torch.randn(T, d, generator=gen, dtype=DTYPE),
        q.covs * (1 + size) + size * random_spd(d, gen, 0.05, 0.3, (T,)),
    )


def random_markovian(seed: int, state_dim: int = 3, num_steps: int = 4) -> MarkovianGaussian:
    """A random Markovian Gaussian q (non-symmetric A_t, full covariances)."""
    gen = _generator(520_000 + seed)
    T, d = num_steps, state_dim
    return MarkovianGaussian(torch.randn(d, generator=gen, dtype=DTYPE), random_spd(d, gen, 0.3, 2.0),
                             0.8 * torch.randn(T, d, d, generator=gen, dtype=DTYPE) / math.sqrt(d),
                             torch.randn(T, d, generator=gen, dtype=DTYPE), random_spd(d, gen, 0.1, 1.0, (T,)))


def standard_noise(seed: int, *shape: int) -> torch.Tensor:
    """Standard-normal ε of the given shape, float64."""
    return torch.randn(*shape, generator=_generator(530_000 + seed), dtype=DTYPE)


# ------------------------------------------------------------------------------ gaussian_kl
KL_EXAMPLE = {"mean_q": (1.0, 0.0), "cov_q": ((1.0, 0.5), (0.5, 2.0)), "mean_p": (0.0, 1.0),
              "cov_p": ((2.0, 0.0), (0.0, 1.0))}
"""A worked example in d = 2 ..."""
KL_EXAMPLE_RESULT = 1.066766
"""... KL(q || p) (6 decimals) ..."""
KL_EXAMPLE_REVERSED = 1.504663
"""... and KL(p || q), the other direction."""


def _kl(fn: Callable, mean_q, cov_q, mean_p, cov_p, shape: tuple[int, ...] = ()) -> torch.Tensor:
    name = "gaussian_kl"
    result = _call(name, fn, mean_q, cov_q, mean_p, cov_p)
    result = expect_tensor(name, result)
    if not shape and result.numel() == 1:
        result = result.reshape(())
    result = expect_shape(name, result, shape, "one KL per pair of Gaussians (the leading dimensions)")
    expect_finite(name, result)
    return result.detach().to(DTYPE)


def check_kl_example(gaussian_kl: Callable) -> None:
    """The worked example in d = 2 and KL(q || q) = 0."""
    args = [torch.tensor(KL_EXAMPLE[key], dtype=DTYPE) for key in ("mean_q", "cov_q", "mean_p", "cov_p")]
    same = _kl(gaussian_kl, args[0], args[1], args[0], args[1])
    if abs(float(same)) > 1e-9:
        raise GradingError(f"gaussian_kl: the KL divergence of a Gaussian from itself is 0; you have {float(same):.6g}. "
                           + KL_HINT)
    got = float(_kl(gaussian_kl, *args))
    if abs(got - KL_EXAMPLE_RESULT) <= 2e-6:
        return
    hint = KL_HINT
    if abs(got - KL_EXAMPLE_REVERSED) <= 2e-6:
        hint = ("You computed KL(p || q), the other direction: the KL divergence is not symmetric, and the ELBO "
                "needs KL(q || p) = E_q[log q − log p] (Σ_p⁻¹ in the trace and the quadratic form).")
    raise GradingError(f"gaussian_kl: for the worked example (μ_q = {KL_EXAMPLE['mean_q']}, Σ_q = {KL_EXAMPLE['cov_q']}, "
                       f"μ_p = {KL_EXAMPLE['mean_p']}, Σ_p = {KL_EXAMPLE['cov_p']}) KL(q || p) = {KL_EXAMPLE_RESULT}; "
                       f"you have {got:.6g}. {hint}")


def _kl_pair(seed: int, dim: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = _generator(540_000 + seed)
    return (torch.randn(dim, generator=gen, dtype=DTYPE), random_spd(dim, gen, 0.3, 1.5),
            0.5 * torch.randn(dim, generator=gen, dtype=DTYPE), random_spd(dim, gen, 0.5, 2.0))


def check_kl_monte_carlo(gaussian_kl: Callable, seed: int = 0) -> None:
    """KL(q || p) of two random Gaussians in d = 3 agrees with the Monte Carlo estimate E_q[log q(x) − log p(x)]."""
    mean_q, cov_q, mean_p, cov_p = _kl_pair(seed)
    got = float(_kl(gaussian_kl, mean_q, cov_q, mean_p, cov_p))
    q, p = _mvn(mean_q, cov_q), _mvn(mean_p, cov_p)
    x = mean_q + standard_noise(seed, MC_SAMPLES, 3) @ torch.linalg.cholesky(cov_q).T
    terms = q.log_prob(x) - p.log_prob(x)
    estimate, se = float(terms.mean()), float(terms.std()) / math.sqrt(MC_SAMPLES)
    if abs(got - estimate) <= MC_TOLERANCE * se:
        return
    x_p = mean_p + standard_noise(seed + 1, MC_SAMPLES, 3) @ torch.linalg.cholesky(cov_p).T
    other = p.log_prob(x_p) - q.log_prob(x_p)
    hint = KL_HINT
    if abs(got - float(other.mean())) <= 2 * float(other.std()) / math.sqrt(MC_SAMPLES):
        hint = ("Your value is KL(p || q), the other direction: the ELBO needs KL(q || p) = E_q[log q − log p].")
    elif got < 0:
        hint = "A KL divergence is never negative. " + KL_HINT
    raise GradingError(f"gaussian_kl: wrong KL(q || p) of two Gaussians in d = 3: you have {got:.6g}, but a Monte Carlo "
                       f"estimate E_q[log q(x) − log p(x)] from {MC_SAMPLES} samples gives {estimate:.6g} ± {se:.2g} "
                       f"(you are {abs(got - estimate) / se:.0f} standard errors away). {hint}")


def check_kl_broadcast(gaussian_kl: Callable, seed: int = 0) -> None:
    """Leading dimensions broadcast: N means against one covariance ((N, d) with (d, d): (N,)), and a batch of
    B pairs ((B, d), (B, d, d): (B,)); each entry equals the KL of its pair alone."""
    name = "gaussian_kl"
    gen = _generator(550_000 + seed)
    d, N, B = 3, 4, 3
    mean_q, cov_q, mean_p, cov_p = _kl_pair(seed)
    many_q = torch.randn(N, d, generator=gen, dtype=DTYPE)
    many_p = 0.5 * torch.randn(N, d, generator=gen, dtype=DTYPE)
    cases = [("N means (N, d) against one covariance (d, d)", (many_q, cov_q, many_p, cov_p), N,
              lambda i: (many_q[i], cov_q, many_p[i], cov_p))]
    covs_q = random_spd(d, gen, 0.3, 1.5, (B,))
    covs_p = random_spd(d, gen, 0.5, 2.0, (B,))
    cases.append(("a batch of B pairs, means (B, d) and covariances (B, d, d)", (many_q[:B], covs_q, mean_p.expand(B, d),
                  covs_p), B, lambda i: (many_q[i], covs_q[i], mean_p, covs_p[i])))
    for label, args, size, single in cases:
        try:
            result = gaussian_kl(*args)
        except GradingError:
            raise
        except NotImplementedError:
            raise GradingError(f"{name}: not implemented yet: replace `raise NotImplementedError()` with your code") from None
        except Exception as err:  # noqa: BLE001 (the student's code crashed on broadcasting)
            raise GradingError(f"{name} raised {type(err).__name__} for {label}: "
                               f"{str(err).splitlines()[0] if str(err) else ''}." + BATCH_HINT) from None
        got = expect_shape(f"{name} ({label})", expect_tensor(name, result), (size,), "one KL per pair")
        want = torch.stack([_kl(gaussian_kl, *single(i)) for i in range(size)])
        if not _close(got, want, atol=1e-9, rtol=1e-7):
            raise GradingError(f"{name}: for {label}, an entry differs from the KL of its pair alone:"
                               f"{_worst(got, want)}." + BATCH_HINT)


# ------------------------------------------------------------------------------ sample_markovian
def _sample(fn: Callable, q: MarkovianGaussian, noise: torch.Tensor) -> torch.Tensor:
    name = "sample_markovian"
    result = expect_shape(name, _call(name, fn, *q.args(), noise), tuple(noise.shape),
                          "(N, T+1, d), the states s_0..s_T of each sample, like the noise")
    expect_finite(name, result)
    return result


def check_sampler_noise(sample_markovian: Callable, seed: int = 0) -> None:
    """(N, T+1, d) like the noise; a function of the given noise only (same ε, same states);
    s_0 = m + L_P ε_0 with L_P the lower Cholesky factor of P; with ε = 0 the mean path s_t = A_t s_{t-1} + b_t."""
    name = "sample_markovian"
    q = random_markovian(seed)
    noise = standard_noise(seed, 5, q.num_steps + 1, 3)
    first = _sample(sample_markovian, q, noise).detach()
    again = _sample(sample_markovian, q, noise.clone()).detach()
    if not _close(first, again, atol=1e-12, rtol=0):
        raise GradingError(f"{name}: two calls with the same noise gave different states. Draw no random numbers "
                           "yourself (no torch.randn): the sample must be a function of the noise ε you are given, "
                           "s = g(ε), or it is not reparameterised. " + SAMPLER_HINT)
    L = torch.linalg.cholesky(q.initial_cov)
    want = q.initial_mean + noise[:, 0] @ L.T
    if not _close(first[:, 0], want):
        if _close(first[:, 0], q.initial_mean + noise[:, 0] @ q.initial_cov.T):
            hint = ("You multiplied ε_0 by the covariance P itself; s_0 = m + L ε_0 needs its Cholesky factor L "
                    "(L Lᵀ = P, torch.linalg.cholesky), or the sample's covariance is P², not P.")
        elif _close(first[:, 0], q.initial_mean + noise[:, 0] @ L):
            hint = "You used Lᵀ (the upper factor); s_0 = m + L ε_0 with L = torch.linalg.cholesky(P), lower triangular."
        else:
            hint = SAMPLER_HINT
        raise GradingError(f"{name}: wrong s_0:{_worst(first[:, 0], want)}. {hint}")
    zero = _sample(sample_markovian, q, torch.zeros_like(noise[:1])).detach()[0]
    path = [q.initial_mean]
    for t in range(1, q.num_steps + 1):
        path.append(q.weights[t - 1] @ path[-1] + q.offsets[t - 1])
    path = torch.stack(path)
    if not _close(zero, path):
        hint = ("With ε = 0 every step is its mean, s_t = A_t s_{t-1} + b_t: weights[t-1] and offsets[t-1] hold A_t "
                "and b_t of step t = 1..T (index 0 is step 1), and s_t is built from the s_{t-1} you just sampled.")
        raise GradingError(f"{name}: with ε = 0 (noise of zeros) the states should follow the mean path;"
                           f"{_worst(zero, path)}. {hint}")


def _standard_error(terms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return terms.mean(0), terms.std(0) / math.sqrt(terms.shape[0])


def check_sampler_moments(sample_markovian: Callable, seed: int = 0, num_samples: int = 40_000) -> None:
    """The samples' joint mean and covariance (all of s_0..s_T, cross-time entries included) agree with q's
    exact moments within five standard errors."""
    name = "sample_markovian"
    q = random_markovian(seed, state_dim=2, num_steps=3)
    T, d = q.num_steps, 2
    states = _sample(sample_markovian, q, standard_noise(seed + 7, num_samples, T + 1, d)).detach().to(DTYPE)
    flat = states.reshape(num_samples, -1)
    mean, cov = _joint(q)
    got_mean, mean_se = _standard_error(flat)
    centred = flat - mean
    got_cov, cov_se = _standard_error(centred[:, :, None] * centred[:, None, :])
    for label, got, want, se in (("mean", got_mean, mean, mean_se), ("covariance", got_cov, cov, cov_se)):
        z = (got - want).abs() / (se + 1e-12)
        if float(z.max()) > MC_TOLERANCE:
            index = tuple(int(i) for i in torch.unravel_index(z.argmax(), z.shape))
            where = " (state " + ", ".join(f"s_{i // d}[{i % d}]" for i in index) + ")"
            hint = SAMPLER_HINT
            if label == "covariance" and _close(got_cov[:d, :d], q.initial_cov @ q.initial_cov, atol=0.2, rtol=0.1):
                hint = "Cov(s_0) is P², not P: multiply ε by the Cholesky factor L of P (L Lᵀ = P), not by P. " + hint
            raise GradingError(f"{name}: the {label} of {num_samples} samples differs from q's exact {label} at "
                               f"index {index}{where}: {float(got[index]):.4g} from the samples, {float(want[index]):.4g} "
                               f"exactly ({float(z[index]):.0f} standard errors). {hint}")


def check_sampler_gradient(sample_markovian: Callable, seed: int = 0) -> None:
    """Reparameterised: the states carry gradients, and autograd's gradient with respect to the offsets b_t and
    the initial covariance P agrees with finite differences of the function on fixed noise."""
    name = "sample_markovian"
    q = random_markovian(seed, state_dim=2, num_steps=3)
    noise = standard_noise(seed + 3, 4, q.num_steps + 1, 2)
    gen = _generator(560_000 + seed)
    weight = torch.randn(noise.shape, generator=gen, dtype=DTYPE)
    for label, index in (("offsets b_t", 3), ("initial_cov P", 1)):
        args = list(q.args())
        args[index] = args[index].clone().requires_grad_(True)
        states = expect_tensor(name, _call(name, sample_markovian, *args, noise))
        if not states.requires_grad:
            raise GradingError(f"{name}: the states carry no gradient with respect to the {label}: the sample is not "
                               f"reparameterised. {GRADIENT_HINT}")
        (gradient,) = torch.autograd.grad((states * weight).sum(), args[index], allow_unused=True)
        if gradient is None or float(gradient.abs().max()) == 0.0:
            raise GradingError(f"{name}: the states do not depend on the {label} through autograd. {GRADIENT_HINT}")
        direction = torch.randn(gradient.shape, generator=gen, dtype=DTYPE)
        if index == 1:
            direction = 0.5 * (direction + direction.T)

        def at(step: float, index=index, direction=direction) -> float:
            moved = list(q.args())
            moved[index] = moved[index] + step * direction
            with torch.no_grad():
                result = _call(name, sample_markovian, *moved, noise)
            return float((expect_tensor(name, result).detach().to(DTYPE) * weight).sum())

        h = 1e-5
        numeric, analytic = (at(h) - at(-h)) / (2 * h), float((gradient * direction).sum())
        if abs(numeric - analytic) > 1e-5 * max(1.0, abs(numeric)):
            raise GradingError(f"{name}: autograd's gradient with respect to the {label} disagrees with finite "
                               f"differences of your function ({analytic:.6g} by autograd, {numeric:.6g} by finite "
                               f"differences, along a random direction). {GRADIENT_HINT}")


# ------------------------------------------------------------------------------ elbo
def _elbo(fn: Callable, problem: Problem, q: MarkovianGaussian, noise: torch.Tensor) -> torch.Tensor:
    name = "elbo"
    result = expect_tensor(name, _call(name, fn, *problem.model_args(), *q.args(), noise))
    if result.numel() == 1:
        result = result.reshape(())
    result = expect_shape(name, result, (), "(): one number, the ELBO averaged over the N samples")
    expect_finite(name, result)
    return result


def sigma_noise(num_steps: int, dim: int) -> torch.Tensor:
    """The 2n sigma points ±√n e_i of n = (T+1) d standard-normal numbers, as noise (2n, T+1, d).

    The ELBO estimate with the analytic KL is a quadratic function of the noise ε (s̃_{0:T} is affine in ε, and
    log N(y_t | C s̃_t, D) and the KL terms are quadratic in s̃), and the average of a quadratic over these 2n
    points is its expectation under ε ~ N(0, I): on this noise the estimate is the exact ELBO.
    """
    n = (num_steps + 1) * dim
    eye = math.sqrt(n) * torch.eye(n, dtype=DTYPE)
    return torch.cat([eye, -eye]).reshape(2 * n, num_steps + 1, dim)


def check_elbo_exact_posterior(elbo: Callable, seed: int = 0) -> None:
    """With the exact posterior q = p(s_{0:T} | Y_{1:T}) (and the model the data came from) the ELBO is
    log p(Y_{1:T}): its estimate on the sigma-point noise (:func:`sigma_noise`, the exact expectation) equals
    log p(Y) to round-off."""
    problem = random_problem(seed)
    noise = sigma_noise(problem.posterior.num_steps, problem.m0.shape[-1])
    num_samples = noise.shape[0]
    got = float(_elbo(elbo, problem, problem.posterior, noise).detach())
    want = problem.log_evidence
    if abs(got - want) <= ELBO_ATOL * max(1.0, abs(want)):
        return
    if abs(got - num_samples * want) <= ELBO_ATOL * num_samples * max(1.0, abs(want)):
        hint = f"Your value is {num_samples} × log p(Y): average over the N = {num_samples} samples, do not sum."
    elif got > want:
        hint = ("An ELBO is a lower bound and can never exceed log p(Y): a KL term is missing or has the wrong sign "
                "or direction. " + ELBO_HINT)
    else:
        hint = ELBO_HINT
    raise GradingError(f"elbo: with the exact posterior q(s_{{0:T}}) = p(s_{{0:T}} | Y_{{1:T}}) the ELBO is log p(Y_{{1:T}}) "
                       f"= {want:.8g}; on noise whose average is exact (the {num_samples} sigma points ±√n e_i, n = "
                       f"(T+1) d) you have {got:.8g} (off by {got - want:.4g}). {hint}")


def check_elbo_gap(elbo: Callable, seed: int = 0) -> None:
    """For a q other than the posterior the ELBO is log p(Y) − KL(q(s_{0:T}) || p(s_{0:T} | Y)) < log p(Y): exactly so
    on the sigma-point noise."""
    problem = random_problem(seed)
    q = perturbed(problem.posterior, seed)
    noise = sigma_noise(q.num_steps, problem.m0.shape[-1])
    got = float(_elbo(elbo, problem, q, noise).detach())
    want, bound = problem.expected_elbo(q), problem.log_evidence
    if abs(got - want) <= ELBO_ATOL * max(1.0, abs(want)):
        return
    if got > bound:
        hint = ("Your value is above log p(Y), which an ELBO can never be: a KL term is missing, has the wrong sign, "
                "or is KL(p || q) instead of KL(q || p).")
    elif abs(got - noise.shape[0] * want) <= ELBO_ATOL * noise.shape[0] * max(1.0, abs(want)):
        hint = "Your value is N times the ELBO: average over the samples, do not sum."
    else:
        hint = ELBO_HINT
    raise GradingError(f"elbo: for a q other than the posterior the ELBO is log p(Y) − KL(q || p(· | Y)) = {want:.8g} "
                       f"(log p(Y) = {bound:.8g}); on the sigma-point noise (the exact expectation) you have "
                       f"{got:.8g}. {hint}")


def check_elbo_bound(elbo: Callable, seed: int = 0, chunks: int = 16, chunk_size: int = 100) -> None:
    """For another q the ELBO lies below log p(Y_{1:T}): the estimates on 16 batches of noise agree with the exact
    ELBO log p(Y) − KL(q(s_{0:T}) || p(s_{0:T} | Y)) within five standard errors."""
    problem = random_problem(seed)
    q = perturbed(problem.posterior, seed)
    T, d = q.num_steps, problem.m0.shape[-1]
    values = torch.stack([_elbo(elbo, problem, q, standard_noise(seed + 100 + k, chunk_size, T + 1, d)).detach()
                          for k in range(chunks)]).to(DTYPE)
    estimate, se = float(values.mean()), float(values.std()) / math.sqrt(chunks)
    want, bound = problem.expected_elbo(q), problem.log_evidence
    if abs(estimate - want) <= MC_TOLERANCE * se + 1e-9:
        return
    if estimate > bound:
        hint = ("Your estimate is above log p(Y), which an ELBO can never be: a KL term is missing, has the wrong "
                "sign, or is KL(p || q) instead of KL(q || p).")
    elif abs(estimate - chunk_size * want) <= MC_TOLERANCE * chunk_size * se + 1e-9:
        hint = "Your value is N times the ELBO: average over the samples, do not sum."
    else:
        hint = ELBO_HINT
    raise GradingError(f"elbo: for a q other than the posterior the ELBO should be log p(Y) − KL(q || p(· | Y)) = "
                       f"{want:.6g} (log p(Y) = {bound:.6g}); your estimates (16 batches of {chunk_size} samples) "
                       f"average {estimate:.6g} ± {se:.2g}, {abs(estimate - want) / max(se, 1e-12):.0f} standard errors "
                       f"away. {hint}")


def check_elbo_gradient(elbo: Callable, seed: int = 0, num_samples: int = 4) -> None:
    """Differentiable and reparameterised: on fixed noise, the ELBO's gradient with respect to the offsets b_t
    is not 0 and agrees with finite differences of the function (the samples move with b_t)."""
    name = "elbo"
    problem = random_problem(seed)
    q = perturbed(problem.posterior, seed)
    noise = standard_noise(seed + 5, num_samples, q.num_steps + 1, problem.m0.shape[-1])
    offsets = q.offsets.clone().requires_grad_(True)
    moved = MarkovianGaussian(q.initial_mean, q.initial_cov, q.weights, offsets, q.covs)
    value = _elbo(elbo, problem, moved, noise)
    if not value.requires_grad:
        raise GradingError(f"{name}: the ELBO carries no gradient with respect to the offsets b_t. {GRADIENT_HINT}")
    (gradient,) = torch.autograd.grad(value, offsets, allow_unused=True)
    if gradient is None or float(gradient.abs().max()) == 0.0:
        raise GradingError(f"{name}: the ELBO does not depend on the offsets b_t through autograd. {GRADIENT_HINT}")
    direction = torch.randn(gradient.shape, generator=_generator(570_000 + seed), dtype=DTYPE)

    def at(step: float) -> float:
        shifted = MarkovianGaussian(q.initial_mean, q.initial_cov, q.weights, q.offsets + step * direction, q.covs)
        with torch.no_grad():
            return float(_elbo(elbo, problem, shifted, noise).detach())

    h = 1e-5
    numeric, analytic = (at(h) - at(-h)) / (2 * h), float((gradient * direction).sum())
    if abs(numeric - analytic) > 1e-5 * max(1.0, abs(numeric)):
        raise GradingError(f"{name}: autograd's gradient with respect to the offsets b_t disagrees with finite "
                           f"differences of your function on the same noise ({analytic:.6g} by autograd, "
                           f"{numeric:.6g} by finite differences, along a random direction). The samples s̃_t depend "
                           f"on b_t, and the gradient must flow through them. {GRADIENT_HINT}")

