"""Dreamer's learner in imagination (ImaginationActorCritic) and the RSSM's contrastive representation.

Oracles: bitwise comparisons of the world model's weights, a replay of the imagination with the same random
numbers and the n-step returns written out by hand, the closed form of a constant-reward λ-return and its fixed
point r / (1 − γ), a hand-wired model whose reward is tanh(action) (its optimum a known bound of the box), and a
loop over the negatives with torch.distributions for the NCE bound.
"""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch.distributions import Normal

from mbrl_course.rl.actor_critic import ActorCriticConfig, ImaginationActorCritic
from mbrl_course.ssm.rssm import (
    RSSM,
    WorldModelConfig,
    WorldModelTrainConfig,
    contrastive_bound,
    train_world_model,
)

SIZES = dict(obs_dim=3, action_dim=1, deterministic_size=8, stochastic_size=4, hidden_size=16, embed_size=8)


def _model(seed: int = 0, **overrides) -> RSSM:
    torch.manual_seed(seed)
    return RSSM(WorldModelConfig(**{**SIZES, **overrides}))


def _data(B: int = 3, T: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, 3, generator=g), 2 * torch.rand(B, T, 1, generator=g) - 1, torch.randn(B, T, generator=g)


def _posterior(model: RSSM, B: int = 3, T: int = 5):
    frames, actions, _ = _data(B, T)
    with torch.no_grad():
        posterior, _ = model.observe(frames, actions, generator=torch.Generator().manual_seed(1))
    return posterior


def _learner(model: RSSM, low=(-1.0,), high=(1.0,), **overrides) -> ImaginationActorCritic:
    config = ActorCriticConfig.for_budget("smoke", **{"horizon": 5, **overrides})
    return ImaginationActorCritic(model.feature_size, list(low), list(high), config, seed=0)


def _set_last_layer(net: torch.nn.Sequential, bias: float) -> None:
    """The network's output becomes the constant ``bias`` (last layer's weights zero)."""
    with torch.no_grad():
        net[-1].weight.zero_()
        net[-1].bias.fill_(bias)


