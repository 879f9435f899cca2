"""Hidden checks of Assignment 4 (moment matching): the instructor's oracles, the catalogue of typical
mistakes, and the checks that use them. Not installed with the package: the hidden test regions of
``solutions/04-moment-matching`` load this file with
``mbrl_course.grading.instructor.hidden_checks("moment_matching")``.

The oracles are the reference implementation (:mod:`mbrl_course.models.moment_matching`) and, for the
GP posterior, the textbook formula with a general linear solve (no Cholesky factor). Where an answer
is wrong, a check compares it with the answers of the mistakes in the catalogue and names the one
that matches: :func:`slipped_moments` computes the moments as a student would with a set of slips
(the input variance left out of the length-scale, the determinant factor dropped, ℓ instead of ℓ²,
the GP's own variance or the squared mean forgotten, the off-diagonal covariances left at 0, ...);
without slips it is a second, loop-by-loop implementation that agrees with the reference. The
visible checks (:mod:`mbrl_course.grading.moment_matching`) are reused here on other inputs.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterable

import torch

from mbrl_course.grading import moment_matching as visible
from mbrl_course.grading.checks import expect_independent
from mbrl_course.grading.kalman import _expect_value
from mbrl_course.models import moment_matching as reference

DTYPE = torch.float64
_call, _generator = visible._call, visible._generator

REFERENCE_PACKAGES = ("mbrl_course.models.moment_matching", "mbrl_course.models.gp", "mbrl_course.rl.controllers",
                      "mbrl_course.agents")
"""The reference implementation students must not call (``reference_modules`` of ``nbgrader_config.py``)."""


# ------------------------------------------------------------------------------ se_kernel
def kernel_oracle(x1: torch.Tensor, x2: torch.Tensor, lengthscales: torch.Tensor, signal_var: torch.Tensor
                  ) -> torch.Tensor:
    """The reference SE kernel of one output: (n, m)."""
    return reference.se_kernel(x1, x2, lengthscales[None], signal_var.reshape(1))[0]


def kernel_mistakes(x1, x2, lengthscales, signal_var) -> dict[str, tuple[torch.Tensor, str]]:
    """name -> (what the mistake returns, the message naming it): each is the kernel with other arguments."""
    def k(ell=lengthscales, var=signal_var):
        return kernel_oracle(x1, x2, ell, var)

    return {
        "lengthscale_not_squared": (k(ell=lengthscales.sqrt()), "you divide (x_d − x'_d)² by ℓ_d; Λ = diag(ℓ²), so "
                                    "divide by ℓ_d²."),
        "no_half": (k(ell=lengthscales / 2**0.5), "the factor ½ in the exponent is missing."),
        "times_lambda": (k(ell=1 / lengthscales), "you multiply by Λ = diag(ℓ²); the exponent has Λ⁻¹: divide by ℓ_d²."),
        "signal_var_squared": (k(var=signal_var**2), "signal_var is α² already (the signal variance); do not square it."),
        "signal_std": (k(var=signal_var.sqrt()), "you scale by α = sqrt(signal_var); the kernel is scaled by the "
                       "variance α² itself."),
        "no_signal_var": (k(var=torch.ones_like(signal_var)), "the signal variance α² is missing: k = α² exp(...)."),
        "first_lengthscale": (k(ell=lengthscales[:1].expand_as(lengthscales)), "every dimension used ℓ_1; each "
                              "dimension d has its own length-scale ℓ_d."),
    }


def check_kernel_exact(se_kernel: Callable, seed: int = 0) -> None:
    """Equals the SE kernel on random points, in D = 1 and D = 4, n ≠ m."""
    gen = _generator(400_000 + seed)
    for n, m, D in ((4, 6, 1), (5, 3, 4)):
        x1, x2 = (torch.randn(size, D, generator=gen, dtype=DTYPE) for size in (n, m))
        lengthscales = 0.3 + 2 * torch.rand(D, generator=gen, dtype=DTYPE)
        signal_var = 0.5 + 2 * torch.rand((), generator=gen, dtype=DTYPE)
        got = visible._kernel(se_kernel, x1, x2, lengthscales, signal_var)
        _expect_value(f"se_kernel (D = {D})", got, kernel_oracle(x1, x2, lengthscales, signal_var), "kernel matrix",
                      lambda args=(x1, x2, lengthscales, signal_var): kernel_mistakes(*args),
                      hint="k(x, x') = α² exp(−½ Σ_d (x_d − x'_d)² / ℓ_d²).")


# ------------------------------------------------------------------------------ gp_posterior
def posterior_oracle(X, y, x_star, lengthscales, signal_var, noise_var) -> tuple[torch.Tensor, torch.Tensor]:
    """The textbook posterior of f(x*) with a general linear solve (LU, no Cholesky factor): (m,), (m,)."""
    noisy = kernel_oracle(X, X, lengthscales, signal_var) + noise_var * torch.eye(X.shape[0], dtype=X.dtype)
    cross = kernel_oracle(X, x_star, lengthscales, signal_var)  # (n, m)
    mean = cross.T @ torch.linalg.solve(noisy, y)
    var = signal_var - (cross * torch.linalg.solve(noisy, cross)).sum(0)
    return mean, var


def posterior_mistakes(X, y, x_star, lengthscales, signal_var, noise_var) -> dict[str, tuple[tuple, str]]:
    """name -> ((mean, var) of the mistake, the message naming it)."""
    mean, var = posterior_oracle(X, y, x_star, lengthscales, signal_var, noise_var)
    noise_free = posterior_oracle(X, y, x_star, lengthscales, signal_var, 0.0)
    return {
        "noise_forgotten": (noise_free, "you used K instead of K + σ_ε² I: the observations y are noisy, so their "
                            "covariance is K + σ_ε² I."),
        "observation_variance": ((mean, var + noise_var), "your variance adds σ_ε²: that is the variance of a noisy "
                                 "observation y*; return the latent f(x*)'s, α² − k_*ᵀ (K + σ_ε² I)⁻¹ k_*."),
        "prior_variance": ((mean, signal_var.expand_as(var)), "your variance is the prior's, α²: subtract what the "
                           "data explain, k_*ᵀ (K + σ_ε² I)⁻¹ k_*."),
        "added": ((mean, 2 * signal_var - var), "your variance adds k_*ᵀ (K + σ_ε² I)⁻¹ k_* to α²; the data reduce "
                  "the uncertainty: subtract it."),
    }


def check_posterior_exact(gp_posterior: Callable, seed: int = 0) -> None:
    """mean and var equal the textbook posterior on random data (noise σ_ε² = 0.3, D = 2)."""
    name = "gp_posterior"
    gen = _generator(410_000 + seed)
    X = 3 * torch.rand(8, 2, generator=gen, dtype=DTYPE)
    y = torch.sin(X.sum(-1)) + 0.3 * torch.randn(8, generator=gen, dtype=DTYPE)
    x_star = 3 * torch.rand(5, 2, generator=gen, dtype=DTYPE)
    lengthscales = 0.6 + 0.6 * torch.rand(2, generator=gen, dtype=DTYPE)
    signal_var, noise_var = 0.8 + torch.rand((), generator=gen, dtype=DTYPE), torch.tensor(0.3, dtype=DTYPE)
    args = (X, y, x_star, lengthscales, signal_var, noise_var)
    mean, var = visible._posterior(gp_posterior, *args)
    want_mean, want_var = posterior_oracle(*args)
    mistakes = posterior_mistakes(*args)
    _expect_value(f"{name} (mean)", mean, want_mean, "posterior mean",
                  lambda: {k: (v[0], m) for k, (v, m) in mistakes.items()}, hint="mean = k_*ᵀ (K + σ_ε² I)⁻¹ y.")
    _expect_value(f"{name} (var)", var, want_var, "posterior variance",
                  lambda: {k: (v[1], m) for k, (v, m) in mistakes.items()},
                  hint="var = α² − k_*ᵀ (K + σ_ε² I)⁻¹ k_*.")


# ------------------------------------------------------------------------------ moments, with and without slips
SLIPS = ("plug_in", "plug_in_mean", "exponent_without_input_var", "no_det", "det_power_one", "lengthscale_not_squared",
         "first_output_hyperparameters", "no_leading_sigma", "nu_sign", "no_own_variance", "no_trace",
         "no_mean_square", "no_det_R", "R_like_the_mean", "diagonal_only", "own_lengthscales_in_Q")
"""The slips :func:`slipped_moments` knows."""


def slipped_moments(problem: visible.GPProblem, mu: torch.Tensor, Sigma: torch.Tensor,
                    slips: Iterable[str] = ()) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(E[f] (E,), Cov[x, f] (D, E), Cov[f] (E, E)) at x ~ N(μ (D,), Σ (D, D)), computed output by output as a
    student would, with the given slips (see :data:`SLIPS`); without slips, the exact moments."""
    slips = set(slips)
    unknown = slips - set(SLIPS)
    if unknown:
        raise ValueError(f"slips: expected names from {SLIPS}, got {sorted(unknown)}")
    X, beta, K_inv = problem.inputs, problem.beta, problem.K_inv
    E, D = problem.lengthscales.shape
    eye = torch.eye(D, dtype=DTYPE)
    if "plug_in" in slips:
        Sigma = torch.zeros_like(Sigma)
    lam = problem.lengthscales if "lengthscale_not_squared" in slips else problem.lengthscales**2  # diag of Λ_a
    alpha2 = problem.signal_var
    if "first_output_hyperparameters" in slips:
        lam, alpha2 = lam[:1].expand(E, D), alpha2[:1].expand(E)
    nu = X - mu  # ν_i = x_i − μ: (n, D)
    Sigma_mean = torch.zeros_like(Sigma) if "plug_in_mean" in slips else Sigma  # the Σ the mean sees

    means, ios = [], []
    for a in range(E):
        Lam = torch.diag(lam[a])
        solved = torch.linalg.solve(Lam if "exponent_without_input_var" in slips else Sigma_mean + Lam, nu.T).T
        det = torch.linalg.det(Sigma_mean @ torch.diag(1 / lam[a]) + eye)
        factor = 1.0 if "no_det" in slips else det ** (-1.0 if "det_power_one" in slips else -0.5)
        q = alpha2[a] * factor * torch.exp(-0.5 * (nu * solved).sum(-1))
        means.append(beta[a] @ q)
        io = (beta[a] * q) @ solved
        io = io if "no_leading_sigma" in slips else Sigma @ io
        ios.append(-io if "nu_sign" in slips else io)
    mean = torch.stack(means)

    k_mu = alpha2[:, None] * torch.exp(-0.5 * (nu**2 / lam[:, None, :]).sum(-1))  # k_a(x_i, μ): (E, n)
    cov = torch.zeros(E, E, dtype=DTYPE)
    for a in range(E):
        for b in range(E):
            if a != b and "diagonal_only" in slips:
                continue
            lam_b = lam[a] if "own_lengthscales_in_Q" in slips else lam[b]
            R = Sigma @ torch.diag(1 / lam[a] + 1 / lam_b) + eye
            z = (nu / lam[a])[:, None, :] + (nu / lam_b)[None, :, :]  # Λ_a⁻¹ ν_i + Λ_b⁻¹ ν_j: (n, n, D)
            quad = torch.einsum("ijd,de,ije->ij", z, torch.linalg.solve(R, Sigma), z)
            Q = k_mu[a][:, None] * k_mu[b][None, :] * torch.exp(0.5 * quad)
            if "R_like_the_mean" in slips:  # the mean's determinant, |Σ Λ_a⁻¹ + I|, in place of |R|
                Q = Q / torch.sqrt(torch.linalg.det(Sigma @ torch.diag(1 / lam[a]) + eye))
            elif "no_det_R" not in slips:
                Q = Q / torch.sqrt(torch.linalg.det(R))
            value = beta[a] @ Q @ beta[b]
            if a == b and "no_own_variance" not in slips:
                value = value + alpha2[a] - (0.0 if "no_trace" in slips else (K_inv[a] * Q).sum())
            cov[a, b] = value if "no_mean_square" in slips else value - mean[a] * mean[b]
    return mean, torch.stack(ios, dim=-1), cov


