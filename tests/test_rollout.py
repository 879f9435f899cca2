"""The model contract and the one rollout primitive: gradients, closed forms, termination, every model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mbrl_course.envs import dynamics_fn, make_env, reward_fn
from mbrl_course.models import (
    DeltaMLP,
    DynamicsModel,
    GaussianEnsemble,
    PointMass,
    Propagator,
    TrueDynamics,
    imagine_returns,
    rollout,
)

F64 = torch.float64


class LinearModel:
    """i' = A i + B u, a model of the contract with known dynamics (no learned reward)."""

    predict_reward = False
    device = torch.device("cpu")
    dtype = F64

    def __init__(self, A: torch.Tensor, B: torch.Tensor):
        self.A, self.B = A, B
        self.obs_dim, self.act_dim = B.shape

    def propagator(self, **options) -> Propagator:
        model = self

        class Step(Propagator):
            def step(self, obs, action):
                return obs @ model.A.T + action @ model.B.T, None

        return Step()


def quadratic_reward(Q: torch.Tensor, R: torch.Tensor):
    def reward(obs, action, next_obs):
        return -((next_obs @ Q) * next_obs).sum(-1) - ((action @ R) * action).sum(-1)
    return reward


def imagined_return(model, gains: torch.Tensor, start: torch.Tensor, horizon: int, reward, **kw) -> torch.Tensor:
    """Σ_t g_t of one policy-driven rollout with u = −K i, summed over the start states."""
    out = rollout(model, start, policy=lambda obs: -obs @ gains.T, horizon=horizon, reward_fn=reward, **kw)
    return out.returns().sum()


def test_the_gradient_of_an_imagined_return_is_the_closed_form_on_a_scalar_linear_system():
    # i' = a i + b u, u = −k i, g = −(q i'² + r u²): i_t = m^{t−1} i_1 with m = a − b k, so
    # J(k) = −i_1² Σ_{t=1}^{H} (q m^{2t} + r k² m^{2t−2}) and dJ/dk follows term by term.
    a, b, q, r, i1, H = 0.9, 0.5, 1.0, 0.1, 1.3, 7
    k = torch.tensor([[0.4]], dtype=F64, requires_grad=True)
    model = LinearModel(torch.tensor([[a]], dtype=F64), torch.tensor([[b]], dtype=F64))
    J = imagined_return(model, k, torch.tensor([[i1]], dtype=F64), H,
                        quadratic_reward(torch.tensor([[q]], dtype=F64), torch.tensor([[r]], dtype=F64)))
    J.backward()
    kk = 0.4
    m = a - b * kk
    t = np.arange(1, H + 1)
    J_closed = -i1 ** 2 * np.sum(q * m ** (2 * t) + r * kk ** 2 * m ** (2 * t - 2))
    dm = -b
    dJ_closed = -i1 ** 2 * np.sum(q * 2 * t * m ** (2 * t - 1) * dm + 2 * r * kk * m ** (2 * t - 2)
                                  + r * kk ** 2 * (2 * t - 2) * m ** (2 * t - 3) * dm)
    assert float(J.detach()) == pytest.approx(J_closed, rel=1e-12)
    assert float(k.grad) == pytest.approx(dJ_closed, rel=1e-10)


