"""The Dyna loop, imagination, MBPO, MBMF's fine-tuning and their command line."""

from __future__ import annotations

import csv

import gymnasium as gym
import numpy as np
import pytest
import torch
from model_doubles import IntegratorModel

from mbrl_course.agents import (
    DynaAgent,
    GreedyActor,
    MBMFFineTuner,
    MBMFFTConfig,
    MBPOConfig,
    MBPOLearner,
    RandomAgent,
    dyna_loop,
    imagine_rollouts,
    make_mbpo,
    mbmf_ft_loop,
    rollout_length,
    run_episode,
)
from mbrl_course.agents.mbpo import mbpo_loop_kwargs
from mbrl_course.cli import main
from mbrl_course.data import ReplayBuffer
from mbrl_course.envs import make_env, termination_fn
from mbrl_course.envs.functions import never_terminates
from mbrl_course.models import GaussianEnsemble
from mbrl_course.rl import PPO, SAC, PolicySample, PPOConfig, SACConfig
from mbrl_course.runs import evaluate, train

F64 = torch.float64


# ---------------------------------------------------------------------- imagination
def constant_policy(value: float):
    def policy(obs):
        action = torch.full((obs.shape[0], 1), value, dtype=obs.dtype)
        return PolicySample(action, action, torch.zeros(obs.shape[0], dtype=obs.dtype))
    return policy


def test_imagined_rollouts_have_the_right_shapes_and_stop_at_termination():
    # i' = i + 0.3 every step; the termination function fires once the first coordinate passes 1
    starts = torch.tensor([[0.0, 5.0], [0.5, 5.0], [0.95, 5.0], [-3.0, 5.0]], dtype=F64)
    horizon = 6

    def passes_one(obs, action, next_obs):
        return next_obs[..., 0] > 1.0

    def reward(obs, action, next_obs):
        return next_obs[..., 0]

    out = imagine_rollouts(IntegratorModel(), constant_policy(0.3), starts, horizon, reward_fn=reward,
                           termination_fn=passes_one)
    assert out.obs.shape == (6, 4, 2) and out.next_obs.shape == (6, 4, 2) and out.action.shape == (6, 4, 1)
    assert out.reward.shape == out.valid.shape == out.terminated.shape == (6, 4)
    # by hand: i_t = i_0 + 0.3 t terminates at the first t with i_0 + 0.3 (t + 1) > 1
    last_step = [3, 1, 0, None]  # the 4th start never gets there within 6 steps
    for n, t_star in enumerate(last_step):
        steps = horizon if t_star is None else t_star + 1
        assert out.valid[:, n].tolist() == [t < steps for t in range(horizon)]
        assert out.terminated[:, n].tolist() == [t == t_star for t in range(horizon)]
        expected = starts[n, 0] + 0.3 * torch.arange(1, steps + 1, dtype=F64)
        assert torch.allclose(out.next_obs[:steps, n, 0], expected)
        assert torch.allclose(out.obs[1:steps, n], out.next_obs[:steps - 1, n])  # a chain, not restarts
    flat = out.transitions()
    assert len(flat) == 4 + 2 + 1 + 6 and int(flat.terminated.sum()) == 3
    assert bool((flat.obs[:, 0] <= 1.0).all())  # nothing continues from a terminal state
    traj = out.trajectories()
    assert traj.ended[:, 3].tolist() == [False] * 5 + [True]  # cut at H: bootstraps, not terminal
    assert not bool(traj.terminated[:, 3].any())


@torch.no_grad()
def constant_delta_ensemble(deltas, num_elites):
    """Member k adds deltas[k] to every state dimension and predicts reward deltas[k], with no noise."""
    K = len(deltas)
    model = GaussianEnsemble(1, 1, ensemble_size=K, hidden_size=4, num_layers=1, num_elites=num_elites, dtype=F64)
    for p in model.parameters():
        p.zero_()
    model.head.bias[:, 0, 0] = torch.tensor(deltas, dtype=F64)
    model.head.bias[:, 0, 1] = torch.tensor(deltas, dtype=F64)
    model.head.bias[:, 0, 2:] = -40.0
    model.max_logvar.fill_(0.5)
    model.min_logvar.fill_(-40.0)
    return model


