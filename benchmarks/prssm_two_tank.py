"""PR-SSM and the random-parameter model against a linear-Gaussian SSM on the two-tank task.

System identification on :func:`mbrl_course.ssm.systems.make_two_tank_data` (cascaded tanks with
overflow, u random steps, y the lower tank's level + N(0, 0.02²)): 16 training and 16 held-out
sequences of 200 steps. Each model sees the first L = 10 steps of a held-out sequence (the
recognition window; the Kalman filter for the linear model) and then runs free on the inputs alone;
scores over t = L..T−1:

- free-run RMSE of the predictive mean,
- NLL per step of N(y_t; mean, variance) (sample mean and variance for the nonlinear models,
  the exact Kalman prediction's marginal for the linear one),
- coverage of the 95 % interval (2.5 / 97.5 % quantiles).

Models: the linear-Gaussian SSM (state 2 and 4) fitted by maximum likelihood
(:func:`mbrl_course.filters.fit`, L-BFGS), :class:`~mbrl_course.ssm.prssm.PRSSM` and
:class:`~mbrl_course.ssm.random_params.RandomParameterSSM` (state 4) trained with
:func:`~mbrl_course.ssm.prssm.train_trajectory_model` for ``--steps`` Adam steps (default: the
budget tier's), over ``--seeds`` training seeds. One torch thread.

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/prssm_two_tank.py [--steps N] [--window 60] [--seeds 0,1,2] [--bound elbo|iwae] [--calibrate]
"""

from __future__ import annotations

import argparse
import time

import torch

from mbrl_course.ssm.prssm import PRSSM, TrajectoryTrainConfig, free_run_scores, train_trajectory_model
from mbrl_course.ssm.random_params import RandomParameterSSM
from mbrl_course.ssm.systems import fit_linear_baseline, linear_free_run, make_two_tank_data

RECOGNITION = 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=None, help="Adam steps (default: by budget tier)")
    parser.add_argument("--window", type=int, default=None, help="training sub-sequence length (default: TrajectoryTrainConfig's, 60)")
    parser.add_argument("--seeds", default="0,1,2", help="training seeds, comma-separated")
    parser.add_argument("--samples", type=int, default=200, help="free-run trajectories per sequence")
    parser.add_argument("--bound", default="elbo", choices=("elbo", "iwae"),
                        help="training objective (TrajectoryTrainConfig.bound): the ELBO or the importance-weighted bound")
    parser.add_argument("--calibrate", action="store_true",
                        help="after training, refit r to the free-run predictive of the training sequences "
                             "(TrajectoryModel.calibrate_observation_noise)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = make_two_tank_data(16, 200, seed=0, test_sequences=16)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows: list[tuple[str, int, dict[str, float], float]] = []
    for dx in (2, 4):
        start = time.perf_counter()
        lin = fit_linear_baseline(data.train_inputs, data.train_outputs, state_dim=dx, num_steps=100)
        samples = linear_free_run(lin, data.test_inputs, data.test_outputs, RECOGNITION, num_samples=2000)
        rows.append((f"linear SSM (ML, dx={dx})", 0, free_run_scores(samples, data.test_outputs, RECOGNITION),
                     time.perf_counter() - start))
        print(rows[-1], flush=True)
    for name, cls in (("PR-SSM", PRSSM), ("random-parameter SSM", RandomParameterSSM)):
        for seed in seeds:
            torch.manual_seed(seed)
            model = cls(state_dim=4, output_dim=1, input_dim=1, recognition_steps=RECOGNITION)
            start = time.perf_counter()
            train_trajectory_model(model, data.train_inputs, data.train_outputs,
                                   TrajectoryTrainConfig(num_steps=args.steps, subsequence_length=args.window, seed=seed, bound=args.bound,
                                               progress=False))
            if args.calibrate:
                r = model.calibrate_observation_noise(data.train_inputs, data.train_outputs,
                                                      generator=torch.Generator().manual_seed(2000 + seed))
                print(f"{name} seed {seed}: r calibrated to {r.tolist()}", flush=True)
            sim = model.simulate(data.test_inputs, data.test_outputs, args.samples,
                                 torch.Generator().manual_seed(1000 + seed))
            rows.append((name, seed, free_run_scores(sim.samples, data.test_outputs, RECOGNITION),
                         time.perf_counter() - start))
            print(rows[-1], flush=True)
    print()
    print(f"{'model':28s} {'seed':>4s} {'RMSE':>8s} {'NLL':>8s} {'cover95':>8s} {'seconds':>8s}")
    for name, seed, s, sec in rows:
        print(f"{name:28s} {seed:4d} {s['rmse']:8.4f} {s['nll']:8.3f} {s['coverage']:8.3f} {sec:8.1f}")


if __name__ == "__main__":
    main()
