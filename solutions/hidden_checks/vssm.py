"""Hidden checks of Assignment 5 (the ELBO of a variational state-space model): the instructor's oracles, the
catalogues of typical mistakes, and the checks that use them. Not installed with the package: the hidden test
regions of ``solutions/05-vssm-elbo`` load this file with ``mbrl_course.grading.instructor.hidden_checks("vssm")``.

The oracles are the reference implementation: the closed-form KL and the reparameterised sample of
:mod:`mbrl_course.ssm` (``_gaussian.kl_divergence``, ``_gaussian.rsample``), and the package's ELBO
(:func:`mbrl_course.ssm.elbo_terms` with :meth:`mbrl_course.ssm.GenerativeModel.from_linear_gaussian`) on the
student's noise. Where an answer is wrong, a check compares it with the answers of the mistakes in the
catalogue and names the one that matches: :func:`slipped_sample` and :func:`slipped_elbo` compute them as a
student would with a set of slips (the KL in the wrong direction or against the prior marginal p(s_t), the
initial-state term forgotten, the covariance in place of its Cholesky factor, the log-det term dropped, D taken
for a standard deviation, the samples summed, y_t scored at s_{t-1}, ...); without slips they are second,
loop-by-loop implementations that agree with the reference. The visible checks
(:mod:`mbrl_course.grading.vssm`) are reused here on other inputs.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterable

import torch

from mbrl_course.filters import LinearGaussianSSM
from mbrl_course.filters._gaussian import matvec
from mbrl_course.grading import vssm as visible
from mbrl_course.grading.checks import expect_independent
from mbrl_course.grading.kalman import _batched, _expect_value
from mbrl_course.grading.report import GradingError
from mbrl_course.ssm import GenerativeModel, PosteriorSample, Sequences, elbo_terms
from mbrl_course.ssm._gaussian import kl_divergence, rsample

DTYPE = torch.float64
_call, _generator = visible._call, visible._generator

REFERENCE_PACKAGES = ("mbrl_course.ssm",)
"""The reference implementation students must not call (``reference_modules`` of ``nbgrader_config.py``)."""


# ------------------------------------------------------------------------------ gaussian_kl
def kl_oracle(mean_q, cov_q, mean_p, cov_p) -> torch.Tensor:
    """The reference KL(N(μ_q, Σ_q) || N(μ_p, Σ_p)), by Cholesky factors: (...)."""
    return kl_divergence(mean_q, torch.linalg.cholesky(cov_q), mean_p, torch.linalg.cholesky(cov_p))


def kl_mistakes(mean_q, cov_q, mean_p, cov_p) -> dict[str, tuple[torch.Tensor, str]]:
    """name -> (what the mistake returns, the message naming it)."""
    d = mean_q.shape[-1]
    kl = kl_oracle(mean_q, cov_q, mean_p, cov_p)
    log_det = torch.linalg.slogdet(cov_p).logabsdet - torch.linalg.slogdet(cov_q).logabsdet
    diff = (mean_p - mean_q).unsqueeze(-1)
    quad_p = (diff * torch.linalg.solve(cov_p, diff)).sum((-2, -1))
    quad_q = (diff * torch.linalg.solve(cov_q, diff)).sum((-2, -1))
    return {
        "reversed": (kl_oracle(mean_p, cov_p, mean_q, cov_q), "you computed KL(p || q), the wrong direction: the KL "
                     "divergence is not symmetric, and the ELBO needs KL(q || p) = E_q[log q − log p] (Σ_p⁻¹ in the "
                     "trace and the quadratic form, log |Σ_p| − log |Σ_q|)."),
        "no_log_det": (kl - 0.5 * log_det, "the log-det term ½ (log |Σ_p| − log |Σ_q|) is missing."),
        "log_det_swapped": (kl - log_det, "the log-det term has the wrong sign: it is ½ (log |Σ_p| − log |Σ_q|)."),
        "no_half": (2 * kl, "the factor ½ in front of the bracket is missing."),
        "no_minus_d": (kl + 0.5 * d, "the − d in the bracket is missing (KL(q || q) must be 0)."),
        "quad_with_q": (kl + 0.5 * (quad_q - quad_p), "the quadratic form uses Σ_q⁻¹; it is (μ_p − μ_q)ᵀ Σ_p⁻¹ "
                        "(μ_p − μ_q)."),
    }


def check_kl_exact(gaussian_kl: Callable, seed: int = 0) -> None:
    """Equals the closed-form KL for a batch of four pairs in d = 1 and one pair in d = 4."""
    gen = _generator(600_000 + seed)
    for batch, d in (((4,), 1), ((), 4)):
        args = (torch.randn(*batch, d, generator=gen, dtype=DTYPE), visible.random_spd(d, gen, 0.2, 2.0, batch),
                torch.randn(*batch, d, generator=gen, dtype=DTYPE), visible.random_spd(d, gen, 0.4, 3.0, batch))
        got = visible._kl(gaussian_kl, *args, shape=batch)
        _expect_value(f"gaussian_kl (d = {d})", got, kl_oracle(*args), "KL(q || p)",
                      lambda args=args: kl_mistakes(*args), hint=visible.KL_HINT)


# ------------------------------------------------------------------------------ sample_markovian
SAMPLE_SLIPS = ("covariance_not_cholesky", "upper_factor", "elementwise_sqrt", "ignores_previous", "no_offsets",
                "noise_off_by_one", "detached")
"""The slips :func:`slipped_sample` knows."""
SAMPLE_MESSAGES = {
    "covariance_not_cholesky": "you multiplied ε by the covariance itself (P, Q_t); the sample needs its Cholesky "
                               "factor L (L Lᵀ = P, torch.linalg.cholesky), or its covariance is P² instead of P.",
    "upper_factor": "you used the upper factor Lᵀ; multiply ε by the lower Cholesky factor L = torch.linalg.cholesky(P).",
    "elementwise_sqrt": "you took the square root of every entry of the covariance (P.sqrt()); that is no matrix "
                        "square root: use the Cholesky factor L, L Lᵀ = P.",
    "ignores_previous": "s_t does not depend on s_{t-1}: its mean is A_t s_{t-1} + b_t, with the s_{t-1} just sampled "
                        "(that is what makes q Markovian).",
    "no_offsets": "the offsets b_t are missing: the mean of s_t is A_t s_{t-1} + b_t.",
    "noise_off_by_one": "s_t used ε_{t-1}: step t takes its own noise ε_t = noise[..., t, :] (ε_0 is s_0's).",
}


def sampler_oracle(initial_mean, initial_cov, weights, offsets, covs, noise) -> torch.Tensor:
    """The reference reparameterised ancestral sample: (N, ..., T+1, d)."""
    scale = torch.linalg.cholesky(covs)
    s = rsample(initial_mean, torch.linalg.cholesky(initial_cov), noise[..., 0, :])
    states = [s]
    for t in range(1, noise.shape[-2]):
        s = rsample(matvec(weights[..., t - 1, :, :], s) + offsets[..., t - 1, :], scale[..., t - 1, :, :],
                    noise[..., t, :])
        states.append(s)
    return torch.stack(states, -2)


def _factor(cov: torch.Tensor, slips: set[str]) -> torch.Tensor:
    if "covariance_not_cholesky" in slips:
        return cov
    if "elementwise_sqrt" in slips:
        return cov.abs().sqrt()
    L = torch.linalg.cholesky(cov)
    return L.mT if "upper_factor" in slips else L


def slipped_sample(initial_mean, initial_cov, weights, offsets, covs, noise, slips: Iterable[str] = ()) -> torch.Tensor:
    """The sample as a student would write it, with the given slips (see :data:`SAMPLE_SLIPS`); without slips the
    exact sample, step by step."""
    slips = set(slips)
    unknown = slips - set(SAMPLE_SLIPS)
    if unknown:
        raise ValueError(f"slips: expected names from {SAMPLE_SLIPS}, got {sorted(unknown)}")
    s = initial_mean + (_factor(initial_cov, slips) @ noise[..., 0, :, None])[..., 0]
    states = [s]
    for t in range(1, noise.shape[-2]):
        mean = torch.zeros_like(s) if "ignores_previous" in slips else (weights[..., t - 1, :, :] @ s[..., None])[..., 0]
        if "no_offsets" not in slips:
            mean = mean + offsets[..., t - 1, :]
        eps = noise[..., t - 1 if "noise_off_by_one" in slips else t, :]
        s = mean + (_factor(covs[..., t - 1, :, :], slips) @ eps[..., None])[..., 0]
        states.append(s)
    result = torch.stack(states, -2)
    return result.detach() if "detached" in slips else result


def _expect_deterministic(name: str, call: Callable[[torch.Tensor], torch.Tensor], noise: torch.Tensor) -> torch.Tensor:
    """``call(noise)`` twice on the same noise: the same result (the student draws no random numbers); returns it."""
    first, again = call(noise), call(noise.clone())
    if not visible._close(again.detach(), first.detach().to(DTYPE), atol=1e-12, rtol=0):
        raise GradingError(f"{name}: two calls with the same noise gave different results: you draw random numbers "
                           "yourself (torch.randn ...). The sample must be a function of the noise ε you are given "
                           "(reparameterised: s = g(ε)), so that the ELBO's gradient can flow through it.")
    return first


def check_sampler_exact(sample_markovian: Callable, seed: int = 0) -> None:
    """Equals the reparameterised sample on the given noise for a random q in d = 3, T = 4 (N = 3 samples)."""
    name = "sample_markovian"
    q = visible.random_markovian(700 + seed)
    noise = visible.standard_noise(700 + seed, 3, q.num_steps + 1, 3)
    got = _expect_deterministic(name, lambda eps: visible._sample(sample_markovian, q, eps), noise).detach()
    _expect_value(name, got, sampler_oracle(*q.args(), noise), "states",
                  lambda: {slip: (slipped_sample(*q.args(), noise, [slip]), message)
                           for slip, message in SAMPLE_MESSAGES.items()}, hint=visible.SAMPLER_HINT)


def check_sampler_batched(sample_markovian: Callable, seed: int = 0, batch: int = 2) -> None:
    """Leading dimensions: q's parameters with a batch dimension B ((B, d), (B, d, d), (B, T, d, d), ...) and noise
    (N, B, T+1, d) give states (N, B, T+1, d), the sample of each q of the batch."""
    name = "sample_markovian"
    qs = [visible.random_markovian(720 + seed + b, state_dim=2, num_steps=3) for b in range(batch)]
    args = [torch.stack(parts) for parts in zip(*(q.args() for q in qs))]
    noise = visible.standard_noise(720 + seed, 3, batch, 4, 2)
    try:
        got = sample_markovian(*args, noise)
    except GradingError:
        raise
    except NotImplementedError:
        raise GradingError(f"{name}: not implemented yet: replace `raise NotImplementedError()` with your code") from None
    except Exception as err:  # noqa: BLE001 (the student's code crashed on a batch)
        raise GradingError(f"{name} works for one q but raised {type(err).__name__} for a batch of B = {batch} "
                           f"(noise (N, B, T+1, d)): {str(err).splitlines()[0] if str(err) else ''}."
                           + visible.BATCH_HINT) from None
    got = visible.expect_shape(name, visible.expect_tensor(name, got), tuple(noise.shape), "(N, B, T+1, d)")
    _expect_value(f"{name} (a batch of {batch} posteriors)", got.detach(), sampler_oracle(*args, noise), "states",
                  hint="each q of the batch samples with its own parameters; the noise's dimensions are (N, B, T+1, d)."
                  + visible.BATCH_HINT)


# ------------------------------------------------------------------------------ elbo
ELBO_SLIPS = ("kl_reversed", "kl_against_marginal", "no_initial_kl", "covariance_not_cholesky", "kl_no_log_det",
              "emission_std", "sum_over_samples", "reconstruction_off_by_one", "plus_kl", "detached")
"""The slips :func:`slipped_elbo` knows."""
ELBO_MESSAGES = {
    "kl_reversed": "the KL terms are KL(p || q), the wrong direction: the ELBO subtracts KL(q(s_t | s_{t-1}) || "
                   "p(s_t | s_{t-1})) = E_q[log q − log p].",
    "kl_against_marginal": "your KL terms compare q(s_t | s̃_{t-1}) with the prior marginal p(s_t) = N(E^t m_0, ...); "
                           "the ELBO needs the transition p(s_t | s̃_{t-1}) = N(E s̃_{t-1}, F), at the sampled s̃_{t-1}.",
    "no_initial_kl": "the initial-state term − KL(q(s_0) || p(s_0)) = − KL(N(m, P) || N(m_0, S_0)) is missing.",
    "covariance_not_cholesky": "your samples multiply ε by the covariance (P, Q_t) instead of its Cholesky factor "
                               "L (L Lᵀ = P); fix sample_markovian.",
    "kl_no_log_det": "the log-det term ½ (log |Σ_p| − log |Σ_q|) of the KL is missing; fix gaussian_kl.",
    "emission_std": "you used D as a standard deviation (covariance D Dᵀ); D is the covariance of y_t given s_t: "
                    "log N(y_t | C s_t, D).",
    "sum_over_samples": "you summed over the N samples; the ELBO estimate is their average.",
    "reconstruction_off_by_one": "y_t is scored at s̃_{t-1}: y_1..y_T belong to s_1..s_T (s̃[..., t, :] for y_t = "
                                 "Y[..., t-1, :]); s_0 has no observation.",
    "plus_kl": "you added the KL terms; the ELBO subtracts them: E_q[log p(y_t | s_t)] − KL.",
}


def _model(problem: visible.Problem) -> GenerativeModel:
    ssm = LinearGaussianSSM(problem.m0, problem.S0, problem.E, problem.F, problem.C, problem.D)
    return GenerativeModel.from_linear_gaussian(ssm)


def elbo_oracle(problem: visible.Problem, q_args: tuple, noise: torch.Tensor) -> torch.Tensor:
    """The package's analytic-KL ELBO of the model and q = (m, P, A, b, Q) on the given noise (N, T+1, d): ()."""
    m, P, A, b, Q = q_args
    states = sampler_oracle(m, P, A, b, Q, noise)  # (N, T+1, d)
    means = torch.cat([m.expand_as(states[:, :1]), matvec(A, states[:, :-1]) + b], 1)
    scales = torch.cat([torch.linalg.cholesky(P).expand(states.shape[0], 1, -1, -1),
                        torch.linalg.cholesky(Q).expand(states.shape[0], -1, -1, -1)], 1)
    sample = PosteriorSample(states[:, None], means[:, None], scales[:, None])
    T = problem.Y.shape[-2]
    seq = Sequences(problem.Y[None], torch.ones(1, T, dtype=torch.bool), None)
    return elbo_terms(_model(problem), sample, seq, kl="analytic").value[0]