def test_only_elites_imagine():
    model = constant_delta_ensemble([1.0, 100.0, 2.0, 100.0], num_elites=2)
    model.set_elites(torch.tensor([0.1, 9.0, 0.2, 9.0], dtype=F64))  # members 0 and 2 are the elites
    out = imagine_rollouts(model, constant_policy(0.0), torch.zeros(300, 1, dtype=F64), 4,
                           generator=torch.Generator().manual_seed(0))
    steps = (out.next_obs - out.obs).round(decimals=6)  # (σ ≈ 1e-9: the members are all but deterministic)
    assert set(steps.flatten().tolist()) == {1.0, 2.0}
    assert set(out.reward.round(decimals=6).flatten().tolist()) == {1.0, 2.0}  # the model's own reward


def test_rollout_length_schedule():
    schedule = (1000, 3000, 1, 5)
    assert [rollout_length(t, schedule) for t in (0, 1000, 1500, 2000, 2999, 3000, 9000)] == [1, 1, 2, 3, 4, 5, 5]
    assert rollout_length(10, (0, 0, 2, 7)) == 7


def random_transitions(env_id: str, episodes: int, seed: int = 0) -> ReplayBuffer:
    env = make_env(env_id)
    buffer = ReplayBuffer(env.observation_space.shape[0], env.action_space.shape[0])
    agent = RandomAgent(env.action_space, seed=seed)
    for e in range(episodes):
        run_episode(env, agent, buffer, episode=e, seed=seed)
    return buffer


def test_mbpo_rollouts_respect_the_termination_function():
    # InvertedPendulum-v5 terminates once |pole angle| > 0.2. Imagined rollouts of a fitted model from
    # real states must stop there: a wrong termination function lets them run on from fallen poles.
    env_id = "InvertedPendulum-v5"
    real = random_transitions(env_id, 40)
    config = MBPOConfig.for_budget("smoke")
    config.rollout_schedule, config.rollout_batch_size = (0, 1, 15, 15), 300
    env = make_env(env_id)
    agent = make_mbpo(env, env_id, config, seed=0)
    agent.model_update(real)
    agent.learner.imagine(agent.model, real)
    sim = agent.learner.sim.all()
    fallen = sim.next_obs[:, 1].abs() > 0.2
    assert int(fallen.sum()) > 20  # the imagined poles do fall
    assert bool(sim.terminated[fallen].all())
    assert bool((sim.obs[:, 1].abs() <= 0.2).all())  # no step starts from a fallen pole

    agent.learner.termination_fn = never_terminates  # the bug the check guards against
    agent.learner.sim = None
    agent.learner.imagine(agent.model, real)
    wrong = agent.learner.sim.all()
    assert not bool(wrong.terminated.any()) and bool((wrong.obs[:, 1].abs() > 0.2).any())


# ---------------------------------------------------------------------- the real/imagined ratio
@pytest.mark.parametrize("ratio, batch_size, n_real", [(0.05, 256, 13), (0.5, 10, 5), (0.0, 8, 0), (1.0, 8, 8)])
def test_real_ratio_is_honoured_exactly(ratio, batch_size, n_real):
    sac = SAC(2, [-1.0], [1.0], SACConfig(hidden_sizes=(8,)), seed=0)
    model = IntegratorModel(dtype=torch.float32)
    agent = MBPOLearner(sac, reward_fn=lambda o, a, n: n[..., 0], batch_size=batch_size, real_ratio=ratio,
                        rollout_batch_size=50, rollout_schedule=(0, 1, 2, 2), seed=0)
    real = ReplayBuffer(2, 1)
    real.add_batch(torch.zeros(30, 2), torch.zeros(30, 1), torch.full((30,), 7.0), torch.zeros(30, 2),
                   torch.zeros(30, dtype=torch.bool))  # real rewards are 7, imagined ones are not
    assert agent.split_batch() == (batch_size, 0)  # D_sim still empty: all real
    assert bool((agent.policy_batch(model, real).reward == 7.0).all())
    agent.imagine(model, real)
    for _ in range(5):
        batch = agent.policy_batch(model, real)
        assert len(batch) == batch_size and int((batch.reward == 7.0).sum()) == n_real
    with pytest.raises(ValueError, match="real_ratio"):
        MBPOLearner(sac, real_ratio=1.5)


