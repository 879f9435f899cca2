"""Visible checks for Assignment 4, "Moment matching: a Gaussian through a GP, exactly"
(``solutions/04-moment-matching``).

The student writes PILCO's analytic moments (Deisenroth & Rasmussen, 2011; Deisenroth's thesis,
§2.3) in the notation of the lecture: a GP with the squared exponential (SE) kernel
k(x, x') = α² exp(−½ (x − x')ᵀ Λ⁻¹ (x − x')), Λ = diag(ℓ²), noise variance σ_ε², trained on inputs X with
β = (K + σ_ε² I)⁻¹ y, and a test input x ~ N(μ, Σ):

- ``se_kernel(x1, x2, lengthscales, signal_var) -> (n, m)``;
- ``gp_posterior(X, y, x_star, lengthscales, signal_var, noise_var) -> (mean (m,), var (m,))``: the
  posterior of the latent f(x*) (by a Cholesky factor);
- ``predictive_mean_1d(mu, sigma2, inputs, beta, lengthscale, signal_var) -> (B,)``: E[f(x)] for
  x ~ N(μ, σ²) in one dimension, for B Gaussian inputs at once;
- ``predictive_variance_1d(mu, sigma2, inputs, beta, lengthscale, signal_var, K_inv) -> (B,)``: Var[f(x)];
- ``predictive_mean(mu, Sigma, inputs, beta, lengthscales, signal_var) -> (mean (E,), input_output_cov (D, E))``:
  E[f_a(x)] and Cov[x, f_a(x)] of E independent GPs at x ~ N(μ, Σ) in D dimensions;
- ``predictive_covariance(mu, Sigma, inputs, beta, lengthscales, signal_var, K_inv) -> (E, E)``: Cov[f(x)];
- ``expected_saturating_cost(mu, Sigma, target, W) -> ()``: E[1 − exp(−½ (x − x*)ᵀ W (x − x*))].

These are the checks students see. Each draws its own GP and Gaussian inputs from a fixed seed and
tests a property every correct solution has: a worked example, a closed form with one training
point, the limits (a point input, an input far from the data, a very wide input) and, above all,
agreement with a **Monte Carlo** estimate of the same moment (200 000 samples of x, each pushed
through the GP's posterior), within five of its standard errors. Nothing here computes the exact
answer for inputs of a student's choosing, nor imports the reference implementation
(:mod:`mbrl_course.models.moment_matching`); the exact oracles and the catalogues of mistakes are the
instructor's (``solutions/hidden_checks/moment_matching.py``).

The checks only pass the student's functions tensors and read the tensors they return, so that they
work when the student's code runs in another process.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from mbrl_course.grading.checks import call_student as _call
from mbrl_course.grading.checks import expect_finite, expect_shape, fmt
from mbrl_course.grading.checks import expect_pair as _pair
from mbrl_course.grading.ensembles import _close, _generator, _worst
from mbrl_course.grading.kalman import random_spd
from mbrl_course.grading.report import GradingError

DTYPE = torch.float64
MC_SAMPLES = 200_000
"""Samples of x behind every Monte Carlo estimate."""
MC_TOLERANCE = 5.0
"""How many standard errors a result may lie from its Monte Carlo estimate."""


# ------------------------------------------------------------------------------ a GP to push Gaussians through
def _scaled_sq_dist(a: torch.Tensor, b: torch.Tensor, lengthscales: torch.Tensor) -> torch.Tensor:
    """Σ_d (a_d − b_d)² / ℓ_ad² for every output a: a (S, D), b (n, D), lengthscales (E, D) -> (E, S, n)."""
    scale = lengthscales[:, None, :]
    return torch.cdist(a / scale, b / scale, compute_mode="donot_use_mm_for_euclid_dist").pow(2)


@dataclass
class GPProblem:
    """E independent GPs with SE kernels on shared inputs: what the moment-matching functions are given.

    ``inputs`` X (n, D); ``lengthscales`` ℓ (E, D); ``signal_var`` α² (E,); ``noise_var`` σ_ε² (E,);
    ``beta`` β_a = (K_a + σ_a² I)⁻¹ y_a (E, n); ``K_inv`` (K_a + σ_a² I)⁻¹ (E, n, n). Float64.
    """

    inputs: torch.Tensor
    lengthscales: torch.Tensor
    signal_var: torch.Tensor
    noise_var: torch.Tensor
    beta: torch.Tensor
    K_inv: torch.Tensor

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The GPs' posterior means and variances of the latent f at the points x (S, D): (S, E) each."""
        k = self.signal_var[:, None, None] * torch.exp(-0.5 * _scaled_sq_dist(x, self.inputs, self.lengthscales))
        mean = (k * self.beta[:, None, :]).sum(-1)
        var = self.signal_var[:, None] - (k * (k @ self.K_inv)).sum(-1)
        return mean.T, var.T

    def args_1d(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(inputs (n,), beta (n,), lengthscale (), signal_var ()) of a GP with D = E = 1."""
        return self.inputs[:, 0], self.beta[0], self.lengthscales[0, 0], self.signal_var[0]


def random_gp(seed: int, num_points: int = 12, input_dim: int = 1, outputs: int = 1,
              noise_var: float = 0.01) -> GPProblem:
    """A GP fitted to ``num_points`` noisy observations of smooth functions, float64; with several
    outputs, the outputs share most of their signal (so that they co-vary)."""
    gen = _generator(300_000 + seed)
    D, E, n = input_dim, outputs, num_points
    inputs = 5 * torch.rand(n, D, generator=gen, dtype=DTYPE) - 2.5
    direction = torch.randn(D, generator=gen, dtype=DTYPE) / math.sqrt(D)
    other = torch.randn(D, generator=gen, dtype=DTYPE) / math.sqrt(D)
    shared = torch.sin(1.5 * inputs @ direction)
    own = torch.cos(inputs @ other)
    weights = torch.rand(E, generator=gen, dtype=DTYPE)
    targets = (1 - 0.5 * weights[:, None]) * shared + weights[:, None] * own
    targets = targets + 0.1 * torch.randn(E, n, generator=gen, dtype=DTYPE)
    lengthscales = 0.6 + 0.6 * torch.rand(E, D, generator=gen, dtype=DTYPE) * math.sqrt(D)
    signal_var = 0.6 + torch.rand(E, generator=gen, dtype=DTYPE)
    noise = torch.full((E,), noise_var, dtype=DTYPE)
    gram = signal_var[:, None, None] * torch.exp(-0.5 * _scaled_sq_dist(inputs, inputs, lengthscales))
    factor = torch.linalg.cholesky(gram + noise[:, None, None] * torch.eye(n, dtype=DTYPE))
    K_inv = torch.cholesky_inverse(factor)
    beta = (K_inv @ targets[..., None])[..., 0]
    return GPProblem(inputs, lengthscales, signal_var, noise, beta, K_inv)


def gaussian_input(seed: int, dim: int, low: float = 0.1, high: float = 0.8) -> tuple[torch.Tensor, torch.Tensor]:
    """A test input's distribution N(μ, Σ): μ (D,) inside the data, Σ (D, D) with eigenvalues in [low, high]."""
    gen = _generator(310_000 + seed)
    return torch.rand(dim, generator=gen, dtype=DTYPE) * 2 - 1, random_spd(dim, gen, low, high)


@dataclass
class MonteCarlo:
    """Monte Carlo estimates of the moments of f(x), x ~ N(μ, Σ), and their standard errors.

    ``mean`` (E,), ``input_output_cov`` (D, E), ``cov`` (E, E), each with a ``*_se`` of the same shape.
    f(x) given x is N(m(x), v(x)) (the GP's posterior), so E[f] = E_x[m(x)], Cov[x, f] = Cov_x[x, m(x)]
    and Cov[f_a, f_b] = E_x[δ_ab v_a(x)] + Cov_x[m_a(x), m_b(x)].
    """

    mean: torch.Tensor
    mean_se: torch.Tensor
    input_output_cov: torch.Tensor
    input_output_cov_se: torch.Tensor
    cov: torch.Tensor
    cov_se: torch.Tensor


def _standard_error(terms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean over the first axis, its standard error)."""
    return terms.mean(0), terms.std(0) / math.sqrt(terms.shape[0])


def _samples(mu: torch.Tensor, Sigma: torch.Tensor, seed: int, num_samples: int) -> torch.Tensor:
    gen = _generator(320_000 + seed)
    noise = torch.randn(num_samples, mu.shape[0], generator=gen, dtype=DTYPE)
    return mu + noise @ torch.linalg.cholesky(Sigma).T


def monte_carlo(problem: GPProblem, mu: torch.Tensor, Sigma: torch.Tensor, seed: int,
                num_samples: int = MC_SAMPLES) -> MonteCarlo:
    """The moments of f(x), x ~ N(μ (D,), Σ (D, D)), estimated from ``num_samples`` samples of x."""
    x = _samples(mu, Sigma, seed, num_samples)
    mean, var = problem.posterior(x)  # (S, E) each
    estimate, estimate_se = _standard_error(mean)
    centred = mean - estimate
    io, io_se = _standard_error((x - mu)[:, :, None] * centred[:, None, :])
    cov, cov_se = _standard_error(centred[:, :, None] * centred[:, None, :] + torch.diag_embed(var))
    return MonteCarlo(estimate, estimate_se, io, io_se, cov, cov_se)


def _expect_monte_carlo(name: str, got: torch.Tensor, estimate: torch.Tensor, se: torch.Tensor, what: str,
                        hint: str = "") -> None:
    """``got`` within :data:`MC_TOLERANCE` standard errors of a Monte Carlo ``estimate`` (same shape)."""
    got = got.detach().to(DTYPE)
    z = (got - estimate).abs() / (se + 1e-12)
    if bool(z.max() <= MC_TOLERANCE):
        return
    index = tuple(int(i) for i in torch.unravel_index(z.argmax(), z.shape)) if z.dim() else ()
    where = f" at index {index}" if index else ""
    raise GradingError(
        f"{name}: wrong {what}:{where} you have {float(got[index]):.6g}, but a Monte Carlo estimate from "
        f"{MC_SAMPLES} samples of x gives {float(estimate[index]):.6g} ± {float(se[index]):.2g} (you are "
        f"{float(z[index]):.0f} standard errors away).{' ' + hint if hint else ''}"
    )


def _is(got: torch.Tensor, want: torch.Tensor, atol: float = 1e-7) -> bool:
    """``got`` equals a value a recognised mistake would give (and that the right answer does not have)."""
    return _close(got, want, atol=atol, rtol=1e-6)


PLUG_IN_HINT = ("Your result is the prediction at the mean μ alone (the plug-in m(μ)): the input's "
                "uncertainty is missing. It enters the exponent through Σ + Λ and the factor |Σ Λ⁻¹ + I|^(-1/2).")


# ------------------------------------------------------------------------------ se_kernel
KERNEL_EXAMPLE = {"x1": ((0.0, 0.0), (1.0, 0.0), (0.0, 2.0)), "x2": ((0.0, 0.0), (1.0, 1.0)),
                  "lengthscales": (1.0, 2.0), "signal_var": 1.5}
"""A worked example, n = 3 and m = 2 points in D = 2 dimensions ..."""
KERNEL_EXAMPLE_RESULT = ((1.5, 0.802892), (0.909796, 1.323745), (0.909796, 0.802892))
"""... and its kernel matrix (6 decimals)."""


def _kernel(fn: Callable, x1, x2, lengthscales, signal_var) -> torch.Tensor:
    name = "se_kernel"
    result = _call(name, fn, x1, x2, lengthscales, signal_var)
    result = expect_shape(name, result, (x1.shape[0], x2.shape[0]), "(n, m): one k(x1_i, x2_j) per pair")
    expect_finite(name, result)
    return result.detach().to(DTYPE)


def check_kernel_example(se_kernel: Callable) -> None:
    """The worked example: three points against two in D = 2, ℓ = (1, 2), α² = 1.5."""
    args = [torch.tensor(KERNEL_EXAMPLE[key], dtype=DTYPE) for key in ("x1", "x2", "lengthscales", "signal_var")]
    got = _kernel(se_kernel, *args)
    want = torch.tensor(KERNEL_EXAMPLE_RESULT, dtype=DTYPE)
    if not _close(got, want, atol=2e-6, rtol=0):
        raise GradingError(
            f"se_kernel: for the worked example (x1 = {KERNEL_EXAMPLE['x1']}, x2 = {KERNEL_EXAMPLE['x2']}, "
            f"ℓ = {KERNEL_EXAMPLE['lengthscales']}, α² = {KERNEL_EXAMPLE['signal_var']}) expected "
            f"{[list(row) for row in KERNEL_EXAMPLE_RESULT]};{_worst(got, want)}. "
            "k(x, x') = α² exp(−½ Σ_d (x_d − x'_d)² / ℓ_d²)."
        )


def check_kernel_properties(se_kernel: Callable, seed: int = 0, input_dim: int = 3) -> None:
    """k(x, x) = α², the matrix of a set of points with itself is symmetric, and one length-scale ℓ_d away
    along axis d the kernel is α² e^(−1/2)."""
    gen = _generator(330_000 + seed)
    D = input_dim
    x = torch.randn(5, D, generator=gen, dtype=DTYPE)
    lengthscales = 0.3 + 2 * torch.rand(D, generator=gen, dtype=DTYPE)
    signal_var = 0.5 + 2 * torch.rand((), generator=gen, dtype=DTYPE)
    gram = _kernel(se_kernel, x, x, lengthscales, signal_var)
    alpha2 = float(signal_var)
    diagonal = torch.diagonal(gram)
    if not _close(diagonal, signal_var.expand(5)):
        hint = " k(x, x) = α² exp(0) = α²."
        if _close(diagonal, (signal_var**2).expand(5)):
            hint = " signal_var is α² already (the variance); do not square it."
        elif _close(diagonal, signal_var.sqrt().expand(5)):
            hint = " signal_var is α², the variance: multiply by it, not by its square root."
        elif _close(diagonal, torch.ones(5, dtype=DTYPE)):
            hint = " The kernel is scaled by the signal variance α² (signal_var)."
        raise GradingError(f"se_kernel: k(x, x) should be α² = {alpha2:.6g};{_worst(diagonal, signal_var.expand(5))}."
                           f"{hint}")
    if not _close(gram, gram.T):
        raise GradingError("se_kernel: k(x_i, x_j) ≠ k(x_j, x_i) for the matrix of a set of points with itself; "
                           "the kernel depends on x − x' only through its square.")
    steps = x[0] + torch.diag(lengthscales)  # x_0 moved by ℓ_d along axis d: (D, D)
    got = _kernel(se_kernel, x[:1], steps, lengthscales, signal_var)[0]
    want = torch.full((D,), alpha2 * math.exp(-0.5), dtype=DTYPE)
    if _close(got, want):
        return
    if _close(got, signal_var * torch.exp(-0.5 * lengthscales)):
        hint = " You divide (x_d − x'_d)² by ℓ_d; Λ = diag(ℓ²), so divide by ℓ_d²."
    elif _close(got, signal_var * torch.exp(-0.5 * lengthscales**4)):
        hint = " You multiply by Λ; the exponent has Λ⁻¹: divide (x_d − x'_d)² by ℓ_d²."
    elif _close(got, torch.full_like(want, alpha2 * math.exp(-1.0))):
        hint = " The factor ½ in the exponent is missing."
    else:
        hint = " k(x, x') = α² exp(−½ Σ_d (x_d − x'_d)² / ℓ_d²): each dimension has its own ℓ_d."
    raise GradingError(f"se_kernel: one length-scale ℓ_d away along axis d, k should be α² e^(−1/2) = "
                       f"{alpha2 * math.exp(-0.5):.6g};{_worst(got, want)}.{hint}")


# ------------------------------------------------------------------------------ gp_posterior
def _posterior(fn: Callable, X, y, x_star, lengthscales, signal_var, noise_var) -> tuple[torch.Tensor, torch.Tensor]:
    name = "gp_posterior"
    mean, var = _pair(name, _call(name, fn, X, y, x_star, lengthscales, signal_var, noise_var), "mean", "var")
    m = x_star.shape[0]
    expect_shape(f"{name} (mean)", mean, (m,), "(m,): one posterior mean per test point")
    expect_shape(f"{name} (var)", var, (m,), "(m,): one posterior variance per test point")
    expect_finite(f"{name} (mean)", mean)
    expect_finite(f"{name} (var)", var)
    return mean.detach().to(DTYPE), var.detach().to(DTYPE)


def check_posterior_one_point(gp_posterior: Callable, seed: int = 0) -> None:
    """With one training point x₁: mean k(x*, x₁) y₁ / (α² + σ_ε²) and variance α² − k(x*, x₁)² / (α² + σ_ε²)."""
    name = "gp_posterior"
    gen = _generator(340_000 + seed)
    D = 2
    X = torch.randn(1, D, generator=gen, dtype=DTYPE)
    y = 1 + torch.rand(1, generator=gen, dtype=DTYPE)
    x_star = X + 0.7 * torch.randn(4, D, generator=gen, dtype=DTYPE)
    lengthscales = 0.5 + torch.rand(D, generator=gen, dtype=DTYPE)
    signal_var, noise_var = torch.tensor(1.3, dtype=DTYPE), torch.tensor(0.4, dtype=DTYPE)
    mean, var = _posterior(gp_posterior, X, y, x_star, lengthscales, signal_var, noise_var)
    k = signal_var * torch.exp(-0.5 * (((x_star - X) / lengthscales) ** 2).sum(-1))
    want_mean = k * y / (signal_var + noise_var)
    if not _close(mean, want_mean):
        hint = " mean = k_*ᵀ (K + σ_ε² I)⁻¹ y."
        if _close(mean, k * y / signal_var):
            hint = " You used K alone; the observations are noisy: (K + σ_ε² I)⁻¹."
        raise GradingError(f"{name}: with one training point the posterior mean is k(x*, x₁) y₁ / (α² + σ_ε²);"
                           f"{_worst(mean, want_mean)}.{hint}")
    want_var = signal_var - k**2 / (signal_var + noise_var)
    if not _close(var, want_var):
        hint = " var = α² − k_*ᵀ (K + σ_ε² I)⁻¹ k_*."
        if _close(var, want_var + noise_var):
            hint = (" You added σ_ε²: that is the variance of a noisy observation y*; return the variance of the "
                    "latent f(x*) (PILCO adds the noise where it needs it).")
        elif _close(var, signal_var.expand(4)):
            hint = " That is the prior variance α²; subtract what the data explain, k_*ᵀ (K + σ_ε² I)⁻¹ k_*."
        elif _close(var, signal_var - k**2 / signal_var):
            hint = " You used K alone; the observations are noisy: (K + σ_ε² I)⁻¹."
        raise GradingError(f"{name}: with one training point the posterior variance is α² − k(x*, x₁)² / (α² + "
                           f"σ_ε²);{_worst(var, want_var)}.{hint}")


def check_posterior_interpolates(gp_posterior: Callable, seed: int = 0) -> None:
    """With almost no noise (σ_ε² = 1e-10) and 20 close points, the posterior passes through the data with
    variance ≈ 0 there (never negative: a Cholesky factor, not an explicit inverse), and far from the data it is
    the prior: mean 0, variance α²."""
    name = "gp_posterior"
    gen = _generator(350_000 + seed)
    X = 2 * torch.rand(20, 1, generator=gen, dtype=DTYPE)
    y = torch.sin(3 * X[:, 0] + 6 * torch.rand((), generator=gen, dtype=DTYPE))  # smooth: the GP can pass through it
    lengthscales, signal_var = torch.tensor([1.0], dtype=DTYPE), torch.tensor(1.0, dtype=DTYPE)
    x_star = torch.cat([X[:10], torch.tensor([[40.0], [-60.0]], dtype=DTYPE)])
    mean, var = _posterior(gp_posterior, X, y, x_star, lengthscales, signal_var, torch.tensor(1e-10, dtype=DTYPE))
    if float(var[:10].min()) < -1e-9:
        raise GradingError(
            f"{name}: posterior variances down to {float(var[:10].min()):.3g} at the training inputs: a variance is "
            "never negative. With σ_ε² = 1e-10 the matrix K + σ_ε² I is nearly singular, and an explicit inverse "
            "(torch.linalg.inv) loses the digits that α² − k_*ᵀ (K + σ_ε² I)⁻¹ k_* needs. Use the Cholesky factor: "
            "L = cholesky(K + σ_ε² I), v = L⁻¹ k_* (solve_triangular), var = α² − Σ v²."
        )
    if not _close(mean[:10], y[:10], atol=1e-3, rtol=0) or float(var[:10].max()) > 1e-6:
        raise GradingError(
            f"{name}: with almost no noise the posterior should pass through the observations with variance ≈ 0 "
            f"there; at the training inputs{_worst(mean[:10], y[:10])} (mean), and the largest variance is "
            f"{float(var[:10].max()):.3g}."
        )
    far_mean, far_var = mean[10:], var[10:]
    if not _close(far_mean, torch.zeros(2, dtype=DTYPE)) or not _close(far_var, signal_var.expand(2)):
        raise GradingError(
            f"{name}: far from the data (x* = 40 and −60) the posterior is the prior, mean 0 and variance α² = 1; "
            f"you have means {fmt(far_mean)} and variances {fmt(far_var)}."
        )


# ------------------------------------------------------------------------------ 1-D moments
def _moment_1d(name: str, fn: Callable, problem: GPProblem, mu, sigma2, *extra) -> torch.Tensor:
    result = _call(name, fn, mu, sigma2, *problem.args_1d(), *extra)
    result = expect_shape(name, result, tuple(mu.shape), "(B,): one value per Gaussian input")
    expect_finite(name, result)
    return result.detach().to(DTYPE)


def _mean_1d(fn: Callable, problem: GPProblem, mu, sigma2) -> torch.Tensor:
    return _moment_1d("predictive_mean_1d", fn, problem, mu, sigma2)


def _variance_1d(fn: Callable, problem: GPProblem, mu, sigma2) -> torch.Tensor:
    return _moment_1d("predictive_variance_1d", fn, problem, mu, sigma2, problem.K_inv[0])


def _inputs_1d(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Three Gaussian inputs N(μ_b, σ_b²) over the data, narrow to wide."""
    gen = _generator(360_000 + seed)
    return 3 * torch.rand(3, generator=gen, dtype=DTYPE) - 1.5, torch.tensor([0.1, 0.6, 2.0], dtype=DTYPE)


def _monte_carlo_1d(problem: GPProblem, mu, sigma2, seed: int) -> tuple[torch.Tensor, ...]:
    """Monte Carlo (mean, its se, variance, its se) for each of the B inputs N(μ_b, σ_b²): (B,) each."""
    runs = [monte_carlo(problem, m[None], s[None, None], seed + b) for b, (m, s) in enumerate(zip(mu, sigma2))]
    return tuple(torch.stack([getattr(r, key)[..., 0].reshape(()) for r in runs])
                 for key in ("mean", "mean_se", "cov", "cov_se"))


def check_mean_1d_point_input(predictive_mean_1d: Callable, seed: int = 0) -> None:
    """(B,) for B inputs; with σ² = 0 (a point input) E[f(x)] is the GP's posterior mean at μ, Σ_i β_i k(x_i, μ)."""
    problem = random_gp(seed)
    mu = torch.linspace(-2, 2, 5, dtype=DTYPE)
    got = _mean_1d(predictive_mean_1d, problem, mu, torch.zeros(5, dtype=DTYPE))
    want = problem.posterior(mu[:, None])[0][:, 0]
    if not _close(got, want):
        raise GradingError(
            f"predictive_mean_1d: with σ² = 0 the input is the point μ, and E[f(μ)] is the GP's posterior mean "
            f"Σ_i β_i α² exp(−(x_i − μ)² / (2ℓ²));{_worst(got, want)}. Check the squared length-scale ℓ² and the "
            "factor ½."
        )


def check_mean_1d_monte_carlo(predictive_mean_1d: Callable, seed: int = 0) -> None:
    """E[f(x)] for x ~ N(μ, σ²) agrees with a Monte Carlo estimate (narrow, medium and wide inputs)."""
    problem = random_gp(seed)
    mu, sigma2 = _inputs_1d(seed)
    got = _mean_1d(predictive_mean_1d, problem, mu, sigma2)
    estimate, se, _, _ = _monte_carlo_1d(problem, mu, sigma2, seed)
    hint = PLUG_IN_HINT if _is(got, problem.posterior(mu[:, None])[0][:, 0]) else (
        "E[f(x)] = Σ_i β_i q_i, q_i = α² (1 + σ²/ℓ²)^(-1/2) exp(−(x_i − μ)² / (2(σ² + ℓ²))).")
    _expect_monte_carlo("predictive_mean_1d", got, estimate, se, "E[f(x)]", hint)


def check_mean_1d_wide_input(predictive_mean_1d: Callable, seed: int = 0) -> None:
    """Very wide inputs (σ² = 10⁶ ℓ² and 4·10⁶ ℓ²) spread x far beyond the data, and E[f(x)] shrinks like
    (1 + σ²/ℓ²)^(-1/2): doubling the input's standard deviation halves it."""
    problem = random_gp(seed)
    inputs, beta, lengthscale, signal_var = problem.args_1d()
    sigma2 = torch.tensor([1e6, 4e6], dtype=DTYPE) * lengthscale**2
    got = _mean_1d(predictive_mean_1d, problem, torch.zeros(2, dtype=DTYPE), sigma2)
    scale = float(signal_var * beta.abs().sum()) * 1e-3  # the size of E[f(x)] at σ = 1000 ℓ, at most
    if abs(float(got[1] - 0.5 * got[0])) > 1e-3 * scale or float(got.abs().max()) > scale * (1 + 1e-6):
        raise GradingError(
            f"predictive_mean_1d: for very wide inputs (σ² = 10⁶ ℓ² and 4·10⁶ ℓ²) most of x ~ N(μ, σ²) lies far from "
            f"the data, where the GP's mean is 0: E[f(x)] is at most α² (1 + σ²/ℓ²)^(-1/2) Σ|β_i| = {scale:.3g} and "
            f"halves when σ doubles; you have {fmt(got)}. Did you drop the determinant factor (1 + σ²/ℓ²)^(-1/2)? "
            "It is the share of x's probability that falls near each training input."
        )


def check_variance_1d_point_input(predictive_variance_1d: Callable, seed: int = 0) -> None:
    """With σ² = 0 (a point input) Var[f(x)] is the GP's own posterior variance at μ, α² − k_μᵀ (K + σ_ε² I)⁻¹ k_μ."""
    name = "predictive_variance_1d"
    problem = random_gp(seed)
    mu = torch.linspace(-2, 2, 5, dtype=DTYPE)
    got = _variance_1d(predictive_variance_1d, problem, mu, torch.zeros(5, dtype=DTYPE))
    mean, want = (v[:, 0] for v in problem.posterior(mu[:, None]))
    if _close(got, want):
        return
    if _is(got, want + mean**2):
        hint = " Your result is E[f(x)²]: subtract the squared mean E[f(x)]² (Var = E[f²] − E[f]²)."
    elif _is(got, torch.zeros_like(got)):
        hint = (" Your result is 0: that is the variance of the GP's mean m(x) over x, which vanishes for a point "
                "input. The GP's own uncertainty about f, E_x[α² − k(x)ᵀ (K + σ_ε² I)⁻¹ k(x)] = α² − "
                "tr((K + σ_ε² I)⁻¹ Q), is part of Var[f(x)].")
    else:
        hint = " Var[f(x)] = βᵀ Q β + α² − tr((K + σ_ε² I)⁻¹ Q) − E[f(x)]²."
    raise GradingError(f"{name}: with σ² = 0 the variance should be the GP's posterior variance at μ;"
                       f"{_worst(got, want)}.{hint}")


def check_variance_1d_monte_carlo(predictive_variance_1d: Callable, seed: int = 0) -> None:
    """Var[f(x)] for x ~ N(μ, σ²) agrees with a Monte Carlo estimate (narrow, medium and wide inputs)."""
    problem = random_gp(seed)
    mu, sigma2 = _inputs_1d(seed)
    got = _variance_1d(predictive_variance_1d, problem, mu, sigma2)
    _, _, estimate, se = _monte_carlo_1d(problem, mu, sigma2, seed)
    hint = PLUG_IN_HINT if _is(got, problem.posterior(mu[:, None])[1][:, 0]) else (
        "Var[f(x)] = βᵀ Q β + α² − tr((K + σ_ε² I)⁻¹ Q) − E[f(x)]², Q_ij = α⁴ (1 + 2σ²/ℓ²)^(-1/2) "
        "exp(−(x_i − x_j)² / (4ℓ²)) exp(−(x̄_ij − μ)² / (ℓ² + 2σ²)).")
    _expect_monte_carlo("predictive_variance_1d", got, estimate, se, "Var[f(x)]", hint)


def check_variance_1d_far_from_data(predictive_variance_1d: Callable, seed: int = 0) -> None:
    """Far from the data (μ = ±12) the GP knows nothing: Var[f(x)] = α²."""
    name = "predictive_variance_1d"
    problem = random_gp(seed)
    signal_var = problem.signal_var[0]
    got = _variance_1d(predictive_variance_1d, problem, torch.tensor([12.0, -12.0], dtype=DTYPE),
                       torch.tensor([0.1, 0.3], dtype=DTYPE))
    want = signal_var.expand(2)
    if _close(got, want):
        return
    hint = ""
    if _is(got, torch.zeros_like(got)):
        hint = (" You have 0: your variance holds only how much the GP's mean varies with x. Far from the data "
                "that mean is 0 everywhere, but f itself is uncertain: add the GP's own variance "
                "α² − tr((K + σ_ε² I)⁻¹ Q).")
    raise GradingError(f"{name}: far from the data (μ = ±12) the GP is its prior, and Var[f(x)] = α² = "
                       f"{float(signal_var):.6g};{_worst(got, want)}.{hint}")


# ------------------------------------------------------------------------------ multivariate moments
def _problem(seed: int) -> tuple[GPProblem, torch.Tensor, torch.Tensor]:
    """Two GPs on D = 3 inputs (15 points) and a Gaussian input N(μ, Σ)."""
    problem = random_gp(seed, num_points=15, input_dim=3, outputs=2)
    mu, Sigma = gaussian_input(seed, 3)
    return problem, mu, Sigma


def _mean(fn: Callable, problem: GPProblem, mu, Sigma) -> tuple[torch.Tensor, torch.Tensor]:
    name = "predictive_mean"
    result = _call(name, fn, mu, Sigma, problem.inputs, problem.beta, problem.lengthscales, problem.signal_var)
    mean, io = _pair(name, result, "mean", "input_output_cov")
    (E, D) = problem.lengthscales.shape
    expect_shape(f"{name} (mean)", mean, (E,), "(E,): one mean per output")
    expect_shape(f"{name} (input_output_cov)", io, (D, E), "(D, E): Cov[x_d, f_a(x)] in row d, column a")
    expect_finite(f"{name} (mean)", mean)
    expect_finite(f"{name} (input_output_cov)", io)
    return mean.detach().to(DTYPE), io.detach().to(DTYPE)


def _covariance(fn: Callable, problem: GPProblem, mu, Sigma) -> torch.Tensor:
    name = "predictive_covariance"
    result = _call(name, fn, mu, Sigma, problem.inputs, problem.beta, problem.lengthscales, problem.signal_var,
                   problem.K_inv)
    E = problem.beta.shape[0]
    result = expect_shape(name, result, (E, E), "(E, E): Cov[f_a(x), f_b(x)]")
    expect_finite(name, result)
    return result.detach().to(DTYPE)


def check_mean_point_input(predictive_mean: Callable, seed: int = 0) -> None:
    """mean (E,) and input_output_cov (D, E); with Σ = 0 the mean is each GP's posterior mean at μ and x does not
    vary, so Cov[x, f(x)] = 0."""
    name = "predictive_mean"
    problem, mu, Sigma = _problem(seed)
    mean, io = _mean(predictive_mean, problem, mu, torch.zeros_like(Sigma))
    want = problem.posterior(mu[None])[0][0]
    if not _close(mean, want):
        raise GradingError(
            f"{name}: with Σ = 0 the input is the point μ, and E[f_a(μ)] is GP a's posterior mean "
            f"Σ_i β_ai k_a(x_i, μ);{_worst(mean, want)}. Output a has its own β_a, ℓ_a and α_a² (row a of beta, "
            "lengthscales and signal_var); Λ_a = diag(ℓ_a²)."
        )
    if not _close(io, torch.zeros_like(io)):
        raise GradingError(f"{name}: with Σ = 0 the input does not vary, so Cov[x, f(x)] = 0; you have entries up to "
                           f"{float(io.abs().max()):.3g}. Cov[x, f_a] = Σ (Σ + Λ_a)⁻¹ Σ_i β_ai q_ai (x_i − μ).")


def check_mean_monte_carlo(predictive_mean: Callable, seed: int = 0) -> None:
    """E[f_a(x)] of every output agrees with a Monte Carlo estimate."""
    problem, mu, Sigma = _problem(seed)
    mean, _ = _mean(predictive_mean, problem, mu, Sigma)
    estimate = monte_carlo(problem, mu, Sigma, seed)
    hint = PLUG_IN_HINT if _is(mean, problem.posterior(mu[None])[0][0]) else (
        "q_ai = α_a² |Σ Λ_a⁻¹ + I|^(-1/2) exp(−½ (x_i − μ)ᵀ (Σ + Λ_a)⁻¹ (x_i − μ)), E[f_a] = β_aᵀ q_a.")
    _expect_monte_carlo("predictive_mean (mean)", mean, estimate.mean, estimate.mean_se, "E[f(x)]", hint)


def check_input_output_cov_monte_carlo(predictive_mean: Callable, seed: int = 0) -> None:
    """Cov[x, f_a(x)] agrees with a Monte Carlo estimate, (D, E)."""
    problem, mu, Sigma = _problem(seed)
    _, io = _mean(predictive_mean, problem, mu, Sigma)
    estimate = monte_carlo(problem, mu, Sigma, seed)
    hint = "Cov[x, f_a] = Σ (Σ + Λ_a)⁻¹ Σ_i β_ai q_ai (x_i − μ): mind the leading Σ and the sign of x_i − μ."
    _expect_monte_carlo("predictive_mean (input_output_cov)", io, estimate.input_output_cov,
                        estimate.input_output_cov_se, "Cov[x, f(x)]", hint)


def check_covariance_far_from_data(predictive_covariance: Callable, seed: int = 0) -> None:
    """(E, E), symmetric; far from the data every GP is its prior: Cov[f(x)] = diag(α_a²)."""
    name = "predictive_covariance"
    problem, _, Sigma = _problem(seed)
    got = _covariance(predictive_covariance, problem, torch.full((3,), 12.0, dtype=DTYPE), 0.05 * Sigma)
    if not _close(got, got.T):
        raise GradingError(f"{name}: the covariance matrix is not symmetric; Cov[f_a, f_b] = Cov[f_b, f_a].")
    want = torch.diag(problem.signal_var)
    if _close(got, want):
        return
    hint = ""
    if _is(torch.diagonal(got), torch.zeros(2, dtype=DTYPE)):
        hint = (" Your diagonal is 0: it holds only how much the GPs' means vary with x. Add each GP's own variance "
                "α_a² − tr((K_a + σ_ε² I)⁻¹ Q_aa) on the diagonal.")
    raise GradingError(f"{name}: far from the data every GP is its prior, independent of the others: Cov[f(x)] = "
                       f"diag(α_a²) = diag({fmt(problem.signal_var)});{_worst(got, want)}.{hint}")


def check_covariance_point_input(predictive_covariance: Callable, seed: int = 0) -> None:
    """With Σ = 0 (a point input) Cov[f(x)] is diagonal, the GPs' own posterior variances at μ."""
    name = "predictive_covariance"
    problem, mu, Sigma = _problem(seed)
    got = _covariance(predictive_covariance, problem, mu, torch.zeros_like(Sigma))
    mean, var = (v[0] for v in problem.posterior(mu[None]))
    want = torch.diag(var)
    if _close(got, want):
        return
    hint = " Cov[f_a, f_b] = β_aᵀ Q_ab β_b − E[f_a] E[f_b], plus α_a² − tr((K_a + σ_ε² I)⁻¹ Q_aa) when a = b."
    if _is(got, want + mean[:, None] * mean[None, :]):
        hint = " Your result is E[f fᵀ]: subtract E[f] E[f]ᵀ."
    raise GradingError(f"{name}: with Σ = 0 the outputs are independent GPs at one point, so Cov[f(x)] = "
                       f"diag(their posterior variances);{_worst(got, want)}.{hint}")


def check_covariance_monte_carlo(predictive_covariance: Callable, seed: int = 0) -> None:
    """Cov[f_a(x), f_b(x)] agrees with a Monte Carlo estimate, off-diagonal entries included."""
    name = "predictive_covariance"
    problem, mu, Sigma = _problem(seed)
    got = _covariance(predictive_covariance, problem, mu, Sigma)
    estimate = monte_carlo(problem, mu, Sigma, seed)
    hint = ("E[f_a f_b] = β_aᵀ Q_ab β_b (+ α_a² − tr((K_a + σ_ε² I)⁻¹ Q_aa) when a = b), Q_ab,ij = k_a(x_i, μ) "
            "k_b(x_j, μ) |R|^(-1/2) exp(½ zᵀ R⁻¹ Σ z), R = Σ (Λ_a⁻¹ + Λ_b⁻¹) + I, z = Λ_a⁻¹ ν_i + Λ_b⁻¹ ν_j.")
    if float(got[0, 1].abs()) < 1e-12 < float(estimate.cov[0, 1].abs()):
        hint = ("Your off-diagonal entries are 0, but the outputs co-vary: both depend on the same x. "
                "Cov[f_a, f_b] = β_aᵀ Q_ab β_b − E[f_a] E[f_b] for a ≠ b too.")
    _expect_monte_carlo(name, got, estimate.cov, estimate.cov_se, "Cov[f(x)]", hint)


# ------------------------------------------------------------------------------ expected saturating cost
def _cost(fn: Callable, mu, Sigma, target, W) -> torch.Tensor:
    name = "expected_saturating_cost"
    result = expect_shape(name, _call(name, fn, mu, Sigma, target, W), (), "(): one number")
    expect_finite(name, result)
    return result.detach().to(DTYPE)


def cost_problem(seed: int, dim: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(μ, Σ, x*, W): a Gaussian state, a target and a weight matrix W = Tᵀ T / σ_c² of rank D − 1 (as PILCO's
    cart-pole, whose cost sees the pole tip's position only)."""
    gen = _generator(370_000 + seed)
    mu, Sigma = gaussian_input(seed, dim, 0.1, 0.6)
    target = mu + 0.8 * torch.randn(dim, generator=gen, dtype=DTYPE)
    T = torch.randn(dim - 1, dim, generator=gen, dtype=DTYPE)
    return mu, Sigma, target, T.T @ T / 2.0


def _cost_at(x: torch.Tensor, target: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    offset = x - target
    return 1 - torch.exp(-0.5 * ((offset @ W) * offset).sum(-1))


def check_cost_point_input(expected_saturating_cost: Callable, seed: int = 0) -> None:
    """A scalar; with Σ = 0 the expectation is the cost at μ, 1 − exp(−½ (μ − x*)ᵀ W (μ − x*))."""
    mu, Sigma, target, W = cost_problem(seed)
    got = _cost(expected_saturating_cost, mu, torch.zeros_like(Sigma), target, W)
    want = _cost_at(mu, target, W)
    if not _close(got, want):
        raise GradingError(f"expected_saturating_cost: with Σ = 0 the state is μ, and the expected cost is the cost "
                           f"at μ, 1 − exp(−½ (μ − x*)ᵀ W (μ − x*)) = {float(want):.6g}; you have {float(got):.6g}.")


def check_cost_monte_carlo(expected_saturating_cost: Callable, seed: int = 0) -> None:
    """E[cost] agrees with a Monte Carlo estimate, for a state near its target and one far from it."""
    mu, Sigma, target, W = cost_problem(seed)
    for label, goal in (("near", mu + 0.1 * (target - mu)), ("far from", target)):
        estimate, se = _standard_error(_cost_at(_samples(mu, Sigma, seed, MC_SAMPLES), goal, W))
        got = _cost(expected_saturating_cost, mu, Sigma, goal, W)
        hint = ("Your result is the cost at μ alone: the expected cost also depends on Σ, through (I + Σ W)⁻¹ and "
                "|I + Σ W|^(-1/2)." if _is(got, _cost_at(mu, goal, W)) else
                "E[cost] = 1 − |I + Σ W|^(-1/2) exp(−½ (μ − x*)ᵀ W (I + Σ W)⁻¹ (μ − x*)).")
        _expect_monte_carlo(f"expected_saturating_cost (a state {label} its target)", got, estimate, se,
                            "expected cost", hint)
