"""Attentive SSM vs first-order HMMs on data from a semi-Markov "disease progression" chain (issue 14, part 3).

Per seed: train and held-out sequences from :meth:`~mbrl_course.ssm.hmm.SemiMarkovChain.disease_progression`
(K = 4 stages with peaked durations, 2-D Gaussian observations; default tier 1000 training and 200 held-out
sequences of T = 60 steps: with only 200 training sequences the attentive SSM overfits, its training bound passing
the truth's log-likelihood while the held-out bound falls after about 300 steps); on the held-out sequences,
log p(Y) / T of

- the true generator (exact: forward algorithm on the augmented state (stage, duration));
- a Gaussian HMM fitted by EM with K and with 2K states (best of ``--restarts`` k-means++ starts by training
  log-likelihood; exact forward algorithm);
- the attentive SSM (K states) trained at ``--tier`` (:func:`~mbrl_course.ssm.attentive.train_attentive_ssm`,
  ``--att-restarts`` candidates of ``--restart-steps`` steps, the best by the bound on the *training* sequences
  continued to ``--steps``; the candidates' training bounds are printed);
  its log-likelihood is the importance-sampling estimate with ``--is-samples`` ancestral paths (a stochastic lower
  bound, consistent), and its bound L̃ / T is printed too;

and the fraction of the gap closed, (LL_att - LL_hmm) / (LL_true - LL_hmm), for the K-state HMM (the target:
≥ 0.5) and for the 2K-state one. Standard errors over held-out sequences (paired differences; the fraction by
the delta method). Prints a table, writes ``results.json`` under ``--out`` (default
``benchmarks/out/attentive_ssm/<tier>``).

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/attentive_ssm.py --tier default --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from mbrl_course.budget import by_budget
from mbrl_course.ssm.attentive import AttentiveSSM, AttentiveTrainConfig, train_attentive_ssm
from mbrl_course.ssm.hmm import GaussianHMM, SemiMarkovChain


def mean_se(x: torch.Tensor) -> tuple[float, float]:
    """Mean and its standard error over the first axis."""
    return float(x.mean()), float(x.std() / math.sqrt(x.shape[0]))


def gap_fraction(model: torch.Tensor, baseline: torch.Tensor, truth: torch.Tensor) -> tuple[float, float]:
    """f = mean(model - baseline) / mean(truth - baseline), SE by the delta method over sequences."""
    num, den = model - baseline, truth - baseline
    f = float(num.mean() / den.mean())
    return f, float((num - f * den).std() / den.mean() / math.sqrt(num.shape[0]))


def fit_hmm(y_train: torch.Tensor, num_states: int, restarts: int, seed: int, iters: int) -> GaussianHMM:
    """Best of ``restarts`` EM runs (k-means++ starts) by training log-likelihood."""
    best, best_ll = None, -math.inf
    for r in range(restarts):
        hmm = GaussianHMM.from_data(y_train, num_states, generator=torch.Generator().manual_seed(1000 * seed + r))
        result = hmm.fit_em(y_train, num_iters=iters, tol=1e-3)
        if result.log_likelihoods[-1] > best_ll:
            best, best_ll = hmm, result.log_likelihoods[-1]
    return best


def run_seed(seed: int, args: argparse.Namespace) -> dict:
    chain = SemiMarkovChain.disease_progression(args.obs_noise)
    g = torch.Generator().manual_seed(seed)
    _, y_train = chain.sample(args.num_train, args.num_steps, g)
    _, y_test = chain.sample(args.num_test, args.num_steps, g)
    T, K = args.num_steps, chain.num_stages
    out: dict = {"seed": seed}
    per_step = {"truth": chain.log_likelihood(y_test) / T}
    t0 = time.time()
    for name, k in (("hmm_K", K), ("hmm_2K", 2 * K)):
        hmm = fit_hmm(y_train, k, args.restarts, seed, args.em_iters)
        per_step[name] = hmm.log_likelihood(y_test) / T
    out["hmm_seconds"] = time.time() - t0
    torch.manual_seed(seed)
    model = AttentiveSSM(K, chain.obs_dim, max_lag=args.max_lag, hidden_size=args.hidden)
    model.init_from_data(y_train.float(), torch.Generator().manual_seed(seed))
    cfg = AttentiveTrainConfig(num_steps=args.steps, restarts=args.att_restarts, restart_steps=args.restart_steps,
                               batch_size=args.batch_size, seed=seed, progress=args.progress)
    t0 = time.time()
    result = train_attentive_ssm(model, y_train.float(), cfg)
    out["train_seconds"] = time.time() - t0
    out["train_bound_last"] = result.history[-1]
    out["restart_train_bounds"], out["selected_restart"] = result.restart_bounds, result.selected_restart
    t0 = time.time()
    with torch.no_grad():
        bound = model.elbo(y_test.float()).double() / T
    per_step["attentive"] = model.log_likelihood(y_test.float(), args.is_samples,
                                                 generator=torch.Generator().manual_seed(seed)).double() / T
    out["eval_seconds"] = time.time() - t0
    out["loglik_per_step"] = {k: mean_se(v) for k, v in per_step.items()}
    out["attentive_bound_per_step"] = mean_se(bound)
    out["gap_truth_minus_hmm_K"] = mean_se(per_step["truth"] - per_step["hmm_K"])
    out["gap_truth_minus_hmm_2K"] = mean_se(per_step["truth"] - per_step["hmm_2K"])
    out["fraction_closed_vs_hmm_K"] = gap_fraction(per_step["attentive"], per_step["hmm_K"], per_step["truth"])
    out["fraction_closed_vs_hmm_2K"] = gap_fraction(per_step["attentive"], per_step["hmm_2K"], per_step["truth"])
    with torch.no_grad():
        out["attention_example"] = model.attention(y_test[:1].float())[0, :20, :20].tolist()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tier", choices=("smoke", "default", "full"), default="default")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=None, help="Adam steps (default: the tier's)")
    parser.add_argument("--num-train", type=int, default=None)
    parser.add_argument("--num-test", type=int, default=None)
    parser.add_argument("--num-steps", type=int, default=60, help="T, steps per sequence")
    parser.add_argument("--obs-noise", type=float, default=0.6)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-lag", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--restarts", type=int, default=None, help="EM restarts of each HMM")
    parser.add_argument("--att-restarts", type=int, default=None, help="restart candidates of the attentive SSM")
    parser.add_argument("--restart-steps", type=int, default=None, help="Adam steps of each candidate")
    parser.add_argument("--em-iters", type=int, default=200)
    parser.add_argument("--is-samples", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tier = args.tier
    args.steps = args.steps or by_budget(smoke=20, default=1000, full=4000, tier=tier)
    args.num_train = args.num_train or by_budget(smoke=20, default=1000, full=2000, tier=tier)
    args.num_test = args.num_test or by_budget(smoke=20, default=200, full=400, tier=tier)
    args.restarts = args.restarts or by_budget(smoke=1, default=3, full=5, tier=tier)
    args.att_restarts = args.att_restarts or by_budget(smoke=1, default=3, full=3, tier=tier)
    args.restart_steps = args.restart_steps or by_budget(smoke=10, default=100, full=200, tier=tier)
    args.is_samples = args.is_samples or by_budget(smoke=16, default=256, full=1024, tier=tier)
    seeds = [int(s) for s in args.seeds.split(",")]
    out_dir = Path(args.out or f"benchmarks/out/attentive_ssm/{tier}")
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    t_start = time.time()
    header = (f"{'seed':>4} {'truth':>15} {'HMM K':>15} {'HMM 2K':>15} {'attentive IS':>15} {'att. bound':>15} "
              f"{'closed vs K':>14} {'closed vs 2K':>14} {'train s':>8}")
    print(header)
    for seed in seeds:
        r = run_seed(seed, args)
        results.append(r)
        ll = r["loglik_per_step"]
        cell = "{:8.4f} ± {:.4f}".format
        print(f"{seed:>4} {cell(*ll['truth'])} {cell(*ll['hmm_K'])} {cell(*ll['hmm_2K'])} {cell(*ll['attentive'])} "
              f"{cell(*r['attentive_bound_per_step'])} {'{:6.3f} ± {:.3f}'.format(*r['fraction_closed_vs_hmm_K'])} "
              f"{'{:6.3f} ± {:.3f}'.format(*r['fraction_closed_vs_hmm_2K'])} {r['train_seconds']:8.1f}", flush=True)
        if r["restart_train_bounds"]:
            print(f"     restarts: training bounds L̃/T after {args.restart_steps} steps "
                  f"{[round(b, 4) for b in r['restart_train_bounds']]}, kept #{r['selected_restart']}", flush=True)
    fractions = [r["fraction_closed_vs_hmm_K"][0] for r in results]
    summary = {"mean_fraction_closed_vs_hmm_K": sum(fractions) / len(fractions),
               "min_fraction_closed_vs_hmm_K": min(fractions), "target": 0.5,
               "target_met_every_seed": all(f >= 0.5 for f in fractions)}
    summary["total_seconds"] = time.time() - t_start
    print(json.dumps(summary))
    (out_dir / "results.json").write_text(json.dumps({"args": vars(args), "seeds": results, "summary": summary},
                                                     indent=1))
    print(f"wrote {out_dir / 'results.json'}")


if __name__ == "__main__":
    main()