# ---------------------------------------------------------------------- the loop's schedule
class CountingModel:
    """A model that only counts its fits (|D_real| at each)."""

    def __init__(self):
        self.fits = []

    def train(self):
        pass

    def eval(self):
        pass

    def fit(self, data, **options):
        self.fits.append(len(data))


class CountingSAC(SAC):
    def __init__(self):
        super().__init__(3, [-2.0], [2.0], SACConfig(hidden_sizes=(4,)), seed=0)
        self.sizes = []

    def update(self, batch):
        self.sizes.append(len(batch))
        return {}


class CountingLearner(MBPOLearner):
    """MBPO's learner whose imagination only counts (|D_real| at each round)."""

    def __init__(self):
        super().__init__(CountingSAC(), batch_size=4, rollout_every=2)
        self.imaginings = []

    def imagine(self, model, real_buffer):
        self.imaginings.append(len(real_buffer))
        self.imagined_at = len(real_buffer)
        return 0


def counting_agent() -> DynaAgent:
    return DynaAgent(CountingLearner(), CountingModel(), model_every=5, updates_per_step=3)


def test_dyna_loop_follows_its_schedule():
    env = make_env("Pendulum-v1", max_episode_steps=12)
    agent = counting_agent()
    buffer = ReplayBuffer(3, 1)
    seed_agent = RandomAgent(env.action_space, seed=5)
    results = dyna_loop(env, agent, buffer, episodes=3, seed_steps=10, seed=0, seed_agent=seed_agent)
    assert [r.steps for r in results] == [12, 12, 12] and len(buffer) == 36 and agent.env_steps == 36
    assert agent.model.fits == [10, 15, 20, 25, 30, 35]
    assert agent.learner.imaginings == list(range(10, 37, 2))
    sizes = agent.learner.algo.sizes
    assert len(sizes) == 3 * 27 and set(sizes) == {4}
    # the first 10 actions were the seed agent's uniform draws
    replay = RandomAgent(env.action_space, seed=5)
    expected = np.stack([replay.act(None) for _ in range(10)])
    assert np.allclose(buffer.all().action[:10].numpy(), expected)


def test_dyna_loop_stops_at_max_env_steps():
    env = make_env("Pendulum-v1", max_episode_steps=12)
    agent = counting_agent()
    results = dyna_loop(env, agent, ReplayBuffer(3, 1), episodes=5, seed_steps=5, max_env_steps=30, seed=0)
    assert [r.steps for r in results] == [12, 12, 6] and agent.env_steps == 30
    assert [r.cut for r in results] == [False, False, True]  # the budget cut the third episode short
    results = dyna_loop(make_env("Pendulum-v1", max_episode_steps=10), counting_agent(),
                        ReplayBuffer(3, 1), episodes=5, max_env_steps=20, seed=0)
    assert [r.cut for r in results] == [False, False]  # the budget ran out just as the env ended the episode


# ---------------------------------------------------------------------- MBPO learns
def random_policy_returns(env_id: str, seed: int, episodes: range) -> float:
    env = make_env(env_id)
    agent = RandomAgent(env.action_space, seed=123)
    return float(np.mean([run_episode(env, agent, None, episode=e, seed=seed).ret for e in episodes]))


@pytest.mark.slow
def test_mbpo_beats_a_random_policy_on_pendulum_within_the_smoke_budget():
    # calibrated once on seeds 0, 1, 2: after 7 episodes (1,400 env steps) the greedy policy scores about
    # -620, -760, -160 on the evaluation episodes, a random policy -1610, -1450, -1150 on the same ones
    env = make_env("Pendulum-v1")
    config = MBPOConfig.for_budget("smoke")
    agent = make_mbpo(env, "Pendulum-v1", config, seed=0)
    buffer = ReplayBuffer(3, 1)
    dyna_loop(env, agent, buffer, episodes=7, seed=0, **mbpo_loop_kwargs(config))
    assert len(agent.learner.sim) > 0 and agent.last_fit is not None
    evaluation = range(100, 103)
    greedy = GreedyActor(agent.learner)
    learned = float(np.mean([run_episode(env, greedy, None, episode=e, seed=0).ret for e in evaluation]))
    random = random_policy_returns("Pendulum-v1", 0, evaluation)
    assert learned > random + 400, (learned, random)


