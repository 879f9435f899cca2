"""PR-SSM, the random-parameter transition model and the two-tank system-identification task.

Oracles: exact GP regression (the sparse conditional with Z = X and the exact q(u)), torch's KL
divergences, a brute-force kernel, the tanks' steady state in closed form, a fine-step integration,
a hand rollout with the sampled weights, and a linear-Gaussian SSM fitted by maximum likelihood.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch.distributions import MultivariateNormal, Normal, kl_divergence

from mbrl_course.ssm.prssm import (
    PRSSM,
    TrajectoryTrainConfig,
    diagonal_gaussian_kl,
    free_run_scores,
    prior_cholesky_factor,
    se_ard_kernel,
    sparse_gp_conditional,
    train_trajectory_model,
    whitened_kl,
)
from mbrl_course.ssm.random_params import RandomParameterSSM
from mbrl_course.ssm.systems import (
    TwoTankParams,
    fit_linear_baseline,
    linear_free_run,
    make_two_tank_data,
    simulate_two_tank,
)

F64 = torch.float64


# ------------------------------------------------------------------------------------- GP pieces
def test_se_ard_kernel_matches_brute_force():
    gen = torch.Generator().manual_seed(0)
    x1, x2 = torch.randn(5, 3, generator=gen, dtype=F64), torch.randn(4, 3, generator=gen, dtype=F64)
    ell = torch.rand(2, 3, generator=gen, dtype=F64) + 0.5
    alpha2 = torch.tensor([0.7, 2.0], dtype=F64)
    K = se_ard_kernel(x1, x2, ell, alpha2)
    for a in range(2):
        for i in range(5):
            for j in range(4):
                want = alpha2[a] * math.exp(-0.5 * float((((x1[i] - x2[j]) / ell[a]) ** 2).sum()))
                assert abs(float(K[a, i, j]) - want) < 1e-12


def test_sparse_conditional_with_exact_posterior_is_exact_gp_regression():
    """Z = X and q(u) = p(u | y) (whitened): the sparse marginal q(f(x*)) is the exact GP posterior."""
    gen = torch.Generator().manual_seed(1)
    n, D, E = 7, 2, 2
    X = torch.rand(n, D, generator=gen, dtype=F64) * 4 - 2
    Y = torch.stack([torch.sin(X[:, 0]) + 0.3 * X[:, 1], torch.cos(X.sum(-1))])        # (E, n)
    x_star = torch.rand(9, D, generator=gen, dtype=F64) * 5 - 2.5
    ell = torch.tensor([[0.8, 1.5], [1.2, 0.6]], dtype=F64)
    alpha2 = torch.tensor([1.3, 0.5], dtype=F64)
    noise = torch.tensor([0.05, 0.1], dtype=F64)
    Z = X.expand(E, n, D)
    jitter = 1e-12
    L = prior_cholesky_factor(Z, ell, alpha2, jitter)
    q_mean, q_tril = [], []
    for a in range(E):
        K = se_ard_kernel(X, X, ell[a:a + 1], alpha2[a:a + 1])[0]
        Ky = K + noise[a] * torch.eye(n, dtype=F64)
        mean_u = K @ torch.linalg.solve(Ky, Y[a])                  # exact p(u | y) = N(mean_u, cov_u)
        cov_u = K - K @ torch.linalg.solve(Ky, K)
        La = L[a]
        m_v = torch.linalg.solve_triangular(La, mean_u[:, None], upper=False)[:, 0]     # v = L⁻¹ u
        S_v = torch.linalg.solve_triangular(La, torch.linalg.solve_triangular(La, cov_u, upper=False).mT,
                                            upper=False)
        q_mean.append(m_v)
        q_tril.append(torch.linalg.cholesky(0.5 * (S_v + S_v.mT) + 1e-13 * torch.eye(n, dtype=F64)))
    mean, var = sparse_gp_conditional(x_star, Z, ell, alpha2, torch.stack(q_mean), torch.stack(q_tril), L)
    for a in range(E):
        K = se_ard_kernel(X, X, ell[a:a + 1], alpha2[a:a + 1])[0]
        k_s = se_ard_kernel(X, x_star, ell[a:a + 1], alpha2[a:a + 1])[0]                 # (n, 9)
        Ky = K + noise[a] * torch.eye(n, dtype=F64)
        exact_mean = k_s.mT @ torch.linalg.solve(Ky, Y[a])
        exact_var = alpha2[a] - (k_s * torch.linalg.solve(Ky, k_s)).sum(0)
        torch.testing.assert_close(mean[:, a], exact_mean, atol=1e-6, rtol=0)
        torch.testing.assert_close(var[:, a], exact_var, atol=1e-6, rtol=0)


def test_sparse_conditional_with_prior_q_is_the_prior():
    """q(v) = N(0, I) = p(v): the marginal is the GP prior N(0, α²) anywhere."""
    gen = torch.Generator().manual_seed(2)
    Z = torch.randn(3, 6, 2, generator=gen, dtype=F64)
    ell, alpha2 = torch.ones(3, 2, dtype=F64), torch.tensor([0.5, 1.0, 2.0], dtype=F64)
    x = torch.randn(10, 2, generator=gen, dtype=F64)
    mean, var = sparse_gp_conditional(x, Z, ell, alpha2, torch.zeros(3, 6, dtype=F64),
                                      torch.eye(6, dtype=F64).expand(3, 6, 6))
    torch.testing.assert_close(mean, torch.zeros(10, 3, dtype=F64))
    torch.testing.assert_close(var, alpha2.expand(10, 3))


def test_kls_match_torch_distributions():
    gen = torch.Generator().manual_seed(3)
    m = torch.randn(3, 5, generator=gen, dtype=F64)
    A = torch.randn(3, 5, 5, generator=gen, dtype=F64)
    tril = torch.tril(A, -1) + torch.diag_embed(torch.rand(3, 5, generator=gen, dtype=F64) + 0.2)
    want = kl_divergence(MultivariateNormal(m, scale_tril=tril),
                         MultivariateNormal(torch.zeros(5, dtype=F64), torch.eye(5, dtype=F64))).sum()
    torch.testing.assert_close(whitened_kl(m, tril), want)
    mu, sd = torch.randn(4, 7, generator=gen, dtype=F64), torch.rand(4, 7, generator=gen, dtype=F64) + 0.1
    want = kl_divergence(Normal(mu, sd), Normal(torch.zeros_like(mu), 0.3 * torch.ones_like(sd))).sum(-1)
    torch.testing.assert_close(diagonal_gaussian_kl(mu, sd, 0.3), want)


def test_prssm_steps_from_the_sparse_gp_marginal_at_the_sampled_state():
    """One step: s_1 | s_0 ~ N(s_0 + μ(ŝ_0), σ²(ŝ_0) + q²) with (μ, σ²) the sparse-GP marginal at ŝ_0 = (s_0, u_0)."""
    torch.manual_seed(0)
    model = PRSSM(state_dim=2, output_dim=1, input_dim=1, num_inducing=5, recognition_steps=2,
                  signal_std=0.5, q_std=0.8).double()
    with torch.no_grad():
        model.transition.q_mean.normal_()
        model.encoder.net[-1].bias[2:] = -30.0                   # σ_0 ≈ 1e-4: s_0 ≈ m_0
    u = torch.full((1, 2, 1), 0.3, dtype=F64)
    y = torch.tensor([[[0.2], [0.25]]], dtype=F64)
    states, m0, _ = model.sample_trajectories(u, y, 20000, torch.Generator().manual_seed(0))
    with torch.no_grad():
        mean, var = model.transition(torch.cat([m0, u[:, 0]], -1))
        step_var = var + model.process_std ** 2
    step = states[:, 0, 1] - states[:, 0, 0]
    se = (step_var[0] / 20000).sqrt()
    assert ((step.mean(0) - mean[0]).abs() < 4 * se).all()
    torch.testing.assert_close(step.var(0), step_var[0], rtol=0.05, atol=0)


def test_random_parameter_model_holds_one_theta_per_trajectory():
    """Every sampled trajectory is the rollout of its own θ_n, the same θ_n at every step."""
    torch.manual_seed(0)
    model = RandomParameterSSM(state_dim=2, output_dim=1, input_dim=1, hidden=8, recognition_steps=2,
                               initial_weight_std=0.5).double()
    with torch.no_grad():
        model.raw_process_std.fill_(-30.0)                        # q ≈ 1e-5
    captured = {}
    draw = model.sample_transition_globals

    def capture(num, generator=None):
        captured["theta"] = draw(num, generator)
        return captured["theta"]

    model.sample_transition_globals = capture
    u = torch.rand(2, 12, 1, dtype=F64)
    y = torch.rand(2, 12, 1, dtype=F64)
    states, _, _ = model.sample_trajectories(u, y, 3, torch.Generator().manual_seed(0))     # (3, 2, 12, 2)
    theta = captured["theta"]
    assert not torch.allclose(theta["w1"][0], theta["w1"][1])                             # θ differs per trajectory
    for i in range(3):
        for b in range(2):
            n = i * 2 + b
            s = states[i, b, 0]
            for t in range(1, 12):
                x = torch.cat([s, u[b, t - 1]])
                f = torch.tanh(x @ theta["w1"][n] + theta["b1"][n]) @ theta["w2"][n] + theta["b2"][n]
                s = s + f
                torch.testing.assert_close(states[i, b, t], s.detach(), atol=1e-3, rtol=0)


# -------------------------------------------------------------------------------------- the tanks
def test_two_tank_data_deterministic_and_physical():
    a = make_two_tank_data(4, 300, seed=5)
    b = make_two_tank_data(4, 300, seed=5)
    c = make_two_tank_data(4, 300, seed=6)
    torch.testing.assert_close(a.train_outputs, b.train_outputs, rtol=0, atol=0)
    torch.testing.assert_close(a.test_inputs, b.test_inputs, rtol=0, atol=0)
    assert not torch.allclose(a.train_outputs, c.train_outputs)
    for split in (a.train_inputs, a.train_outputs, a.test_inputs, a.test_outputs):
        assert split.shape == (4, 300, 1)
    levels = torch.cat([a.train_levels, a.test_levels])
    assert levels.min() >= 0 and levels.max() <= a.params.max_level
    assert (levels[..., 0] >= a.params.max_level - 1e-6).any()              # the upper tank overflows at times
    assert (a.train_inputs >= 0).all() and (a.train_inputs <= 1).all()
    noise = a.train_outputs - a.train_levels[..., 1:]
    assert 0.015 < float(noise.std()) < 0.025                                 # σ_y = 0.02


def test_two_tank_steady_state_and_integration():
    """At constant u: h₁ → (k_p u / k₁)², h₂ → (k₂ / k₃)² h₁; RK4 with 4 sub-steps ≈ 64 sub-steps."""
    p = TwoTankParams()
    u = torch.full((1, 600, 1), 0.5, dtype=F64)
    h = simulate_two_tank(torch.zeros(1, 2, dtype=F64), u, p)
    h1 = (p.pump_gain * 0.5 / p.k1) ** 2
    assert abs(float(h[0, -1, 0]) - h1) < 1e-4
    assert abs(float(h[0, -1, 1]) - (p.k2 / p.k3) ** 2 * h1) < 1e-4
    over = simulate_two_tank(torch.zeros(1, 2, dtype=F64), torch.ones(1, 600, 1, dtype=F64), p)
    assert abs(float(over[0, -1, 0]) - p.max_level) < 1e-9                     # overflow caps h₁
    data = make_two_tank_data(2, 100, seed=0, dtype=F64)
    fine = simulate_two_tank(data.train_levels[:, 0], data.train_inputs, TwoTankParams(substeps=64))
    torch.testing.assert_close(fine, data.train_levels, atol=2e-3, rtol=0)


# ------------------------------------------------------------------------------------- bad input
def test_bad_input_is_refused_with_the_argument_named():
    with pytest.raises(ValueError, match="num_sequences"):
        make_two_tank_data(0, 10)
    with pytest.raises(ValueError, match="max_hold"):
        make_two_tank_data(2, 10, min_hold=5, max_hold=2)
    with pytest.raises(ValueError, match="num_inducing"):
        PRSSM(num_inducing=0)
    with pytest.raises(ValueError, match="output_dim"):
        PRSSM(state_dim=1, output_dim=2)
    with pytest.raises(ValueError, match="state_dim"):
        RandomParameterSSM(state_dim=0)
    model = PRSSM(recognition_steps=5)
    u, y = torch.rand(2, 20, 1), torch.rand(2, 20, 1)
    with pytest.raises(ValueError, match=r"inputs: expected shape \(B, T, 1\)"):
        model.elbo(u[..., 0], y)
    with pytest.raises(ValueError, match="observations: expected shape"):
        model.elbo(u, y[:1])
    with pytest.raises(ValueError, match="observations: expected at least 5"):
        model.simulate(u, y[:, :3])
    bad = y.clone()
    bad[0, 3, 0] = float("nan")
    with pytest.raises(ValueError, match="observations: expected finite"):
        train_trajectory_model(model, u, bad, TrajectoryTrainConfig(num_steps=1, progress=False))
    with pytest.raises(ValueError, match="subsequence_length"):
        train_trajectory_model(model, u, y, TrajectoryTrainConfig(num_steps=1, subsequence_length=30, progress=False))
    with pytest.raises(ValueError, match="num_samples"):
        model.simulate(u, y, num_samples=0)


# ----------------------------------------------------------------------------------- ELBO, training
@pytest.mark.parametrize("model_class", [PRSSM, RandomParameterSSM])
def test_elbo_gradient_reaches_every_parameter(model_class):
    torch.manual_seed(0)
    model = model_class(state_dim=3, output_dim=1, input_dim=1, recognition_steps=4)
    u, y = torch.rand(3, 15, 1), torch.rand(3, 15, 1)
    terms = model.elbo(u, y, num_samples=2, dataset_size=10.0)
    torch.testing.assert_close(terms.elbo, terms.log_likelihood - terms.kl_initial - terms.kl_global / 10.0)
    assert terms.kl_initial > 0 and terms.kl_global > 0
    terms.elbo.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        if name != "transition.q_offdiag":                     # only its strict lower triangle is used
            assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("model_class", [PRSSM, RandomParameterSSM])
def test_importance_weighted_bound_is_the_elbo_at_one_sample_and_tighter_with_more(model_class):
    """Burda et al. (2016): E[L_1] = ELBO and E[L_S] grows with S. Over 400 independent estimates each (float64):
    the S = 1 bound's mean equals the ELBO's (analytic KL of s_0 vs the Monte Carlo weight p(s_0)/q(s_0)) within
    4 standard errors; the S = 16 bound's mean lies above it by more than 4 standard errors."""
    torch.manual_seed(0)
    model = model_class(state_dim=2, output_dim=1, input_dim=1, recognition_steps=4).double()
    u, y = torch.rand(2, 12, 1, dtype=F64), 0.3 + 0.1 * torch.rand(2, 12, 1, dtype=F64)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        def draws(bound, S):
            return torch.stack([model.elbo(u, y, S, 5.0, gen, bound=bound).elbo for _ in range(400)])
        elbo, iwae1, iwae16 = draws("elbo", 1), draws("iwae", 1), draws("iwae", 16)

    def se(a, b):
        return float((a.var() / a.numel() + b.var() / b.numel()).sqrt())
    assert abs(float(iwae1.mean() - elbo.mean())) < 4 * se(iwae1, elbo), (float(iwae1.mean()), float(elbo.mean()))
    assert float(iwae16.mean() - elbo.mean()) > 4 * se(iwae16, elbo), (float(iwae16.mean()), float(elbo.mean()))


