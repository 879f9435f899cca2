"""iLQR vs the project's CEM oracle on Pendulum-v1's true dynamics, from the bottom: cost and wall time.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ilqr_pendulum.py [--horizons 20 30] [--cem-seeds 0 1 2]
        [--restarts 8] [--mpc-steps 0]

Both optimise the same open-loop problem from the same start states: J(u_{0:H-1}) = Σ_t -g(x_t, u_t) on the
env's own equations (``dynamics_fn("Pendulum-v1")``), controls in [-2, 2], no terminal cost. Start states:
the bottom (θ = π, θ̇ = 0) and four nearby ones.

- **CEM oracle**: the planner the PETS benchmark runs on the true dynamics (``benchmarks/pets_pendulum.py``):
  ``PETSConfig.for_budget(tier).planner`` on ``TrueDynamics``, one ``plan`` per start state, for the tier
  whose horizon is H (default tier: H = 20, population 100, 5 iterations; full tier: H = 30, population
  400, 5 iterations); a horizon of no tier uses the default tier's CEM with that horizon. CEM is random:
  each start is planned with every ``--cem-seeds`` seed; the table shows the mean and the best.
- **iLQR**: ``ilqr`` in float64 with autograd derivatives, ``ILQRConfig(iterations=100)``, from u = 0, and
  the best of ``--restarts`` starts (u = 0 and uniform random controls), all start states (and
  restarts) in one batched call.

Costs of both plans are recomputed by the same function in float64. Wall time: one torch thread,
after a warm-up call; CEM's is per plan, iLQR's per batched call divided by the number of start states.
With ``--mpc-steps S`` the two also run closed loop (MPC, re-planning every step, warm-started) for S
env steps from the bottom and the table adds their returns.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from dataclasses import replace

import numpy as np
import torch

from mbrl_course.agents import MPCAgent, PETSConfig
from mbrl_course.envs import dynamics_fn, make_env, reward_fn
from mbrl_course.models import TrueDynamics, imagine_returns
from mbrl_course.planning.ilqr import (
    ILQRConfig,
    ILQRMPCAgent,
    cost_from_reward,
    ilqr,
    rollout_controls,
    trajectory_cost,
)

ENV = "Pendulum-v1"
F64 = torch.float64
STARTS = [(math.pi, 0.0), (math.pi - 0.1, 0.0), (math.pi + 0.1, 0.0), (math.pi - 0.3, 0.5), (math.pi + 0.3, -0.5)]


def start_states() -> torch.Tensor:
    """(5, 3): (cos θ, sin θ, θ̇) of the bottom and four nearby states."""
    theta = torch.tensor([s[0] for s in STARTS], dtype=F64)
    speed = torch.tensor([s[1] for s in STARTS], dtype=F64)
    return torch.stack([theta.cos(), theta.sin(), speed], -1)


def cem_config(horizon: int):
    for tier in ("default", "full"):
        planner = PETSConfig.for_budget(tier).planner
        if planner.horizon == horizon:
            return planner, tier
    return replace(PETSConfig.for_budget("default").planner, horizon=horizon), "default (horizon changed)"


def plan_cost(x0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """J of open-loop plans ``actions (B, H, 1)`` from ``x0 (B, 3)``, in float64."""
    f = dynamics_fn(ENV)
    cost = cost_from_reward(reward_fn(ENV), f)
    with torch.no_grad():
        return trajectory_cost(cost, None, rollout_controls(f, x0, actions.to(F64)), actions.to(F64))


def run_cem(x0: torch.Tensor, horizon: int, seeds: list[int]) -> tuple[np.ndarray, float]:
    """Costs (starts, seeds) of the CEM oracle's plans and its mean wall time per plan."""
    config, _ = cem_config(horizon)
    model = TrueDynamics(ENV)
    reward = reward_fn(ENV)
    costs = np.zeros((x0.shape[0], len(seeds)))
    walls = []
    for j, seed in enumerate(seeds):
        planner = config.build(-2.0, 2.0, seed=seed)
        for i in range(x0.shape[0]):
            state = x0[i].float()
            planner.reset()
            start = time.perf_counter()
            plan = planner.plan(lambda actions, s=state: imagine_returns(model, s, actions, reward_fn=reward))
            walls.append(time.perf_counter() - start)
            costs[i, j] = float(plan_cost(x0[i:i + 1], plan.unsqueeze(0))[0])
    return costs, statistics.mean(walls[1:] if len(walls) > 1 else walls)