# ---------------------------------------------------------------------- MBMF's fine-tuning
class LinearExpert:
    """A stand-in MPC expert with known labels: u* = clip(−(θ̇ + 2 sin θ), −2, 2)."""

    def __init__(self):
        self.labelled = 0

    def act(self, obs):
        self.labelled += 1
        return np.clip([-(obs[2] + 2.0 * obs[1])], -2.0, 2.0).astype(np.float32)

    def reset(self):
        pass

    def update(self, buffer):
        return None


def test_dagger_grows_its_data_set_with_expert_labels_of_the_visited_states():
    env = make_env("Pendulum-v1", max_episode_steps=30)
    config = MBMFFTConfig(bc_steps=300, episodes_per_update=1, value_warmup_epochs=1)
    ppo = PPO(3, env.action_space.low, env.action_space.high, PPOConfig(hidden_sizes=(32,), init_log_std=-1.5), seed=0)
    expert = LinearExpert()
    agent = MBMFFineTuner(expert, ppo, config, seed=0)
    buffer = ReplayBuffer(3, 1)
    sizes = []
    results = mbmf_ft_loop(env, agent, buffer, episodes=6, seed_episodes=1, mpc_episodes=2, dagger_iterations=3,
                           seed=0, on_episode=lambda r: sizes.append(len(agent.bc_obs)))
    # D_bc: nothing from the random episode, the expert's own 30 steps, then 30 labelled states per DAgger round
    assert sizes == [0, 30, 60, 90, 120, 120]
    assert len(buffer) == 6 * 30 and len(results) == 6
    real = buffer.all()
    dagger_states = real.obs[60:150]  # the states the cloned policy visited in episodes 2-4
    assert torch.allclose(agent.bc_obs[30:], dagger_states)
    labels = torch.tensor(np.stack([LinearExpert().act(s) for s in dagger_states.numpy()]))
    assert torch.allclose(agent.bc_actions[30:], labels)
    # the policy drove those episodes (its actions are not the expert's) and was cloned towards the expert
    assert not torch.allclose(real.action[60:150], labels, atol=1e-3)
    with torch.no_grad():
        cloned = agent.policy.to_env(agent.policy(agent.bc_obs)[0])
    spread = agent.bc_actions.var()
    assert float((cloned - agent.bc_actions).square().mean()) < 0.1 * float(spread)
    assert ppo.updates == 1  # the last episode was PPO's



def test_mbmf_ft_warns_when_the_run_ends_before_ppo_starts():
    env = make_env("Pendulum-v1", max_episode_steps=10)
    config = MBMFFTConfig(bc_steps=10)
    ppo = PPO(3, env.action_space.low, env.action_space.high, PPOConfig(hidden_sizes=(8,)), seed=0)
    agent = MBMFFineTuner(LinearExpert(), ppo, config, seed=0)
    with pytest.warns(UserWarning, match="ends before PPO starts"):
        mbmf_ft_loop(env, agent, ReplayBuffer(3, 1), episodes=3, seed_episodes=1, mpc_episodes=2,
                     dagger_iterations=1, seed=0)


# ---------------------------------------------------------------------- runs on disk and the command line
def test_sac_resume_continues_the_run_exactly(tmp_path):
    kw = dict(seed=0, tier="smoke", record=False, progress=False, env_kwargs={"max_episode_steps": 40},
              overrides={"seed_steps": 40})
    full = train("sac", "Pendulum-v1", episodes=3, out=tmp_path / "full", **kw)
    train("sac", "Pendulum-v1", episodes=2, out=tmp_path / "part", **kw)
    resumed = train("sac", "Pendulum-v1", episodes=3, out=tmp_path / "part", resume=True, **kw)
    assert [r["return"] for r in resumed] == [r["return"] for r in full]
    assert [int(r["env_steps"]) for r in resumed] == [40, 80, 120]