def moments_oracle(problem: visible.GPProblem, mu: torch.Tensor, Sigma: torch.Tensor) -> reference.PredictionMoments:
    """The reference moments of the problem's GPs at N(μ, Σ) (μ and Σ may carry a batch dimension)."""
    return reference.gp_moments_at_gaussian_input(mu, Sigma, problem.inputs, problem.beta, problem.lengthscales,
                                                  problem.signal_var, problem.K_inv)


MEAN_MESSAGES = {
    "plug_in": "you used the mean μ only (the plug-in prediction m(μ)): the input's uncertainty Σ belongs in the "
               "exponent, (Σ + Λ)⁻¹, and in the factor |Σ Λ⁻¹ + I|^(-1/2).",
    "exponent_without_input_var": "you forgot the input variance in the length-scale: the exponent is "
                                  "−½ νᵀ (Σ + Λ)⁻¹ ν (in 1-D −ν² / (2(σ² + ℓ²))), not −½ νᵀ Λ⁻¹ ν.",
    "no_det": "you dropped the determinant factor |Σ Λ⁻¹ + I|^(-1/2) (in 1-D (1 + σ²/ℓ²)^(-1/2)): a wider input "
              "puts less of its probability near each training input.",
    "det_power_one": "the determinant factor has the power −½ (a square root): |Σ Λ⁻¹ + I|^(-1/2), not "
                     "|Σ Λ⁻¹ + I|⁻¹.",
    "lengthscale_not_squared": "you used ℓ where ℓ² belongs: Λ = diag(ℓ²) (lengthscales holds ℓ, not ℓ²).",
    "first_output_hyperparameters": "every output used the first output's length-scales and signal variance; "
                                    "output a has its own ℓ_a (lengthscales[a]) and α_a² (signal_var[a]).",
}
IO_MESSAGES = {
    "no_leading_sigma": "the leading Σ is missing: Cov[x, f_a] = Σ (Σ + Λ_a)⁻¹ Σ_i β_ai q_ai (x_i − μ).",
    "nu_sign": "your input-output covariance has the wrong sign: ν_i = x_i − μ (not μ − x_i).",
}
VARIANCE_MESSAGES = {
    "no_own_variance": "you forgot the GP's own variance: Var[f(x)] = Var_x[m(x)] + E_x[v(x)], and E_x[v(x)] = "
                       "α² − tr((K + σ_ε² I)⁻¹ Q) (the GP is unsure about f itself, not only about x).",
    "no_trace": "the GP's own variance is α² − tr((K + σ_ε² I)⁻¹ Q): the trace term is missing.",
    "no_mean_square": "you forgot to subtract the squared mean: Var[f] = E[f²] − E[f]².",
    "plug_in": "you used the mean μ only (the GP's variance at the point μ, the plug-in): the input's uncertainty "
               "spreads f(x) further.",
    "no_det_R": "Q lost its determinant factor |R|^(-1/2), R = Σ (Λ_a⁻¹ + Λ_b⁻¹) + I (in 1-D (1 + 2σ²/ℓ²)^(-1/2)).",
    "R_like_the_mean": "Q's determinant factor is |Σ (Λ_a⁻¹ + Λ_b⁻¹) + I|^(-1/2) (in 1-D (1 + 2σ²/ℓ²)^(-1/2)); you "
                       "used the mean's, |Σ Λ⁻¹ + I|^(-1/2): two kernels meet in Q.",
    "lengthscale_not_squared": MEAN_MESSAGES["lengthscale_not_squared"],
}
COVARIANCE_MESSAGES = {
    **VARIANCE_MESSAGES,
    "diagonal_only": "your off-diagonal entries are 0, but the outputs co-vary through the shared input x: "
                     "Cov[f_a, f_b] = β_aᵀ Q_ab β_b − E[f_a] E[f_b] for a ≠ b too.",
    "own_lengthscales_in_Q": "Q_ab mixes two outputs' kernels: R = Σ (Λ_a⁻¹ + Λ_b⁻¹) + I and z_ij = Λ_a⁻¹ ν_i + "
                             "Λ_b⁻¹ ν_j; you used Λ_a for both.",
    "first_output_hyperparameters": MEAN_MESSAGES["first_output_hyperparameters"],
}
MEAN_SLIPS_IN_VARIANCE = {"plug_in_mean": "plug_in", "exponent_without_input_var": "exponent_without_input_var",
                          "no_det": "no_det", "det_power_one": "det_power_one"}