# ----------------------------------------------------------------------------------------------- stop-gradients
@pytest.mark.parametrize("target_network", [False, True])
def test_update_leaves_the_world_model_bitwise_unchanged_and_without_grads(target_network):
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    learner = _learner(model, target_network=target_network, target_update_period=2, actor_lr=1e-3, value_lr=1e-3)
    actor0 = [p.clone() for p in learner.actor.parameters()]
    value0 = [p.clone() for p in learner.value.parameters()]
    posterior = _posterior(model)
    for _ in range(3):
        stats = learner.update(model, posterior)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())  # the freeze is undone
    assert all(p.requires_grad for p in learner.value.parameters())
    assert not all(torch.equal(a, b) for a, b in zip(actor0, learner.actor.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(value0, learner.value.parameters()))
    assert set(stats) >= {"actor_loss", "value_loss", "imagined_return"}
    assert all(isinstance(v, float) and math.isfinite(v) for v in stats.values())
    assert not bool(learner.nonfinite) and learner.updates == 3


def test_actor_loss_reaches_the_actor_only_and_value_loss_the_value_only():
    model = _model()
    learner = _learner(model)
    posterior = _posterior(model)
    out = learner.losses(model, posterior)
    out.actor_loss.backward()
    assert all(p.grad is None for p in model.parameters())
    assert all(p.grad is None for p in learner.value.parameters())  # the actor step leaves ψ alone
    assert all(p.grad is not None for p in learner.actor.parameters())
    assert sum(float(p.grad.abs().sum()) for p in learner.actor.parameters()) > 0

    learner.actor.zero_grad(set_to_none=True)
    out = learner.losses(model, posterior)
    out.value_loss.backward()
    assert all(p.grad is None for p in learner.actor.parameters())  # states and returns are detached
    assert all(p.grad is None for p in model.parameters())
    assert all(p.grad is not None for p in learner.value.parameters())


# ----------------------------------------------------------------------------------------------- time indexing
@pytest.mark.parametrize("lam", [0.0, 1.0])
def test_returns_pair_each_reward_with_the_state_it_reaches(lam):
    """Replay the imagination with the learner's random numbers, step by step, and write the returns out:
    λ = 0: V(s_t) = r̂(s_{t+1}) + γ v(s_{t+1}); λ = 1: V(s_t) = Σ_{k≥t} γ^{k−t} r̂(s_{k+1}) + γ^{H−t} v(s_H)."""
    model = _model()
    learner = _learner(model, gamma=0.9, lam=lam, horizon=4)
    start = _posterior(model, B=2, T=3)[:, 1:]                  # (2, 2, ·): any leading shape
    replay = torch.Generator().manual_seed(0)
    replay.set_state(learner.generator.get_state())
    out = learner.losses(model, start)
    gamma, H = 0.9, 4
    with torch.no_grad():
        state = start.detach()
        state = type(state)(*(None if v is None else v.reshape(-1, v.shape[-1]) for v in
                              (state.h, state.s, state.mean, state.std, state.embedding)))
        rewards, values = [], [learner.value(state.features).squeeze(-1)]
        for _ in range(H):
            action, _ = learner.actor.sample(state.features, replay)
            state = model.prior(state, action, replay)
            rewards.append(model.reward(state.features))
            values.append(learner.value(state.features).squeeze(-1))
    for t in range(H):
        if lam == 0.0:
            expected = rewards[t] + gamma * values[t + 1]
        else:
            expected = sum(gamma ** (k - t) * rewards[k] for k in range(t, H)) + gamma ** (H - t) * values[H]
        torch.testing.assert_close(out.returns[t], expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.rewards, torch.stack(rewards))
    torch.testing.assert_close(out.values, torch.stack(values))


# ----------------------------------------------------------------------------------------------- the value
def test_returns_at_a_constant_reward_and_value_have_the_closed_form():
    """r̂ ≡ r, v ≡ c: V_λ with k = H − t steps left is (r + γ(1−λ)c)(1 − (γλ)^k)/(1 − γλ) + (γλ)^k c."""
    model = _model()
    r, c, gamma, lam, H = 0.7, -1.3, 0.8, 0.6, 6
    _set_last_layer(model.reward_net, r)
    learner = _learner(model, gamma=gamma, lam=lam, horizon=H)
    _set_last_layer(learner.value, c)
    out = learner.losses(model, _posterior(model))
    for t in range(H):
        k, gl = H - t, gamma * lam
        expected = (r + gamma * (1 - lam) * c) * (1 - gl ** k) / (1 - gl) + gl ** k * c
        torch.testing.assert_close(out.returns[t], torch.full_like(out.returns[t], expected))
    torch.testing.assert_close(out.weights[:, 0], gamma ** torch.arange(H, dtype=torch.float32))


@pytest.mark.parametrize("target_network", [False, True])
def test_value_regresses_onto_the_constant_reward_fixed_point(target_network):
    """A constant reward r under any policy: the λ-return regression's fixed point is v ≡ r / (1 − γ)."""
    model = _model()
    r, gamma = 1.0, 0.5
    _set_last_layer(model.reward_net, r)
    learner = _learner(model, gamma=gamma, lam=0.5, horizon=5, value_lr=2e-2, actor_lr=1e-12,
                       target_network=target_network, target_update_period=5)
    posterior = _posterior(model)
    assert float((learner.value_of(posterior.features) - r / (1 - gamma)).abs().min()) > 0.5
    for _ in range(150):
        learner.update(model, posterior)
    out = learner.losses(model, posterior)
    predicted = learner.value_of(out.features)
    assert float((predicted - r / (1 - gamma)).abs().max()) < 0.05 * r / (1 - gamma)


# ----------------------------------------------------------------------------------------------- the actor
def _wire_reward_to_action(model: RSSM, sign: float) -> None:
    """Zero every weight, then wire one path: x = ELU(a + 2) = a + 2, h_0 = tanh(x − 2) = tanh(a) (update gate shut),
    prior mean μ_0 = h_0, σ ≈ 0.1, reward r̂ = sign · s_0. So E[r̂ of the state a_t reaches] = sign · tanh(a_t)."""
    H, S = model.deterministic_size, model.stochastic_size
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.transition_in.weight[0, S] = 1.0                 # x_0 = a + 2 (the input is [s, a])
        model.transition_in.bias[0] = 2.0
        model.cell.weight_ih[2 * H, 0] = 1.0                   # candidate n_0 = tanh(x_0 − 2)
        model.cell.bias_ih[2 * H] = -2.0
        model.cell.bias_ih[H:2 * H] = -30.0                    # update gate z ≈ 0: h = n
        model.prior_net[0].weight[0, 0] = 1.0                  # u_0 = h_0 + 2 > 0 (ELU is the identity)
        model.prior_net[0].bias[0] = 2.0
        model.prior_net[2].weight[0, 0] = 1.0                  # μ_0 = u_0 − 2 = h_0
        model.prior_net[2].bias[0] = -2.0
        model.prior_net[2].bias[S:] = -10.0                    # σ = softplus(−10) + 0.1
        model.reward_net[0].weight[0, H] = 1.0                 # v_0 = s_0 + 10 > 0
        model.reward_net[0].bias[0] = 10.0
        model.reward_net[2].weight[0, 0] = 1.0
        model.reward_net[4].weight[0, 0] = sign                # r̂ = sign (s_0 + 10 − 10)
        model.reward_net[4].bias[0] = -10.0 * sign


@pytest.mark.parametrize("sign, bound", [(1.0, 0.5), (-1.0, -1.0)])
def test_actor_moves_towards_the_bound_that_maximises_the_reward(sign, bound):
    model = _model()
    _wire_reward_to_action(model, sign)
    posterior = _posterior(model)
    with torch.no_grad():  # the wiring: the prior mean after action a is tanh(a)
        a = torch.tensor([[-0.7], [0.2], [0.5]])
        mean = model.prior(model.initial_state(3), a, sample=False).mean[:, 0]
    torch.testing.assert_close(mean, torch.tanh(a[:, 0]))
    learner = _learner(model, low=(-1.0,), high=(0.5,), gamma=0.9, horizon=5, actor_lr=3e-3, value_lr=3e-3)
    first = learner.act(posterior.features, deterministic=True)
    assert float((first - bound).abs().mean()) > 0.5             # starts near the box's centre −0.25
    for _ in range(150):
        learner.update(model, posterior)
    last = learner.act(posterior.features, deterministic=True)
    assert float((last - bound).abs().max()) < 0.1


# ----------------------------------------------------------------------------------------------- acting, checkpoints
def test_act_shapes_modes_and_exploration_stays_in_the_box():
    model = _model()
    learner = _learner(model, low=(-2.0,), high=(0.5,), exploration_noise=10.0)
    features = _posterior(model).features
    mode = learner.act(features, deterministic=True)
    assert mode.shape == (3, 5, 1)
    torch.testing.assert_close(learner.act(features, deterministic=True), mode)
    explored = learner.act(features, explore=True)
    assert explored.shape == (3, 5, 1)
    assert bool(((explored >= -2.0) & (explored <= 0.5)).all())
    assert bool(((explored == -2.0) | (explored == 0.5)).any())   # σ = 10 half-widths: clipped at the bounds


def test_state_dict_round_trip_continues_identically():
    model = _model()
    posterior = _posterior(model)
    learner = _learner(model, target_network=True, target_update_period=2, actor_lr=1e-3, value_lr=1e-3)
    for _ in range(3):
        learner.update(model, posterior)
    copy = _learner(_model(seed=5), target_network=True, target_update_period=2, actor_lr=1e-3, value_lr=1e-3)
    buffer = io.BytesIO()                                         # through a file, as a checkpoint goes
    torch.save(learner.state_dict(), buffer)
    buffer.seek(0)
    copy.load_state_dict(torch.load(buffer, weights_only=False))
    assert learner.update(model, posterior) == copy.update(model, posterior)
    for name in ("actor", "value", "value_target"):
        for a, b in zip(learner.state_dict()[name].values(), copy.state_dict()[name].values()):
            assert torch.equal(a, b)
    with pytest.raises(ValueError, match="target_network"):
        _learner(model).load_state_dict(learner.state_dict())


def test_target_network_follows_the_value_every_period():
    model = _model()
    posterior = _posterior(model)
    learner = _learner(model, target_network=True, target_update_period=3, target_tau=0.5, value_lr=1e-2)
    initial = [p.clone() for p in learner.value_target.parameters()]
    learner.update(model, posterior)
    learner.update(model, posterior)
    assert all(torch.equal(a, b) for a, b in zip(initial, learner.value_target.parameters()))
    out = learner.losses(model, posterior)                        # bootstraps from v_ψ̄, not from v_ψ
    with torch.no_grad():
        torch.testing.assert_close(out.values, learner.value_target(out.features).squeeze(-1))
        assert not torch.allclose(out.values, learner.value(out.features).squeeze(-1))
    learner.update(model, posterior)
    for old, new, value in zip(initial, learner.value_target.parameters(), learner.value.parameters()):
        torch.testing.assert_close(new, 0.5 * old + 0.5 * value)


# ----------------------------------------------------------------------------------------------- contrastive
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_contrastive_bound_equals_a_loop_over_the_negatives(dtype, tol):
    g = torch.Generator().manual_seed(3)
    N, d = 7, 3
    x = torch.randn(N, d, generator=g, dtype=dtype)
    mean = x + 0.5 * torch.randn(N, d, generator=g, dtype=dtype)
    std = 0.2 + torch.rand(N, d, generator=g, dtype=dtype)
    expected = torch.empty(N, dtype=torch.float64)
    for n in range(N):
        log_q = torch.stack([Normal(mean[m].double(), std[m].double()).log_prob(x[n].double()).sum()
                             for m in range(N)])
        expected[n] = log_q[n] - torch.log(torch.exp(log_q).mean())
    got = contrastive_bound(x, mean, std)
    torch.testing.assert_close(got.double(), expected, rtol=tol, atol=tol)
    assert bool((got <= math.log(N) + 1e-6).all())
    assert float(contrastive_bound(x, x, torch.full_like(x, 1e-2)).min()) > math.log(N) - 1e-3  # perfect: log N
    with pytest.raises(ValueError, match="samples, mean, std"):
        contrastive_bound(x, mean[:-1], std)


def test_contrastive_loss_replaces_reconstruction_and_decodes_stop_gradient_features():
    model = _model(representation="contrastive")
    frames, actions, rewards = _data(4, 6)
    out = model.loss(frames, actions, rewards, free_nats=0.5, generator=torch.Generator().manual_seed(0))
    B, T = 4, 6
    assert out.contrastive.shape == (B, T)
    assert bool((out.contrastive <= math.log(B * T) + 1e-6).all())
    mean, std = model._gaussian(model.contrastive_net(model.embed(frames)))
    features = out.posterior.features
    torch.testing.assert_close(out.contrastive.reshape(-1), contrastive_bound(
        features.reshape(-1, 12), mean.reshape(-1, 12), std.reshape(-1, 12)))
    torch.testing.assert_close(out.loss, -(out.contrastive.mean() + out.reconstruction.mean() + out.reward.mean())
                               + out.kl.clamp_min(0.5).mean())
    # the decoder's term reaches the decoder only; the NCE term never reaches the decoder
    out.reconstruction.mean().backward(retain_graph=True)
    representation = [*model.encoder.parameters(), *model.posterior_net.parameters(), *model.cell.parameters(),
                      *model.contrastive_net.parameters()]
    assert all(p.grad is None for p in representation)
    assert all(p.grad is not None for p in model.decoder.parameters())
    model.zero_grad(set_to_none=True)
    out.contrastive.mean().backward()
    assert all(p.grad is None for p in model.decoder.parameters())
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in model.contrastive_net.parameters())
    assert float(sum(p.grad.abs().sum() for p in model.encoder.parameters())) > 0