def test_mbpo_checkpoint_holds_the_agent_and_resume_reimagines_d_sim(tmp_path):
    kw = dict(seed=0, tier="smoke", record=False, progress=False, env_kwargs={"max_episode_steps": 30},
              overrides={"seed_steps": 30, "model_every": 30, "rollout_every": 15, "updates_per_step": 2})
    train("mbpo", "Pendulum-v1", episodes=2, out=tmp_path, **kw)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    state = ckpt["agent"]
    assert state["env_steps"] == 60 and state["model"] is not None
    sac = state["learner"]["algo"]  # MBPO's learner holds SAC and its own generator
    assert {"actor", "critic", "critic_target", "log_alpha", "optimizer", "generator"} <= set(sac)
    assert sac["optimizer"]["state"] and "generator" in state["learner"]  # Adam's moments are kept
    kept = ReplayBuffer(3, 1)
    kept.load_state_dict(ckpt["buffer"])
    assert len(kept) == 60  # D_real; D_sim is not stored
    rows = train("mbpo", "Pendulum-v1", episodes=3, out=tmp_path, resume=True, **kw)
    assert [r["episode"] for r in rows] == [0, 1, 2] and int(rows[-1]["env_steps"]) == 90
    assert len(evaluate(tmp_path, episodes=1, progress=False)) == 1


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    real_update = SAC.update

    def update_that_diverges(self, batch):
        if self.updates == 100:  # in the third episode: 3 updates at step 20, then 60 per 20-step episode
            with torch.no_grad():
                next(self.critic.parameters()).fill_(float("nan"))
        return real_update(self, batch)

    monkeypatch.setattr(SAC, "update", update_that_diverges)
    kw = dict(seed=0, tier="smoke", record=False, progress=False, env_kwargs={"max_episode_steps": 20},
              overrides={"seed_steps": 20, "updates_per_step": 3})
    with pytest.raises(FloatingPointError, match="last good checkpoint"):
        train("sac", "Pendulum-v1", episodes=4, out=tmp_path, **kw)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert ckpt["episodes_done"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["agent"]["learner"]["algo"]["critic"].values())


def test_bad_input_is_refused_with_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="Box"):
        make_mbpo(gym.make("CartPole-v1"), "Pendulum-v1", MBPOConfig.for_budget("smoke"))
    for overrides, match in [({"real_ratio": 1.5}, "real_ratio"), ({"rollout_schedule": "1,2,3"}, "rollout_schedule"),
                             ({"learned_reward": "maybe"}, "learned_reward"), ({"rollout_lenght": 3}, "rollout_lenght")]:
        with pytest.raises(ValueError, match=match):
            train("mbpo", "Pendulum-v1", episodes=1, out=tmp_path / "x", tier="smoke", overrides=overrides,
                  record=False, progress=False)