def test_importance_weighted_bound_shares_theta_within_a_sequence():
    """The S samples of one sequence must share its θ (a log-mean-exp over independent θ's is no bound):
    with (nearly) zero process noise and a fixed s_0, the S trajectories of a sequence coincide; without sharing they differ."""
    torch.manual_seed(0)
    model = RandomParameterSSM(state_dim=2, output_dim=1, input_dim=1, recognition_steps=3).double()
    theta = model.transition.sample(2, torch.Generator().manual_seed(0))
    tiled = model.tile_globals(theta, 3)
    for name, w in tiled.items():
        assert w.shape[0] == 6
        torch.testing.assert_close(w[4], theta[name][0])          # trajectory n = i · B + b uses θ_b
        torch.testing.assert_close(w[3], theta[name][1])
    with torch.no_grad():
        model.raw_process_std.fill_(-30.0)                        # q ≈ 0
    model.encoder.forward = lambda obs, inputs: (torch.zeros(2, 2, dtype=F64), torch.full((2, 2), 1e-12, dtype=F64))
    u, y = torch.rand(2, 10, 1, dtype=F64), torch.rand(2, 10, 1, dtype=F64)
    shared, _, _ = model.sample_trajectories(u, y, 4, torch.Generator().manual_seed(2), shared_globals=True)
    apart, _, _ = model.sample_trajectories(u, y, 4, torch.Generator().manual_seed(2))
    same, different = (shared[1:] - shared[:1]).abs().max(), (apart[1:] - apart[:1]).abs().max()
    assert same < 1e-3 and different > 30 * same, (float(same), float(different))  # q's floor 1e-5 leaves ~1e-4


