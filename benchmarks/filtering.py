"""Kalman filtering speed: mbrl_course.filters against filterpy and pykalman.

A constant-velocity tracking model (state 4: position and velocity in 2-d; observations 2:
noisy positions), B = 64 sequences of T = 1000 steps, filtered by

- filterpy: one ``KalmanFilter`` object per sequence, ``predict()`` / ``update()`` per step;
- pykalman: ``KalmanFilter.loglikelihood`` per sequence;
- ours, on the whole batch at once and on a single sequence: ``kalman_filter(params, y)`` as a new
  user calls it (default arguments: ``method="auto"``), and each method explicitly:
  ``method="sequential"`` (the lecture's loop over predict_step / update_step, batched over
  sequences), ``method="parallel"`` (the associative scan over time), ``parallel_kalman_filter``.

Prints seconds and log-likelihoods side by side; the last line is machine-readable, the default
call against filterpy: ``batch_speedup_vs_filterpy=<x> single_speedup_vs_filterpy=<y>``.

``--sweep`` instead times ``method="sequential"`` against ``method="parallel"`` over a grid of T and B
(the measurements behind ``kalman_filter``'s ``method="auto"`` rule, see ``choose_method``).

Torch runs on one intra-op thread by default (``--threads``): the filters issue many small tensor
operations that threading does not speed up, and on a shared machine two threads per op mostly
wait for each other (filterpy and pykalman are single-threaded Python loops as well).

    PYTHONPATH=. .venv/bin/python benchmarks/filtering.py [--batch 64] [--steps 1000] [--threads 1] [--device cpu]
    PYTHONPATH=. .venv/bin/python benchmarks/filtering.py --sweep [--threads 0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from mbrl_course.filters import LinearGaussianSSM, kalman_filter, parallel_kalman_filter

FIELDS = ("initial_mean", "initial_cov", "transition_matrix", "transition_cov", "emission_matrix", "emission_cov")


def constant_velocity_model(dt: float = 0.1, accel_std: float = 1.0, obs_std: float = 0.5) -> dict[str, np.ndarray]:
    """s = (x, y, vx, vy): E = [[I, dt I], [0, I]], F = white-noise acceleration, C = [I 0], D = obs_std² I."""
    E = np.eye(4)
    E[0, 2] = E[1, 3] = dt
    q = accel_std**2
    F = q * np.block([[dt**3 / 3 * np.eye(2), dt**2 / 2 * np.eye(2)], [dt**2 / 2 * np.eye(2), dt * np.eye(2)]])
    C = np.hstack([np.eye(2), np.zeros((2, 2))])
    D = obs_std**2 * np.eye(2)
    return dict(initial_mean=np.array([0.0, 0.0, 1.0, 0.0]), initial_cov=np.diag([1.0, 1.0, 0.5, 0.5]),
                transition_matrix=E, transition_cov=F, emission_matrix=C, emission_cov=D)


def timed(fn, repeats: int, sync) -> tuple[float, object]:
    """Best wall-clock seconds of ``repeats`` calls (after one warm-up call) and the last result."""
    out = fn()
    sync()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best, out


def run_filterpy(model: dict, ys: np.ndarray) -> np.ndarray:
    from filterpy.kalman import KalmanFilter

    lls = np.zeros(len(ys))
    for b, y in enumerate(ys):
        kf = KalmanFilter(dim_x=4, dim_z=2)
        kf.x = model["initial_mean"].copy()
        kf.P = model["initial_cov"].copy()
        kf.F, kf.Q = model["transition_matrix"], model["transition_cov"]
        kf.H, kf.R = model["emission_matrix"], model["emission_cov"]
        total = 0.0
        for z in y:
            kf.predict()
            kf.update(z)
            total += kf.log_likelihood
        lls[b] = total
    return lls


def run_pykalman(model: dict, ys: np.ndarray) -> np.ndarray:
    from pykalman import KalmanFilter

    E, F, m0, S0 = (model[k] for k in ("transition_matrix", "transition_cov", "initial_mean", "initial_cov"))
    # pykalman's initial state is s_1 (no prediction before y_1): pass p(s_1) = N(E m_0, E S_0 Eᵀ + F)
    kf = KalmanFilter(transition_matrices=E, observation_matrices=model["emission_matrix"], transition_covariance=F,
                      observation_covariance=model["emission_cov"], initial_state_mean=E @ m0,
                      initial_state_covariance=E @ S0 @ E.T + F)
    return np.array([kf.loglikelihood(y) for y in ys])


def sweep(params: LinearGaussianSSM, repeats: int, sync, steps=(2, 4, 8, 16, 32, 64, 256, 1000),
          batches=(1, 16, 256)) -> None:
    """Seconds of method="sequential" and method="parallel" over T and B: where does the scan win?"""
    ref = params.initial_mean
    gen = torch.Generator().manual_seed(1)
    print(f"{'B':>5}{'T':>6}{'sequential ms':>16}{'parallel ms':>14}{'seq / par':>11}")
    for batch in batches:
        for num_steps in steps:
            y = torch.randn((batch, num_steps, params.obs_dim) if batch > 1 else (num_steps, params.obs_dim),
                            generator=gen, dtype=torch.float64).to(dtype=ref.dtype, device=ref.device)
            n = repeats if num_steps * batch > 20_000 else 3 * repeats
            t_seq, _ = timed(lambda y=y: kalman_filter(params, y, method="sequential"), n, sync)
            t_par, _ = timed(lambda y=y: kalman_filter(params, y, method="parallel"), n, sync)
            print(f"{batch:>5}{num_steps:>6}{t_seq * 1e3:>16.2f}{t_par * 1e3:>14.2f}{t_seq / t_par:>11.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64, help="number of sequences B")
    parser.add_argument("--steps", type=int, default=1000, help="sequence length T")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats of our filters (best is kept)")
    parser.add_argument("--device", default="cpu", help="device for our filters (cpu or cuda)")
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads; 0 keeps torch's default")
    parser.add_argument("--skip-pykalman", action="store_true", help="leave pykalman out (it is the slowest)")
    parser.add_argument("--sweep", action="store_true", help="time sequential against parallel over T and B")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    model = constant_velocity_model()
    ssm = LinearGaussianSSM(*(torch.tensor(model[k], dtype=torch.float64) for k in FIELDS))
    params = LinearGaussianSSM(*(torch.tensor(model[k], dtype=dtype, device=device) for k in FIELDS))
    if args.sweep:
        print(f"constant-velocity model, ours on {device} in {args.dtype}, torch threads = {torch.get_num_threads()}")
        sweep(params, args.repeats, sync)
        return
    _, obs = ssm.sample(args.steps, sample_shape=(args.batch,), generator=torch.Generator().manual_seed(0))
    ys = obs.numpy()
    y_batch = obs.to(dtype=dtype, device=device)
    y_single = y_batch[0]

    print(f"constant-velocity model, B = {args.batch}, T = {args.steps}, ours on {device} in {args.dtype}, "
          f"torch threads = {torch.get_num_threads()}")
    rows = []
    t_fp_single, ll_fp_single = timed(lambda: run_filterpy(model, ys[:1]), 2, lambda: None)
    start = time.perf_counter()
    ll_fp = run_filterpy(model, ys)
    t_fp = time.perf_counter() - start
    rows.append(("filterpy (KalmanFilter per sequence)", t_fp, t_fp_single, ll_fp))
    if not args.skip_pykalman:
        t_pk_single, _ = timed(lambda: run_pykalman(model, ys[:1]), 1, lambda: None)
        start = time.perf_counter()
        ll_pk = run_pykalman(model, ys)
        t_pk = time.perf_counter() - start
        rows.append(("pykalman (loglikelihood per sequence)", t_pk, t_pk_single, ll_pk))
    ours = {}
    candidates = (
        ("kalman_filter(params, y)  [default: auto]", lambda y: kalman_filter(params, y)),
        ('kalman_filter(..., method="sequential")', lambda y: kalman_filter(params, y, method="sequential")),
        ('kalman_filter(..., method="parallel")', lambda y: kalman_filter(params, y, method="parallel")),
        ("parallel_kalman_filter(params, y)", lambda y: parallel_kalman_filter(params, y)),
    )
    for name, fn in candidates:
        t_batch, res = timed(lambda fn=fn: fn(y_batch), args.repeats, sync)
        t_one, _ = timed(lambda fn=fn: fn(y_single), args.repeats, sync)
        ll = res.log_likelihood.double().cpu().numpy()
        ours[name] = (t_batch, t_one)
        rows.append((name, t_batch, t_one, ll))

    print(f"\n{'method':<44}{'batch s':>10}{'single s':>10}{'Σ log-lik (batch)':>22}{'max |Δ| vs filterpy':>22}")
    for name, t_b, t_s, ll in rows:
        print(f"{name:<44}{t_b:>10.4f}{t_s:>10.4f}{ll.sum():>22.6f}{np.abs(ll - ll_fp).max():>22.3e}")
    default = candidates[0][0]
    t_default_batch, t_default_single = ours[default]
    for name, (t_b, t_s) in ours.items():
        print(f"{name:<44} vs filterpy: batch {t_fp / t_b:7.1f}x   single {t_fp_single / t_s:6.1f}x")
    print(f"log-likelihood of sequence 0: filterpy {ll_fp_single[0]:.6f}, ours {rows[-1][3][0]:.6f}")
    if not args.skip_pykalman:
        print(f"batch_speedup_vs_pykalman={t_pk / t_default_batch:.1f}")
    print(f"batch_speedup_vs_filterpy={t_fp / t_default_batch:.1f} "
          f"single_speedup_vs_filterpy={t_fp_single / t_default_single:.1f}")

if __name__ == "__main__":
    main()