def finite_difference(f, x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    grad = torch.zeros_like(x)
    for i in range(x.numel()):
        step = torch.zeros_like(x).flatten()
        step[i] = eps
        step = step.view_as(x)
        grad.view(-1)[i] = (f(x + step) - f(x - step)) / (2 * eps)
    return grad


def test_the_gradient_through_a_linear_system_matches_finite_differences_in_several_dimensions():
    gen = torch.Generator().manual_seed(0)
    A = torch.eye(3, dtype=F64) + 0.1 * torch.randn(3, 3, generator=gen, dtype=F64)
    B = torch.randn(3, 2, generator=gen, dtype=F64)
    Q, R = torch.diag(torch.tensor([1.0, 0.5, 2.0], dtype=F64)), 0.1 * torch.eye(2, dtype=F64)
    starts = torch.randn(5, 3, generator=gen, dtype=F64)
    gains = (0.1 * torch.randn(2, 3, generator=gen, dtype=F64)).requires_grad_()
    model = LinearModel(A, B)
    J = imagined_return(model, gains, starts, 10, quadratic_reward(Q, R))
    (grad,) = torch.autograd.grad(J, gains)
    with torch.no_grad():
        fd = finite_difference(lambda g: imagined_return(model, g, starts, 10, quadratic_reward(Q, R)), gains.detach())
    torch.testing.assert_close(grad, fd, rtol=1e-6, atol=1e-8)


def test_gradients_reach_a_policy_through_a_sampling_ensemble():
    # with the generator re-seeded, TS∞'s deal and noise are fixed: the return is a smooth function of the gains
    torch.manual_seed(0)
    model = GaussianEnsemble(2, 1, ensemble_size=3, hidden_size=16, num_layers=2, dtype=F64)
    model.eval()
    starts = torch.randn(4, 2, dtype=F64)
    reward = quadratic_reward(torch.eye(2, dtype=F64), 0.1 * torch.eye(1, dtype=F64))

    def J(gains):
        return imagined_return(model, gains, starts, 5, reward, generator=torch.Generator().manual_seed(1),
                               propagate={"propagation": "ts_inf", "members": "all"})

    gains = torch.tensor([[0.3, -0.2]], dtype=F64, requires_grad=True)
    (grad,) = torch.autograd.grad(J(gains), gains)
    with torch.no_grad():
        fd = finite_difference(J, gains.detach())
    assert bool(grad.abs().sum() > 0)
    torch.testing.assert_close(grad, fd, rtol=1e-5, atol=1e-8)


def test_action_and_policy_driven_rollouts_agree_and_termination_freezes_the_state():
    model = LinearModel(torch.eye(1, dtype=F64), torch.eye(1, dtype=F64))  # i' = i + u
    starts = torch.tensor([[0.0], [0.5], [0.95], [-3.0]], dtype=F64)
    actions = torch.full((4, 6, 1), 0.3, dtype=F64)

    def passes_one(obs, action, next_obs):
        return next_obs[..., 0] > 1.0

    def reward(obs, action, next_obs):
        return next_obs[..., 0]

    by_actions = rollout(model, starts, actions=actions, reward_fn=reward, termination_fn=passes_one)
    by_policy = rollout(model, starts, policy=lambda obs: torch.full_like(obs, 0.3), horizon=6, reward_fn=reward,
                        termination_fn=passes_one)
    for name in ("obs", "action", "reward", "terminated", "alive"):
        torch.testing.assert_close(getattr(by_actions, name), getattr(by_policy, name))
    out = by_actions
    assert out.obs.shape == (7, 4, 1) and out.reward.shape == out.alive.shape == (6, 4)
    last_step = [3, 1, 0, None]  # by hand: i_0 + 0.3 (t + 1) > 1 first at t = last_step
    for n, t_star in enumerate(last_step):
        steps = 6 if t_star is None else t_star + 1
        assert out.alive[:, n].tolist() == [t < steps for t in range(6)]
        assert out.terminated[:, n].tolist() == [t == t_star for t in range(6)]
        frozen = out.obs[steps:, n, 0]
        assert bool((frozen == out.obs[steps, n, 0]).all())  # the dead stay where they ended
    expected = sum(starts[0, 0] + 0.3 * t for t in range(1, 5))  # four steps of reward, then nothing
    assert float(out.returns()[0]) == pytest.approx(float(expected))
    assert float(out.returns(0.5)[1]) == pytest.approx(0.8 + 0.5 * 1.1)


def test_a_nonfinite_prediction_ends_the_trajectory_without_counting_the_step():
    class Blows(Propagator):
        def step(self, obs, action):
            nxt = obs + 1.0
            return torch.where(obs > 1.5, torch.nan, nxt), None

    class Model(LinearModel):
        def propagator(self, **options):
            return Blows()

    model = Model(torch.eye(1, dtype=F64), torch.eye(1, dtype=F64))
    out = rollout(model, torch.tensor([[0.0]], dtype=F64), actions=torch.zeros(1, 4, 1, dtype=F64),
                  reward_fn=lambda o, a, n: n[..., 0], stop_nonfinite=True)
    assert out.alive[:, 0].tolist() == [True, True, False, False]
    assert bool(torch.isfinite(out.obs).all()) and float(out.returns()[0]) == pytest.approx(3.0)


def test_every_model_of_the_course_satisfies_the_contract():
    torch.manual_seed(0)
    ensemble = GaussianEnsemble(3, 1, ensemble_size=4, hidden_size=8, num_layers=1, num_elites=2)
    delta = DeltaMLP(3, 1, hidden_sizes=(8,))
    true = TrueDynamics("Pendulum-v1")
    for model in (ensemble, delta, true):
        assert isinstance(model, DynamicsModel)
    obs, action = torch.randn(5, 3), torch.rand(5, 1)
    # the ensemble's predictive distribution is the uniform mixture of its elite members' Gaussians
    dist = ensemble.next_state_distribution(obs, action)
    mean, aleatoric, epistemic = ensemble.mixture_moments(obs, action, members="elites")
    torch.testing.assert_close(dist.mean, mean)
    torch.testing.assert_close(dist.variance, aleatoric + epistemic, rtol=1e-5, atol=1e-6)
    assert dist.event_shape == (4,)  # [i', g]
    # deterministic models: a point mass on their step
    torch.testing.assert_close(delta.next_state_distribution(obs, action).mean, delta(obs, action))
    point = true.next_state_distribution(obs, action)
    assert isinstance(point, PointMass) and bool((point.variance == 0).all())
    torch.testing.assert_close(point.mean, dynamics_fn("Pendulum-v1")(obs, action))
    assert float(point.log_prob(point.mean)[0]) == 0.0 and float(point.log_prob(point.mean + 1)[0]) == -np.inf
    assert true.fit(None).epochs_run == 0  # nothing to learn


def test_true_dynamics_rollouts_reproduce_the_real_env():
    env = make_env("Pendulum-v1")
    obs, _ = env.reset(seed=3)
    actions = np.random.default_rng(0).uniform(-2, 2, size=(20, 1)).astype(np.float32)
    real = [obs]
    for u in actions:
        obs, *_ = env.step(u)
        real.append(obs)
    out = rollout(TrueDynamics("Pendulum-v1", dtype=F64), torch.as_tensor(real[0], dtype=F64)[None],
                  actions=torch.as_tensor(actions, dtype=F64)[None], reward_fn=reward_fn("Pendulum-v1"))
    np.testing.assert_allclose(out.obs[:, 0].numpy(), np.stack(real), atol=1e-5)


def test_imagine_returns_with_true_dynamics_equals_the_rollout_return():
    starts = torch.zeros(3)
    actions = torch.rand(6, 5, 1) * 4 - 2
    model = TrueDynamics("Pendulum-v1")
    returns = imagine_returns(model, starts, actions, reward_fn=reward_fn("Pendulum-v1"), particles=9,
                              discount=0.9)
    direct = rollout(model, starts.expand(6, -1), actions=actions, reward_fn=reward_fn("Pendulum-v1")).returns(0.9)
    torch.testing.assert_close(returns, direct)


def test_rollout_arguments_are_checked():
    model = TrueDynamics("Pendulum-v1")
    with pytest.raises(ValueError, match="exactly one"):
        rollout(model, torch.zeros(2, 3), reward_fn=reward_fn("Pendulum-v1"))
    with pytest.raises(ValueError, match="horizon"):
        rollout(model, torch.zeros(2, 3), policy=lambda o: o[:, :1], reward_fn=reward_fn("Pendulum-v1"))
    with pytest.raises(ValueError, match="reward_fn"):
        rollout(model, torch.zeros(2, 3), actions=torch.zeros(2, 4, 1))
    with pytest.raises(ValueError, match="actions"):
        rollout(model, torch.zeros(2, 3), actions=torch.zeros(3, 4, 1), reward_fn=reward_fn("Pendulum-v1"))


@pytest.mark.gpu
def test_policy_gradients_through_an_ensemble_agree_on_cuda_and_cpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    torch.manual_seed(0)
    cpu_model = GaussianEnsemble(2, 1, ensemble_size=3, hidden_size=16, num_layers=2, dtype=F64).eval()
    gpu_model = GaussianEnsemble(2, 1, ensemble_size=3, hidden_size=16, num_layers=2, dtype=F64, device="cuda")
    gpu_model.load_state_dict(cpu_model.state_dict())
    gpu_model.eval()
    starts = torch.randn(4, 2, dtype=F64)
    grads = []
    for model, device in ((cpu_model, "cpu"), (gpu_model, "cuda")):
        gains = torch.tensor([[0.3, -0.2]], dtype=F64, device=device, requires_grad=True)
        reward = quadratic_reward(torch.eye(2, dtype=F64, device=device), 0.1 * torch.eye(1, dtype=F64, device=device))
        J = imagined_return(model, gains, starts.to(device), 5, reward,
                            propagate={"propagation": "expectation", "members": "all"})
        grads.append(torch.autograd.grad(J, gains)[0].cpu())
    torch.testing.assert_close(grads[0], grads[1])


def test_the_true_dynamics_plug_into_both_loops_like_a_learned_model():
    from mbrl_course.agents import DynaAgent, MPCAgent, dyna_loop, mpc_loop
    from mbrl_course.data import ReplayBuffer
    from mbrl_course.planning import CEM

    env = make_env("Pendulum-v1", max_episode_steps=15)
    planner = CEM(horizon=5, action_low=[-2.0], action_high=[2.0], population=32, elites=4, iterations=2, seed=0,
                  keep_history=False)
    mpc = MPCAgent(TrueDynamics("Pendulum-v1"), planner, reward_fn=reward_fn("Pendulum-v1"), seed=0)
    results = mpc_loop(env, mpc, ReplayBuffer(3, 1), episodes=2, seed=0)
    assert [r.steps for r in results] == [15, 15] and mpc.last_fit.epochs_run == 0
    mpc.load_state_dict(mpc.state_dict())  # a checkpoint of an oracle holds its generators only

    class Still:  # a learner that never moves, to watch the loop fit the model
        episodic = False

        def act(self, obs, deterministic=False):
            return np.zeros(1, dtype=np.float32)

        def reset(self):
            pass

        def policy_update(self, model, real_buffer):
            assert model is dyna.model

        def check_finite(self):
            pass

    dyna = DynaAgent(Still(), TrueDynamics("Pendulum-v1"), model_every=5)
    dyna_loop(env, dyna, ReplayBuffer(3, 1), episodes=1, seed=0)
    assert dyna.fitted_at == 11 and dyna.last_fit.epochs_run == 0  # fits at steps 1, 6, 11