def _kl(mean_q, cov_q, mean_p, cov_p, slips: set[str]) -> torch.Tensor:
    if "kl_reversed" in slips:
        mean_q, cov_q, mean_p, cov_p = mean_p, cov_p, mean_q, cov_q
    kl = kl_oracle(mean_q, cov_q, mean_p, cov_p)
    if "kl_no_log_det" in slips:
        kl = kl - 0.5 * (torch.linalg.slogdet(cov_p).logabsdet - torch.linalg.slogdet(cov_q).logabsdet)
    return kl


def slipped_elbo(problem: visible.Problem, q_args: tuple, noise: torch.Tensor, slips: Iterable[str] = ()) -> torch.Tensor:
    """The ELBO as a student would compute it, loop over t, with the given slips (see :data:`ELBO_SLIPS`); without
    slips the exact estimate on the given noise."""
    slips = set(slips)
    unknown = slips - set(ELBO_SLIPS)
    if unknown:
        raise ValueError(f"slips: expected names from {ELBO_SLIPS}, got {sorted(unknown)}")
    m, P, A, b, Q = q_args
    sample_slips = slips & {"covariance_not_cholesky", "detached"}
    s = slipped_sample(m, P, A, b, Q, noise, sample_slips)
    sign = 1.0 if "plus_kl" in slips else -1.0
    value = torch.zeros(noise.shape[0], dtype=DTYPE)
    if "no_initial_kl" not in slips:
        value = value + sign * _kl(m, P, problem.m0, problem.S0, slips)
    D = problem.D @ problem.D.mT if "emission_std" in slips else problem.D
    marginal_mean, marginal_cov = problem.m0, problem.S0
    for t in range(1, noise.shape[-2]):
        previous = s[..., t - 1, :]
        mean_q = matvec(A[t - 1], previous) + b[t - 1]
        marginal_mean, marginal_cov = problem.E @ marginal_mean, problem.E @ marginal_cov @ problem.E.mT + problem.F
        if "kl_against_marginal" in slips:
            mean_p, cov_p = marginal_mean.expand_as(mean_q), marginal_cov
        else:
            mean_p, cov_p = matvec(problem.E, previous), problem.F
        value = value + sign * _kl(mean_q, Q[t - 1], mean_p, cov_p, slips)
        scored = s[..., t - 1 if "reconstruction_off_by_one" in slips else t, :]
        value = value + visible._mvn(matvec(problem.C, scored), D).log_prob(problem.Y[t - 1])
    return value.sum(0) if "sum_over_samples" in slips else value.mean(0)