def test_bounds_are_checked():
    model = PRSSM(recognition_steps=3)
    u, y = torch.rand(2, 8, 1), torch.rand(2, 8, 1)
    with pytest.raises(ValueError, match="bound"):
        model.elbo(u, y, bound="iwea")
    with pytest.raises(ValueError, match="config.bound"):
        train_trajectory_model(model, u, y, TrajectoryTrainConfig(num_steps=1, bound="tight", progress=False))


def test_training_steps_follow_the_budget_tier(monkeypatch):
    monkeypatch.setenv("MBRL_COURSE_BUDGET", "smoke")
    torch.manual_seed(0)
    model = RandomParameterSSM(state_dim=2, recognition_steps=3, hidden=4)
    result = train_trajectory_model(model, torch.rand(2, 12, 1), torch.rand(2, 12, 1),
                                    TrajectoryTrainConfig(batch_size=2, num_samples=1, progress=False))
    assert result.elbos.shape == (50,) and torch.isfinite(result.elbos).all()


def test_training_checkpoint_resume_gives_the_same_run(tmp_path):
    """5 steps, a checkpoint, then resumed to 10 = 10 steps straight: same ELBO trace, same parameters."""
    u, y = torch.rand(2, 12, 1, dtype=F64), torch.rand(2, 12, 1, dtype=F64)
    config = TrajectoryTrainConfig(batch_size=2, num_samples=1, progress=False, checkpoint_every=3)

    def fresh():
        torch.manual_seed(0)
        return PRSSM(state_dim=2, recognition_steps=3, num_inducing=4).double()

    straight = train_trajectory_model(fresh(), u, y, dataclasses.replace(config, num_steps=10))
    path = tmp_path / "prssm.pt"
    train_trajectory_model(fresh(), u, y, dataclasses.replace(config, num_steps=5), checkpoint_path=path)
    resumed_model = fresh()
    resumed = train_trajectory_model(resumed_model, u, y, dataclasses.replace(config, num_steps=10),
                                     checkpoint_path=path)
    assert resumed.resumed_from == 5 and torch.load(path, weights_only=False)["step"] == 10
    torch.testing.assert_close(resumed.elbos, straight.elbos, rtol=0, atol=1e-10)
    for (name, a), b in zip(resumed_model.state_dict().items(), straight.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10, msg=name)


