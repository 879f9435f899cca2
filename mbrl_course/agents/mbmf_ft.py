"""MBMF's model-free fine-tuning (Nagabandi et al., 2018): hand the MPC controller over to a policy.

MBMF closes the lecture's MPC family in three phases, all on the real env:

1. **MPC.** MBMF's model-based controller (delta network f_ψ + random shooting, :func:`make_mbmf`)
   runs :func:`~mbrl_course.agents.mpc.mpc_loop`'s episodes: act by planning, grow D_real, refit f_ψ.
   Its own (i, u) pairs start the imitation data set D_bc.
2. **DAgger** (Ross et al., 2011). A Gaussian policy π_θ(ũ | i) = N(m_θ(i), σ²) is fit by behaviour
   cloning, θ := argmin_θ mean_{(i, u*) ∈ D_bc} ‖m_θ(i) − ũ*‖²  (ũ* = the expert's action in the
   policy's normalised units). Then, repeatedly: π_θ (its mean) drives an episode, the MPC expert
   labels every state the policy visited, u*_t = MPC(i_t), D_bc := D_bc ∪ {(i_t, u*_t)}, refit θ.
   The expert's labels on the policy's own states correct the drift of plain behaviour cloning.
3. **PPO.** :class:`~mbrl_course.rl.PPO` starts from the cloned π_θ and fine-tunes it on real
   episodes (``episodes_per_update`` episodes per update); its critic V_φ is warmed up on the first
   batch before the first policy step, so the first updates refine the cloned controller instead
   of undoing it.

:func:`mbmf_ft_loop` is the lecture's two loops in turn, not a third: the MPC loop for phase 1, then
the Dyna loop with :class:`MBMFFineTuner` as its (episodic) learner for phases 2 and 3 — its policy
update is DAgger's relabel-and-refit or PPO's step, and it needs no model. One row of ``returns.csv``
per episode, so one learning curve shows the MPC's early return, the cloned policy taking it over, and PPO's
fine-tuning after it (``benchmarks/mbmf_finetune.py`` measures the three).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from mbrl_course._checks import check_positive_int
from mbrl_course.agents.dyna import DynaAgent, GreedyActor, dyna_loop
from mbrl_course.agents.mbmf import MBMFConfig, make_mbmf
from mbrl_course.agents.mpc import EpisodeResult, RandomAgent, mpc_loop
from mbrl_course.budget import Tier, by_budget
from mbrl_course.data import ReplayBuffer
from mbrl_course.envs import check_bounded_box_actions
from mbrl_course.rl import PPO, GaussianPolicy, PPOConfig, Trajectories

__all__ = ["MBMFFTConfig", "MBMFFineTuner", "PolicyRecorder", "make_mbmf_ft", "mbmf_ft_loop"]


@dataclass
class MBMFFTConfig:
    """MBMF's MPC expert (an :class:`MBMFConfig`), its hand-over to a policy by DAgger, and PPO's fine-tuning."""

    expert: MBMFConfig = field(default_factory=MBMFConfig)
    """Phase 1's MPC controller (delta MLP + random shooting), the DAgger expert after it."""
    mpc_episodes: int = 10
    """Phase 1: episodes of the MPC controller, the seed episodes included."""
    dagger_iterations: int = 5
    """Phase 2: episodes driven by the cloned policy and relabelled by the MPC expert."""
    bc_steps: int = 1000
    """Adam steps of behaviour cloning after the MPC phase and after every DAgger episode."""
    bc_batch_size: int = 256
    """Minibatch size of behaviour cloning."""
    bc_lr: float = 1e-3
    """Adam learning rate of behaviour cloning."""
    learner: PPOConfig = field(default_factory=lambda: PPOConfig(
        hidden_sizes=(64, 64), gamma=0.95, gae_lambda=0.95, lr=3e-4, epochs=10, minibatch_size=256, clip=0.2,
        target_kl=0.02, init_log_std=-1.5, reward_scale=0.1))
    """Phase 3's PPO: π_θ (cloned in phase 2) and V_φ have its ``hidden_sizes``; its ``init_log_std`` is π_θ's
    log σ once cloned (the exploration noise); γ = 0.95, an effective horizon of ~20 steps (with 0.99 PPO's
    score on Pendulum swung by hundreds from one update to the next); rewards scaled by 0.1 for V_φ's targets.
    The settings were chosen on Pendulum and the cart-pole swing-up (the runs are in benchmarks/RESULTS.md)."""
    episodes_per_update: int = 8
    """Phase 3: real episodes per PPO update."""
    value_warmup_epochs: int = 30
    """Epochs of fitting V_φ alone on the first PPO batch, before the first policy update."""

    @classmethod
    def for_budget(cls, tier: Tier | None = None) -> MBMFFTConfig:
        """The config of a compute tier (``budget()`` when ``tier`` is None); the expert is MBMF's of that tier."""
        expert, paper = MBMFConfig.for_budget(tier), cls()
        return by_budget(
            smoke=cls(expert=expert, mpc_episodes=2, dagger_iterations=1, bc_steps=200,
                      learner=replace(paper.learner, epochs=2), episodes_per_update=1, value_warmup_epochs=5),
            # 15 MPC episodes: on the cart-pole swing-up, 5 leave the MPC far from its plateau (a score of
            # 14 of 100 against 57-64 after 15); 10 DAgger iterations let the clone keep the MPC's score
            # (6 lost 14 points). Measured in benchmarks/mbmf_finetune.py.
            default=cls(expert=expert, mpc_episodes=15, dagger_iterations=10, bc_steps=1000),
            full=replace(paper, expert=expert),
            tier=tier,
        )


