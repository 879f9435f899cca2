"""Learning θ of a VSSM on a nonlinear system, against a linear-Gaussian SSM fitted by maximum likelihood.

The data: :func:`mbrl_course.ssm.datasets.make_pendulum_data`, a damped pendulum with a random torque seen
through a noisy angle encoder y_t = (sin φ_t, −cos φ_t) + ν_t (dt = 0.1 s). Its physics is checked against
closed forms (energy conservation without damping and noise, the small-angle solution).

The claim of issue 13: the VSSM (MLP transition and emission, Markovian posterior; θ and ψ trained together
with :func:`~mbrl_course.ssm.train_vssm`) beats the linear-Gaussian SSM fitted with
:func:`mbrl_course.filters.fit` on the held-out k-step predictive log-likelihood log p(y_{T+k} | Y_{1:T}),
k = 1 and k = 20. At this test's budget (600 Adam steps, ≈ 30 s) the k = 20 win is large and reliable and is
asserted; at k = 1 the win depends on the seed, so only "not worse by half a nat" is asserted and the full
claim is left to ``benchmarks/vssm.py`` (800 steps on 256 sequences, every family). The linear SSM's predictive is exact (:func:`mbrl_course.filters.predict`, a Gaussian);
the VSSM's is the Gaussian N(m̂_k, Ĉ_k) fitted (sample mean, full sample covariance) to N samples ỹ_{T+k}
of :func:`~mbrl_course.ssm.k_step_prediction`. For a Gaussian predictive the two agree (tested: the fit
to samples of the linear SSM's exact predictive gives its exact log-likelihood), so the comparison is
like for like; for the VSSM's non-Gaussian predictive the Gaussian fit is a lower bound on what the
sample-based density could score (the Gaussian is the best a second-order summary can do, not the
best density), i.e. conservative for the VSSM.
"""

from __future__ import annotations

import math

import pytest
import torch

from mbrl_course.filters import FitConfig, LinearGaussianModel, LinearGaussianSSM, fit, kalman_filter, predict
from mbrl_course.ssm import TrainConfig, k_step_prediction, make_generative_model, make_posterior, train_vssm
from mbrl_course.ssm.datasets import (
    PendulumParams,
    make_pendulum_data,
    pendulum_sensor,
    simulate_pendulum,
)

F64 = torch.float64