@pytest.mark.slow
def test_command_line_trains_dyna_agents_and_mbmf_ft_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MBRL_COURSE_BUDGET", "smoke")
    runs = {  # (rollout.gif costs seconds to write: one run records it)
        "mbpo": ["--set", "updates_per_step=2", "--set", "rollout_every=100"],
        "sac": ["--no-render"],
        "mbmf-ft": ["--set", "mpc_episodes=2", "--set", "dagger_iterations=1", "--set", "expert.planner.population=50",
                    "--no-render"],
    }
    for algo, extra in runs.items():
        out = tmp_path / algo
        episodes = "4" if algo == "mbmf-ft" else "2"
        assert main(["train", algo, "--env", "Pendulum-v1", "--episodes", episodes, "--seed", "0", "--out", str(out),
                     "--quiet", *extra]) == 0
        outputs = ("returns.csv", "learning_curve.png", "checkpoint.pt") + (("rollout.gif",) if algo == "mbpo" else ())
        for name in outputs:
            assert (out / name).stat().st_size > 0, (algo, name)
        with open(out / "returns.csv") as fh:
            rows = list(csv.DictReader(fh))
        assert [int(r["env_steps"]) for r in rows] == [200 * (i + 1) for i in range(int(episodes))]
        assert all(-3300 < float(r["return"]) <= 0 for r in rows)  # Pendulum: −16.3 ≤ g ≤ 0 per step
    assert main(["train", "sac", "--env", "Pendulum-v1", "--episodes", "3", "--out", str(tmp_path / "sac"),
                 "--resume", "--no-render", "--quiet"]) == 0
    with open(tmp_path / "sac" / "returns.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 3
    assert main(["evaluate", str(tmp_path / "mbpo"), "--episodes", "1", "--quiet"]) == 0
    assert "return:" in capsys.readouterr().out
    compare = tmp_path / "compare.png"
    assert main(["compare", str(tmp_path / "mbpo"), str(tmp_path / "sac"), str(tmp_path / "mbmf-ft"),
                 "--out", str(compare)]) == 0
    assert compare.stat().st_size > 0


def test_command_line_reports_a_diverging_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MBRL_COURSE_BUDGET", "smoke")

    def diverged(*args, **kwargs):
        raise FloatingPointError("SAC: a loss became NaN/inf -- the last good checkpoint is kept in x")

    monkeypatch.setattr("mbrl_course.runs.train", diverged)
    assert main(["train", "sac", "--env", "Pendulum-v1", "--out", str(tmp_path), "--quiet"]) == 1
    assert "last good checkpoint" in capsys.readouterr().err


def test_termination_function_of_the_env_is_the_one_mbpo_uses():
    env = make_env("InvertedPendulum-v5")
    agent = make_mbpo(env, "InvertedPendulum-v5", MBPOConfig.for_budget("smoke"))
    upright, fallen = torch.zeros(1, 4), torch.tensor([[0.0, 0.25, 0.0, 0.0]])
    action = torch.zeros(1, 1)
    assert agent.learner.termination_fn(upright, action, fallen).tolist() == [True]
    assert agent.learner.termination_fn(upright, action, upright).tolist() == [False]
    assert repr(agent.learner.termination_fn) == repr(termination_fn("InvertedPendulum-v5"))


@pytest.mark.gpu
def test_mbpo_and_ppo_run_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    env = make_env("Pendulum-v1", max_episode_steps=30)
    config = MBPOConfig.for_budget("smoke")
    config.seed_steps, config.model_every, config.rollout_every = 30, 30, 10
    agent = make_mbpo(env, "Pendulum-v1", config, device="cuda", seed=0)
    buffer = ReplayBuffer(3, 1, device="cuda")
    dyna_loop(env, agent, buffer, episodes=2, seed=0, **mbpo_loop_kwargs(config))
    assert agent.learner.sim.device.type == "cuda" and next(agent.learner.algo.critic.parameters()).device.type == "cuda"
    ppo = PPO(3, env.action_space.low, env.action_space.high, PPOConfig(hidden_sizes=(8,)), device="cuda", seed=0)
    agent.learner.algo = ppo  # an on-policy learner on imagined trajectories, same device
    traj = agent.learner.rollouts(agent.model, buffer, horizon=4).trajectories()
    assert traj.obs.device.type == "cuda" and not bool(torch.isnan(ppo.update(traj)["policy_loss"]))


# ---------------------------------------------------------------------- the loop is the slide
def code_lines(function) -> int:
    """Lines of code of a function's body: no docstring, comments or blank lines."""
    import ast
    import inspect
    import textwrap

    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    body = tree.body[0].body
    if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    lines = set()
    for node in body:
        for sub in ast.walk(node):
            if hasattr(sub, "lineno"):
                lines.update(range(sub.lineno, getattr(sub, "end_lineno", sub.lineno) + 1))
    return len(lines)


def test_the_dyna_loop_is_as_short_as_the_slide():
    assert code_lines(dyna_loop) <= 25


class EpisodicLearner:
    """A learner with no D_sim: it only counts, at the end of each episode, what it was given."""

    episodic = True

    def __init__(self):
        self.updates = []

    def act(self, obs, deterministic=False):
        return np.zeros(1, dtype=np.float32)

    def reset(self):
        pass

    def policy_update(self, model, real_buffer):
        self.updates.append((model, len(real_buffer)))

    def check_finite(self):
        pass


def test_an_episodic_learner_with_no_d_sim_plugs_into_the_dyna_loop():
    env = make_env("Pendulum-v1", max_episode_steps=7)
    model = CountingModel()
    learner = EpisodicLearner()
    agent = DynaAgent(learner, model, updates_per_step=2)
    dyna_loop(env, agent, ReplayBuffer(3, 1), episodes=3, seed=0)
    # learning at the end of each episode only: the model refit, then K = 2 policy updates with f_ψ and D_real
    assert model.fits == [7, 14, 21]
    assert learner.updates == [(model, 7), (model, 7), (model, 14), (model, 14), (model, 21), (model, 21)]