def _fixed_trajectories(model, states):
    """Make ``model.sample_trajectories`` return ``states`` (S, B, T, D_s) whatever it is asked."""
    def sample(inputs, observations, num_samples, generator=None, shared_globals=False):
        return states, None, None
    model.sample_trajectories = sample


def test_calibrated_noise_is_the_maximum_likelihood_r_of_the_free_run_mixture():
    torch.manual_seed(0)
    model = RandomParameterSSM(state_dim=2, output_dim=1, input_dim=1, recognition_steps=3, hidden=4).double()
    B, T, L = 3, 12, 3
    u, y = torch.randn(B, T, 1, dtype=F64), torch.randn(B, T, 1, dtype=F64)
    # identical trajectories: the mixture is one Gaussian, the maximum-likelihood r is the RMS residual after L
    states = torch.randn(1, B, T, 2, dtype=F64).expand(5, B, T, 2)
    _fixed_trajectories(model, states)
    r = model.calibrate_observation_noise(u, y, num_samples=5)
    rms = (y[:, L:] - states[0, :, L:, :1]).pow(2).mean().sqrt()
    torch.testing.assert_close(r, rms.reshape(1), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(model.observation_std.detach(), r)
    # spread-out trajectories: the maximiser of the mixture likelihood, found by brute-force grid search
    states = torch.randn(4, B, T, 2, dtype=F64)
    _fixed_trajectories(model, states)
    r = model.calibrate_observation_noise(u, y, num_samples=4)
    grid = torch.linspace(0.05, 2.0, 4000, dtype=F64)
    residual = (y[:, L:] - states[:, :, L:, :1]).unsqueeze(-1)         # (S, B, T-L, 1, 1)
    log_n = Normal(0.0, grid).log_prob(residual)                      # (S, B, T-L, 1, G)
    score = (torch.logsumexp(log_n, 0) - math.log(4)).mean((0, 1, 2))
    best = grid[score.argmax()]
    assert abs(float(r) - float(best)) < 2e-3, (float(r), float(best))
    assert float(r) < rms_all(y, states, L)                            # narrower than ignoring the spread


def rms_all(y, states, start):
    """RMS of every trajectory's residual: what a single Gaussian around each sample would need."""
    return float((y[:, start:] - states[:, :, start:, :1]).pow(2).mean().sqrt())


def test_calibration_refuses_bad_input():
    model = RandomParameterSSM(state_dim=2, output_dim=1, input_dim=1, recognition_steps=3, hidden=4)
    with pytest.raises(ValueError, match="observations: expected more than recognition_steps"):
        model.calibrate_observation_noise(torch.zeros(2, 3, 1), torch.zeros(2, 3, 1))
    with pytest.raises(ValueError, match="max_iter"):
        model.calibrate_observation_noise(torch.zeros(2, 6, 1), torch.zeros(2, 6, 1), max_iter=0)


def test_free_run_scores_on_a_calibrated_forecast():
    """Samples and targets from the same N(0, 1): RMSE ≈ 1, NLL ≈ ½ log 2πe, coverage ≈ 0.95."""
    gen = torch.Generator().manual_seed(0)
    samples = torch.randn(1000, 4, 200, 1, generator=gen, dtype=F64)
    targets = torch.randn(4, 200, 1, generator=gen, dtype=F64)
    scores = free_run_scores(samples, targets, start=0)
    assert abs(scores["rmse"] - 1) < 0.08
    assert abs(scores["nll"] - 0.5 * math.log(2 * math.pi * math.e)) < 0.08
    assert abs(scores["coverage"] - 0.95) < 0.03
    shifted = free_run_scores(samples + 3.0, targets, start=0)
    assert shifted["coverage"] < 0.2 and shifted["rmse"] > 2.9


# ----------------------------------------------------------------------------- system identification
@pytest.fixture(scope="module")
def tanks():
    return make_two_tank_data(16, 200, seed=0, test_sequences=8)


@pytest.fixture(scope="module")
def linear_scores(tanks):
    torch.manual_seed(0)
    model = fit_linear_baseline(tanks.train_inputs, tanks.train_outputs, state_dim=2, num_steps=60)
    samples = linear_free_run(model, tanks.test_inputs, tanks.test_outputs, recognition_steps=10)
    return free_run_scores(samples, tanks.test_outputs, start=10)


@pytest.mark.parametrize("model_class", [PRSSM, RandomParameterSSM])
def test_beats_the_linear_ssm_on_free_run_rmse_with_calibrated_intervals(tanks, linear_scores, model_class):
    torch.manual_seed(0)
    model = model_class(state_dim=4, output_dim=1, input_dim=1, recognition_steps=10)
    steps, window = TINY_BUDGET[model_class]
    result = train_trajectory_model(model, tanks.train_inputs, tanks.train_outputs,
                                    TrajectoryTrainConfig(num_steps=steps, subsequence_length=window, progress=False))
    assert result.elbos[-20:].mean() > result.elbos[:20].mean()                # the ELBO climbed
    model.calibrate_observation_noise(tanks.train_inputs, tanks.train_outputs,
                                      generator=torch.Generator().manual_seed(2))   # on the training sequences
    sim = model.simulate(tanks.test_inputs, tanks.test_outputs, 200, torch.Generator().manual_seed(1))
    assert sim.samples.shape == (200, 8, 200, 1) and sim.mean.shape == (8, 200, 1)
    assert (sim.lower <= sim.mean).all() and (sim.mean <= sim.upper).all()
    scores = free_run_scores(sim.samples, tanks.test_outputs, start=10)
    print(model_class.__name__, scores, "linear:", linear_scores)
    assert scores["rmse"] < linear_scores["rmse"], (scores, linear_scores)
    assert 0.90 <= scores["coverage"] <= 0.99, scores
    assert scores["nll"] < linear_scores["nll"], (scores, linear_scores)


TINY_BUDGET = {PRSSM: (300, 40), RandomParameterSSM: (300, 100)}
"""(Adam steps, window length) per model: about 20 s and 15 s on one core. Measured over training seeds 0-3
(benchmarks/prssm_two_tank.py measures the default budget)."""