def _elbo_problem(seed: int) -> tuple[visible.Problem, visible.MarkovianGaussian, torch.Tensor]:
    problem = visible.random_problem(800 + seed, state_dim=3, obs_dim=2, num_steps=4)
    q = visible.perturbed(problem.posterior, 800 + seed, size=0.4)
    return problem, q, visible.standard_noise(800 + seed, 6, q.num_steps + 1, 3)


def elbo_mistakes(problem, q, noise) -> dict[str, tuple[torch.Tensor, str]]:
    return {slip: (slipped_elbo(problem, q.args(), noise, [slip]).detach(), message)
            for slip, message in ELBO_MESSAGES.items()}


def check_elbo_exact(elbo: Callable, seed: int = 0) -> None:
    """Equals the ELBO estimate on the given noise for a q other than the posterior (dx = 3, dy = 2, T = 4, N = 6)."""
    problem, q, noise = _elbo_problem(seed)
    got = _expect_deterministic("elbo", lambda eps: visible._elbo(elbo, problem, q, eps), noise).detach()
    _expect_value("elbo", got, elbo_oracle(problem, q.args(), noise).detach(), "ELBO estimate",
                  lambda: elbo_mistakes(problem, q, noise), hint=visible.ELBO_HINT)


def check_elbo_gradient_exact(elbo: Callable, seed: int = 0) -> None:
    """The gradient with respect to the offsets b_t and the weights A_t equals the reparameterised gradient of the
    estimate (the samples move with the parameters)."""
    problem, q, noise = _elbo_problem(seed)
    for index, label in ((3, "offsets b_t"), (2, "weights A_t")):
        args = list(q.args())
        args[index] = args[index].clone().requires_grad_(True)
        value = visible.expect_tensor("elbo", _call("elbo", elbo, *problem.model_args(), *args, noise))
        if not value.requires_grad:
            raise GradingError(f"elbo: the ELBO carries no gradient with respect to the {label}. {visible.GRADIENT_HINT}")
        (got,) = torch.autograd.grad(value.sum(), args[index], allow_unused=True)
        got = torch.zeros_like(args[index]) if got is None else got

        def gradient(slips=(), index=index):
            params = list(q.args())
            params[index] = params[index].clone().requires_grad_(True)
            return torch.autograd.grad(slipped_elbo(problem, params, noise, slips), params[index])[0]

        detached = gradient(["detached"])
        _expect_value(f"elbo (gradient with respect to the {label})", got, gradient(), "gradient", lambda detached=detached: {
            "detached": (detached, "your samples are cut off from autograd (.detach(), or drawn without the "
                         "parameters): the ELBO's gradient must flow through the reparameterised s̃_t = g(ε)."),
        }, hint=visible.GRADIENT_HINT)


