"""Planning calls captured in CUDA graphs: the same plans as eager, and a safe fallback everywhere else."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mbrl_course.agents import MPCAgent
from mbrl_course.data import ReplayBuffer
from mbrl_course.envs import make_env, reward_fn
from mbrl_course.models import GaussianEnsemble, imagine_returns
from mbrl_course.planning import CEM
from mbrl_course.planning.graphs import CapturedPlan


def mpc_agent(device: str, cuda_graph: bool) -> MPCAgent:
    torch.manual_seed(0)
    model = GaussianEnsemble(3, 1, ensemble_size=5, hidden_size=32, num_layers=2, num_elites=4, device=device).eval()
    planner = CEM(horizon=8, action_low=[-2.0], action_high=[2.0], population=64, elites=8, iterations=3,
                  device=device, seed=0, keep_history=False)
    return MPCAgent(model, planner, reward_fn=reward_fn("Pendulum-v1"), particles=5, device=device, seed=0,
                    fit_kwargs={"epochs": 2}, cuda_graph=cuda_graph)


def test_on_cpu_the_captured_plan_is_the_eager_plan():
    agent, reference = mpc_agent("cpu", True), mpc_agent("cpu", False)
    assert agent.captured is None  # CUDA graphs exist on CUDA only
    obs = np.array([-1.0, 0.0, 0.3], dtype=np.float32)
    for _ in range(3):
        np.testing.assert_array_equal(agent.act(obs), reference.act(obs))
    planner = reference.planner
    captured = CapturedPlan(planner, reference._objective_for, generators=[reference.generator])
    plan = captured(torch.as_tensor(obs))
    assert captured.mode == "new" and plan.shape == (8, 1)  # passes straight to planner.plan off CUDA


def test_a_planning_state_with_nan_is_refused_before_planning():
    agent = mpc_agent("cpu", True)
    with pytest.raises(ValueError, match="obs"):
        agent.act(np.array([np.nan, 0.0, 0.0], dtype=np.float32))


def test_imagine_returns_without_its_check_gives_the_same_returns():
    torch.manual_seed(0)
    model = GaussianEnsemble(3, 1, ensemble_size=3, hidden_size=16, num_layers=1).eval()
    actions = torch.rand(10, 6, 1) * 4 - 2
    kw = dict(reward_fn=reward_fn("Pendulum-v1"), particles=4)
    checked = imagine_returns(model, torch.zeros(3), actions, generator=torch.Generator().manual_seed(1), **kw)
    unchecked = imagine_returns(model, torch.zeros(3), actions, generator=torch.Generator().manual_seed(1),
                                check=False, **kw)
    assert torch.equal(checked, unchecked)


@pytest.mark.gpu
def test_planning_in_a_cuda_graph_equals_eager_planning_and_is_captured_again_after_a_refit():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    graphed, eager = mpc_agent("cuda", True), mpc_agent("cuda", False)
    env = make_env("Pendulum-v1", max_episode_steps=20)
    buffer = ReplayBuffer(3, 1, device="cuda")
    obs, _ = env.reset(seed=0)
    for step in range(20):
        action = graphed.act(obs)
        np.testing.assert_array_equal(action, eager.act(obs))
        assert graphed.captured.mode == "graph", graphed.captured.reason
        next_obs, reward, terminated, truncated, _ = env.step(action)
        buffer.add(obs, action, float(reward), next_obs, bool(terminated), truncated=bool(truncated))
        obs = next_obs
        if step == 9:  # a refit replaces what the graph reads: the next plan captures and checks again
            graphed.update(buffer)
            eager.update(buffer)
            assert graphed.captured.mode == "new"
