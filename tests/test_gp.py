"""PILCO's GP dynamics: the exact GP against gpytorch, FITC against the exact GP and Monte Carlo, the moments
against the moment-matching closed forms, the angle bookkeeping, and the model contract on the cart-pole."""

from __future__ import annotations

import io
import math
import warnings

import pytest
import torch
from moment_helpers import within

from mbrl_course.data import ReplayBuffer
from mbrl_course.envs import CARTPOLE_SWINGUP_ID, dynamics_fn, reward_fn
from mbrl_course.models import (
    GaussianProcess,
    GPCholeskyError,
    GPDynamics,
    JitterWarning,
    obs_from_state,
    rollout,
    state_angle_indices,
    state_from_obs,
    wrap_angle,
)
from mbrl_course.models.moment_matching import gp_moments_at_gaussian_input, se_kernel

DTYPE = torch.float64


def random_data(dim: int, outputs: int, points: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.randn(points, dim, generator=gen, dtype=DTYPE)
    targets = torch.stack([torch.sin(inputs * (a + 1)).sum(-1) for a in range(outputs)], -1)
    targets = targets + 0.1 * torch.randn(points, outputs, generator=gen, dtype=DTYPE)
    lengthscales = 0.5 + torch.rand(outputs, dim, generator=gen, dtype=DTYPE)
    signal_var = 0.5 + torch.rand(outputs, generator=gen, dtype=DTYPE)
    noise_var = 0.01 + 0.05 * torch.rand(outputs, generator=gen, dtype=DTYPE)
    tests = 1.5 * torch.randn(9, dim, generator=gen, dtype=DTYPE)
    return inputs, targets, (lengthscales, signal_var, noise_var), tests


def gp_with(inputs, targets, hypers, inducing_inputs=None) -> GaussianProcess:
    gp = GaussianProcess(inputs.shape[1], targets.shape[1])
    gp.set_data(inputs, targets, inducing_inputs=inducing_inputs)
    gp.set_hyperparameters(lengthscales=hypers[0], signal_var=hypers[1], noise_var=hypers[2])
    return gp


# ---------------------------------------------------------------------------------------------- exact GP
@pytest.mark.parametrize(("dim", "seed"), [(1, 0), (3, 1)])
def test_posterior_and_likelihood_match_gpytorch(dim, seed):
    gpytorch = pytest.importorskip("gpytorch")
    inputs, targets, hypers, tests = random_data(dim, 2, 30, seed)
    gp = gp_with(inputs, targets, hypers)
    mean, var = gp.posterior(tests)
    _, noisy = gp.posterior(tests, include_noise=True)
    lml = gp.log_marginal_likelihood()

    class Exact(gpytorch.models.ExactGP):
        def __init__(self, x, y, likelihood):
            super().__init__(x, y, likelihood)
            self.mean_module = gpytorch.means.ZeroMean()
            self.covar_module = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel(ard_num_dims=dim))

        def forward(self, x):
            return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))

    for a in range(2):
        likelihood = gpytorch.likelihoods.GaussianLikelihood().double()
        model = Exact(inputs, targets[:, a], likelihood).double()
        model.covar_module.base_kernel.lengthscale = hypers[0][a]
        model.covar_module.outputscale = hypers[1][a]
        likelihood.noise = hypers[2][a]
        model.train()
        likelihood.train()
        with torch.no_grad():
            theirs = gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, model)(model(inputs), targets[:, a])
        assert abs(float(theirs) * inputs.shape[0] - float(lml[a].detach())) < 1e-6  # gpytorch divides by n
        model.eval()
        likelihood.eval()
        with torch.no_grad(), gpytorch.settings.fast_pred_var(False):
            latent = model(tests)
            observed = likelihood(latent)
        torch.testing.assert_close(mean[:, a], latent.mean, rtol=0, atol=1e-6)
        torch.testing.assert_close(var[:, a], latent.variance, rtol=0, atol=1e-6)
        torch.testing.assert_close(noisy[:, a], observed.variance, rtol=0, atol=1e-6)


