"""Tests for mbrl_course.models: EnsembleLinear, GaussianEnsemble, DeltaMLP, fit_model, imagination."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mbrl_course.data import Batch, ReplayBuffer
from mbrl_course.models import (
    DeltaMLP,
    EnsembleLinear,
    GaussianEnsemble,
    fit_model,
    imagine_returns,
    step_particles,
)

F64 = torch.float64


# ---------------------------------------------------------------------- hand-built models
@torch.no_grad()
def constant_delta_ensemble(deltas, rewards=None, obs_dim=1, act_dim=1, logvar=-40.0, num_elites=None):
    """Member k predicts Δi = deltas[k] (every state dimension) and g = rewards[k], whatever (i, u)."""
    K = len(deltas)
    model = GaussianEnsemble(obs_dim, act_dim, ensemble_size=K, hidden_size=4, num_layers=1,
                             predict_reward=rewards is not None, num_elites=num_elites, dtype=F64)
    for p in model.parameters():
        p.zero_()
    D = model.out_dim
    model.head.bias[:, 0, :obs_dim] = torch.tensor(deltas, dtype=F64)[:, None]
    if rewards is not None:
        model.head.bias[:, 0, obs_dim] = torch.tensor(rewards, dtype=F64)
    model.head.bias[:, 0, D:] = logvar
    model.max_logvar.fill_(0.5)
    model.min_logvar.fill_(logvar)
    return model


@torch.no_grad()
def linear_ensemble(a_mat: np.ndarray, b_mat: np.ndarray, K: int = 5) -> GaussianEnsemble:
    """Every member computes i' = A i + B u exactly (identity activations), with negligible variance."""
    O, A = b_mat.shape
    model = GaussianEnsemble(O, A, ensemble_size=K, hidden_size=O + A, num_layers=1, predict_reward=False,
                             activation="identity", dtype=F64)
    for p in model.parameters():
        p.zero_()
    model.hidden[0].weight.copy_(torch.eye(O + A, dtype=F64).expand(K, -1, -1))
    model.head.weight[:, :O, :O] = torch.tensor(a_mat - np.eye(O)).T
    model.head.weight[:, O:, :O] = torch.tensor(b_mat).T
    model.head.bias[:, 0, O:] = -40.0
    model.min_logvar.fill_(-40.0)
    return model


@torch.no_grad()
def linear_delta_mlp(a_mat: np.ndarray, b_mat: np.ndarray) -> DeltaMLP:
    """A DeltaMLP computing i' = A i + B u exactly."""
    O, A = b_mat.shape
    model = DeltaMLP(O, A, hidden_sizes=(O + A,), activation="identity", dtype=F64)
    model.layers[0].weight.copy_(torch.eye(O + A, dtype=F64))
    model.layers[0].bias.zero_()
    model.layers[1].weight.copy_(torch.tensor(np.hstack([a_mat - np.eye(O), b_mat])))
    model.layers[1].bias.zero_()
    return model


def quadratic_reward(obs, action, next_obs):
    return -(next_obs.square().sum(-1) + 0.1 * action.square().sum(-1))


def closed_form_returns(a_mat, b_mat, starts, actions, discount):
    """Σ_t γ^t r(i_t, u_t, i_{t+1}) for i_{t+1} = A i_t + B u_t, by a plain numpy loop."""
    out = []
    for start, seq in zip(starts, actions):
        i, total = np.array(start, dtype=float), 0.0
        for t, u in enumerate(seq):
            nxt = a_mat @ i + b_mat @ u
            total += discount**t * -(nxt @ nxt + 0.1 * u @ u)
            i = nxt
        out.append(total)
    return np.array(out)


# ---------------------------------------------------------------------- EnsembleLinear and the NLL
def test_ensemble_linear_equals_separate_linear_calls():
    torch.manual_seed(0)
    layer = EnsembleLinear(4, 3, 6, dtype=F64)
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(4, 10, 3, dtype=F64)
    y = layer(x)
    for k in range(4):  # oracle: torch.nn.functional.linear with W_kᵀ
        expected = torch.nn.functional.linear(x[k], layer.weight[k].T, layer.bias[k, 0])
        torch.testing.assert_close(y[k], expected, rtol=1e-12, atol=1e-12)
    std = 1 / (2 * math.sqrt(3))
    assert float(layer.weight.detach().abs().max()) <= 2 * std + 1e-12  # truncated normal initialisation