def gaussian_fit_log_prob(samples: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log N(y | m̂, Ĉ) with m̂, Ĉ the sample mean and (unbiased) covariance: ``samples: (N, ..., dy)``,
    ``targets: (..., dy)`` -> ``(...)``."""
    mean = samples.mean(0)
    centred = samples - mean
    cov = torch.einsum("n...i,n...j->...ij", centred, centred) / (samples.shape[0] - 1)
    return torch.distributions.MultivariateNormal(mean, cov).log_prob(targets)


# ----------------------------------------------------------------------------------------- the data set


def test_pendulum_data_shapes_dtype_and_seed():
    a = make_pendulum_data(num_train=3, num_test=2, length=7, test_length=5, horizon=4, seed=1)
    b = make_pendulum_data(num_train=3, num_test=2, length=7, test_length=5, horizon=4, seed=1)
    c = make_pendulum_data(num_train=3, num_test=2, length=7, test_length=5, horizon=4, seed=2)
    assert a.train_observations.shape == (3, 7, 2) and a.train_states.shape == (3, 8, 2)
    assert a.test_observations.shape == (2, 9, 2) and a.test_states.shape == (2, 10, 2)
    assert a.train_observations.dtype == torch.float32 and a.dt == 0.1
    torch.testing.assert_close(a.train_observations, b.train_observations, rtol=0, atol=0)
    torch.testing.assert_close(a.test_states, b.test_states, rtol=0, atol=0)
    assert not torch.equal(a.train_observations, c.train_observations)
    assert make_pendulum_data(2, 2, 4, seed=0, dtype=F64).train_states.dtype == F64


def test_pendulum_without_damping_and_noise_conserves_energy():
    """E = ½ ω² + (g/l)(1 − cos φ) is constant along the undamped pendulum, up to RK4's O(h⁴) drift:
    about 4e-5 over 30 s with the default 4 sub-steps, some 4⁴ = 256 times less with 16."""
    s0 = torch.tensor([[2.5, 0.0], [0.3, 1.0], [-1.0, 3.0], [0.0, 6.5]], dtype=F64)  # the last one rotates
    drift = []
    for substeps in (4, 16):
        p = PendulumParams(damping=0.0, process_noise_std=0.0, substeps=substeps)
        s = simulate_pendulum(s0, 300, p)
        energy = 0.5 * s[..., 1] ** 2 + p.gravity_over_length * (1 - torch.cos(s[..., 0]))
        drift.append(float((energy - energy[:, :1]).abs().max()))
        assert float(s[3, -1, 0]) > 2 * math.pi  # went over the top at least once
    assert drift[0] < 1e-4 and drift[1] < 1e-6
    assert drift[0] / drift[1] > 100  # fourth order (4⁴ = 256; 634 measured), not second (16)


def test_pendulum_small_angles_follow_the_harmonic_solution():
    """φ_0 = 1e-3, ω_0 = 0, damping c: φ(t) ≈ φ_0 e^{-ct/2} (cos ω_d t + c/(2 ω_d) sin ω_d t),
    ω_d = √(g/l − c²/4) (the linearised, damped oscillator)."""
    p = PendulumParams(damping=0.3, process_noise_std=0.0)
    phi0 = 1e-3
    s = simulate_pendulum(torch.tensor([[phi0, 0.0]], dtype=F64), 100, p)
    t = torch.arange(101, dtype=F64) * p.dt
    wd = math.sqrt(p.gravity_over_length - p.damping ** 2 / 4)
    want = phi0 * torch.exp(-p.damping * t / 2) * (torch.cos(wd * t) + p.damping / (2 * wd) * torch.sin(wd * t))
    assert float((s[0, :, 0] - want).abs().max()) < 1e-7  # sin φ - φ ~ φ³/6 ~ 2e-10 relative


def test_pendulum_sensor_and_noise():
    p = PendulumParams(sensor_gain=2.0, obs_noise_std=0.05)
    data = make_pendulum_data(num_train=64, num_test=1, length=50, seed=3, params=p, dtype=F64)
    clean = pendulum_sensor(data.train_states[:, 1:], p)
    # the noiseless sensor reads the angle's point on the circle of radius a
    torch.testing.assert_close(clean.norm(dim=-1), torch.full(clean.shape[:-1], 2.0, dtype=F64))
    phi = data.train_states[:, 1:, 0]
    torch.testing.assert_close(torch.atan2(clean[..., 0], -clean[..., 1]), torch.atan2(torch.sin(phi), torch.cos(phi)))
    residual = data.train_observations - clean
    assert abs(float(residual.std()) - 0.05) < 0.002 and abs(float(residual.mean())) < 0.002


def test_pendulum_data_refuses_bad_arguments():
    with pytest.raises(ValueError, match="num_train"):
        make_pendulum_data(num_train=0)
    with pytest.raises(ValueError, match="params.dt"):
        make_pendulum_data(params=PendulumParams(dt=-0.1))
    with pytest.raises(ValueError, match="initial_states"):
        simulate_pendulum(torch.zeros(3), 5)


# ------------------------------------------------------------------------ the predictive score itself


def test_gaussian_fit_to_samples_recovers_an_exact_gaussian_predictive():
    """The VSSM's score (a Gaussian fitted to predictive samples) applied to samples of a known Gaussian predictive
    (as the linear SSM's is) gives its exact log-likelihood: the two scores of the main test are comparable.
    Correlated covariances: a diagonal fit would fail."""
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(200, 2, generator=g, dtype=F64)
    A = torch.randn(200, 2, 2, generator=g, dtype=F64) * 0.3
    cov = A @ A.mT + 0.05 * torch.eye(2, dtype=F64)
    y = mean + (torch.linalg.cholesky(cov) @ torch.randn(200, 2, 1, generator=g, dtype=F64)).squeeze(-1)
    exact = torch.distributions.MultivariateNormal(mean, cov).log_prob(y)
    samples = mean + (torch.linalg.cholesky(cov) @ torch.randn(500, 200, 2, 1, generator=g, dtype=F64)).squeeze(-1)
    # 500 samples: each estimate is off by O(1/N) bias plus noise; the average over 200 targets within 0.02
    assert abs(float((gaussian_fit_log_prob(samples, y) - exact).mean())) < 0.02


# ---------------------------------------------------------------- the claim: learned VSSM vs linear SSM

CONDITION_STEPS = 40  # T: observations seen
HORIZON = 20  # k = 1..20 (2 s, about one small-angle period)


@pytest.fixture(scope="module")
def pendulum_scores():
    """Held-out log p(y_{T+k} | Y_{1:T}) per test sequence and k, for the VSSM and the linear SSM: (B, K) each.

    Training data: 64 sequences of 30 steps (3 s); held-out: 128 sequences, condition on 40 steps, score 20.
    VSSM: dx = 4, MLP transition and emission (32, 32), Markovian posterior, 600 full-batch Adam steps at
    5e-3 (≈ 20 s on one core). Linear SSM: dx = 4, 100 L-BFGS steps on log p(Y) of the same (centred) data
    (converged to 0.001 nats per step).
    """
    torch.manual_seed(0)
    data = make_pendulum_data(num_train=64, num_test=128, length=30, test_length=CONDITION_STEPS,
                              horizon=HORIZON, seed=0)
    Y, Y_test = data.train_observations, data.test_observations
    seen, future = Y_test[:, :CONDITION_STEPS], Y_test[:, CONDITION_STEPS:]
    dx = 4
    model = make_generative_model(dx, 2, transition="mlp", emission_mean="mlp", hidden_sizes=(32, 32))
    posterior = make_posterior("markovian", dx, 2, hidden_size=32)
    result = train_vssm(model, posterior, Y, config=TrainConfig(num_steps=600, learning_rate=5e-3, progress=False))
    pred = k_step_prediction(model, posterior, seen, HORIZON, num_samples=500, generator=torch.Generator().manual_seed(1))
    vssm = gaussian_fit_log_prob(pred.observations.double(), future.double())

    # the linear-Gaussian SSM has no emission offset: centre y by the training mean (a shift: densities unchanged)
    offset = Y.double().mean((0, 1))
    g = torch.Generator().manual_seed(0)
    start = LinearGaussianSSM(torch.zeros(dx, dtype=F64), torch.eye(dx, dtype=F64), 0.9 * torch.eye(dx, dtype=F64),
                              0.1 * torch.eye(dx, dtype=F64), 0.5 * torch.randn(2, dx, generator=g, dtype=F64),
                              0.1 * torch.eye(2, dtype=F64))
    linear = LinearGaussianModel(start)
    fit(linear, Y.double() - offset, config=FitConfig(num_steps=100, progress=False))
    with torch.no_grad():
        ssm = linear.ssm()
        filtered = kalman_filter(ssm, seen.double() - offset)
        lin_pred = predict(ssm, filtered.filtered_means[:, -1], filtered.filtered_covs[:, -1], HORIZON)
        lin = torch.distributions.MultivariateNormal(lin_pred.obs_means, lin_pred.obs_covs).log_prob(
            future.double() - offset)
    return {"vssm": vssm, "linear": lin, "elbo": result.history}


@pytest.mark.slow
def test_learned_vssm_beats_linear_ssm_20_steps_ahead(pendulum_scores):
    """k = 20 (2 s ahead): the linear SSM's oscillation drifts out of phase (the pendulum's period grows with the
    amplitude) while the VSSM's MLP transition tracks it. Measured with budgets like this one: +1.0 to +1.6 nats
    over ten trainings (data and training seeds, data sizes); asserted: more than 0.5 nats and 3 standard errors."""
    vssm, lin = pendulum_scores["vssm"][:, HORIZON - 1], pendulum_scores["linear"][:, HORIZON - 1]
    diff = vssm - lin  # paired over the held-out sequences
    se = float(diff.std()) / diff.numel() ** 0.5
    assert float(diff.mean()) > max(3 * se, 0.5), (
        f"k=20: VSSM {float(vssm.mean()):.3f} vs linear {float(lin.mean()):.3f} nats (SE of the difference {se:.3f})")


@pytest.mark.slow
def test_learned_vssm_is_not_worse_than_linear_ssm_one_step_ahead(pendulum_scores):
    """k = 1 is a weaker claim at this budget: one step ahead the linear SSM extrapolates the smooth signal well,
    and whether 600 steps of a Markovian VSSM beat it depends on the seed (measured −0.26 to +0.39 nats over ten
    short trainings; +0.26 for this seed; ``benchmarks/vssm.py`` with 64 sequences: −0.07 to +0.59 over four seeds,
    with its default 256 sequences: +0.23 to +0.46 for the Markovian and auto-regressive families). Asserted here:
    not worse by half a nat, which still catches a prediction that starts from the wrong state (s_0 instead
    of s_T: several nats) or a predictive spread that ignores the posterior's or the transition's noise."""
    vssm, lin = pendulum_scores["vssm"][:, 0], pendulum_scores["linear"][:, 0]
    assert float((vssm - lin).mean()) > -0.5, (float(vssm.mean()), float(lin.mean()))
    assert float(vssm.mean()) > 0.5  # the observation noise alone allows ≈ 1.8 nats; an unconditioned guess ≈ −1


@pytest.mark.slow
def test_vssm_training_raised_the_elbo(pendulum_scores):
    history = pendulum_scores["elbo"]
    first, last = sum(history[:20]) / 20, sum(history[-20:]) / 20
    assert last > first + 1.0  # per observed step; the run ends above 1 nat per step
