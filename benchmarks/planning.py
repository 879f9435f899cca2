"""Seconds per planned action for PETS-style CEM, and how close the model runs to the matmul peak.

Configuration (the issue's): a 5-member ensemble of 4×200 MLPs (SiLU), TS∞ with 20 particles,
CEM with population 400, horizon 30, 5 iterations, Pendulum shapes (obs 3, action 1).

The model's FLOPs are counted as the matrix products of its layers (2·in·out per row and layer);
"achieved FLOP/s" divides them by the whole planning time (CEM, sampling, reward function and
all), and "matmul FLOP/s" is this machine's throughput for the same batched products alone
(torch.baddbmm on the same shapes, no activations), measured in the same run: planning and the
matmul-only workload alternate, and the fraction is the median over rounds of t_matmul / t_plan.

    .venv/bin/python benchmarks/planning.py [--repeats 7] [--device cpu] [--threads N] [--baseline REV] [--eager]

On CUDA the planning call is captured in a CUDA graph and replayed (``mbrl_course.planning.graphs``, as the
MPC agent plans there), unless ``--eager``; the line ``cuda_graph=graph`` (or ``eager`` and why) says which ran.

Last line: ``seconds_per_action=<s> matmul_fraction=<f>``. With ``--baseline REV`` the planner's
objective of git revision REV (its ``mbrl_course/models/imagination.py``, loaded on its own) is timed
too, alternating with today's, and a line ``baseline_seconds_per_action=<s> ratio=<today / REV>`` follows:
a refactor's cost measured side by side in one run.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from mbrl_course.envs import reward_fn
from mbrl_course.models import GaussianEnsemble, imagine_returns
from mbrl_course.planning import CEM
from mbrl_course.planning.graphs import CapturedPlan

OBS, ACT, K, HIDDEN, LAYERS = 3, 1, 5, 200, 4
POP, PARTICLES, HORIZON, ITERS = 400, 20, 30, 5


def layer_shapes() -> list[tuple[int, int]]:
    """(in, out) of each ensemble layer: obs+action -> 200 -> 200 -> 200 -> 200 -> mean and log-variance."""
    out = 2 * (OBS + 1)  # next-state delta and reward: mean and log-variance
    return [(OBS + ACT, HIDDEN)] + [(HIDDEN, HIDDEN)] * (LAYERS - 1) + [(HIDDEN, out)]


def model_flops_per_action() -> float:
    rows = POP * PARTICLES * HORIZON * ITERS
    return rows * sum(2.0 * i * o for i, o in layer_shapes())


def matmul_workload(device: torch.device):
    """The model's matrix products for one planned action, alone: ITERS·HORIZON passes over the layers."""
    rows = POP * PARTICLES // K
    xs = [torch.randn(K, rows, i, device=device) for i, _ in layer_shapes()]
    ws = [torch.randn(K, i, o, device=device) / i**0.5 for i, o in layer_shapes()]
    bs = [torch.randn(K, 1, o, device=device) for _, o in layer_shapes()]

    def run() -> None:
        for _ in range(ITERS * HORIZON):
            for x, w, b in zip(xs, ws, bs):
                torch.baddbmm(b, x, w)

    return run


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def load_baseline(rev: str):
    """``mbrl_course/models/imagination.py`` as it was at git revision ``rev``, imported as its own module."""
    source = subprocess.run(["git", "show", f"{rev}:mbrl_course/models/imagination.py"], check=True,
                            capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent).stdout
    path = Path(tempfile.mkdtemp()) / "baseline_imagination.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("baseline_imagination", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="rounds of (planned action, matmul-only) to time")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads for both workloads (0: torch's default)")
    parser.add_argument("--baseline", metavar="REV", help="also time the objective of this git revision, alternating")
    parser.add_argument("--eager", action="store_true",
                        help="on CUDA, plan eagerly instead of replaying the planning call's CUDA graph")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)

    model = GaussianEnsemble(OBS, ACT, ensemble_size=K, hidden_size=HIDDEN, num_layers=LAYERS,
                             predict_reward=True, device=device).eval()
    reward = reward_fn("Pendulum-v1")
    planner = CEM(horizon=HORIZON, action_low=[-2.0], action_high=[2.0], population=POP, elites=40,
                  iterations=ITERS, device=device, seed=0, keep_history=False)
    generator = torch.Generator(device=device).manual_seed(0)
    state = torch.tensor([1.0, 0.0, 0.0], device=device)

    def make_objective(imagine):
        def objective(actions: torch.Tensor) -> torch.Tensor:
            return imagine(model, state, actions, reward_fn=reward, particles=PARTICLES, propagation="ts_inf",
                           generator=generator)
        return objective

    objective = make_objective(imagine_returns)
    baseline = make_objective(load_baseline(args.baseline).imagine_returns) if args.baseline else None

    def objective_for(at: torch.Tensor):  # what MPCAgent plans with: reads the state when called, no host sync
        return lambda actions: imagine_returns(model, at, actions, reward_fn=reward, particles=PARTICLES,
                                               propagation="ts_inf", generator=generator, check=False)

    captured = None
    if device.type == "cuda" and not args.eager:
        captured = CapturedPlan(planner, objective_for, generators=[generator])

    def plan_action() -> torch.Tensor:
        return captured(state) if captured is not None else planner.plan(objective)

    matmul = matmul_workload(device)

    def timed(fn) -> float:
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        return time.perf_counter() - start

    # Plan and matmul-only workloads alternate, so that whatever else the machine is doing
    # slows both alike; each round's ratio t_matmul / t_plan is the fraction of the matmul peak.
    with torch.inference_mode():
        plan_action()  # warm-up (and, on CUDA, the capture and its check against eager)
        matmul()
        if baseline is not None:
            planner.plan(baseline)
        plan_times, matmul_times, baseline_times = [], [], []
        for _ in range(args.repeats):
            plan_times.append(timed(plan_action))
            matmul_times.append(timed(matmul))
            if baseline is not None:
                baseline_times.append(timed(lambda: planner.plan(baseline)))
    seconds = statistics.median(plan_times)
    fraction = statistics.median(m / p for m, p in zip(matmul_times, plan_times))
    flops = model_flops_per_action()
    print(f"device={device} threads={torch.get_num_threads()} torch={torch.__version__}")
    if captured is not None:
        print(f"cuda_graph={captured.mode}" + (f" ({captured.reason})" if captured.reason else ""))
    print(f"config: K={K} members of {LAYERS}x{HIDDEN}, TS-inf, particles={PARTICLES}, population={POP}, "
          f"horizon={HORIZON}, iterations={ITERS}")
    print(f"per-action planning times (s): {', '.join(f'{t:.3f}' for t in plan_times)}")
    print(f"same matmuls alone (s):        {', '.join(f'{t:.3f}' for t in matmul_times)}")
    print(f"model FLOPs per action: {flops / 1e9:.1f} GFLOP")
    print(f"achieved model FLOP/s: {flops / seconds / 1e9:.1f} GFLOP/s; matmul FLOP/s on the same shapes: "
          f"{flops / statistics.median(matmul_times) / 1e9:.1f} GFLOP/s (medians)")
    print(f"seconds_per_action={seconds:.3f} matmul_fraction={fraction:.3f}")
    if baseline_times:
        ratio = statistics.median(p / b for p, b in zip(plan_times, baseline_times))
        print(f"{args.baseline} per-action planning times (s): {', '.join(f'{t:.3f}' for t in baseline_times)}")
        print(f"baseline_seconds_per_action={statistics.median(baseline_times):.3f} ratio={ratio:.3f} "
              f"(median over rounds of today / {args.baseline})")


if __name__ == "__main__":
    main()