class PolicyRecorder:
    """Acts with a Gaussian policy in the real env and remembers (i, ũ, log π(ũ | i)) for on-policy learning.

    After :func:`~mbrl_course.agents.mpc.run_episode`, :meth:`trajectories` joins the recorded steps
    with the rewards and next states the episode appended to D_real.
    """

    def __init__(self, learner, deterministic: bool = False):
        self.learner = learner
        self.deterministic = deterministic
        self.obs: list[torch.Tensor] = []
        self.raw: list[torch.Tensor] = []
        self.log_prob: list[torch.Tensor] = []

    def reset(self) -> None:
        self.obs, self.raw, self.log_prob = [], [], []

    @torch.inference_mode()
    def act(self, obs: np.ndarray) -> np.ndarray:
        """ũ ~ π_θ(· | i) (its mean when deterministic); returns the env action u = clip(c + s ũ)."""
        state = torch.as_tensor(np.asarray(obs), dtype=torch.float32, device=self.learner.device)[None]
        sample = self.learner.policy_sample(state, deterministic=self.deterministic)
        self.obs.append(state[0])
        self.raw.append(sample.raw_action[0])
        self.log_prob.append(sample.log_prob[0])
        return sample.action[0].cpu().numpy()

    def update(self, buffer: ReplayBuffer) -> None:
        return None

    def trajectories(self, buffer: ReplayBuffer) -> Trajectories:
        """The episode just run as :class:`~mbrl_course.rl.Trajectories` of shape (T, 1, ·).

        Rewards, next states and termination flags are the last T transitions of D_real; the last step
        ends the trajectory (terminated, or truncated by the time limit: then PPO bootstraps on V_φ).
        """
        T = len(self.obs)
        if T == 0:
            raise ValueError("recorder: no steps recorded; run an episode with it first")
        real = buffer.all().slice(len(buffer) - T, len(buffer)).to(self.learner.device)
        device = self.learner.device
        ended = torch.zeros(T, 1, dtype=torch.bool, device=device)
        ended[-1] = True
        return Trajectories(
            obs=torch.stack(self.obs)[:, None], raw_action=torch.stack(self.raw)[:, None],
            log_prob=torch.stack(self.log_prob)[:, None], reward=real.reward[:, None],
            next_obs=real.next_obs[:, None], terminated=real.terminated[:, None], ended=ended,
            valid=torch.ones(T, 1, dtype=torch.bool, device=device),
        )


