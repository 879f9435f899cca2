"""Variational state-space models: ELBO gap per posterior family, CPU cost, and held-out prediction tables.

Four measurements (issue 13's benchmark), all seeded, on CPU:

a. **ELBO gap.** A linear-Gaussian SSM (state 2, observation 1, correlated noise: the tests' model), θ fixed at
   the truth, only ψ trained (:func:`~mbrl_course.ssm.train_vssm` with ``trainable="posterior"``) for each
   posterior family. Every ``--eval-every`` steps: the gap (log p(Y) − L̂) / T per time step on the training
   sequences, log p(Y) exact from the Kalman filter, L̂ the analytic-KL ELBO estimate on ``EVAL_SAMPLES`` paths.
   The exact Markovian posterior (RTS smoother) is the reference: its gap is 0 up to Monte Carlo error.
   At the end also the gap on held-out sequences (the amortisation gap included). Figure: gap vs steps.
b. **Wall time per training step** (full batch: one step = one epoch) per family, from the runs of (a), (c), (d).
c. **Two tanks, free run** (:func:`mbrl_course.ssm.systems.make_two_tank_data`, the other engineer's task: 16 + 16
   sequences of 200 steps, u random steps, y the lower tank's level): each model sees the first L = 10 steps
   (y and u) of a held-out sequence, then runs free on the inputs; RMSE of the predictive mean, Gaussian NLL
   per step and 95 % coverage over t = L..199 (:func:`~mbrl_course.ssm.prssm.free_run_scores`, the same for
   every model). Models: the linear-Gaussian SSM (ML, state 2 and 4; :func:`~mbrl_course.ssm.systems.fit_linear_baseline`,
   :func:`~mbrl_course.ssm.systems.linear_free_run`), the VSSM of each family (state 4, MLP transition with the
   input u'_t = u_{t−1}, MLP emission; trained on the training sequences cut into windows of ``--tank-window``
   steps, y standardised; free run = :func:`~mbrl_course.ssm.k_step_prediction` for k = 1..190 after
   conditioning on the first 10 steps), PR-SSM and the random-parameter SSM (state 4,
   :func:`~mbrl_course.ssm.prssm.train_trajectory_model`, ``simulate``).
d. **Pendulum, k-step predictive log-likelihood** (:func:`mbrl_course.ssm.datasets.make_pendulum_data`, a pendulum
   seen through (sin φ, −cos φ) + noise, dt = 0.1 s): held-out log p(y_{T+k} | Y_{1:T}) for k = 1..20 after
   T = 40 observed steps. Linear-Gaussian SSM (state 4, ML with :func:`mbrl_course.filters.fit`): exact from
   :func:`mbrl_course.filters.predict`. VSSM (state 4, MLP transition and emission, each family): a Gaussian
   (sample mean and covariance) fitted to 500 samples of :func:`~mbrl_course.ssm.k_step_prediction`, the same
   estimator as in ``tests/test_ssm_learning.py``. Also the RMSE of the predictive mean. Figure: LL vs k.

Prints every number; writes ``results.json`` and the figures (PNG) under ``--out`` (default
``benchmarks/out/vssm/<tier>``; ``--figures`` copies them to ``benchmarks/figures/vssm_*.png``).

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/vssm.py --tier default [--out DIR] [--threads 1] [--figures]
        [--parts gap,pendulum,tanks] [--seeds 0,1,2]

Tiers (steps per run): smoke (seconds, a check that it runs), default (≈ 10–15 min on one core),
full (longer runs and more seeds; an hour or more).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from mbrl_course.filters import (  # noqa: E402
    FitConfig,
    LinearGaussianModel,
    LinearGaussianSSM,
    fit,
    kalman_filter,
    predict,
)
from mbrl_course.ssm import (  # noqa: E402
    ExactLinearGaussianPosterior,
    GenerativeModel,
    TrainConfig,
    estimate_elbo,
    k_step_prediction,
    make_generative_model,
    make_posterior,
    train_vssm,
)
from mbrl_course.ssm.datasets import make_pendulum_data  # noqa: E402
from mbrl_course.ssm.prssm import (  # noqa: E402
    PRSSM,
    TrajectoryTrainConfig,
    free_run_scores,
    train_trajectory_model,
)
from mbrl_course.ssm.random_params import RandomParameterSSM  # noqa: E402
from mbrl_course.ssm.systems import (  # noqa: E402
    fit_linear_baseline,
    linear_free_run,
    make_two_tank_data,
    shift_inputs,
)
from mbrl_course.viz.ssm import mean_field_gap_floor

FAMILIES = ("mean_field", "markovian", "autoregressive")
F64 = torch.float64
EVAL_SAMPLES = 32
RECOGNITION = 10  # two tanks: steps seen before the free run
CONDITION = 40  # pendulum: T, steps seen
HORIZON = 20  # pendulum: k = 1..20


@dataclass
class Tier:
    """Sizes and step counts of one budget tier."""

    gap_steps: int
    """Adam steps of ψ per family on the linear-Gaussian data"""
    gap_eval_every: int
    """evaluate the gap every this many steps"""
    gap_sequences: int
    """training (and held-out) sequences of the linear-Gaussian data"""
    gap_length: int
    """their length T"""
    pendulum_steps: int
    """Adam steps of the VSSM on the pendulum"""
    pendulum_train: int
    """pendulum training sequences (of ``pendulum_length`` steps)"""
    pendulum_length: int
    """their length"""
    pendulum_test: int
    """held-out pendulum sequences"""
    tank_steps: int
    """Adam steps of the VSSM on the two tanks"""
    trajectory_steps: int
    """Adam steps of PR-SSM and the random-parameter SSM"""
    tank_samples: int
    """free-run samples per held-out sequence"""
    seeds: tuple[int, ...]
    """training seeds of the learned models (c, d)"""
    pendulum_batch: int = 64
    """pendulum sequences per Adam step (mini-batches of the training set)"""


TIERS = {
    "smoke": Tier(20, 10, 4, 20, 20, 8, 20, 8, 10, 10, 20, (0,), 8),
    "default": Tier(400, 50, 16, 50, 800, 256, 30, 128, 500, 800, 200, (0,), 64),
    "full": Tier(2000, 100, 32, 100, 3000, 512, 30, 256, 2000, 3000, 500, (0, 1, 2), 128),
}


# --------------------------------------------------------------------------------- helpers


def gaussian_fit_log_prob(samples: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log N(y | m̂, Ĉ), m̂ and Ĉ the sample mean and covariance: ``samples: (N, ..., dy)``, ``targets: (..., dy)``."""
    mean = samples.mean(0)
    centred = samples - mean
    cov = torch.einsum("n...i,n...j->...ij", centred, centred) / (samples.shape[0] - 1)
    return torch.distributions.MultivariateNormal(mean, cov).log_prob(targets)