def test_contrastive_training_runs_and_raises_the_bound():
    g = torch.Generator().manual_seed(0)
    N, T = 8, 10
    states = torch.cumsum(0.3 * torch.randn(N, T, 3, generator=g), 1)   # random walks: distinguishable frames
    actions, rewards = torch.zeros(N, T, 1), states[..., 0]
    model = _model(representation="contrastive")
    batch = (states, actions, rewards)

    def bound() -> float:
        with torch.no_grad():
            return float(model.loss(*batch, generator=torch.Generator().manual_seed(1)).contrastive.mean())

    before = bound()
    config = WorldModelTrainConfig(num_steps=60, batch_size=8, chunk_length=10, learning_rate=3e-3,
                                   progress=False, checkpoint_every=1000)
    result = train_world_model(model, *batch, config=config)
    assert all(math.isfinite(v) for v in result.history)
    after = bound()
    assert after > before + 0.5 and after <= math.log(N * T)


def test_reconstruction_models_have_no_contrastive_head():
    model = _model()
    assert model.representation == "reconstruction"
    assert not any(k.startswith("contrastive_net") for k in model.state_dict())
    frames, actions, rewards = _data()
    assert model.loss(frames, actions, rewards).contrastive is None
    with pytest.raises(ValueError, match="representation"):
        model.contrastive(torch.zeros(2, 12), torch.zeros(2, 8))
    with pytest.raises(ValueError, match="representation"):
        _model(representation="pixels")


