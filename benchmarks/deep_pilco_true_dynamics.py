"""Deep PILCO's policy search on the cart-pole's TRUE dynamics: is it the model or the optimiser?

Deep PILCO's particle policy search (:class:`~mbrl_course.agents.deep_pilco.DeepPILCOLearner`: K particles,
Ĵ(θ) = Σ_t 1/K Σ_r r(i^r_t), reparameterised gradients) run in the env's own equations
(:class:`~mbrl_course.models.TrueDynamics`, no model error, no moment matching to do), from the start
distribution of one random 4 s trial. After each round of policy optimisation the policy runs 3 real 4 s
trials; the script prints the particles' Ĵ and the real mean cost 1 − r (PILCO's width σ_c = 0.25 m).

Two optimisers:
- ``adam``: the learner's own update, ``--steps`` Adam steps per round, each on fresh particles;
- ``lbfgs``: PILCO's scipy L-BFGS-B on Ĵ with the random numbers held fixed within a round (Ĵ is then a
  deterministic function of θ, as in PEGASUS), ``--steps`` iterations per round, fresh numbers each round.

``--width`` sets the saturating reward's width σ_c used *in the optimisation* (the real cost printed is always
the env's, 0.25 m): a wider reward has a slope from the hanging start.

    .venv/bin/python benchmarks/deep_pilco_true_dynamics.py --optimizer adam --steps 300 --rounds 4
    .venv/bin/python benchmarks/deep_pilco_true_dynamics.py --optimizer lbfgs --steps 100 --rounds 4
    .venv/bin/python benchmarks/deep_pilco_true_dynamics.py --optimizer adam --steps 500 --particles 50 --width 1.0
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time

import numpy as np
import torch
from scipy.optimize import minimize

from mbrl_course.agents.deep_pilco import DeepPILCOLearner, episode_starts, start_distribution
from mbrl_course.data import ReplayBuffer
from mbrl_course.envs import make_env, termination_fn
from mbrl_course.envs.cartpole_swingup import CartPoleSwingUpParams, cartpole_swingup_reward
from mbrl_course.models import TrueDynamics
from mbrl_course.rl.controllers import RBFController

ENV = "mbrl_course/CartPoleSwingUp-v0"
STEPS = 40  # 4 s trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--optimizer", choices=("adam", "lbfgs"), default="adam")
    parser.add_argument("--steps", type=int, default=300, help="Adam steps or L-BFGS iterations per round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--horizon", type=int, default=30)
    parser.add_argument("--particles", type=int, default=10)
    parser.add_argument("--basis", type=int, default=30, help="RBF basis functions of the policy")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--width", type=float, default=0.25, help="σ_c of the reward optimised [m]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    env = make_env(ENV, max_episode_steps=STEPS)
    high = env.action_space.high
    params = dataclasses.replace(CartPoleSwingUpParams(), cost_width=args.width)
    policy = RBFController(5, 1, torch.as_tensor(high, dtype=torch.float64), num_basis=args.basis)
    learner = DeepPILCOLearner(
        policy, obs_dim=5, action_bound=high, reward_fn=lambda o, a, n: cartpole_swingup_reward(o, a, n, params),
        termination_fn=termination_fn(ENV), particles=args.particles, horizon=args.horizon, policy_steps=args.steps,
        lr=args.lr, max_grad_norm=10.0, seed=args.seed)
    model = TrueDynamics(ENV, dtype=torch.float64)
    buffer = ReplayBuffer(5, 1)

    def trial(seed: int) -> np.ndarray:
        obs, _ = env.reset(seed=seed)
        rewards = []
        for t in range(STEPS):
            action = learner.act(obs, deterministic=True)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            buffer.add(obs, action, reward, next_obs, terminated, truncated or t == STEPS - 1)
            rewards.append(reward)
            obs = next_obs
        return np.asarray(rewards)

    trial(args.seed)  # the random first trial: p(i_1) and the policy's initialisation come from it
    start_mean, start_chol = start_distribution(episode_starts(buffer), learner.start_std)
    learner._initialise(start_mean, buffer)
    print(f"{args.optimizer}, {args.steps} per round, K = {args.particles}, H = {args.horizon}, σ_c = {args.width} "
          f"in the optimisation, seed {args.seed}")
    began = time.perf_counter()
    for k in range(args.rounds):
        if args.optimizer == "adam":
            value = learner.policy_update(model, buffer)["value"]
        else:
            value = lbfgs_round(learner, model, start_mean, start_chol, args.steps)
        learner.generator.manual_seed(10_000 + k)
        with torch.no_grad():
            fresh = float(learner.objective(model, start_mean, start_chol).value)
        rewards = np.stack([trial(100 + 10 * k + j) for j in range(3)])
        print(f"round {k + 1}: Ĵ {value:.1f} (fresh particles {fresh:.1f} of {args.horizon}) | real mean cost "
              f"{1 - rewards.mean():.2f}, tip within 0.1 m for the last second in {solved(rewards)} of 3 trials | "
              f"{time.perf_counter() - began:.0f} s", flush=True)


def solved(rewards: np.ndarray) -> int:
    """Trials whose last second keeps the tip within 0.1 m of upright (the benchmark's "solved")."""
    return int((rewards[:, -10:] > math.exp(-0.5 * 0.1**2 / 0.25**2)).all(-1).sum())


def lbfgs_round(learner: DeepPILCOLearner, model, start_mean, start_chol, iterations: int) -> float:
    """L-BFGS-B on Ĵ(θ) with the particles' random numbers fixed (the generator reset before every evaluation)."""
    named = [(name, p) for name, p in learner.policy.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    sizes = [p.numel() for p in params]
    limits = learner.policy.parameter_bounds()
    bounds = [limits.get(name, (None, None)) for name, p in named for _ in range(p.numel())]
    state = learner.generator.get_state()

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        with torch.no_grad():
            for p, chunk in zip(params, torch.split(torch.as_tensor(theta), sizes)):
                p.copy_(chunk.view_as(p))
        learner.generator.set_state(state)
        result = learner.objective(model, start_mean, start_chol)
        grads = torch.autograd.grad(result.loss, params)
        if not math.isfinite(result.loss.item()):
            return 10.0 * learner.horizon, np.zeros_like(theta)
        return result.loss.item(), torch.cat([g.reshape(-1) for g in grads]).numpy()

    theta0 = torch.cat([p.detach().reshape(-1) for p in params]).numpy()
    out = minimize(objective, theta0, jac=True, method="L-BFGS-B", bounds=bounds, options={"maxiter": iterations})
    objective(out.x)
    return -float(out.fun)


if __name__ == "__main__":
    main()