def linear_gaussian_truth() -> LinearGaussianSSM:
    """State 2, observation 1, correlated noise (the model of ``tests/test_ssm.py``)."""
    t = lambda x: torch.tensor(x, dtype=F64)  # noqa: E731
    return LinearGaussianSSM(t([0.5, -0.3]), t([[1.0, 0.2], [0.2, 0.5]]), t([[0.95, 0.1], [-0.1, 0.9]]),
                             t([[0.1, 0.02], [0.02, 0.05]]), t([[1.0, 0.5]]), t([[0.2]]))


def mean_field_optimal_gap(ssm: LinearGaussianSSM, num_steps: int) -> float:
    """The least gap per step any diagonal-Gaussian mean-field q can reach: the lecture's
    :func:`~mbrl_course.viz.ssm.mean_field_gap_floor` (½ (Σ_i log Λ_ii − log det Λ), Λ the precision of
    p(s_{0:T} | Y_{1:T})) divided by T."""
    return mean_field_gap_floor(ssm, num_steps) / num_steps


def new_linear_model(state_dim: int, obs_dim: int, seed: int) -> LinearGaussianModel:
    """A linear-Gaussian starting point for :func:`~mbrl_course.filters.fit`: E = 0.9 I, F = 0.1 I, C random."""
    g = torch.Generator().manual_seed(seed)
    eye = torch.eye(state_dim, dtype=F64)
    return LinearGaussianModel(LinearGaussianSSM(
        torch.zeros(state_dim, dtype=F64), eye, 0.9 * eye, 0.1 * eye,
        0.5 * torch.randn(obs_dim, state_dim, generator=g, dtype=F64), 0.1 * torch.eye(obs_dim, dtype=F64)))


