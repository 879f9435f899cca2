"""λ-returns and Dreamer's losses against their definitions; PlaNet's latent objective against imagine."""

from __future__ import annotations

import pytest
import torch

from mbrl_course.planning.latent import latent_return_objective
from mbrl_course.rl.actor_critic import (
    actor_loss,
    discount_weights,
    lambda_returns,
    lambda_returns_vectorised,
    value_loss,
)
from mbrl_course.ssm.rssm import WorldModelConfig, make_world_model


def _trajectory(H=6, batch=(3, 2), seed=0):
    g = torch.Generator().manual_seed(seed)
    r = torch.randn(H, *batch, generator=g, dtype=torch.float64)
    v = torch.randn(H + 1, *batch, generator=g, dtype=torch.float64)
    c = 0.5 + 0.5 * torch.rand(H, *batch, generator=g, dtype=torch.float64)
    c[2, 0, 0] = 0.0                                                    # an episode end inside the horizon
    return r, v, c


def _n_step(r, v, c, t, n):
    """V_N^n(s_t) by its definition: n rewards discounted by the continuations, then v(s_{t+n})."""
    H = r.shape[0]
    h = min(t + n, H)
    total, discount = torch.zeros_like(r[0]), torch.ones_like(r[0])
    for j in range(t, h):
        total = total + discount * r[j]
        discount = discount * c[j]
    return total + discount * v[h]


@pytest.mark.parametrize("lam", [0.0, 0.4, 0.95, 1.0])
def test_lambda_returns_equal_the_mixture_of_n_step_returns(lam):
    r, v, c = _trajectory()
    H = r.shape[0]
    got = lambda_returns(r, v, c, lam)
    for t in range(H):
        N = H - t
        want = sum((1 - lam) * lam ** (n - 1) * _n_step(r, v, c, t, n) for n in range(1, N)) \
            + lam ** (N - 1) * _n_step(r, v, c, t, N)
        torch.testing.assert_close(got[t], want, rtol=0, atol=1e-12)
    torch.testing.assert_close(lambda_returns_vectorised(r, v, c, lam), got, rtol=0, atol=1e-12)


def test_lambda_zero_is_the_td_target_and_lambda_one_the_bootstrapped_return():
    r, v, c = _trajectory()
    torch.testing.assert_close(lambda_returns(r, v, c, 0.0), r + c * v[1:])
    gamma = 0.9
    H = r.shape[0]
    for t in range(H):
        mc = sum(gamma ** (j - t) * r[j] for j in range(t, H)) + gamma ** (H - t) * v[H]
        torch.testing.assert_close(lambda_returns(r, v, gamma, 1.0)[t], mc)


def test_weights_are_the_cumulative_continuations_and_detached():
    _, _, c = _trajectory()
    c.requires_grad_(True)
    w = discount_weights(c)
    assert not w.requires_grad and w.shape[0] == c.shape[0] + 1
    torch.testing.assert_close(w[0], torch.ones_like(c[0]))
    torch.testing.assert_close(w[3], (c[0] * c[1] * c[2]).detach())
    assert bool((w[3:, 0, 0] == 0).all())                               # after the episode end nothing counts


def test_value_loss_moves_only_the_value_and_actor_loss_reaches_through_the_returns():
    r, v, c = _trajectory()
    r.requires_grad_(True)
    values = torch.randn(r.shape, dtype=torch.float64, requires_grad=True)
    returns = lambda_returns(r, v, c, 0.9)
    w = discount_weights(c)[:-1]
    loss = value_loss(values, returns, w)
    loss.backward()
    assert r.grad is None                                               # the target is a stop-gradient
    torch.testing.assert_close(values.grad, w * (values - returns).detach() / values.numel())
    actor = actor_loss(lambda_returns(r, v, c, 0.9), w)
    (grad_r,) = torch.autograd.grad(actor, r)
    assert grad_r.abs().sum() > 0                                       # the actor learns through the returns
    torch.testing.assert_close(actor, -(w * lambda_returns(r, v, c, 0.9)).mean())


def test_bad_input_is_named():
    r, v, c = _trajectory()
    with pytest.raises(ValueError, match="values: expected shape"):
        lambda_returns(r, v[:-1], c)
    with pytest.raises(ValueError, match="continuation: expected shape"):
        lambda_returns(r, v, c[:-1])
    with pytest.raises(ValueError, match="lam: expected"):
        lambda_returns(r, v, c, 1.5)
    with pytest.raises(ValueError, match="continuation: expected a discount"):
        lambda_returns_vectorised(r, v, 1.2)
    with pytest.raises(ValueError, match="weights: expected"):
        value_loss(r, r, c[:1])


def test_latent_objective_is_the_sum_of_imagined_rewards():
    torch.manual_seed(0)
    model = make_world_model("rssm", WorldModelConfig(action_dim=2, obs_dim=3, deterministic_size=8,
                                                      stochastic_size=4, hidden_size=16, embed_size=8))
    state = model.initial_state(1)
    state, _ = model.observe_step(state, torch.zeros(1, 2), torch.randn(1, 3))
    actions = torch.randn(5, 4, 2)
    objective = latent_return_objective(model, state, generator=torch.Generator().manual_seed(3))
    got = objective(actions)
    want = torch.zeros(5)
    mean_objective = latent_return_objective(model, state, sample=False)
    manual = model.imagine(state.repeat(5), actions=actions, sample=False).rewards.sum(-1)
    torch.testing.assert_close(mean_objective(actions), manual.detach())
    repeat = latent_return_objective(model, state, generator=torch.Generator().manual_seed(3))(actions)
    torch.testing.assert_close(got, repeat)                             # seeded: the same plan scores
    assert got.shape == want.shape and not torch.allclose(got, mean_objective(actions))
    with pytest.raises(ValueError, match="action_sequences: expected shape"):
        objective(actions[0])
    blind = make_world_model("rssm", WorldModelConfig(action_dim=2, obs_dim=3, deterministic_size=8,
                                                      stochastic_size=4, hidden_size=16, reward_head=False))
    with pytest.raises(ValueError, match="reward head"):
        latent_return_objective(blind, state)