"""Slips of the mean that a variance inherits where it subtracts a wrong E[f]² (slip -> its message in
:data:`MEAN_MESSAGES`)."""


def _catalogue(problem, mu, Sigma, messages: dict[str, str], part: int, prefix: str = "") -> dict[str, tuple]:
    """name -> (part ``part`` (0 mean, 1 input-output covariance, 2 covariance) of the slip's moments, message)."""
    return {name: (slipped_moments(problem, mu, Sigma, [name])[part], prefix + message)
            for name, message in messages.items()}


def _variance_catalogue(problem, mu, Sigma, messages: dict[str, str]) -> dict[str, tuple]:
    mistakes = _catalogue(problem, mu, Sigma, messages, 2)
    mistakes.update({f"mean_{name}": value for name, value in _catalogue(
        problem, mu, Sigma, {slip: MEAN_MESSAGES[name] for slip, name in MEAN_SLIPS_IN_VARIANCE.items()}, 2,
        "the E[f] you subtract is wrong: ").items()})
    return mistakes


def _batched_1d(problem, mu, sigma2, messages, part: int, variance: bool = False) -> dict[str, tuple]:
    """The 1-D catalogue for B inputs: every slip's values (B,), one input at a time."""
    per_input = [(_variance_catalogue(problem, m[None], s[None, None], messages) if variance else
                  _catalogue(problem, m[None], s[None, None], messages, part)) for m, s in zip(mu, sigma2)]
    return {name: (torch.stack([entry[name][0].reshape(-1)[0] for entry in per_input]), message)
            for name, (_, message) in per_input[0].items()}