# ------------------------------------------------------------------------ a. the ELBO gap


def elbo_gap(tier: Tier, out: Path, covariance: str = "diag") -> dict:
    """Gap per time step (log p(Y) − ELBO) / T vs Adam steps of ψ, θ at the truth, for each family
    (``covariance``: the posteriors' "diag" or "full" Gaussians)."""
    ssm = linear_gaussian_truth()
    B, T = tier.gap_sequences, tier.gap_length
    _, Y = ssm.sample(T, B, generator=torch.Generator().manual_seed(0))
    _, Y_test = ssm.sample(T, B, generator=torch.Generator().manual_seed(1))
    log_p, log_p_test = kalman_filter(ssm, Y).log_likelihood, kalman_filter(ssm, Y_test).log_likelihood

    def gap(model, posterior, y, lp) -> tuple[float, float]:
        with torch.no_grad():
            res = estimate_elbo(model, posterior, y, num_samples=EVAL_SAMPLES, generator=torch.Generator().manual_seed(7))
        per_seq = (lp - res.value) / T
        return float(per_seq.mean()), float((res.standard_error / T).pow(2).mean().sqrt() / B ** 0.5)

    model = GenerativeModel.from_linear_gaussian(ssm)
    exact = gap(model, ExactLinearGaussianPosterior(ssm), Y, log_p)
    print(f"[gap] log p(Y)/T = {float(log_p.mean()) / T:.4f} (train), exact posterior's gap {exact[0]:+.2e} "
          f"± {exact[1]:.1e} per step", flush=True)
    optimum = mean_field_optimal_gap(ssm, T)
    print(f"[gap] the best diagonal mean-field q's gap (closed form): {optimum:.4f} per step", flush=True)
    results = {"log_p_per_step": float(log_p.mean()) / T, "exact_gap": exact, "mean_field_optimum": optimum,
               "families": {}}
    for family in FAMILIES:
        torch.manual_seed(0)
        model = GenerativeModel.from_linear_gaussian(ssm)
        posterior = make_posterior(family, 2, 1, hidden_size=64, covariance=covariance).double()
        ckpt = out / f"gap_{family}.pt"
        ckpt.unlink(missing_ok=True)
        steps, gaps, errors, train_seconds = [0], [], [], 0.0
        g, e = gap(model, posterior, Y, log_p)
        gaps.append(g)
        errors.append(e)
        for stop in range(tier.gap_eval_every, tier.gap_steps + 1, tier.gap_eval_every):
            start = time.perf_counter()
            train_vssm(model, posterior, Y, config=TrainConfig(num_steps=stop, trainable="posterior", progress=False,
                                                               checkpoint_every=10 ** 9), checkpoint_path=ckpt)
            train_seconds += time.perf_counter() - start
            g, e = gap(model, posterior, Y, log_p)
            steps.append(stop)
            gaps.append(g)
            errors.append(e)
        test_gap = gap(model, posterior, Y_test, log_p_test)
        per_step = train_seconds / tier.gap_steps
        results["families"][family] = {"steps": steps, "gap": gaps, "gap_se": errors, "final_gap": gaps[-1],
                                       "final_relative": gaps[-1] / abs(results["log_p_per_step"]),
                                       "held_out_gap": test_gap[0], "seconds_per_step": per_step}
        print(f"[gap] {family:15s} gap/step after {tier.gap_steps} steps: train {gaps[-1]:.4f} ± {errors[-1]:.4f} "
              f"({100 * gaps[-1] / abs(results['log_p_per_step']):.2f} % of |log p(Y)|/T), held-out {test_gap[0]:.4f}; "
              f"{1000 * per_step:.1f} ms/step (B={B}, T={T}, float64)", flush=True)
        ckpt.unlink(missing_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    for family, r in results["families"].items():
        ax.plot(r["steps"], [max(g, 1e-4) for g in r["gap"]], marker="o", ms=3, label=family)
    ax.axhline(optimum, color="C0", ls="--", lw=1, label="best mean-field q (closed form)")
    noise_floor = 2 * max(r["gap_se"][-1] for r in results["families"].values())  # of the trained estimates
    ax.axhline(noise_floor, color="k", ls=":", label="2 SE of the estimate (exact q: gap 0)")
    ax.set_yscale("log")
    ax.set_xlabel("Adam steps of ψ (θ fixed at the truth)")
    ax.set_ylabel("(log p(Y) − ELBO) / T  [nats per step]")
    ax.set_title(f"ELBO gap per posterior family (linear-Gaussian, B={B}, T={T})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "vssm_elbo_gap.png", dpi=120)
    plt.close(fig)
    return results


# -------------------------------------------------------------------- c. two tanks, free run


def vssm_two_tank(family: str, data, tier: Tier, window: int, seed: int) -> tuple[dict, float, torch.Tensor]:
    """Train a VSSM on windows of the two-tank training data, free-run it on the held-out sequences.

    Returns (scores, seconds per training step, samples (S, B, T, 1) in the data's units).
    """
    u_train, y_train = shift_inputs(data.train_inputs), data.train_outputs
    mu, sd = y_train.mean(), y_train.std()
    B, T, _ = y_train.shape
    n = T // window
    y_win = ((y_train[:, :n * window] - mu) / sd).reshape(B * n, window, 1)
    u_win = u_train[:, :n * window].reshape(B * n, window, 1)
    torch.manual_seed(seed)
    model = make_generative_model(4, 1, 1, transition="mlp", emission_mean="mlp", hidden_sizes=(32, 32))
    posterior = make_posterior(family, 4, 1, 1, hidden_size=32)
    start = time.perf_counter()
    train_vssm(model, posterior, y_win, controls=u_win,
               config=TrainConfig(num_steps=tier.tank_steps, learning_rate=5e-3, progress=False, seed=seed))
    per_step = (time.perf_counter() - start) / tier.tank_steps
    u_test, y_test = shift_inputs(data.test_inputs), data.test_outputs
    T_test = y_test.shape[1]
    pred = k_step_prediction(model, posterior, (y_test[:, :RECOGNITION] - mu) / sd, T_test - RECOGNITION,
                             controls=u_test[:, :RECOGNITION], future_controls=u_test[:, RECOGNITION:],
                             num_samples=tier.tank_samples, quantiles=(0.5,),
                             generator=torch.Generator().manual_seed(1000 + seed))
    future = pred.observations * sd + mu  # (S, B, T - L, 1)
    seen = y_test[:, :RECOGNITION].expand(future.shape[0], *y_test[:, :RECOGNITION].shape)  # not scored
    samples = torch.cat([seen, future], 2)
    return free_run_scores(samples, y_test, RECOGNITION), per_step, samples


def two_tanks(tier: Tier, out: Path, window: int) -> dict:
    """The free-run table: linear SSM (ML) vs VSSM (each family) vs PR-SSM vs the random-parameter SSM."""
    length = 200 if tier is not TIERS["smoke"] else 60
    data = make_two_tank_data(16, length, seed=0, test_sequences=16)
    rows: list[dict] = []
    plots: dict[str, torch.Tensor] = {}

    def add(name: str, seed: int, scores: dict, seconds: float, per_step: float | None, samples: torch.Tensor):
        rows.append({"model": name, "seed": seed, **scores, "seconds": seconds, "seconds_per_step": per_step})
        plots.setdefault(name, samples[:, 0, :, 0])
        step = "" if per_step is None else f", {1000 * per_step:.1f} ms/step"
        print(f"[tanks] {name:26s} seed {seed}: RMSE {scores['rmse']:.4f}  NLL {scores['nll']:+.3f}  "
              f"cover95 {scores['coverage']:.3f}  ({seconds:.1f} s{step})", flush=True)

    for dx in (2, 4):
        start = time.perf_counter()
        lin = fit_linear_baseline(data.train_inputs, data.train_outputs, state_dim=dx, num_steps=100)
        samples = linear_free_run(lin, data.test_inputs, data.test_outputs, RECOGNITION, num_samples=2000)
        add(f"linear SSM (ML, dx={dx})", 0, free_run_scores(samples, data.test_outputs, RECOGNITION),
            time.perf_counter() - start, None, samples)
    for seed in tier.seeds:
        for family in FAMILIES:
            start = time.perf_counter()
            scores, per_step, samples = vssm_two_tank(family, data, tier, min(window, length), seed)
            add(f"VSSM {family}", seed, scores, time.perf_counter() - start, per_step, samples)
        for name, cls in (("PR-SSM", PRSSM), ("random-parameter SSM", RandomParameterSSM)):
            torch.manual_seed(seed)
            model = cls(state_dim=4, output_dim=1, input_dim=1, recognition_steps=RECOGNITION)
            start = time.perf_counter()
            train_trajectory_model(model, data.train_inputs, data.train_outputs,
                                   TrajectoryTrainConfig(num_steps=tier.trajectory_steps, seed=seed,
                                                         subsequence_length=min(100, length), progress=False))
            per_step = (time.perf_counter() - start) / tier.trajectory_steps
            sim = model.simulate(data.test_inputs, data.test_outputs, tier.tank_samples,
                                 torch.Generator().manual_seed(1000 + seed))
            add(name, seed, free_run_scores(sim.samples, data.test_outputs, RECOGNITION),
                time.perf_counter() - start, per_step, sim.samples)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    t = torch.arange(length)
    ax.plot(t, data.test_outputs[0, :, 0], "k.", ms=2, label="held-out y")
    for name, s in plots.items():
        if name not in ("linear SSM (ML, dx=4)", "VSSM markovian", "PR-SSM", "random-parameter SSM"):
            continue
        q = torch.quantile(s.double(), torch.tensor([0.025, 0.975], dtype=F64), dim=0)
        line, = ax.plot(t[RECOGNITION:], s.mean(0)[RECOGNITION:], lw=1.2, label=name)
        ax.fill_between(t[RECOGNITION:].numpy(), q[0, RECOGNITION:].numpy(), q[1, RECOGNITION:].numpy(),
                        color=line.get_color(), alpha=0.12)
    ax.axvline(RECOGNITION, color="gray", ls=":")
    ax.set_xlabel("t (s)")
    ax.set_ylabel("lower tank level")
    ax.set_title("Two tanks: free run after 10 observed steps (mean and 95 % band)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "vssm_two_tank_free_run.png", dpi=120)
    plt.close(fig)
    return {"rows": rows, "window": window, "length": length}


# ----------------------------------------------------------------- d. pendulum, k-step log-likelihood


def pendulum(tier: Tier, out: Path) -> dict:
    """Held-out log p(y_{T+k} | Y_{1:T}), k = 1..20: the linear SSM (exact) vs the VSSM of each family."""
    results: dict = {"seeds": {}}
    for seed in tier.seeds:
        data = make_pendulum_data(num_train=tier.pendulum_train, num_test=tier.pendulum_test,
                                  length=tier.pendulum_length, test_length=CONDITION, horizon=HORIZON, seed=seed)
        Y, Y_test = data.train_observations, data.test_observations
        seen, future = Y_test[:, :CONDITION], Y_test[:, CONDITION:]
        per_seed: dict = {}
        offset = Y.double().mean((0, 1))
        start = time.perf_counter()
        linear = new_linear_model(4, 2, seed)
        fit(linear, Y.double() - offset, config=FitConfig(num_steps=150, progress=False))
        with torch.no_grad():
            ssm = linear.ssm()
            filt = kalman_filter(ssm, seen.double() - offset)
            lp = predict(ssm, filt.filtered_means[:, -1], filt.filtered_covs[:, -1], HORIZON)
            ll = torch.distributions.MultivariateNormal(lp.obs_means, lp.obs_covs).log_prob(future.double() - offset)
            rmse = (lp.obs_means + offset - future.double()).pow(2).sum(-1).mean(0).sqrt()
        per_seed["linear SSM (ML, dx=4)"] = {"ll": ll.mean(0).tolist(), "ll_se": (ll.std(0) / ll.shape[0] ** 0.5).tolist(),
                                             "rmse": rmse.tolist(), "seconds": time.perf_counter() - start,
                                             "per_sequence": ll}
        for family in FAMILIES:
            torch.manual_seed(seed)
            model = make_generative_model(4, 2, transition="mlp", emission_mean="mlp", hidden_sizes=(32, 32))
            posterior = make_posterior(family, 4, 2, hidden_size=32)
            start = time.perf_counter()
            train_vssm(model, posterior, Y, config=TrainConfig(num_steps=tier.pendulum_steps, learning_rate=5e-3,
                                                               batch_size=tier.pendulum_batch, progress=False,
                                                               seed=seed))
            seconds = time.perf_counter() - start
            pred = k_step_prediction(model, posterior, seen, HORIZON, num_samples=500,
                                     generator=torch.Generator().manual_seed(1000 + seed))
            ll = gaussian_fit_log_prob(pred.observations.double(), future.double())
            rmse = (pred.mean.double() - future.double()).pow(2).sum(-1).mean(0).sqrt()
            per_seed[f"VSSM {family}"] = {"ll": ll.mean(0).tolist(), "ll_se": (ll.std(0) / ll.shape[0] ** 0.5).tolist(),
                                          "rmse": rmse.tolist(), "seconds": seconds,
                                          "seconds_per_step": seconds / tier.pendulum_steps, "per_sequence": ll}
        lin_ll = per_seed["linear SSM (ML, dx=4)"]["per_sequence"]
        for name, r in per_seed.items():
            diff = r.pop("per_sequence") - lin_ll
            r["diff_vs_linear"] = diff.mean(0).tolist()
            r["diff_se"] = (diff.std(0) / diff.shape[0] ** 0.5).tolist()
            step = f", {1000 * r['seconds_per_step']:.1f} ms/step" if "seconds_per_step" in r else ""
            print(f"[pendulum] seed {seed} {name:22s} LL k=1 {r['ll'][0]:+.3f}  k=5 {r['ll'][4]:+.3f}  "
                  f"k=10 {r['ll'][9]:+.3f}  k=20 {r['ll'][19]:+.3f} | minus linear k=1 {r['diff_vs_linear'][0]:+.3f} "
                  f"± {r['diff_se'][0]:.3f}, k=20 {r['diff_vs_linear'][19]:+.3f} ± {r['diff_se'][19]:.3f} | "
                  f"RMSE k=1 {r['rmse'][0]:.3f} k=20 {r['rmse'][19]:.3f} ({r['seconds']:.1f} s{step})", flush=True)
        results["seeds"][seed] = per_seed
    fig, ax = plt.subplots(figsize=(6, 4))
    k = list(range(1, HORIZON + 1))
    first = results["seeds"][tier.seeds[0]]
    for name, r in first.items():
        ax.errorbar(k, r["ll"], yerr=[2 * e for e in r["ll_se"]], marker="o", ms=3, capsize=2, label=name)
    ax.set_xlabel("k (steps ahead, dt = 0.1 s)")
    ax.set_ylabel("held-out log p(y_{T+k} | Y_{1:T}) [nats]")
    ax.set_title(f"Pendulum through a (sin, −cos) sensor, T = {CONDITION}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "vssm_pendulum_k_step.png", dpi=120)
    plt.close(fig)
    return results


# --------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tier", choices=tuple(TIERS), default="default", help="budget tier (default: default)")
    parser.add_argument("--out", default=None, help="output folder (default: benchmarks/out/vssm/<tier>)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default: 1)")
    parser.add_argument("--tank-window", type=int, default=50, help="VSSM training window on the two tanks")
    parser.add_argument("--parts", default="gap,pendulum,tanks", help="comma-separated subset of gap,pendulum,tanks")
    parser.add_argument("--seeds", default=None, help="comma-separated training seeds of (c, d) (default: the tier's)")
    parser.add_argument("--gap-steps", type=int, default=None, help="Adam steps of part a (default: the tier's)")
    parser.add_argument("--covariance", choices=("diag", "full"), default="diag",
                        help="the posteriors' covariance in part a (default: diag)")
    parser.add_argument("--figures", action="store_true", help="copy the figures to benchmarks/figures/vssm_*.png")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("TQDM_DISABLE", "1")
    tier = TIERS[args.tier]
    if args.gap_steps is not None:
        tier = replace(tier, gap_steps=args.gap_steps)
    if args.seeds is not None:
        tier = replace(tier, seeds=tuple(int(x) for x in args.seeds.split(",")))
    out = Path(args.out or Path(__file__).parent / "out" / "vssm" / args.tier)
    out.mkdir(parents=True, exist_ok=True)
    parts = set(args.parts.split(","))
    unknown = parts - {"gap", "pendulum", "tanks"}
    if unknown:
        parser.error(f"--parts: unknown {sorted(unknown)}, expected a subset of gap,pendulum,tanks")
    print(f"tier {args.tier}: {asdict(tier)}; torch threads {torch.get_num_threads()}", flush=True)
    results: dict = {"tier": args.tier, "settings": asdict(tier), "threads": torch.get_num_threads()}
    begin = time.perf_counter()
    if "gap" in parts:
        results["gap"] = elbo_gap(tier, out, args.covariance)
    if "pendulum" in parts:
        results["pendulum"] = pendulum(tier, out)
    if "tanks" in parts:
        results["tanks"] = two_tanks(tier, out, args.tank_window)
    results["seconds"] = time.perf_counter() - begin

    print("\n== b. wall time per training step (CPU, one thread; full batch = one epoch) ==")
    if "gap" in results:
        for family, r in results["gap"]["families"].items():
            print(f"  linear-Gaussian B={tier.gap_sequences} T={tier.gap_length} float64  {family:15s} "
                  f"{1000 * r['seconds_per_step']:7.1f} ms")
    if "pendulum" in results:
        for name, r in results["pendulum"]["seeds"][tier.seeds[0]].items():
            if "seconds_per_step" in r:
                print(f"  pendulum B={tier.pendulum_batch} of {tier.pendulum_train} T={tier.pendulum_length} float32 {name[5:]:15s} "
                      f"{1000 * r['seconds_per_step']:7.1f} ms")
    if "tanks" in results:
        for r in results["tanks"]["rows"]:
            if r["seconds_per_step"] is not None and r["seed"] == tier.seeds[0]:
                print(f"  two tanks {r['model']:28s} {1000 * r['seconds_per_step']:7.1f} ms")
        print("\n== c. two tanks, free run over t = 10..T-1 on 16 held-out sequences ==")
        print(f"  {'model':28s} {'seed':>4s} {'RMSE':>8s} {'NLL':>8s} {'cover95':>8s} {'seconds':>8s}")
        for r in results["tanks"]["rows"]:
            print(f"  {r['model']:28s} {r['seed']:4d} {r['rmse']:8.4f} {r['nll']:8.3f} {r['coverage']:8.3f} "
                  f"{r['seconds']:8.1f}")
    if "pendulum" in results:
        print(f"\n== d. pendulum, held-out log p(y_(T+k) | Y_(1:T)), T = {CONDITION}, "
              f"{tier.pendulum_test} sequences (± 1 SE) ==")
        for seed, per_seed in results["pendulum"]["seeds"].items():
            for name, r in per_seed.items():
                print(f"  seed {seed} {name:22s} k=1 {r['ll'][0]:+.3f} ± {r['ll_se'][0]:.3f}   "
                      f"k=20 {r['ll'][19]:+.3f} ± {r['ll_se'][19]:.3f}   RMSE k=1 {r['rmse'][0]:.3f}  "
                      f"k=20 {r['rmse'][19]:.3f}")
    print(f"\ntotal {results['seconds']:.0f} s; results and figures in {out}")
    with open(out / "results.json", "w") as f:
        json.dump(results, f, indent=1, default=float)
    if args.figures:
        dest = Path(__file__).parent / "figures"
        for png in sorted(out.glob("vssm_*.png")):
            shutil.copy(png, dest / png.name)
            print(f"copied {png.name} -> {dest / png.name}")


if __name__ == "__main__":
    main()