# ----------------------------------------------------------------------------------------------- bad input
def test_bad_input_is_refused():
    model = _model()
    learner = _learner(model)
    with pytest.raises(ValueError, match="features"):
        learner.act(torch.zeros(3, model.feature_size + 1))
    other = _model(deterministic_size=6)
    with pytest.raises(ValueError, match="feature_size"):
        learner.update(other, _posterior(other))
    with pytest.raises(ValueError, match="start_state"):
        learner.losses(model, _posterior(other))
    with pytest.raises(ValueError, match="horizon"):
        ActorCriticConfig(horizon=0)
    for lam in (-0.1, 1.5):
        with pytest.raises(ValueError, match="λ in \\[0, 1\\]"):
            ActorCriticConfig(lam=lam)
    with pytest.raises(ValueError, match="gamma"):
        ActorCriticConfig(gamma=1.2)
    with pytest.raises(ValueError, match="action_low, action_high"):
        ImaginationActorCritic(model.feature_size, [1.0], [-1.0], ActorCriticConfig.for_budget("smoke"))
    with pytest.raises(ValueError, match="reward head"):
        learner.update(_model(reward_head=False), _posterior(model))
    two_actions = _model(action_dim=2)
    with pytest.raises(ValueError, match="action_dim"):
        learner.update(two_actions, _posterior(model))


def test_config_for_budget_sizes():
    assert ActorCriticConfig.for_budget("smoke").hidden_sizes == (32, 32)
    assert ActorCriticConfig.for_budget("full").hidden_sizes == (400, 400, 400)
    assert ActorCriticConfig.for_budget("default", horizon=7).horizon == 7