def _inputs_1d(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = _generator(420_000 + seed)
    return 4 * torch.rand(4, generator=gen, dtype=DTYPE) - 2, torch.tensor([0.05, 0.4, 1.0, 3.0], dtype=DTYPE)


def check_mean_1d_exact(predictive_mean_1d: Callable, seed: int = 0) -> None:
    """E[f(x)] equals the reference's for four Gaussian inputs, narrow to wide, on a GP of 10 points."""
    problem = visible.random_gp(500 + seed, num_points=10)
    mu, sigma2 = _inputs_1d(seed)
    got = visible._mean_1d(predictive_mean_1d, problem, mu, sigma2)
    want = moments_oracle(problem, mu[:, None], sigma2[:, None, None]).mean[:, 0]
    _expect_value("predictive_mean_1d", got, want, "E[f(x)]", lambda: _batched_1d(
        problem, mu, sigma2, {k: v for k, v in MEAN_MESSAGES.items() if k != "first_output_hyperparameters"}, 0),
        hint="E[f(x)] = Σ_i β_i α² (1 + σ²/ℓ²)^(-1/2) exp(−(x_i − μ)² / (2(σ² + ℓ²))).")


def check_variance_1d_exact(predictive_variance_1d: Callable, seed: int = 0) -> None:
    """Var[f(x)] equals the reference's for four Gaussian inputs, narrow to wide, on a GP of 10 points."""
    problem = visible.random_gp(500 + seed, num_points=10)
    mu, sigma2 = _inputs_1d(seed)
    got = visible._variance_1d(predictive_variance_1d, problem, mu, sigma2)
    want = moments_oracle(problem, mu[:, None], sigma2[:, None, None]).cov[:, 0, 0]
    _expect_value("predictive_variance_1d", got, want, "Var[f(x)]",
                  lambda: _batched_1d(problem, mu, sigma2, VARIANCE_MESSAGES, 2, variance=True),
                  hint="Var[f(x)] = βᵀ Q β + α² − tr((K + σ_ε² I)⁻¹ Q) − E[f(x)]².")


def _problem(seed: int, input_dim: int = 2, outputs: int = 3):
    problem = visible.random_gp(600 + seed, num_points=9, input_dim=input_dim, outputs=outputs)
    mu, Sigma = visible.gaussian_input(600 + seed, input_dim, 0.2, 1.0)
    return problem, mu, Sigma


def check_mean_exact(predictive_mean: Callable, seed: int = 0) -> None:
    """E[f(x)] equals the reference's for E = 3 outputs on D = 2 inputs."""
    problem, mu, Sigma = _problem(seed)
    mean, _ = visible._mean(predictive_mean, problem, mu, Sigma)
    _expect_value("predictive_mean (mean)", mean, moments_oracle(problem, mu, Sigma).mean, "E[f(x)]",
                  lambda: _catalogue(problem, mu, Sigma, MEAN_MESSAGES, 0),
                  hint="E[f_a] = β_aᵀ q_a, q_ai = α_a² |Σ Λ_a⁻¹ + I|^(-1/2) exp(−½ ν_iᵀ (Σ + Λ_a)⁻¹ ν_i).")


def check_input_output_cov_exact(predictive_mean: Callable, seed: int = 0) -> None:
    """Cov[x, f(x)] equals the reference's for E = 3 outputs on D = 2 inputs."""
    problem, mu, Sigma = _problem(seed)
    _, io = visible._mean(predictive_mean, problem, mu, Sigma)
    _expect_value("predictive_mean (input_output_cov)", io, moments_oracle(problem, mu, Sigma).input_cov,
                  "Cov[x, f(x)]", lambda: _catalogue(problem, mu, Sigma, {**IO_MESSAGES, **MEAN_MESSAGES}, 1),
                  hint="Cov[x, f_a] = Σ (Σ + Λ_a)⁻¹ Σ_i β_ai q_ai (x_i − μ).")


def check_covariance_exact(predictive_covariance: Callable, seed: int = 0) -> None:
    """Cov[f(x)] equals the reference's for E = 3 outputs on D = 2 inputs."""
    problem, mu, Sigma = _problem(seed)
    got = visible._covariance(predictive_covariance, problem, mu, Sigma)
    _expect_value("predictive_covariance", got, moments_oracle(problem, mu, Sigma).cov, "Cov[f(x)]",
                  lambda: _variance_catalogue(problem, mu, Sigma, COVARIANCE_MESSAGES),
                  hint="Cov[f_a, f_b] = β_aᵀ Q_ab β_b − E[f_a] E[f_b] (+ α_a² − tr((K_a + σ_ε² I)⁻¹ Q_aa) when a = b).")


# ------------------------------------------------------------------------------ expected saturating cost
def cost_mistakes(mu, Sigma, target, W) -> dict[str, tuple[torch.Tensor, str]]:
    """name -> (what the mistake returns, the message naming it)."""
    eye = torch.eye(mu.shape[-1], dtype=DTYPE)
    spread = eye + Sigma @ W
    offset = mu - target
    root = torch.linalg.det(spread) ** -0.5
    plain = torch.exp(-0.5 * offset @ W @ offset)
    shrunk = torch.exp(-0.5 * offset @ W @ torch.linalg.solve(spread, offset))
    return {
        "plug_in": (1 - plain, "you used the mean μ only (the cost at μ): E[cost] depends on Σ, through "
                    "(I + Σ W)⁻¹ and |I + Σ W|^(-1/2)."),
        "no_det": (1 - shrunk, "you dropped the determinant factor |I + Σ W|^(-1/2)."),
        "no_inverse": (1 - root * plain, "the exponent lost (I + Σ W)⁻¹: it is −½ (μ − x*)ᵀ W (I + Σ W)⁻¹ (μ − x*)."),
        "not_inverted": (1 - root * torch.exp(-0.5 * offset @ W @ spread @ offset),
                         "the exponent needs (I + Σ W)⁻¹, the inverse; you multiplied by I + Σ W itself."),
        "det_power_one": (1 - shrunk / torch.linalg.det(spread), "the determinant factor is |I + Σ W|^(-1/2), a "
                          "square root, not |I + Σ W|⁻¹."),
        "reward": (root * shrunk, "you returned E[exp(−½ (x − x*)ᵀ W (x − x*))], the expected reward; the cost is "
                   "1 minus it."),
    }


def check_cost_exact(expected_saturating_cost: Callable, seed: int = 0) -> None:
    """Equals the reference's expected cost for random states, targets and weights (D = 2 and 4)."""
    for dim in (2, 4):
        mu, Sigma, target, W = visible.cost_problem(700 + seed, dim)
        Sigma = 2 * Sigma
        got = visible._cost(expected_saturating_cost, mu, Sigma, target, W)
        _expect_value(f"expected_saturating_cost (D = {dim})", got,
                      reference.expected_saturating_cost(mu, Sigma, target, W), "expected cost",
                      lambda args=(mu, Sigma, target, W): cost_mistakes(*args),
                      hint="E[cost] = 1 − |I + Σ W|^(-1/2) exp(−½ (μ − x*)ᵀ W (I + Σ W)⁻¹ (μ − x*)).")


# ------------------------------------------------------------------------------ independence
def _independence_args(name: str, seed: int) -> tuple:
    problem = visible.random_gp(800 + seed, num_points=6, input_dim=2, outputs=2)
    line = visible.random_gp(800 + seed, num_points=6)
    mu, Sigma = visible.gaussian_input(800 + seed, 2)
    mu1, s1 = torch.zeros(2, dtype=DTYPE), torch.tensor([0.3, 1.0], dtype=DTYPE)
    args = {
        "se_kernel": lambda: (problem.inputs, mu[None], problem.lengthscales[0], problem.signal_var[0]),
        "gp_posterior": lambda: (problem.inputs, problem.beta[0], mu[None], problem.lengthscales[0],
                                 problem.signal_var[0], problem.noise_var[0]),
        "predictive_mean_1d": lambda: (mu1, s1, *line.args_1d()),
        "predictive_variance_1d": lambda: (mu1, s1, *line.args_1d(), line.K_inv[0]),
        "predictive_mean": lambda: (mu, Sigma, problem.inputs, problem.beta, problem.lengthscales, problem.signal_var),
        "predictive_covariance": lambda: (mu, Sigma, problem.inputs, problem.beta, problem.lengthscales,
                                          problem.signal_var, problem.K_inv),
        "expected_saturating_cost": lambda: visible.cost_problem(800 + seed, 2),
    }
    if name not in args:
        raise ValueError(f"name: expected one of {sorted(args)}, got {name!r}")
    return args[name]()


def check_no_reference_calls(name: str, fn: Callable, seed: int = 0,
                             packages: tuple[str, ...] = REFERENCE_PACKAGES) -> None:
    """``fn`` (the student's function called ``name``) runs without code of the reference packages (those that
    exist in this installation)."""
    for package in packages:
        if importlib.util.find_spec(package) is None:
            continue
        args = _independence_args(name, seed)
        expect_independent(name, lambda args=args: _call(name, fn, *args), package)