def test_fit_raises_likelihood_and_recovers_lengthscales_of_a_gp_prior():
    gen = torch.Generator().manual_seed(3)
    inputs = 8 * torch.rand(150, 1, generator=gen, dtype=DTYPE) - 4
    truth = (torch.tensor([[0.5], [1.5]], dtype=DTYPE), torch.tensor([1.0, 2.0], dtype=DTYPE),
             torch.tensor([0.01, 0.02], dtype=DTYPE))
    gram = se_kernel(inputs, inputs, truth[0], truth[1]) + truth[2][:, None, None] * torch.eye(150, dtype=DTYPE)
    targets = (torch.linalg.cholesky(gram) @ torch.randn(2, 150, 1, generator=gen, dtype=DTYPE))[..., 0].T
    gp = GaussianProcess(1, 2)
    report = gp.fit(inputs, targets, iterations=100)
    assert not report.sparse and report.iterations > 0 and report.message == ""
    assert report.log_likelihood[-1] > report.log_likelihood[0] + 10
    fitted = gp.log_marginal_likelihood().detach()
    assert abs(float(fitted.sum()) - report.log_likelihood[-1]) < 1e-9
    at_truth = gp_with(inputs, targets, truth).log_marginal_likelihood().detach()
    assert bool((fitted >= at_truth - 1e-6).all()), "the maximum should be at least the likelihood at the truth"
    ratio = gp.lengthscales.detach()[:, 0] / truth[0][:, 0]
    assert bool(((ratio > 0.7) & (ratio < 1.4)).all()), f"length-scales {gp.lengthscales.detach()} vs {truth[0]}"


def test_min_noise_var_floors_the_fitted_noise():
    # noise-free data: the fit drives σ² towards 0, the floor holds it at σ²_min, and the prediction's
    # variance at a training input is at least σ²_min when the noise is included
    inputs = torch.linspace(-3, 3, 40, dtype=DTYPE)[:, None]
    targets = torch.sin(inputs)
    free, floored = GaussianProcess(1, 1), GaussianProcess(1, 1, min_noise_var=1e-3)
    free.fit(inputs, targets, iterations=50)
    floored.fit(inputs, targets, iterations=50)
    assert float(free.noise_var.detach()) < 1e-4 and float(floored.noise_var.detach()) == pytest.approx(1e-3)
    _, var = floored.posterior(inputs[:5], include_noise=True)
    assert bool((var >= 1e-3).all())
    with pytest.raises(ValueError, match="min_noise_var: expected"):
        GaussianProcess(1, 1, min_noise_var=-1.0)


# ---------------------------------------------------------------------------------------------- FITC
def test_fitc_on_the_training_inputs_is_the_exact_gp():
    inputs, targets, hypers, tests = random_data(2, 2, 25, seed=4)
    exact = gp_with(inputs, targets, hypers)
    fitc = gp_with(inputs, targets, hypers, inducing_inputs=inputs)
    assert fitc.sparse and not exact.sparse
    torch.testing.assert_close(fitc.log_marginal_likelihood(), exact.log_marginal_likelihood(), rtol=0, atol=1e-8)
    for noise in (False, True):
        for got, want in zip(fitc.posterior(tests, include_noise=noise), exact.posterior(tests, include_noise=noise)):
            torch.testing.assert_close(got, want, rtol=0, atol=1e-8)


def fitc_predictive(x, inputs, targets, inducing, hypers):
    """FITC written out with explicit inverses (Snelson & Ghahramani, 2006): m(x), v(x) of the latent, (N, E)."""
    ell, alpha2, noise = hypers
    k_mm = se_kernel(inducing, inducing, ell, alpha2)
    k_mn = se_kernel(inducing, inputs, ell, alpha2)
    k_mm_inv = torch.linalg.inv(k_mm)
    q_diag = ((k_mn.transpose(-1, -2) @ k_mm_inv) * k_mn.transpose(-1, -2)).sum(-1)  # diag(K_nm K_mm⁻¹ K_mn)
    lam = alpha2[:, None] - q_diag + noise[:, None]
    sigma = torch.linalg.inv(k_mm + (k_mn / lam[:, None, :]) @ k_mn.transpose(-1, -2))
    weights = sigma @ (k_mn @ (targets.T / lam)[..., None])  # (E, M, 1)
    k_xm = se_kernel(x, inducing, ell, alpha2)
    mean = (k_xm @ weights)[..., 0].T
    var = alpha2[:, None] - ((k_xm @ (k_mm_inv - sigma)) * k_xm).sum(-1)
    return mean, var.T


