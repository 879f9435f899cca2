"""Issue 14, part 3: the semi-Markov generator, the Gaussian HMM and the attentive SSM against independent oracles.

- the semi-Markov chain's forward algorithm on (stage, duration) vs brute-force enumeration of all stage paths;
- GaussianHMM vs hmmlearn: log-likelihood, posteriors γ, one EM iteration (diag and full covariances);
- EM never lowers the likelihood;
- the attentive SSM: α sums to 1 over t' < t, log p(Y, s) along a path vs a plain loop over the slide's sum,
  L̃ ≤ ELBO(q) ≤ log p(Y) with ELBO(q) and log p(Y) by enumeration, the importance-sampling estimate vs
  enumeration, a short training run raises L̃, restarts keep the candidate with the best training bound (each
  candidate's bound recomputed by an independent plain run), checkpoint/resume with and without restarts;
- bad input: errors naming the argument.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from mbrl_course.ssm.attentive import (
    AttentiveSSM,
    AttentiveTrainConfig,
    restart_candidate,
    train_attentive_ssm,
    training_bound,
)
from mbrl_course.ssm.hmm import GaussianHMM, SemiMarkovChain, discretised_duration


def _random_chain(seed: int, K: int = 3, D: int = 4, dy: int = 1) -> SemiMarkovChain:
    g = torch.Generator().manual_seed(seed)
    jump = torch.rand(K, K, generator=g, dtype=torch.float64) * (1 - torch.eye(K, dtype=torch.float64))
    return SemiMarkovChain(
        torch.softmax(torch.randn(K, generator=g, dtype=torch.float64), -1),
        torch.softmax(torch.randn(K, D, generator=g, dtype=torch.float64), -1),
        jump / jump.sum(-1, keepdim=True),
        torch.randn(K, dy, generator=g, dtype=torch.float64),
        0.5 + torch.rand(K, dy, generator=g, dtype=torch.float64),
    )


# --- the semi-Markov chain --------------------------------------------------------------------------------------
@pytest.mark.parametrize("T", [1, 2, 4, 6])
def test_semi_markov_forward_equals_brute_force(T):
    chain = _random_chain(T, K=3, D=4, dy=2)  # D < T: runs longer than D_max must get probability 0
    y = torch.randn(4, T, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(chain.log_likelihood(y), chain.brute_force_log_likelihood(y), atol=1e-10, rtol=0)


def test_disease_chain_samples_follow_the_durations():
    chain = SemiMarkovChain.disease_progression()
    s, y = chain.sample(400, 80, torch.Generator().manual_seed(0))
    assert y.shape == (400, 80, 2) and s.dtype == torch.long
    lengths = {k: [] for k in range(4)}
    for path in s.tolist():
        groups = [(k, len(list(r))) for k, r in itertools.groupby(path)]
        for k, d in groups[1:-1]:  # completed runs that started inside the window
            lengths[k].append(d)
    for k, mean in enumerate((6.0, 4.0, 5.0, 3.0)):
        probs, d = discretised_duration(mean, 0.8, 12), torch.arange(1, 13, dtype=torch.float64)
        expected = float((d * probs).sum())
        std = math.sqrt(float((d.square() * probs).sum()) - expected ** 2)
        assert len(lengths[k]) > 100
        assert abs(np.mean(lengths[k]) - expected) < 4 * std / math.sqrt(len(lengths[k])), (k, np.mean(lengths[k]))


# --- the Gaussian HMM against hmmlearn --------------------------------------------------------------------------
@pytest.mark.parametrize("covariance_type", ["diag", "full"])
def test_gaussian_hmm_matches_hmmlearn(covariance_type):
    hmmlearn = pytest.importorskip("hmmlearn.hmm")
    g = torch.Generator().manual_seed(0)
    y = torch.randn(3, 25, 2, generator=g, dtype=torch.float64) + torch.tensor([0.0, 1.0], dtype=torch.float64)
    ours = GaussianHMM.from_data(y, 3, covariance_type, generator=g)
    prior = 1e-2 if covariance_type == "diag" else 1e-2 * np.eye(2)
    ref = hmmlearn.GaussianHMM(3, covariance_type=covariance_type, init_params="", params="stmc", n_iter=1,
                               covars_prior=prior, implementation="log")
    ref.startprob_, ref.transmat_ = ours.initial_probs.numpy(), ours.transition_matrix.numpy()
    ref.means_, ref.covars_ = ours.means.numpy(), ours.covars.numpy()
    X, lengths = y.reshape(-1, 2).numpy(), [25] * 3
    expected = np.array([ref.score(seq) for seq in y.numpy()])
    np.testing.assert_allclose(ours.log_likelihood(y).numpy(), expected, atol=1e-8, rtol=0)
    np.testing.assert_allclose(ours.posterior(y).state_probs.reshape(-1, 3).numpy(), ref.predict_proba(X, lengths),
                               atol=1e-8, rtol=0)
    ref.fit(X, lengths)  # one EM iteration from the same start
    ours.fit_em(y, num_iters=1, covars_prior=1e-2, min_covar=0.0)
    np.testing.assert_allclose(ours.initial_probs.numpy(), ref.startprob_, atol=1e-8)
    np.testing.assert_allclose(ours.transition_matrix.numpy(), ref.transmat_, atol=1e-8)
    np.testing.assert_allclose(ours.means.numpy(), ref.means_, atol=1e-8)
    np.testing.assert_allclose(ours.covars.numpy(), ref._covars_, atol=1e-8)


def test_hmm_pair_posteriors_are_consistent_and_mask_is_marginalised():
    hmm = GaussianHMM([0.5, 0.5], [[0.9, 0.1], [0.2, 0.8]], torch.tensor([[0.0], [2.0]], dtype=torch.float64),
                      torch.tensor([[1.0], [0.5]], dtype=torch.float64))
    _, y = hmm.sample(3, 7, torch.Generator().manual_seed(2))
    post = hmm.posterior(y)
    torch.testing.assert_close(post.pair_probs.sum(-1), post.state_probs[:, :-1], atol=1e-12, rtol=0)
    torch.testing.assert_close(post.pair_probs.sum(-2), post.state_probs[:, 1:], atol=1e-12, rtol=0)
    # a missing last step adds nothing: same as the sequence cut short
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[:, -1] = False
    torch.testing.assert_close(hmm.log_likelihood(y, mask), hmm.log_likelihood(y[:, :-1]), atol=1e-12, rtol=0)


def test_em_increases_the_likelihood_monotonically():
    chain = SemiMarkovChain.disease_progression()
    _, y = chain.sample(20, 40, torch.Generator().manual_seed(3))
    hmm = GaussianHMM.from_data(y, 4, generator=torch.Generator().manual_seed(0))
    result = hmm.fit_em(y, num_iters=15, tol=0.0, covars_prior=0.0, min_covar=0.0)
    steps = np.diff(result.log_likelihoods)
    assert (steps >= -1e-8).all(), steps
    assert result.log_likelihoods[-1] > result.log_likelihoods[0] + 1.0


# --- the attentive SSM ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model() -> tuple[AttentiveSSM, torch.Tensor]:
    torch.manual_seed(0)
    model = AttentiveSSM(3, 2, max_lag=3, hidden_size=8, attention_dim=4).double()
    with torch.no_grad():  # away from the symmetric start, so that every term matters
        model.kernel_logits.normal_()
        model.initial_logits.normal_()
        model.log_stds.fill_(-0.3)
    y = torch.randn(2, 5, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return model, y


def test_attention_sums_to_one_over_earlier_steps(tiny_model):
    model, y = tiny_model
    alpha = model.attention(y)
    torch.testing.assert_close(alpha[:, 1:].sum(-1), torch.ones(2, 4, dtype=torch.float64), atol=1e-12, rtol=0)
    assert float(alpha[:, 0].abs().sum()) == 0.0
    assert float(torch.triu(alpha, 0).abs().sum()) == 0.0  # no weight on t' >= t


def test_log_joint_matches_the_slide_sum(tiny_model):
    model, y = tiny_model
    s = torch.tensor([[0, 2, 1, 1, 0], [2, 2, 2, 0, 1]])
    with torch.no_grad():
        alpha, P = model.attention(y), model.log_kernels().exp()
        pi, logb = model.log_initial().exp(), model.emission_log_prob(y)
        got = model.log_joint(y, s.unsqueeze(0))[0]
    for b in range(2):
        path = s[b].tolist()
        expected = math.log(pi[path[0]]) + float(logb[b, 0, path[0]])
        for t in range(1, 5):  # p(s_t | s_{1:t-1}, Y_{1:t-1}) = Σ_{t'<t} α_{t,t'} p_λ(s_t | s_{t'})
            mix = sum(float(alpha[b, t, u] * P[min(t - u, 3) - 1, path[u], path[t]]) for u in range(t))
            expected += math.log(mix) + float(logb[b, t, path[t]])
        assert abs(float(got[b]) - expected) < 1e-10


def test_bound_below_elbo_below_log_likelihood(tiny_model):
    model, y = tiny_model
    T, K = y.shape[1], model.num_states
    with torch.no_grad():
        paths = torch.tensor(list(itertools.product(range(K), repeat=T)))  # (K^T, T)
        log_p = model.log_joint(y, paths.unsqueeze(1).expand(-1, 2, T).contiguous())  # (N, B)
        exact = torch.logsumexp(log_p, 0)
        log_q_t = model.posterior(y).probs.log()  # (B, T, K)
        log_q = log_q_t[:, torch.arange(T), paths].sum(-1).T  # (N, B)
        elbo = (log_q.exp() * (log_p - log_q)).sum(0)  # E_q[log p(Y, s) - log q(s)], exact by enumeration
        bound = model.elbo(y)
    torch.testing.assert_close(exact, model.brute_force_log_likelihood(y).detach(), atol=1e-10, rtol=0)
    assert (bound <= elbo + 1e-10).all() and (elbo <= exact + 1e-10).all(), (bound, elbo, exact)
    assert (exact - bound < 3.0).all()  # a bound, not a meaningless number


@pytest.mark.parametrize("proposal", ["ancestral", "posterior"])
def test_importance_sampling_estimate_matches_enumeration(tiny_model, proposal):
    model, y = tiny_model
    exact = model.brute_force_log_likelihood(y).detach()
    estimate = model.log_likelihood(y, 4000, proposal, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(estimate, exact, atol=0.03, rtol=0)


def test_smoke_training_raises_the_bound():
    chain = SemiMarkovChain.disease_progression()
    _, y = chain.sample(16, 30, torch.Generator().manual_seed(0))
    y = y.float()
    torch.manual_seed(0)
    model = AttentiveSSM(4, 2, max_lag=6, hidden_size=8, attention_dim=4)
    model.init_from_data(y, torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = float(model.elbo(y).mean())
    result = train_attentive_ssm(model, y, AttentiveTrainConfig(num_steps=25, batch_size=None, progress=False))
    with torch.no_grad():
        after = float(model.elbo(y).mean())
    assert len(result.history) == 25 and after > before + 0.1 * y.shape[1], (before, after)


def _restart_data() -> torch.Tensor:
    _, y = SemiMarkovChain.disease_progression().sample(6, 12, torch.Generator().manual_seed(4))
    return y


def _tiny_restart_model(y: torch.Tensor) -> AttentiveSSM:
    torch.manual_seed(3)
    model = AttentiveSSM(4, 2, max_lag=3, hidden_size=4, attention_dim=2).double()
    model.init_from_data(y, torch.Generator().manual_seed(3))
    return model


def test_restarts_keep_the_candidate_with_the_best_training_bound():
    y = _restart_data()
    R, steps = 4, 6
    cfg = AttentiveTrainConfig(num_steps=steps, restarts=R, restart_steps=steps, batch_size=3, progress=False,
                               seed=5)
    model = _tiny_restart_model(y)
    result = train_attentive_ssm(model, y, cfg)
    assert len(result.restart_bounds) == R and len(result.history) == steps
    # oracle: each candidate trained on its own by a plain run (restarts=1) from the same start, its L̃/T on all
    # the training sequences summed by hand from AttentiveSSM.elbo
    plain = AttentiveTrainConfig(num_steps=steps, restarts=1, batch_size=3, progress=False, seed=5)
    expected = []
    for r in range(R):
        start = _tiny_restart_model(y)
        candidate = start if r == 0 else restart_candidate(start, y, 1_000_003 * 5 + r)
        history = train_attentive_ssm(candidate, y, plain).history
        with torch.no_grad():
            expected.append(float(candidate.elbo(y).sum()) / (y.shape[0] * y.shape[1]))
        if r == result.selected_restart:
            np.testing.assert_allclose(result.history, history, rtol=1e-10)
    np.testing.assert_allclose(result.restart_bounds, expected, rtol=1e-10)
    assert max(expected) - min(expected) > 1e-3, expected  # the candidates differ: the choice matters
    assert result.selected_restart == int(np.argmax(expected)), (result.selected_restart, expected)
    with torch.no_grad():  # the model handed back is the kept candidate
        kept = float(model.elbo(y).sum()) / (y.shape[0] * y.shape[1])
    assert abs(kept - max(expected)) < 1e-10, (kept, expected)
    assert abs(training_bound(model, y, chunk=4) - kept) < 1e-10


def test_restart_candidates_are_seeded_and_leave_the_global_generator_alone():
    y = _restart_data()
    model = _tiny_restart_model(y)
    state = torch.get_rng_state()
    a, b, c = (restart_candidate(model, y, s) for s in (7, 7, 8))
    assert torch.equal(torch.get_rng_state(), state)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q) and p.dtype == torch.float64
    assert not torch.equal(a.kernel_logits, c.kernel_logits)


@pytest.mark.parametrize("restarts", [1, 2])
def test_training_resumes_from_its_checkpoint(tmp_path, restarts):
    _, y = SemiMarkovChain.disease_progression().sample(4, 10, torch.Generator().manual_seed(0))
    y = y.float()
    cfg = AttentiveTrainConfig(num_steps=6, restarts=restarts, restart_steps=2, batch_size=2, progress=False,
                               checkpoint_every=2, seed=1)

    def run(steps: int, path):
        torch.manual_seed(0)
        model = AttentiveSSM(4, 2, max_lag=3, hidden_size=4, attention_dim=2)
        cfg.num_steps = steps
        return train_attentive_ssm(model, y, cfg, checkpoint_path=path)

    straight = run(6, tmp_path / "a.pt")
    run(4, tmp_path / "b.pt")
    resumed = run(6, tmp_path / "b.pt")  # skips the restart phase: the kept run is in the checkpoint
    assert resumed.resumed_from == 4 and straight.resumed_from == 0
    np.testing.assert_allclose(resumed.history, straight.history, rtol=1e-5)
    assert resumed.restart_bounds == straight.restart_bounds and len(straight.restart_bounds) == (restarts > 1) * 2
    assert resumed.selected_restart == straight.selected_restart


# --- bad input --------------------------------------------------------------------------------------------------
def test_bad_input_errors_name_the_argument(tiny_model):
    model, y = tiny_model
    with pytest.raises(ValueError, match="observations: expected shape"):
        model.elbo(torch.zeros(2, 5, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="observations: expected dtype"):
        model.elbo(y.float())
    with pytest.raises(TypeError, match="observations"):
        model.attention(y.numpy())
    with pytest.raises(ValueError, match="fully observed"):
        model.elbo(torch.full((1, 3, 2), float("nan"), dtype=torch.float64))
    with pytest.raises(ValueError, match="states: expected values"):
        model.log_joint(y, torch.full((1, 2, 5), 3))
    with pytest.raises(ValueError, match="proposal"):
        model.log_likelihood(y, 4, proposal="prior")
    with pytest.raises(ValueError, match="num_states"):
        AttentiveSSM(0, 2)
    with pytest.raises(ValueError, match="config.restarts"):
        train_attentive_ssm(model, y, AttentiveTrainConfig(num_steps=1, restarts=0, progress=False))
    with pytest.raises(ValueError, match="config.restart_steps"):
        train_attentive_ssm(model, y, AttentiveTrainConfig(num_steps=1, restarts=2, restart_steps=0, progress=False))
    with pytest.raises(ValueError, match="transition_matrix: expected rows"):
        GaussianHMM([0.5, 0.5], [[0.5, 0.6], [0.5, 0.5]], torch.zeros(2, 1), torch.ones(2, 1))
    with pytest.raises(ValueError, match="covars: expected shape"):
        GaussianHMM([0.5, 0.5], torch.eye(2), torch.zeros(2, 1), torch.ones(2, 2))
    with pytest.raises(ValueError, match="jump_matrix: expected a zero diagonal"):
        SemiMarkovChain([1.0, 0.0], [[1.0], [1.0]], torch.eye(2), torch.zeros(2, 1), torch.ones(2, 1))
    with pytest.raises(ValueError, match="T <= 6"):
        SemiMarkovChain.disease_progression().brute_force_log_likelihood(torch.zeros(1, 7, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="mask: expected a bool tensor"):
        GaussianHMM([1.0], [[1.0]], torch.zeros(1, 1), torch.ones(1, 1)).log_likelihood(torch.zeros(1, 3, 1),
                                                                                       torch.ones(1, 3))