def run_ilqr(x0: torch.Tensor, horizon: int, restarts: int, seed: int = 0):
    """iLQR from u = 0 and the best of ``restarts`` initialisations: costs (starts,), iterations, wall per start."""
    f = dynamics_fn(ENV)
    cost = cost_from_reward(reward_fn(ENV), f)
    config = ILQRConfig(iterations=100)
    zeros = torch.zeros(x0.shape[0], horizon, 1, dtype=F64)
    ilqr(f, cost, x0, zeros, -2.0, 2.0, config)  # warm-up (torch.func's first call)
    start = time.perf_counter()
    plain = ilqr(f, cost, x0, zeros, -2.0, 2.0, config)
    wall_plain = (time.perf_counter() - start) / x0.shape[0]
    gen = torch.Generator().manual_seed(seed)
    inits = torch.cat([torch.zeros(1, x0.shape[0], horizon, 1, dtype=F64),
                       4 * torch.rand(restarts - 1, x0.shape[0], horizon, 1, generator=gen, dtype=F64) - 2])
    many = x0.repeat(restarts, 1)
    start = time.perf_counter()
    multi = ilqr(f, cost, many, inits.reshape(-1, horizon, 1), -2.0, 2.0, config)
    wall_multi = (time.perf_counter() - start) / x0.shape[0]
    best = multi.cost.reshape(restarts, x0.shape[0]).min(0).values
    recomputed = plan_cost(x0, plain.actions)
    assert torch.allclose(recomputed, plain.cost), "iLQR's reported cost differs from the recomputed one"
    return plain, best, wall_plain, wall_multi


def run_mpc(horizon: int, steps: int, seed: int = 0) -> tuple[float, float, float, float]:
    """Closed-loop returns and seconds per step of iLQR-MPC and CEM-MPC from the bottom, ``steps`` env steps."""
    env = make_env(ENV)
    config, _ = cem_config(horizon)
    cem_agent = MPCAgent(TrueDynamics(ENV), config.build(-2.0, 2.0, seed=seed), reward_fn=reward_fn(ENV))
    ilqr_agent = ILQRMPCAgent(TrueDynamics(ENV, dtype=F64), reward_fn(ENV), horizon, -2.0, 2.0,
                              config=ILQRConfig(iterations=20))
    out = []
    for agent in (ilqr_agent, cem_agent):
        env.reset(seed=seed)
        env.unwrapped.state = np.array([math.pi, 0.0])  # the bottom, at rest
        agent.reset()
        obs = np.array([-1.0, 0.0, 0.0], dtype=np.float32)
        total, start = 0.0, time.perf_counter()
        for _ in range(steps):
            obs, reward, *_ = env.step(agent.act(obs))
            total += float(reward)
        out += [total, (time.perf_counter() - start) / steps]
    return tuple(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--horizons", type=int, nargs="+", default=[20, 30])
    parser.add_argument("--cem-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--restarts", type=int, default=8)
    parser.add_argument("--mpc-steps", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    x0 = start_states()
    print(f"torch threads: {torch.get_num_threads()}; start states (θ, θ̇): "
          f"{[(round(a, 2), b) for a, b in STARTS]}")
    summary = []
    for horizon in args.horizons:
        config, tier = cem_config(horizon)
        cem, cem_wall = run_cem(x0, horizon, args.cem_seeds)
        plain, best, wall_plain, wall_multi = run_ilqr(x0, horizon, args.restarts)
        print(f"\nH = {horizon}: CEM oracle = {tier} tier (population {config.population}, elites {config.elites}, "
              f"iterations {config.iterations}); iLQR iterations used (u=0 start): {plain.iterations.tolist()}, "
              f"converged: {plain.converged.tolist()}")
        print(f"{'θ0':>6} {'θ̇0':>5} | {'CEM mean':>9} {'CEM best':>9} | {'iLQR u=0':>9} "
              f"{f'iLQR best/{args.restarts}':>13} | iLQR(u=0) <= CEM mean")
        for i, (theta, speed) in enumerate(STARTS):
            ok = float(plain.cost[i]) <= cem[i].mean() + 1e-9
            print(f"{theta:6.2f} {speed:5.1f} | {cem[i].mean():9.3f} {cem[i].min():9.3f} | "
                  f"{float(plain.cost[i]):9.3f} {float(best[i]):13.3f} | {ok}")
        print(f"wall per start state: CEM {cem_wall * 1e3:.1f} ms/plan; iLQR u=0 {wall_plain * 1e3:.1f} ms; "
              f"iLQR best of {args.restarts} {wall_multi * 1e3:.1f} ms (batched)")
        summary.append((horizon, float((plain.cost.numpy() <= cem.mean(1) + 1e-9).mean()),
                        float((best.numpy() <= cem.min(1) + 1e-9).mean())))
        if args.mpc_steps:
            ilqr_ret, ilqr_s, cem_ret, cem_s = run_mpc(horizon, args.mpc_steps)
            print(f"MPC from the bottom, {args.mpc_steps} steps: iLQR-MPC return {ilqr_ret:.1f} "
                  f"({ilqr_s * 1e3:.0f} ms/step), CEM-MPC return {cem_ret:.1f} ({cem_s * 1e3:.0f} ms/step)")
    print()
    for horizon, frac_plain, frac_best in summary:
        print(f"H={horizon}: fraction_ilqr_u0_le_cem_mean={frac_plain:.2f} "
              f"fraction_ilqr_best_le_cem_best={frac_best:.2f}")


if __name__ == "__main__":
    main()