def test_fitc_moments_at_a_gaussian_input_match_monte_carlo():
    inputs, targets, hypers, _ = random_data(2, 2, 60, seed=5)
    gen = torch.Generator().manual_seed(6)
    inducing = 1.2 * torch.randn(8, 2, generator=gen, dtype=DTYPE)
    gp = gp_with(inputs, targets, hypers, inducing_inputs=inducing)
    mean = torch.tensor([0.3, -0.2], dtype=DTYPE)
    root = torch.tensor([[0.5, 0.0], [0.2, 0.4]], dtype=DTYPE)
    cov = root @ root.T
    got = gp.moments(mean, cov)
    samples = 1_000_000
    x = mean + torch.randn(samples, 2, generator=gen, dtype=DTYPE) @ root.T
    m, v = zip(*(fitc_predictive(chunk, inputs, targets, inducing, hypers) for chunk in x.split(250_000)))
    m, v = torch.cat(m), torch.cat(v)
    n = float(samples)
    within(got.mean, m.mean(0), m.std(0) / n**0.5, "mean")
    centred = m - m.mean(0)
    products = centred[:, :, None] * centred[:, None, :]
    within(got.cov, products.mean(0) + torch.diag_embed(v.mean(0)),
           (products.var(0) / n + torch.diag_embed(v.var(0) / n)).sqrt(), "covariance")
    io = (x - x.mean(0))[:, :, None] * centred[:, None, :]
    within(got.input_cov, io.mean(0), io.std(0) / n**0.5, "input-output covariance")


# ---------------------------------------------------------------------------------------------- moments
def test_moments_are_the_closed_forms_and_the_posterior_at_zero_covariance():
    inputs, targets, hypers, tests = random_data(3, 2, 20, seed=7)
    gp = gp_with(inputs, targets, hypers)
    gram = se_kernel(inputs, inputs, hypers[0], hypers[1]) + hypers[2][:, None, None] * torch.eye(20, dtype=DTYPE)
    inverse = torch.linalg.inv(gram)  # the oracle's own (K + σ² I)⁻¹ and β, not the GP's cache
    beta = (inverse @ targets.T[..., None])[..., 0]
    torch.testing.assert_close(gp.beta, beta)
    torch.testing.assert_close(gp.kernel_inverse, inverse)
    gen = torch.Generator().manual_seed(8)
    mean = torch.randn(4, 3, generator=gen, dtype=DTYPE).requires_grad_(True)
    root = 0.3 * torch.randn(4, 3, 3, generator=gen, dtype=DTYPE)
    cov = (root @ root.transpose(-1, -2)).requires_grad_(True)
    got = gp.moments(mean, cov)
    want = gp_moments_at_gaussian_input(mean, cov, inputs, beta, hypers[0], hypers[1], kernel_inverse=inverse)
    for name in ("mean", "cov", "input_cov"):
        torch.testing.assert_close(getattr(got, name), getattr(want, name))
    noisy = gp.moments(mean, cov, include_noise=True)
    torch.testing.assert_close(noisy.cov - got.cov, torch.diag_embed(hypers[2]).expand(4, 2, 2))
    unchecked = gp.moments(mean, cov, check=False)
    torch.testing.assert_close(unchecked.cov, got.cov, rtol=0, atol=0)
    (got.mean.sum() + got.cov.sum()).backward()
    assert mean.grad is not None and cov.grad is not None and bool(mean.grad.abs().sum() > 0)
    # a point input: the posterior at the mean
    point = gp.moments(tests, torch.zeros(9, 3, 3, dtype=DTYPE))
    post_mean, post_var = gp.posterior(tests)
    torch.testing.assert_close(point.mean, post_mean)
    torch.testing.assert_close(torch.diagonal(point.cov, dim1=-2, dim2=-1), post_var)