def check_elbo_batched(elbo: Callable, seed: int = 0, batch: int = 2) -> None:
    """Leading dimensions: a batch of B models, observations and posteriors (Y (B, T, dy), ..., noise (N, B, T+1, d))
    gives (B,), each the ELBO of its own model alone."""
    problems = [visible.random_problem(820 + seed + b, state_dim=2, obs_dim=1, num_steps=3) for b in range(batch)]
    qs = [visible.perturbed(p.posterior, seed + b) for b, p in enumerate(problems)]
    noise = visible.standard_noise(820 + seed, 4, batch, 4, 2)
    stacked = [torch.stack(parts) for parts in zip(*(p.model_args() + q.args() for p, q in zip(problems, qs)))]
    _batched("elbo", elbo, (*stacked, noise),
             lambda b: (*problems[b].model_args(), *qs[b].args(), noise[:, b]), 1)


# ------------------------------------------------------------------------------ independence
def _independence_args(name: str, seed: int) -> tuple:
    problem = visible.random_problem(900 + seed, num_steps=3)
    q = visible.perturbed(problem.posterior, seed)
    noise = visible.standard_noise(900 + seed, 2, 4, 2)
    args = {
        "gaussian_kl": lambda: visible._kl_pair(seed),
        "sample_markovian": lambda: (*q.args(), noise),
        "elbo": lambda: (*problem.model_args(), *q.args(), noise),
    }
    if name not in args:
        raise ValueError(f"name: expected one of {sorted(args)}, got {name!r}")
    return args[name]()


def check_no_reference_calls(name: str, fn: Callable, seed: int = 0,
                             packages: tuple[str, ...] = REFERENCE_PACKAGES) -> None:
    """``fn`` (the student's function called ``name``) runs without code of the reference packages."""
    for package in packages:
        if importlib.util.find_spec(package) is None:
            continue
        args = _independence_args(name, seed)
        expect_independent(name, lambda args=args: _call(name, fn, *args), package)
