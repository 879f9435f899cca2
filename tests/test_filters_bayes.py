"""The Bayesian filter on finite state spaces against brute-force enumeration of all state paths."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from mbrl_course.filters import GridSSM, HiddenMarkovModel, bayesian_filter, kalman_filter

F64 = torch.float64


def brute_force(initial, transitions, emission_lik, T):
    """p(s_t | Y_{1:t}), p(s_t | Y_{1:t-1}) and log p(y_t | Y_{1:t-1}) by summing over every path s_{0:t}.

    ``transitions[t]`` is P for step t+1, ``emission_lik[t, k]`` = p(y_{t+1} | s = k).
    """
    K = len(initial)
    filtered, predicted, step_ll = [], [], []
    prev_evidence = 1.0
    for t in range(1, T + 1):
        joint_pred = np.zeros(K)  # Σ_paths p(s_{0:t}, Y_{1:t-1}) by s_t
        for path in itertools.product(range(K), repeat=t + 1):
            w = initial[path[0]]
            for i in range(1, t + 1):
                w *= transitions[i - 1][path[i - 1], path[i]]
                if i < t:
                    w *= emission_lik[i - 1, path[i]]
            joint_pred[path[-1]] += w
        joint = joint_pred * emission_lik[t - 1]
        evidence = joint.sum()  # p(Y_{1:t})
        predicted.append(joint_pred / prev_evidence)
        filtered.append(joint / evidence)
        step_ll.append(np.log(evidence / prev_evidence))
        prev_evidence = evidence
    return np.array(filtered), np.array(predicted), np.array(step_ll)


def random_stochastic(rng, *shape):
    x = rng.uniform(0.05, 1.0, size=shape)
    return x / x.sum(-1, keepdims=True)


@pytest.mark.parametrize("time_varying", [False, True])
def test_hmm_equals_brute_force(time_varying):
    rng = np.random.default_rng(0)
    K, M, T = 3, 4, 6
    pi, O = random_stochastic(rng, K), random_stochastic(rng, K, M)
    P = random_stochastic(rng, T, K, K) if time_varying else random_stochastic(rng, K, K)
    y = rng.integers(0, M, size=T)
    y[3] = -1  # missing
    lik = np.where((y >= 0)[:, None], O[:, np.clip(y, 0, None)].T, 1.0)
    transitions = list(P) if time_varying else [P] * T
    filt, pred, ll = brute_force(pi, transitions, lik, T)
    logp = torch.tensor(np.log(lik), dtype=F64)
    res = bayesian_filter(torch.tensor(pi), torch.tensor(P), logp)
    np.testing.assert_allclose(res.filtered_probs.numpy(), filt, rtol=1e-10)
    np.testing.assert_allclose(res.predicted_probs.numpy(), pred, rtol=1e-10)
    np.testing.assert_allclose(res.step_log_likelihoods.numpy(), ll, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(res.log_likelihood.numpy(), ll.sum(), rtol=1e-10)
    assert abs(res.step_log_likelihoods[3].item()) < 1e-14  # a missing y_t adds log 1 = 0
    if not time_varying:
        hmm = HiddenMarkovModel(torch.tensor(pi), torch.tensor(P), torch.tensor(O))
        torch.testing.assert_close(hmm.emission_log_probs(torch.tensor(y)), logp)
        torch.testing.assert_close(hmm.filter(torch.tensor(y)).log_likelihood, res.log_likelihood)


def test_discretised_linear_model_equals_brute_force():
    rng = np.random.default_rng(1)
    T = 5
    grid = torch.linspace(-2.0, 2.0, 5, dtype=F64).unsqueeze(-1)
    E, F, C, D = 0.8, 0.6, 1.3, 0.4
    model = GridSSM.from_gaussian(
        grid, torch.tensor([0.3], dtype=F64), torch.tensor([[1.5]], dtype=F64), lambda s: E * s,
        torch.tensor([[F]], dtype=F64), lambda s: C * s, torch.tensor([[D]], dtype=F64),
    )
    y = rng.normal(size=(T, 1))
    y[2] = np.nan
    g = grid.numpy()[:, 0]
    # the discretisation, written out independently
    pi = np.exp(-0.5 * (g - 0.3) ** 2 / 1.5)
    pi /= pi.sum()
    P = np.exp(-0.5 * (g[None, :] - E * g[:, None]) ** 2 / F)
    P /= P.sum(1, keepdims=True)
    lik = np.exp(-0.5 * (y - C * g[None, :]) ** 2 / D) / np.sqrt(2 * np.pi * D)
    lik[2] = 1.0
    filt, pred, ll = brute_force(pi, [P] * T, lik, T)
    res = model.filter(torch.tensor(y))
    np.testing.assert_allclose(model.transition_probs.numpy(), P, rtol=1e-12)
    np.testing.assert_allclose(res.filtered_probs.numpy(), filt, rtol=1e-10)
    np.testing.assert_allclose(res.predicted_probs.numpy(), pred, rtol=1e-10)
    np.testing.assert_allclose(res.step_log_likelihoods.numpy(), ll, rtol=1e-10, atol=1e-14)


def test_fine_grid_approaches_the_kalman_filter():
    """On a fine, wide grid the Bayesian filter's sums approximate the Kalman filter's integrals."""
    T = 25
    E, F, C, D, m0, S0 = 0.9, 0.5, 1.0, 0.3, 0.5, 1.0
    gen = torch.Generator().manual_seed(2)
    y = torch.randn(3, T, 1, generator=gen, dtype=F64) * 1.5
    grid = torch.linspace(-10, 10, 1201, dtype=F64).unsqueeze(-1)
    t = lambda v: torch.tensor([[v]], dtype=F64)  # noqa: E731
    model = GridSSM.from_gaussian(grid, torch.tensor([m0], dtype=F64), t(S0), lambda s: E * s, t(F),
                                  lambda s: C * s, t(D))
    res = model.filter(y)
    kf = kalman_filter(y, torch.tensor([m0], dtype=F64), t(S0), t(E), t(F), t(C), t(D))
    torch.testing.assert_close(res.log_likelihood, kf.log_likelihood, rtol=1e-6, atol=1e-6)
    grid_mean = res.filtered_probs @ grid[:, 0]
    torch.testing.assert_close(grid_mean, kf.filtered_means[..., 0], rtol=1e-6, atol=1e-6)


def test_batched_and_sampled():
    rng = np.random.default_rng(3)
    K, M, T = 4, 3, 20
    hmm = HiddenMarkovModel(torch.tensor(random_stochastic(rng, K)), torch.tensor(random_stochastic(rng, K, K)),
                            torch.tensor(random_stochastic(rng, K, M)))
    states, obs = hmm.sample(T, sample_shape=(5, 2), generator=torch.Generator().manual_seed(0))
    assert states.shape == obs.shape == (5, 2, T) and obs.dtype == torch.int64
    res = hmm.filter(obs)
    assert res.filtered_probs.shape == (5, 2, T, K)
    single = hmm.filter(obs[3, 1])
    torch.testing.assert_close(res.filtered_probs[3, 1], single.filtered_probs)
    torch.testing.assert_close(res.filtered_probs.sum(-1), torch.ones(5, 2, T, dtype=F64))
    # Monte Carlo: p(s_1) = π P
    s1, _ = hmm.sample(1, sample_shape=(40_000,), generator=torch.Generator().manual_seed(1))
    freq = torch.bincount(s1[:, 0], minlength=K).double() / 40_000
    torch.testing.assert_close(freq, hmm.initial_probs @ hmm.transition_probs, rtol=0, atol=0.015)


class TestBadInput:
    def test_probabilities_checked(self):
        with pytest.raises(ValueError, match="transition_probs"):
            bayesian_filter(torch.ones(2, dtype=F64) / 2, torch.ones(2, 2, dtype=F64), torch.zeros(3, 2, dtype=F64))
        with pytest.raises(ValueError, match="initial_probs"):
            bayesian_filter(torch.tensor([0.7, 0.7], dtype=F64), torch.eye(2, dtype=F64), torch.zeros(3, 2, dtype=F64))

    def test_shapes_and_values(self):
        p, P = torch.ones(2, dtype=F64) / 2, torch.eye(2, dtype=F64)
        with pytest.raises(ValueError, match="T >= 1"):
            bayesian_filter(p, P, torch.zeros(0, 2, dtype=F64))
        with pytest.raises(ValueError, match="initial_probs"):
            bayesian_filter(p, P, torch.zeros(3, 3, dtype=F64))
        with pytest.raises(ValueError, match="NaN"):
            bayesian_filter(p, P, torch.tensor([[0.0, float("nan")]], dtype=F64))
        with pytest.raises(TypeError, match="emission_log_probs"):
            bayesian_filter(p, P, torch.zeros(3, 2, dtype=torch.int64))
        with pytest.raises(ValueError, match="probability 0"):
            bayesian_filter(torch.tensor([1.0, 0.0], dtype=F64), P, torch.tensor([[-float("inf"), 0.0]], dtype=F64))

    def test_hmm_checks(self):
        with pytest.raises(ValueError, match="emission_probs"):
            HiddenMarkovModel(torch.ones(2) / 2, torch.eye(2), torch.ones(3, 2) / 2)
        hmm = HiddenMarkovModel(torch.ones(2) / 2, torch.eye(2), torch.ones(2, 2) / 2)
        with pytest.raises(TypeError, match="integer"):
            hmm.emission_log_probs(torch.zeros(3))
        with pytest.raises(ValueError, match="symbols"):
            hmm.emission_log_probs(torch.tensor([0, 5]))