# ---------------------------------------------------------------------------------------------- jitter
def test_jitter_retry_warns_once_and_succeeds_on_duplicated_inputs():
    # ten inputs, each three times: K has 20 zero eigenvalues, and round-off makes some of its Cholesky pivots
    # negative by ~1e-16 α², far more than σ² = 2e-12 = 2e-18 α² makes up for
    gen = torch.Generator().manual_seed(9)
    inputs = torch.randn(10, 2, generator=gen, dtype=DTYPE).repeat(3, 1)
    targets = torch.sin(inputs[:, :1])
    gp = GaussianProcess(2, 1)
    gp.set_data(inputs, targets)
    gp.set_hyperparameters(lengthscales=3.0, signal_var=1e6, noise_var=2e-12)
    assert int(torch.linalg.cholesky_ex(se_kernel(inputs, inputs, gp.lengthscales, gp.signal_var)
                                        + gp.noise_var * torch.eye(30, dtype=DTYPE)).info.max()) > 0
    with pytest.warns(JitterWarning, match="jitter of 1e-08") as caught:
        gp.refresh()
        gp.set_hyperparameters(signal_var=2e6)
        mean, var = gp.posterior(inputs)
    assert len([w for w in caught if issubclass(w.category, JitterWarning)]) == 1
    assert bool(torch.isfinite(mean).all() & torch.isfinite(var).all())
    assert (mean - targets).abs().max() < 1e-3
    # FITC with duplicated inducing inputs: K_mm itself is singular
    fitc = GaussianProcess(2, 1)
    fitc.set_data(inputs, targets, inducing_inputs=inputs)  # K_mm has no noise at all
    with pytest.warns(JitterWarning):
        assert bool(torch.isfinite(fitc.log_marginal_likelihood()).all())
    with pytest.raises(GPCholeskyError, match="not positive definite") as err:
        gp._cholesky(-torch.eye(3, dtype=DTYPE)[None], "a negative matrix")
    assert isinstance(err.value, torch.linalg.LinAlgError)


# ---------------------------------------------------------------------------------------------- bad input
def _fitted_small():
    inputs, targets, hypers, _ = random_data(2, 1, 10, seed=10)
    return gp_with(inputs, targets, hypers), inputs, targets


@pytest.mark.parametrize(("call", "match"), [
    (lambda gp, x, y: gp.set_data(x[:1], y[:1]), r"inputs: expected at least 2 points"),
    (lambda gp, x, y: GaussianProcess(5, 1).set_data(torch.zeros(3, 5), torch.zeros(3, 1)),
     r"inputs: expected at least 5 points"),
    (lambda gp, x, y: gp.set_data(x.index_fill(0, torch.tensor([3, 7]), float("nan")), y),
     r"inputs: .*NaN/inf in rows \[3, 7\]"),
    (lambda gp, x, y: gp.fit(x, y.index_fill(0, torch.tensor([2]), float("inf"))), r"targets: .*rows \[2\]"),
    (lambda gp, x, y: gp.set_data(torch.zeros(10, 3), y), r"inputs: expected shape \(n, 2\)"),
    (lambda gp, x, y: gp.set_data(x, y[:9]), r"targets: expected shape \(10, 1\)"),
    (lambda gp, x, y: gp.posterior(torch.zeros(4, 3)), r"x: expected shape \(m, 2\)"),
    (lambda gp, x, y: gp.moments(torch.zeros(2), torch.tensor([[1.0, 0.5], [0.0, 1.0]])), r"cov: .*symmetric"),
    (lambda gp, x, y: gp.moments(torch.zeros(2), torch.tensor([[1.0, 2.0], [2.0, 1.0]])),
     r"cov: .*positive semi-definite"),
    (lambda gp, x, y: gp.moments(torch.zeros(2), torch.eye(3)), r"mean, cov: expected"),
    (lambda gp, x, y: gp.moments(torch.tensor([0.0, float("nan")]), torch.eye(2)), r"mean, cov: expected finite"),
    (lambda gp, x, y: gp.set_hyperparameters(noise_var=-1.0), r"noise_var: expected finite values"),
    (lambda gp, x, y: gp.set_hyperparameters(lengthscales=torch.ones(3)), r"lengthscales: expected shape"),
    (lambda gp, x, y: GPDynamics(5, 1, angles=(4,)), r"angles: expected cos indices"),
    (lambda gp, x, y: GPDynamics(5, 1, angles=(0, 1)), r"angles: expected increasing"),
])
def test_bad_input_raises_a_value_error_naming_the_argument(call, match):
    gp, inputs, targets = _fitted_small()
    with pytest.raises(ValueError, match=match):
        call(gp, inputs, targets)