class MBMFFineTuner:
    """The MPC expert, the DAgger data set D_bc, and PPO with its cloned policy π_θ.

    After the MPC phase it is the Dyna loop's learner (:class:`~mbrl_course.agents.dyna.Learner`, episodic):
    π_θ acts (its mean during DAgger, a sample during PPO, recorded for PPO's trajectories), and at the end
    of each episode :meth:`policy_update` either relabels the visited states by the expert and refits π_θ
    (the first ``dagger_iterations`` episodes) or hands the episode to PPO.

    Args:
        expert: MBMF's MPC controller (an :class:`~mbrl_course.agents.MPCAgent`, or any agent with
            ``act``, ``reset``, ``update(buffer)`` and, for checkpoints, ``state_dict``).
        ppo: the fine-tuner, whose ``policy`` is the policy DAgger clones into.
        config: :class:`MBMFFTConfig` (behaviour cloning and the PPO schedule; PPO itself has its own config).
        seed: seeds the behaviour-cloning minibatches.
    """

    episodic = True

    def __init__(self, expert, ppo: PPO, config: MBMFFTConfig, *, seed: int | None = 0):
        self.expert = expert
        self.ppo = ppo
        self.policy: GaussianPolicy = ppo.policy
        self.config = config
        self.device = ppo.device
        self.bc_obs = torch.zeros(0, self.policy.obs_dim, device=self.device, dtype=torch.float32)
        """D_bc's states i (n, O)."""
        self.bc_actions = torch.zeros(0, self.policy.act_dim, device=self.device, dtype=torch.float32)
        """D_bc's expert labels u* (n, A), in env units."""
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(0 if seed is None else seed + 5)
        self.pending: list[Trajectories] = []
        """PPO episodes collected towards the next update."""
        self.recorder = PolicyRecorder(ppo)
        self.cloned = False
        """True once π_θ was fit to D_bc (before that, evaluation falls back on the expert)."""
        self.dagger_iterations = config.dagger_iterations
        """DAgger iterations before PPO takes over (:func:`mbmf_ft_loop` sets its own)."""
        self.dagger_done = 0
        """DAgger iterations done so far."""

    # ------------------------------------------------------------------ the policy μ_θ
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """Training: π_θ acts and is recorded (its mean while DAgger runs); ``deterministic``: the mean, unrecorded."""
        if deterministic:
            return self.ppo.act(obs, deterministic=True)
        self.recorder.deterministic = self.dagger_done < self.dagger_iterations
        return self.recorder.act(obs)

    def reset(self) -> None:
        self.recorder.reset()

    def evaluation_actor(self):
        """The agent that evaluation episodes use: the policy's mean once cloned, the MPC expert before that."""
        return GreedyActor(self) if self.cloned else self.expert

    def update(self, buffer: ReplayBuffer) -> None:
        return None

    def policy_update(self, model, real_buffer: ReplayBuffer) -> dict[str, torch.Tensor] | None:
        """At the end of an episode π_θ drove: DAgger (relabel its states, refit π_θ), or one PPO step."""
        if self.dagger_done < self.dagger_iterations:
            visited = torch.stack(self.recorder.obs)  # the expert labels the states π_θ visited; D_bc grows
            self.add_labels(visited, self.label(visited))
            self.fit_policy()
            self.dagger_done += 1
            return None
        return self.ppo_step(self.recorder.trajectories(real_buffer))  # PPO on the real episode

    def check_finite(self) -> None:
        """PPO and cloning raise ``FloatingPointError`` themselves when a loss diverges."""

    # ------------------------------------------------------------------ DAgger
    def add_labels(self, states: torch.Tensor, expert_actions: torch.Tensor) -> None:
        """D_bc := D_bc ∪ {(i_n, u*_n)}: ``states (n, O)``, ``expert_actions (n, A)``."""
        self.bc_obs = torch.cat([self.bc_obs, states.to(self.device, torch.float32)])
        self.bc_actions = torch.cat([self.bc_actions, expert_actions.to(self.device, torch.float32)])

    def label(self, states: torch.Tensor) -> torch.Tensor:
        """u*_t = MPC(i_t) for each visited state ``states (n, O)``: the expert's actions ``(n, A)``."""
        self.expert.reset()
        return torch.stack([torch.as_tensor(self.expert.act(s.cpu().numpy()), dtype=torch.float32)
                            for s in states])

    def fit_policy(self) -> torch.Tensor:
        """θ := argmin_θ mean_{D_bc} ‖m_θ(i) − ũ*‖² by ``bc_steps`` Adam steps; σ := exp(PPO's init_log_std).

        Returns the last minibatch's loss.
        """
        cfg = self.config
        n = self.bc_obs.shape[0]
        if n == 0:
            raise ValueError("D_bc: no expert labels yet; run the MPC phase first")
        target = self.policy.to_raw(self.bc_actions)  # ũ* in normalised units
        optimizer = torch.optim.Adam(self.policy.mean_net.parameters(), lr=cfg.bc_lr)
        loss = torch.zeros((), device=self.device)
        for _ in range(cfg.bc_steps):
            idx = torch.randint(0, n, (min(cfg.bc_batch_size, n),), generator=self.generator,
                                device=self.generator.device).to(self.device)
            loss = (self.policy.mean_net(self.bc_obs[idx]) - target[idx]).square().sum(-1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            self.policy.log_std.fill_(self.ppo.config.init_log_std)
        self.cloned = True
        if not bool(torch.isfinite(loss)):
            raise FloatingPointError("behaviour cloning: the loss became NaN/inf; the run stopped")
        return loss.detach()

    # ------------------------------------------------------------------ PPO
    def ppo_step(self, traj: Trajectories) -> dict[str, torch.Tensor] | None:
        """Collect ``traj``; once ``episodes_per_update`` episodes are in, warm up V_φ (first time) and update."""
        self.pending.append(traj)
        if len(self.pending) < self.config.episodes_per_update:
            return None
        batch = Trajectories.cat(self.pending)
        self.pending = []
        if self.ppo.updates == 0:
            self.ppo.fit_value(batch, epochs=self.config.value_warmup_epochs)
        stats = self.ppo.update(batch)
        if bool(self.ppo.nonfinite):
            raise FloatingPointError(f"PPO: a loss became NaN/inf in update {self.ppo.updates}; the run stopped")
        return stats

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """PPO (policy, V_φ, optimiser), the expert's model and generators, D_bc, the pending PPO episodes."""
        return {"ppo": self.ppo.state_dict(), "expert": self.expert.state_dict(), "bc_obs": self.bc_obs.clone(),
                "bc_actions": self.bc_actions.clone(), "generator": self.generator.get_state(), "cloned": self.cloned,
                "dagger_done": self.dagger_done, "pending": [vars(p).copy() for p in self.pending]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`."""
        self.ppo.load_state_dict(state["ppo"])
        self.expert.load_state_dict(state["expert"])
        self.bc_obs = state["bc_obs"].to(self.device)
        self.bc_actions = state["bc_actions"].to(self.device)
        self.generator.set_state(state["generator"])
        self.cloned = bool(state["cloned"])
        self.dagger_done = int(state["dagger_done"])
        self.pending = [Trajectories(**p).to(self.device) for p in state["pending"]]


def make_mbmf_ft(env: gym.Env, env_id: str, config: MBMFFTConfig, *, device="cpu",
                 seed: int | None = 0) -> MBMFFineTuner:
    """Build MBMF with fine-tuning for ``env``: the MPC expert of :func:`make_mbmf`, a Gaussian π_θ and PPO."""
    check_bounded_box_actions(env)
    expert = make_mbmf(env, env_id, config.expert, device=device, seed=seed)
    ppo = PPO(env.observation_space.shape[0], env.action_space.low, env.action_space.high, config.learner,
              device=device, seed=seed)
    return MBMFFineTuner(expert, ppo, config, seed=seed)


def mbmf_ft_loop(
    env: gym.Env,
    agent: MBMFFineTuner,
    buffer: ReplayBuffer,
    *,
    episodes: int,
    seed_episodes: int = 1,
    mpc_episodes: int = 10,
    dagger_iterations: int = 5,
    seed: int | None = 0,
    start_episode: int = 0,
    on_episode: Callable[[EpisodeResult], None] | None = None,
    record_last: bool = False,
    seed_agent=None,
) -> list[EpisodeResult]:
    """MBMF with fine-tuning, episode by episode: MPC, then DAgger, then PPO (see the module docstring).

    Episodes ``0 .. mpc_episodes − 1`` run the MPC loop (the first ``seed_episodes`` with random actions),
    the next ``dagger_iterations`` the cloned policy with expert relabelling, the rest PPO. Every real
    transition goes to D_real. ``on_episode`` is called after every episode; ``start_episode`` resumes.

    Raises:
        FloatingPointError: a loss (model fit, cloning or PPO) became NaN/inf.
    """
    episodes = check_positive_int("episodes", episodes)
    seed_episodes = check_positive_int("seed_episodes", seed_episodes, allow_zero=True)
    mpc_episodes = check_positive_int("mpc_episodes", mpc_episodes)
    dagger_iterations = check_positive_int("dagger_iterations", dagger_iterations, allow_zero=True)
    if seed_episodes >= mpc_episodes:
        raise ValueError(f"mpc_episodes: expected more than seed_episodes={seed_episodes} "
                         f"(the MPC must drive at least one episode), got {mpc_episodes}")
    if episodes <= mpc_episodes + dagger_iterations and start_episode == 0:
        warnings.warn(f"episodes={episodes} ends before PPO starts (after {mpc_episodes} MPC and "
                      f"{dagger_iterations} DAgger episodes); ask for more episodes to fine-tune", stacklevel=2)
    seed_agent = seed_agent or RandomAgent(env.action_space, seed=seed)
    agent.dagger_iterations = dagger_iterations
    results: list[EpisodeResult] = []

    def after_mpc_episode(result: EpisodeResult) -> None:
        if result.episode >= seed_episodes:  # the MPC's own (i, u) pairs are expert data
            steps = buffer.all().slice(len(buffer) - result.steps, len(buffer))
            agent.add_labels(steps.obs, steps.action)
        if result.episode == mpc_episodes - 1:
            agent.fit_policy()  # behaviour cloning on the MPC's episodes
        if on_episode is not None:
            on_episode(result)

    if start_episode < mpc_episodes:  # 1. the MPC loop: u ~ planning-algo(f_ψ, i), ψ := argmin L(f_ψ, D_real)
        results += mpc_loop(env, agent.expert, buffer, episodes=min(episodes, mpc_episodes),
                            seed_episodes=seed_episodes, seed=seed, start_episode=start_episode,
                            on_episode=after_mpc_episode, record_last=record_last and episodes <= mpc_episodes,
                            seed_agent=seed_agent)
    if episodes > mpc_episodes:  # 2.-3. the Dyna loop with π_θ: DAgger, then PPO, once per episode
        results += dyna_loop(env, DynaAgent(agent, None, device=agent.device), buffer, episodes=episodes,
                             seed=seed, start_episode=max(start_episode, mpc_episodes), on_episode=on_episode,
                             record_last=record_last)
    return results


def mbmf_ft_loop_kwargs(config: MBMFFTConfig) -> dict:
    """The phases of :func:`mbmf_ft_loop` for a config."""
    return dict(seed_episodes=config.expert.seed_episodes, mpc_episodes=config.mpc_episodes,
                dagger_iterations=config.dagger_iterations)