def _random_batch(shape_prefix, obs_dim, act_dim, seed=0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(*shape_prefix, obs_dim, generator=g, dtype=dtype)
    return Batch(
        obs=obs,
        action=torch.randn(*shape_prefix, act_dim, generator=g, dtype=dtype),
        reward=torch.randn(*shape_prefix, generator=g, dtype=dtype) * 3 + 1,
        next_obs=obs + 0.5 * torch.randn(*shape_prefix, obs_dim, generator=g, dtype=dtype) + 2,
        terminated=torch.zeros(*shape_prefix, dtype=torch.bool),
    )


def test_gaussian_nll_matches_torch_distributions():
    torch.manual_seed(0)
    K, B, O, A = 3, 17, 2, 1
    model = GaussianEnsemble(O, A, ensemble_size=K, hidden_size=8, num_layers=2, dtype=F64)
    model.fit_normalizers(_random_batch((50,), O, A, seed=1))
    with torch.no_grad():
        model.max_logvar.uniform_(0.0, 1.0)
        model.min_logvar.uniform_(-3.0, -1.0)
    batch_k = _random_batch((K, B), O, A, seed=2)
    x = torch.cat([batch_k.obs, batch_k.action], -1)
    mean, logvar = model(x)
    assert mean.shape == logvar.shape == (K, B, O + 1)
    raw_target = torch.cat([batch_k.next_obs - batch_k.obs, batch_k.reward[..., None]], -1)
    target = (raw_target - model.output_normalizer.mean) / model.output_normalizer.std
    oracle = -torch.distributions.Normal(mean, torch.exp(0.5 * logvar)).log_prob(target).mean(dim=(1, 2))
    torch.testing.assert_close(model.nll(batch_k), oracle, rtol=1e-10, atol=1e-10)
    penalty = 0.01 * (model.max_logvar.sum() - model.min_logvar.sum())
    torch.testing.assert_close(model.loss(batch_k), oracle.sum() + penalty, rtol=1e-10, atol=1e-10)


def test_forward_and_predict_refuse_wrong_shapes():
    model = GaussianEnsemble(3, 2, ensemble_size=4, hidden_size=8, num_layers=1)
    with pytest.raises(ValueError, match=r"x: expected shape \(4, B, 5\)"):
        model(torch.zeros(3, 7, 5))
    with pytest.raises(ValueError, match="action: expected shape"):
        model.predict(torch.zeros(7, 3), torch.zeros(6, 2))
    with pytest.raises(ValueError, match="num_elites"):
        GaussianEnsemble(3, 2, ensemble_size=4, num_elites=5)
    with pytest.raises(ValueError, match="activation"):
        GaussianEnsemble(3, 2, activation="gelu-ish")
    mean, var = model.predict(torch.zeros(7, 3), torch.zeros(7, 2), members=torch.tensor([0, 2]))
    assert mean.shape == var.shape == (2, 7, 4) and bool((var > 0).all())


def test_step_members_with_folded_normalisation_matches_predict():
    torch.manual_seed(0)
    K, O, A, B = 4, 3, 2, 6
    model = GaussianEnsemble(O, A, ensemble_size=K, hidden_size=16, num_layers=2, dtype=F64)
    data = _random_batch((40,), O, A, seed=3)
    data.obs = data.obs * torch.tensor([3.0, 0.2, 1.0], dtype=F64) + 5  # make every normaliser non-trivial
    model.fit_normalizers(data)
    members = torch.tensor([3, 1])
    obs = torch.randn(B, O, dtype=F64) * 2
    action = torch.randn(B, A, dtype=F64)
    mean, var = model.predict(obs, action, members=members)  # the unfolded, normalised path
    noise = torch.randn(2, B, O + 1, dtype=F64)
    with torch.no_grad():
        nxt, reward = model.step_members(obs.expand(2, -1, -1), action.expand(2, -1, -1),
                                         members=members)
        torch.testing.assert_close(nxt, mean[..., :O], rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(reward, mean[..., O], rtol=1e-10, atol=1e-10)
        nxt, reward = model.step_members(obs.expand(2, -1, -1), action.expand(2, -1, -1),
                                         members=members, noise=noise)
        sample = mean + var.sqrt() * noise  # i' ~ N(mean, var) with the same ε
        torch.testing.assert_close(nxt, sample[..., :O], rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(reward, sample[..., O], rtol=1e-10, atol=1e-10)
        _, mean_reward = model.step_members(obs.expand(2, -1, -1), action.expand(2, -1, -1),
                                            members=members, noise=noise[..., :O])
        torch.testing.assert_close(mean_reward, mean[..., O], rtol=1e-10, atol=1e-10)  # width O: reward mean


# ---------------------------------------------------------------------- training the ensemble
def _toy_buffer(n=1000, seed=0, noise=0.05):
    """Δi = 0.5 sin(2.5 i) + 0.2 u + noise, g = i - u², on i, u ∈ [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.rand(n, 1, generator=g) * 2 - 1
    action = torch.rand(n, 1, generator=g) * 2 - 1
    delta = 0.5 * torch.sin(2.5 * obs) + 0.2 * action + noise * torch.randn(n, 1, generator=g)
    reward = (obs - action.square())[:, 0]
    buffer = ReplayBuffer(1, 1, capacity=n)
    buffer.add_batch(obs, action, reward, obs + delta, torch.zeros(n))
    return buffer


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    buffer = _toy_buffer()
    model = GaussianEnsemble(1, 1, ensemble_size=5, hidden_size=48, num_layers=3, num_elites=3)
    report = fit_model(model, buffer, epochs=60, batch_size=64, lr=3e-3, patience=60,
                       generator=torch.Generator().manual_seed(0))
    return model, buffer, report


def test_training_decreases_the_nll_and_fits_the_function(trained):
    model, _, report = trained
    assert report.epochs_run >= 10 and len(report.train_loss) == report.epochs_run
    assert report.train_loss[-1] < report.train_loss[0] - 3.0  # summed over 5 members
    assert report.val_mse[-1] < 0.5 * report.val_mse[0]
    x = torch.linspace(-0.9, 0.9, 50)[:, None]
    u = torch.full_like(x, 0.3)
    mean, _, _ = model.mixture_moments(x, u)
    true_next = x + 0.5 * torch.sin(2.5 * x) + 0.2 * u
    true_reward = (x - u.square())[:, 0]
    assert float((mean[:, 0] - true_next[:, 0]).abs().max()) < 0.1  # raw units: range of Δ is ±0.5
    assert float((mean[:, 1] - true_reward).abs().max()) < 0.15


def test_uncertainty_is_larger_off_the_data(trained):
    model, _, _ = trained
    near = torch.linspace(-0.8, 0.8, 40)[:, None]
    far = torch.cat([torch.linspace(-6, -4, 20), torch.linspace(4, 6, 20)])[:, None]
    zeros = torch.zeros_like(near)
    _, alea_near, epi_near = model.mixture_moments(near, zeros)
    _, alea_far, epi_far = model.mixture_moments(far, zeros)
    total_near, total_far = (alea_near + epi_near)[:, 0], (alea_far + epi_far)[:, 0]
    assert float(total_far.mean()) > 10 * float(total_near.mean())
    assert float(epi_far[:, 0].mean()) > 10 * float(epi_near[:, 0].mean())  # the members disagree off the data
    # on the data the aleatoric part is about the noise variance 0.05² (in Δi)
    assert 0.3 * 0.05**2 < float(alea_near[:, 0].mean()) < 3 * 0.05**2


def test_logvar_stays_within_the_learned_bounds(trained):
    model, _, _ = trained
    x = torch.cat([torch.linspace(-100, 100, 201)[:, None], torch.linspace(50, -50, 201)[:, None]], -1)
    with torch.no_grad():
        _, logvar = model(x.expand(5, -1, -1))
    max_lv, min_lv = model.max_logvar.detach(), model.min_logvar.detach()
    # soft bounds: min_lv + softplus(max_lv - softplus(...) - min_lv) can exceed max_lv by at most log1p(e^{min-max})
    slack = torch.log1p(torch.exp(min_lv - max_lv))
    assert bool((logvar <= max_lv + slack).all()) and bool((logvar >= min_lv).all())
    assert bool((max_lv != 0.5).any()) and bool((min_lv != -10.0).any())  # the bounds were learned


def test_elites_are_the_members_with_lowest_holdout_mse(trained):
    model, buffer, report = trained
    val = buffer.batch(report.val_indices)
    # independent per-member MSE through predict (raw units), normalised by the output std
    with torch.no_grad():
        mean, _ = model.predict(val.obs, val.action)
    target = torch.cat([val.next_obs, val.reward[:, None]], -1)
    mse = (((mean - target) / model.output_normalizer.std) ** 2).mean(dim=(1, 2))
    torch.testing.assert_close(mse, torch.tensor(report.best_val_mse), rtol=1e-4, atol=1e-6)
    expected = sorted(torch.argsort(mse)[:3].tolist())
    assert report.elites == expected == model.elite_indices.tolist()
    assert len(report.val_indices) == 200


class _RecordingEnsemble(GaussianEnsemble):
    """Records the transitions each member trains on (obs encodes the buffer slot)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = []

    def loss(self, batch_k):
        self.seen.append(batch_k.obs[..., 0].round().long())
        return super().loss(batch_k)


def test_members_train_on_their_own_bootstrap_batches():
    n = 80
    buffer = ReplayBuffer(1, 1, capacity=n)
    slots = torch.arange(n, dtype=torch.float32)[:, None]
    buffer.add_batch(slots, torch.zeros(n, 1), torch.zeros(n), slots + 1, torch.zeros(n))
    model = _RecordingEnsemble(1, 1, ensemble_size=4, hidden_size=8, num_layers=1)
    report = fit_model(model, buffer, epochs=1, batch_size=16, val_fraction=0.25,
                       generator=torch.Generator().manual_seed(3))
    seen = torch.cat(model.seen, dim=1)  # (K, n_train)
    train = sorted(set(range(n)) - set(report.val_indices.tolist()))
    assert seen.shape == (4, 60)
    assert set(seen.unique().tolist()) <= set(train)  # never the holdout
    for k in range(4):
        assert len(set(seen[k].tolist())) < 60  # drawn with replacement: duplicates
    assert len({tuple(sorted(row.tolist())) for row in seen}) == 4  # each member its own resample
    before = model.seen[0]
    assert not torch.equal(before[0], before[1])


def test_early_stopping_keeps_the_best_parameters_and_max_updates_caps_training():
    buffer = _toy_buffer(300)
    model = GaussianEnsemble(1, 1, ensemble_size=3, hidden_size=8, num_layers=1)
    before = {k: v.clone() for k, v in model.named_parameters()}
    # a vanishing learning rate never improves the holdout MSE by 1 %: stop after `patience` epochs and
    # give back the parameters of the best epoch, here the starting ones
    report = fit_model(model, buffer, epochs=50, lr=1e-12, patience=3, generator=torch.Generator().manual_seed(0))
    assert report.epochs_run == 3 and len(report.val_mse) == 3
    for name, value in model.named_parameters():
        assert torch.equal(value, before[name]), name
    report = fit_model(model, buffer, epochs=50, batch_size=32, max_updates=10, patience=50,
                       generator=torch.Generator().manual_seed(0))
    assert report.updates == 10 and report.epochs_run == 2  # 240 training rows / 32 = 8 updates per epoch


def test_fit_without_holdout_trains_every_epoch_and_still_picks_elites():
    buffer = _toy_buffer(200)
    model = GaussianEnsemble(1, 1, ensemble_size=4, hidden_size=8, num_layers=1, num_elites=2)
    report = fit_model(model, buffer, epochs=4, val_fraction=0.0, progress=True,
                       generator=torch.Generator().manual_seed(0))
    assert report.epochs_run == 4 and report.val_mse == [] and report.best_val_mse is None
    assert report.val_indices is None and len(report.elites) == 2
    train_mse = model.eval_mse(buffer.all())
    assert report.elites == sorted(torch.argsort(train_mse)[:2].tolist())


def test_fit_casts_the_buffer_to_the_model_dtype():
    buffer = _toy_buffer(100)  # float32 storage
    for model in (DeltaMLP(1, 1, hidden_sizes=(8,), dtype=F64),
                  GaussianEnsemble(1, 1, ensemble_size=2, hidden_size=8, num_layers=1, dtype=F64)):
        report = fit_model(model, buffer, epochs=2, generator=torch.Generator().manual_seed(0))
        assert report.epochs_run == 2 and all(math.isfinite(v) for v in report.train_loss)


class _ExplodingDelta(DeltaMLP):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = 0

    def loss(self, batch):
        self.calls += 1
        value = super().loss(batch)
        return value * math.nan if self.calls == 3 else value


def test_nan_loss_raises_and_restores_the_model():
    buffer = _toy_buffer(200)
    model = _ExplodingDelta(1, 1, hidden_sizes=(8,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(FloatingPointError, match="restored"):
        fit_model(model, buffer, epochs=3, batch_size=32, generator=torch.Generator().manual_seed(0))
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_fit_model_checks_its_arguments():
    model = DeltaMLP(1, 1, hidden_sizes=(4,))
    with pytest.raises(ValueError, match="empty buffer"):
        fit_model(model, ReplayBuffer(1, 1, capacity=3), epochs=1)
    with pytest.raises(ValueError, match="obs_dim=2"):
        fit_model(model, ReplayBuffer(2, 1, capacity=3), epochs=1)
    with pytest.raises(ValueError, match="epochs"):
        fit_model(model, _toy_buffer(10), epochs=0)


def test_delta_mlp_learns_a_linear_system():
    torch.manual_seed(0)
    a_mat = np.array([[1.0, 0.1], [-0.2, 0.95]])
    b_mat = np.array([[0.0], [0.3]])
    g = torch.Generator().manual_seed(0)

    def data(n):
        obs = torch.rand(n, 2, generator=g) * 4 - 2
        action = torch.rand(n, 1, generator=g) * 2 - 1
        return obs, action, obs @ torch.tensor(a_mat.T, dtype=torch.float32) + action @ torch.tensor(
            b_mat.T, dtype=torch.float32)

    obs, action, next_obs = data(2000)
    buffer = ReplayBuffer(2, 1, capacity=2000)
    buffer.add_batch(obs, action, torch.zeros(2000), next_obs, torch.zeros(2000))
    model = DeltaMLP(2, 1, hidden_sizes=(64, 64))
    report = fit_model(model, buffer, epochs=40, batch_size=128, lr=3e-3, patience=40, generator=g)
    assert report.elites is None and report.train_loss[-1] < 0.05 * report.train_loss[0]
    obs, action, next_obs = data(500)
    with torch.no_grad():
        predicted = model(obs, action)
    true_delta = next_obs - obs
    relative = float((predicted - next_obs).square().sum() / true_delta.square().sum())
    assert relative < 5e-3


# ---------------------------------------------------------------------- imagination
A_MAT = np.array([[0.9, 0.2], [-0.1, 1.05]])
B_MAT = np.array([[0.0, 0.5], [0.4, -0.3]])


@pytest.mark.parametrize("propagation", ["ts1", "ts_inf", "expectation"])
def test_imagine_returns_equals_the_closed_form_for_known_linear_dynamics(propagation):
    g = torch.Generator().manual_seed(0)
    N, H = 6, 5
    starts = torch.randn(N, 2, generator=g, dtype=F64)
    actions = torch.randn(N, H, 2, generator=g, dtype=F64)
    expected = closed_form_returns(A_MAT, B_MAT, starts.numpy(), actions.numpy(), discount=0.9)
    for model in (linear_ensemble(A_MAT, B_MAT), linear_delta_mlp(A_MAT, B_MAT)):
        returns = imagine_returns(model, starts, actions, reward_fn=quadratic_reward, particles=3,
                                  propagation=propagation, generator=g, discount=0.9)
        assert returns.shape == (N,) and returns.dtype == F64
        np.testing.assert_allclose(returns.numpy(), expected, rtol=1e-6, atol=1e-6)
    shared = imagine_returns(linear_ensemble(A_MAT, B_MAT), starts[0], actions, reward_fn=quadratic_reward,
                             particles=3, propagation=propagation, generator=g, discount=0.9)
    np.testing.assert_allclose(
        shared.numpy(), closed_form_returns(A_MAT, B_MAT, starts[[0] * N].numpy(), actions.numpy(), 0.9),
        rtol=1e-6, atol=1e-6)


def test_ts_inf_keeps_each_particles_member_and_ts1_redraws_it():
    deltas = [0.0, 1.0, 2.0, 3.0, 4.0]
    model = constant_delta_ensemble(deltas)
    N, H = 40, 6

    def delta_reward(obs, action, next_obs):  # the reward reveals which member moved the particle
        return (next_obs - obs)[:, 0]

    actions = torch.zeros(N, H, 1, dtype=F64)
    g = torch.Generator().manual_seed(0)
    returns, members = imagine_returns(model, torch.zeros(1, dtype=F64), actions, reward_fn=delta_reward,
                                       particles=1, propagation="ts_inf", generator=g, return_members=True)
    assert members.shape == (H, N, 1)
    assert bool((members == members[0]).all())  # fixed over the horizon
    torch.testing.assert_close(returns, H * members[0, :, 0].to(F64), atol=1e-6, rtol=0)
    assert torch.bincount(members[0, :, 0], minlength=5).tolist() == [8] * 5  # balanced: M / K each

    returns, members = imagine_returns(model, torch.zeros(1, dtype=F64), actions, reward_fn=delta_reward,
                                       particles=1, propagation="ts1", generator=g, return_members=True)
    torch.testing.assert_close(returns, members[:, :, 0].sum(0).to(F64), atol=1e-6, rtol=0)
    changed = (members != members[0]).any(0)[:, 0]
    assert float(changed.double().mean()) > 0.9  # P(a member 6 times in a row) = 5^-5


def test_ts_inf_with_padding_elites_and_particles_averaged():
    model = constant_delta_ensemble([0.0, 1.0, 2.0, 3.0, 4.0], num_elites=2)
    model.set_elites(torch.tensor([5.0, 1.0, 4.0, 0.0, 9.0]))
    assert model.elite_indices.tolist() == [1, 3]
    N, P, H = 3, 7, 4  # M = 21 is not a multiple of the 2 elites: padded
    g = torch.Generator().manual_seed(1)
    returns, members = imagine_returns(model, torch.zeros(1, dtype=F64), torch.zeros(N, H, 1, dtype=F64),
                                       reward_fn=lambda o, a, n: (n - o)[:, 0], particles=P,
                                       propagation="ts_inf", generator=g, return_members=True)
    assert members.shape == (H, N, P) and set(members.unique().tolist()) <= {1, 3}
    assert bool((members == members[0]).all())
    torch.testing.assert_close(returns, H * members[0].to(F64).mean(1), atol=1e-6, rtol=0)
    all_members = imagine_returns(model, torch.zeros(1, dtype=F64), torch.zeros(N, H, 1, dtype=F64),
                                  reward_fn=lambda o, a, n: (n - o)[:, 0], particles=P, members="all",
                                  propagation="expectation")
    torch.testing.assert_close(all_members, torch.full((N,), 2.0 * H, dtype=F64), atol=1e-6, rtol=0)


def test_model_reward_is_used_without_reward_fn():
    model = constant_delta_ensemble([0.0] * 4, rewards=[10.0, 20.0, 30.0, 40.0])
    g = torch.Generator().manual_seed(0)
    returns, members = imagine_returns(model, torch.zeros(1, dtype=F64), torch.zeros(8, 3, 1, dtype=F64),
                                       reward_fn=None, particles=4, generator=g, return_members=True)
    expected = 3 * (10.0 * (members[0] + 1)).to(F64).mean(1)
    torch.testing.assert_close(returns, expected, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="reward_fn"):
        imagine_returns(constant_delta_ensemble([0.0]), torch.zeros(1), torch.zeros(2, 3, 1), reward_fn=None)


@pytest.mark.parametrize("which", ["delta_mlp", "ensemble"])
def test_termination_masks_rewards_and_freezes_the_state(which):
    if which == "delta_mlp":
        model = DeltaMLP(1, 1, hidden_sizes=(1,), activation="identity", dtype=F64)
        with torch.no_grad():
            for p in model.parameters():
                p.zero_()
            model.layers[-1].bias.fill_(1.0)  # i' = i + 1
    else:
        model = constant_delta_ensemble([1.0] * 3)
    starts = torch.tensor([[0.0], [2.5], [-5.0], [10.0]], dtype=F64)
    H = 10
    seen_obs = []

    def reward_fn(obs, action, next_obs):
        seen_obs.append(obs[:, 0].clone())
        return torch.ones_like(obs[:, 0])

    def termination_fn(obs, action, next_obs):
        return next_obs[:, 0] >= 2.9

    returns = imagine_returns(model, starts, torch.zeros(4, H, 1, dtype=F64), reward_fn=reward_fn,
                              termination_fn=termination_fn, particles=2, generator=torch.Generator())
    torch.testing.assert_close(returns, torch.tensor([3.0, 1.0, 8.0, 1.0], dtype=F64), atol=1e-6, rtol=0)
    discounted = imagine_returns(model, starts, torch.zeros(4, H, 1, dtype=F64), reward_fn=reward_fn,
                                 termination_fn=termination_fn, particles=2, discount=0.5)
    expected = [sum(0.5**t for t in range(T)) for T in (3, 1, 8, 1)]
    torch.testing.assert_close(discounted, torch.tensor(expected, dtype=F64), atol=1e-6, rtol=0)
    if which == "delta_mlp":  # one particle per sequence: the rows are the sequences
        frozen = torch.stack(seen_obs[:H])  # (H, N)
        torch.testing.assert_close(frozen[:, 0], torch.tensor([0, 1, 2, 3, 3, 3, 3, 3, 3, 3], dtype=F64),
                                   atol=1e-6, rtol=0)


def test_same_seed_same_returns_and_shapes():
    torch.manual_seed(0)
    model = GaussianEnsemble(3, 2, ensemble_size=5, hidden_size=16, num_layers=2)
    obs = torch.randn(3)
    actions = torch.randn(7, 4, 2)
    for propagation in ("ts1", "ts_inf"):
        first = imagine_returns(model, obs, actions, reward_fn=None, particles=10, propagation=propagation,
                                generator=torch.Generator().manual_seed(5))
        again = imagine_returns(model, obs, actions, reward_fn=None, particles=10, propagation=propagation,
                                generator=torch.Generator().manual_seed(5))
        other = imagine_returns(model, obs, actions, reward_fn=None, particles=10, propagation=propagation,
                                generator=torch.Generator().manual_seed(6))
        assert first.shape == (7,) and torch.equal(first, again) and not torch.equal(first, other)
    delta = DeltaMLP(3, 2, hidden_sizes=(8,))
    one = imagine_returns(delta, obs, actions, reward_fn=quadratic_reward, particles=1)
    many = imagine_returns(delta, obs, actions, reward_fn=quadratic_reward, particles=13, propagation="ts1")
    assert torch.equal(one, many)  # deterministic: particles and propagation make no difference
    with pytest.raises(ValueError, match=r"obs: expected shape \(7, 3\)"):
        imagine_returns(model, torch.zeros(6, 3), actions, reward_fn=None)
    with pytest.raises(ValueError, match="action_sequences"):
        imagine_returns(model, obs, torch.zeros(7, 4, 3), reward_fn=None)
    with pytest.raises(ValueError, match="propagation"):
        imagine_returns(model, obs, actions, reward_fn=None, propagation="ts2")
    with pytest.raises(ValueError, match=r"reward_fn\(obs, action, next_obs\): expected shape"):
        imagine_returns(model, obs, actions, reward_fn=lambda o, a, n: n)


def test_step_particles_assignments_and_modes():
    model = constant_delta_ensemble([0.0, 1.0, 2.0, 3.0, 4.0], rewards=[0.0, 10.0, 20.0, 30.0, 40.0])
    obs = torch.zeros(7, 1, dtype=F64)
    action = torch.zeros(7, 1, dtype=F64)
    assignment = torch.tensor([0, 0, 0, 0, 2, 4, 1])  # unbalanced on purpose
    nxt, reward, members = step_particles(model, obs, action, propagation="ts_inf",
                                          member_of_particle=assignment, return_members=True)
    torch.testing.assert_close(nxt[:, 0], assignment.to(F64), atol=1e-6, rtol=0)
    torch.testing.assert_close(reward, 10 * assignment.to(F64), atol=1e-6, rtol=0)
    assert members.tolist() == assignment.tolist()
    g = torch.Generator().manual_seed(0)
    nxt, reward, members = step_particles(model, obs, action, propagation="ts1", generator=g,
                                          return_members=True)  # 7 particles on 5 members: padded
    torch.testing.assert_close(nxt[:, 0], members.to(F64), atol=1e-6, rtol=0)
    nxt, reward = step_particles(model, obs, action, propagation="expectation")
    torch.testing.assert_close(nxt[:, 0], torch.full((7,), 2.0, dtype=F64))
    torch.testing.assert_close(reward, torch.full((7,), 20.0, dtype=F64))
    with pytest.raises(ValueError, match="multiple"):
        step_particles(model, obs, action, propagation="ts_inf")
    with pytest.raises(ValueError, match="member_of_particle"):
        step_particles(model, obs, action, propagation="ts_inf", member_of_particle=assignment + 1)
    block = step_particles(model, torch.zeros(10, 1, dtype=F64), torch.zeros(10, 1, dtype=F64),
                           propagation="ts_inf", return_members=True)[2]
    assert block.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]  # the block layout


def test_trajectory_sampling_noise_has_the_predicted_std():
    model = constant_delta_ensemble([0.5, -0.5], obs_dim=2, logvar=-1.0)
    with torch.no_grad():
        model.output_normalizer.std.fill_(2.0)  # raw σ = s_y exp(lṽ / 2)
        model.output_normalizer.mean.fill_(0.25)
    lv = 0.5 - math.log1p(math.exp(0.5 + 1.0))  # max_lv − softplus(max_lv − lv)
    lv = -1.0 + math.log1p(math.exp(lv + 1.0))  # min_lv + softplus(lv − min_lv)
    sigma = 2.0 * math.exp(0.5 * lv)
    M = 40_000
    with torch.no_grad():
        nxt, _, members = step_particles(model, torch.zeros(M, 2, dtype=F64), torch.zeros(M, 1, dtype=F64),
                                         propagation="ts_inf", generator=torch.Generator().manual_seed(0),
                                         return_members=True)
    for k, mu in enumerate([0.5, -0.5]):
        sample = nxt[members == k]
        expected_mean = 0.25 + 2.0 * mu
        assert abs(float(sample.mean()) - expected_mean) < 4 * sigma / math.sqrt(sample.numel())
        assert abs(float(sample.std()) / sigma - 1) < 0.02


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
def test_imagine_returns_on_cuda_matches_cpu():
    cpu_model = linear_ensemble(A_MAT, B_MAT)
    gpu_model = linear_ensemble(A_MAT, B_MAT).to("cuda")
    g = torch.Generator().manual_seed(0)
    starts, actions = torch.randn(2, dtype=F64, generator=g), torch.randn(50, 8, 2, dtype=F64, generator=g)
    for propagation in ("ts1", "ts_inf", "expectation"):
        on_gpu = imagine_returns(gpu_model, starts.cuda(), actions.cuda(), reward_fn=quadratic_reward,
                                 propagation=propagation, generator=torch.Generator("cuda").manual_seed(0))
        assert on_gpu.device.type == "cuda"
        on_cpu = imagine_returns(cpu_model, starts, actions, reward_fn=quadratic_reward, propagation=propagation)
        torch.testing.assert_close(on_gpu.cpu(), on_cpu, rtol=1e-6, atol=1e-6)
    model = GaussianEnsemble(4, 1, device="cuda")
    returns = imagine_returns(model, torch.zeros(4, device="cuda"), torch.randn(400, 30, 1, device="cuda"),
                              reward_fn=None, generator=torch.Generator("cuda").manual_seed(0))
    assert returns.shape == (400,) and bool(torch.isfinite(returns).all())