def test_bad_d_real_raises_naming_d_real():
    model = GPDynamics(5, 1, angles=(2,))
    buffer = ReplayBuffer(5, 1, capacity=20, dtype=DTYPE)
    obs = torch.tensor([[0.0, 0.0, -1.0, 0.0, 0.0]], dtype=DTYPE).repeat(4, 1)
    buffer.add_batch(obs, torch.zeros(4, 1), torch.zeros(4), obs, torch.zeros(4))
    with pytest.raises(ValueError, match=r"D_real: expected at least 6 transitions"):
        model.fit(buffer)
    buffer.add_batch(obs, torch.zeros(4, 1), torch.zeros(4), obs, torch.zeros(4))
    buffer._storage["next_obs"][5, 0] = float("nan")  # past the buffer's own checks: a corrupted D_real
    with pytest.raises(ValueError, match=r"D_real: .*NaN/inf in next_obs of transitions \[5\]"):
        model.fit(buffer)
    with pytest.raises(ValueError, match=r"D_real: holds obs_dim=3"):
        model.fit(ReplayBuffer(3, 1))


# ---------------------------------------------------------------------------------------------- angles
def test_angle_helpers_round_trip_and_wrap():
    angles = (0, 3)  # obs (cos a, sin a, x, cos b, sin b, y, w), z (a, x, b, y, w)
    assert state_angle_indices(angles) == (0, 2)
    gen = torch.Generator().manual_seed(11)
    state = torch.randn(6, 5, generator=gen, dtype=DTYPE)
    state[:, [0, 2]] = wrap_angle(4 * state[:, [0, 2]])
    obs = obs_from_state(state, angles)
    assert obs.shape == (6, 7)
    torch.testing.assert_close(obs[:, [0, 1, 3, 4]], torch.stack(
        [state[:, 0].cos(), state[:, 0].sin(), state[:, 2].cos(), state[:, 2].sin()], -1))
    torch.testing.assert_close(obs[:, [2, 5, 6]], state[:, [1, 3, 4]])
    torch.testing.assert_close(state_from_obs(obs, angles), state)
    x = torch.tensor([math.pi, -math.pi, 3 * math.pi, 0.1 - 4 * math.pi, 7.0], dtype=DTYPE)
    wrapped = wrap_angle(x)
    assert bool(((wrapped > -math.pi) & (wrapped <= math.pi)).all())
    torch.testing.assert_close(wrapped.cos(), x.cos())
    torch.testing.assert_close(wrapped.sin(), x.sin())
    torch.testing.assert_close(wrapped[:2], torch.tensor([math.pi, math.pi], dtype=DTYPE))


# ---------------------------------------------------------------------------------------------- GPDynamics
CARTPOLE_ANGLES = (2,)


def cartpole_transitions(episodes: int, steps: int, seed: int):
    """Random-force episodes of the swing-up from its start distribution (the pole hangs at θ = ±π)."""
    step = dynamics_fn(CARTPOLE_SWINGUP_ID)
    gen = torch.Generator().manual_seed(seed)
    state = torch.tensor([0.0, 0.0, math.pi, 0.0], dtype=DTYPE) + 0.1 * torch.randn(episodes, 4, generator=gen,
                                                                                   dtype=DTYPE)
    obs = obs_from_state(state, CARTPOLE_ANGLES)
    seen, actions, reached = [], [], []
    for _ in range(steps):
        action = 20 * torch.rand(episodes, 1, generator=gen, dtype=DTYPE) - 10
        following = step(obs, action)
        seen.append(obs)
        actions.append(action)
        reached.append(following)
        obs = following
    return torch.cat(seen), torch.cat(actions), torch.cat(reached)


def as_buffer(obs, action, next_obs) -> ReplayBuffer:
    buffer = ReplayBuffer(obs.shape[1], action.shape[1], capacity=obs.shape[0], dtype=DTYPE)
    buffer.add_batch(obs, action, torch.zeros(obs.shape[0]), next_obs, torch.zeros(obs.shape[0]))
    return buffer


@pytest.fixture(scope="module")
def cartpole_model():
    model = GPDynamics(5, 1, angles=CARTPOLE_ANGLES, iterations=60)
    report = model.fit(as_buffer(*cartpole_transitions(10, 20, seed=0)))
    return model, report


def test_gp_dynamics_learns_one_cartpole_step(cartpole_model):
    model, report = cartpole_model
    assert report.log_likelihood[-1] > report.log_likelihood[0] and not report.sparse
    obs, action, next_obs = cartpole_transitions(5, 20, seed=1)
    _, delta = model.training_pairs(obs, action, next_obs)
    assert bool((delta[:, 2].abs() < 1.5).all()), "Δθ targets must be wrapped"
    crossing = (obs[:, 3] * next_obs[:, 3] < 0) & (obs[:, 2] < 0)  # sin θ changes sign at the bottom: θ crosses ±π
    assert int(crossing.sum()) >= 5
    predicted = model.next_state_distribution(obs, action)
    assert predicted.event_shape == (5,)
    z_next = state_from_obs(next_obs, CARTPOLE_ANGLES)
    z_pred = state_from_obs(predicted.mean, CARTPOLE_ANGLES)  # atan2 of the damped (cos, sin) keeps the angle
    error = z_pred - z_next
    error[:, 2] = wrap_angle(error[:, 2])
    rmse = error.square().mean(0).sqrt()
    assert bool((rmse < 0.1 * delta.std(0)).all()), f"one-step RMSE {rmse} vs spread of Δz {delta.std(0)}"
    assert bool((error[crossing].abs().max(0).values < 0.5 * delta.std(0)).all())


def test_next_state_distribution_moments_match_sampling(cartpole_model):
    model = GPDynamics(5, 1, angles=CARTPOLE_ANGLES)
    model.gp.set_data(cartpole_model[0].gp.train_inputs, cartpole_model[0].gp.train_targets)
    noise = torch.tensor([0.01, 0.05, 0.4, 0.1], dtype=DTYPE)  # a wide angle: cos θ', sin θ' far from Gaussian
    model.gp.set_hyperparameters(lengthscales=cartpole_model[0].gp.lengthscales, signal_var=1.0, noise_var=noise)
    obs, action, _ = cartpole_transitions(2, 3, seed=2)
    got = model.next_state_distribution(obs, action)
    mean, var = model.gp.posterior(torch.cat([obs, action], -1), include_noise=True)
    gen = torch.Generator().manual_seed(12)
    samples = 200_000
    z = state_from_obs(obs, CARTPOLE_ANGLES) + mean + var.sqrt() * torch.randn(samples, *mean.shape, generator=gen,
                                                                              dtype=DTYPE)
    o = obs_from_state(z, CARTPOLE_ANGLES)
    within(got.mean, o.mean(0), o.std(0) / samples**0.5, "mean of the next observation")
    centred = (o - o.mean(0)).square()
    within(got.variance, centred.mean(0), centred.std(0) / samples**0.5, "variance of the next observation")


def test_propagator_mean_and_sample(cartpole_model):
    model, _ = cartpole_model
    obs, action, _ = cartpole_transitions(3, 2, seed=3)
    mean, var = model.gp.posterior(torch.cat([obs, action], -1), include_noise=True)
    z = state_from_obs(obs, CARTPOLE_ANGLES)
    step = model.propagator(propagation="mean")
    assert step.deterministic
    next_obs, reward = step.step(obs, action)
    assert reward is None
    torch.testing.assert_close(next_obs, obs_from_state(z + mean, CARTPOLE_ANGLES))
    sampler = model.propagator(generator=torch.Generator().manual_seed(0), propagation="ts_inf")
    assert not sampler.deterministic
    many = obs.repeat(4000, 1)
    drawn = state_from_obs(sampler.step(many, action.repeat(4000, 1))[0], CARTPOLE_ANGLES).reshape(4000, 6, 4)
    change = drawn - z
    change[..., 2] = wrap_angle(change[..., 2])
    within(change.mean(0), mean, var.sqrt() / 4000**0.5, "sampled state change")
    within(change.var(0), var, var * (2 / 3999) ** 0.5, "variance of the sampled state change (latent + noise)")
    again = model.propagator(generator=torch.Generator().manual_seed(0)).step(many, action.repeat(4000, 1))[0]
    torch.testing.assert_close(again, obs_from_state(drawn.reshape(-1, 4), CARTPOLE_ANGLES))


def test_policy_driven_rollout_through_the_gp(cartpole_model):
    model, _ = cartpole_model
    start, _, _ = cartpole_transitions(3, 1, seed=4)
    weight = torch.tensor([[0.5], [-0.3], [1.0], [2.0], [0.2]], dtype=DTYPE, requires_grad=True)

    def policy(obs):
        return 10 * torch.tanh(obs @ weight)

    result = rollout(model, start, policy=policy, horizon=4, reward_fn=reward_fn(CARTPOLE_SWINGUP_ID),
                     propagate={"propagation": "mean"})
    obs = start
    step = model.propagator(propagation="mean")
    for t in range(4):
        obs = step.step(obs, policy(obs))[0]
        torch.testing.assert_close(result.obs[t + 1], obs)
    result.returns().sum().backward()
    assert weight.grad is not None and bool(torch.isfinite(weight.grad).all()) and bool(weight.grad.abs().sum() > 0)
    noisy = rollout(model, start, policy=policy, horizon=4, reward_fn=reward_fn(CARTPOLE_SWINGUP_ID),
                    generator=torch.Generator().manual_seed(1))
    assert noisy.obs.shape == (5, 3, 5) and bool(torch.isfinite(noisy.obs).all())


@pytest.mark.parametrize("sparse", [False, True])
def test_state_dict_round_trip_predicts_identically(cartpole_model, sparse):
    if sparse:
        model = GPDynamics(5, 1, angles=CARTPOLE_ANGLES, sparse_above=100, inducing=30, iterations=15)
        report = model.fit(as_buffer(*cartpole_transitions(10, 20, seed=0)), generator=torch.Generator().manual_seed(0))
        assert report.sparse and model.gp.inducing_inputs.shape == (30, 6)
    else:
        model = cartpole_model[0]
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    fresh = GPDynamics(5, 1, angles=CARTPOLE_ANGLES, sparse_above=100 if sparse else 300, inducing=30)
    fresh.load_state_dict(torch.load(buffer))
    assert fresh.gp.sparse == sparse
    obs, action, _ = cartpole_transitions(2, 5, seed=5)
    before, after = model.next_state_distribution(obs, action), fresh.next_state_distribution(obs, action)
    torch.testing.assert_close(after.mean, before.mean, rtol=0, atol=0)
    torch.testing.assert_close(after.stddev, before.stddev, rtol=0, atol=0)
    with pytest.raises(ValueError, match="state_dict"):
        GPDynamics(5, 1).load_state_dict(model.state_dict())


@pytest.mark.gpu
def test_gp_on_cuda_matches_cpu():
    inputs, targets, hypers, tests = random_data(3, 2, 40, seed=13)
    cpu = gp_with(inputs, targets, hypers)
    gpu = GaussianProcess(3, 2, device="cuda")
    gpu.set_data(inputs.cuda(), targets.cuda())
    gpu.set_hyperparameters(lengthscales=hypers[0].cuda(), signal_var=hypers[1].cuda(), noise_var=hypers[2].cuda())
    for got, want in zip(gpu.posterior(tests.cuda()), cpu.posterior(tests)):
        torch.testing.assert_close(got.cpu(), want)
    cov = 0.1 * torch.eye(3, dtype=DTYPE)
    torch.testing.assert_close(gpu.moments(tests.cuda(), cov.cuda().expand(9, 3, 3)).cov.cpu(),
                               cpu.moments(tests, cov.expand(9, 3, 3)).cov)
    with warnings.catch_warnings():
        warnings.simplefilter("error", JitterWarning)
        report = gpu.fit(inputs.cuda(), targets.cuda(), iterations=20)
    assert report.log_likelihood[-1] > report.log_likelihood[0]


def test_fit_report_records_one_likelihood_per_iteration_and_stops_when_converged():
    inputs, targets, _, _ = random_data(1, 1, 30, seed=14)
    gp = GaussianProcess(1, 1)
    report = gp.fit(inputs, targets, iterations=500)
    assert report.converged and report.iterations < 500
    assert len(report.log_likelihood) == report.iterations + 1
    assert report.log_likelihood == sorted(report.log_likelihood)  # L-BFGS with a line search only climbs here
    again = gp.fit(inputs, targets, iterations=5, warm_start=True)  # from the optimum: (nearly) nothing to do
    assert again.iterations <= 2 and abs(again.log_likelihood[-1] - report.log_likelihood[-1]) < 1e-6
