"""Deep PILCO's policy gradient: how noisy is the reparameterised estimate, and how noisy is REINFORCE's?

For each start setting (``--starts``), a fixed dropout model f_ψ (:class:`~mbrl_course.models.DropoutDynamics`,
2 × ``--hidden``) is fit on ``--episodes`` episodes of random actions on PILCO's cart-pole swing-up, and a fixed RBF
controller π_θ is initialised from those states (centres ~ N(their mean, their spread), 0.1-scale weights); the start
distribution p(i_1) is fit to the episodes' first observations. Two settings:

- ``down``: the env's own start, the pole hanging (the swing-up task): the saturating reward is ~1e-5 there, so
  the gradient comes from the rare particles that swing high;
- ``up``: episodes started near upright, θ ~ N(0, 0.1²) (the balancing phase): the reward is of order 1.

For each number of particles K, ``--repeats`` independent estimates of ∇_θ J (each from its own seeded generator:
starts, masks, noises, exploration) are drawn with :func:`~mbrl_course.agents.deep_pilco.particle_objective`,
H = ``--horizons`` steps, by three estimators:

- ``reparam + MM``: the paper's estimator, a deterministic policy (σ = 0), moment matching after every step;
- ``reparam``: independent particles (no moment matching), exploration σ = ``--sigma`` · u_max;
- ``reinforce``: the score function with a leave-one-out baseline on the same kind of particles and the same σ,
  so it estimates the same ∇_θ J as ``reparam``.

Reported per setting (start, H), K and estimator: the total variance tr Cov[ĝ] = Σ_j Var[ĝ_j] over the repeats (the policy
has N (O + 1) + O parameters), the squared norm of the mean estimate ‖ḡ‖², their ratio (the noise-to-signal ratio
of one estimate), the ratio to ``reparam``'s variance and the seconds per estimate; and the agreement (cosine) of
the two estimators of the same gradient at the largest K. The estimates are heavy-tailed (a few particles that
swing far carry much of the variance), so each row also says how much of tr Cov[ĝ] its 3 farthest estimates
carry. Writes a figure (one panel per setting: tr Cov[ĝ] against K, log-log, with a 1/K line).

    PYTHONPATH=. .venv/bin/python benchmarks/deep_pilco_gradients.py
    PYTHONPATH=. .venv/bin/python benchmarks/deep_pilco_gradients.py --quick      # smoke test, seconds
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from mbrl_course.agents.deep_pilco import episode_starts, particle_objective, start_distribution
from mbrl_course.agents.mpc import RandomAgent, run_episode
from mbrl_course.data import ReplayBuffer
from mbrl_course.envs import make_env, reward_fn
from mbrl_course.models import DropoutDynamics
from mbrl_course.models.imagination import _standard_normal
from mbrl_course.rl.controllers import RBFController

ENV = "mbrl_course/CartPoleSwingUp-v0"
FIGURE = Path(__file__).parent / "figures" / "deep_pilco_gradient_variance.png"
ESTIMATORS = {  # name: (gradient, exploration as a fraction of u_max (None: --sigma), moment matching)
    "reparam + MM (σ = 0)": ("reparam", 0.0, True),
    "reparam": ("reparam", None, False),
    "reinforce": ("reinforce", None, False),
}


class StartUpright(gym.Wrapper):
    """The swing-up env started near upright: (x, ẋ, θ, θ̇) ~ N(0, 0.1² I)."""

    def reset(self, *, seed=None, options=None):
        state = 0.1 * np.random.default_rng(seed).standard_normal(4)
        return self.env.reset(seed=seed, options={"state": state})


def fixed_problem(start: str, episodes: int, hidden: int, epochs: int, num_basis: int, seed: int):
    """D_real of random episodes, the dropout model fit on it, and the RBF controller initialised from it."""
    torch.manual_seed(seed)
    env = make_env(ENV) if start == "down" else StartUpright(make_env(ENV))
    buffer = ReplayBuffer(5, 1)
    agent = RandomAgent(env.action_space, seed=seed)
    for k in range(episodes):
        run_episode(env, agent, buffer, episode=k, seed=seed)
    model = DropoutDynamics(5, 1, hidden_sizes=(hidden, hidden), dropout=0.05)
    report = model.fit(buffer, generator=torch.Generator().manual_seed(seed), epochs=epochs, batch_size=64,
                       weight_decay=1e-4)
    obs = buffer.all().obs.double()
    policy = RBFController(5, 1, float(env.action_space.high[0]), num_basis=num_basis)
    policy.initialise(obs.mean(0), obs.std(0, correction=0), torch.Generator().manual_seed(seed + 1))
    start_mean, start_chol = start_distribution(episode_starts(buffer).double())
    return model, policy, start_mean, start_chol, report


def estimates(model, policy, start_mean, start_chol, *, particles: int, repeats: int, horizon: int,
              gradient: str, sigma: float, moment_matching: bool, seed: int) -> tuple[torch.Tensor, float]:
    """``repeats`` gradient estimates ∇_θ Ĵ, ``(repeats, P)``, each from its own generator; and s per estimate."""
    params = list(policy.parameters())
    bound = policy.action_bound
    rewards = reward_fn(ENV)
    rows = []
    start_time = time.perf_counter()
    for r in range(repeats):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + r)
        eps = _standard_normal((particles, 5), gen, start_mean)
        start = start_mean + eps @ start_chol.T
        loss = particle_objective(model, policy, start, horizon=horizon, reward_fn=rewards, gradient=gradient,
                                  exploration_std=sigma * bound, action_bound=bound,
                                  moment_matching=moment_matching, generator=gen).loss
        rows.append(-torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)]))  # ∇_θ Ĵ = −∇ loss
    return torch.stack(rows), (time.perf_counter() - start_time) / repeats


def plot(table: list[dict], path: Path, repeats: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    starts = list(dict.fromkeys(row["start"] for row in table))
    horizons = list(dict.fromkeys(row["H"] for row in table))
    fig, axes = plt.subplots(len(horizons), len(starts), figsize=(5 * len(starts), 3.8 * len(horizons)),
                             squeeze=False)
    for i, horizon in enumerate(horizons):
        for j, start in enumerate(starts):
            ax = axes[i, j]
            setting = [row for row in table if row["start"] == start and row["H"] == horizon]
            for name in ESTIMATORS:
                rows = [row for row in setting if row["estimator"] == name]
                ax.loglog([row["K"] for row in rows], [row["trace_var"] for row in rows], "o-", label=name)
            ref = [row for row in setting if row["estimator"] == "reparam"]
            ks = np.array([row["K"] for row in ref], dtype=float)
            ax.loglog(ks, ref[0]["trace_var"] * ks[0] / ks, "k:", label="∝ 1/K")
            ax.set(xlabel="particles K", ylabel="tr Cov[ĝ]", title=f"start {start}, H = {horizon}")
            ax.grid(True, which="both", alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"Deep PILCO: variance of one policy-gradient estimate ({repeats} repeats each), cart-pole swing-up")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--particles", type=int, nargs="+", default=[5, 10, 20, 50, 100])
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--horizons", type=int, nargs="+", default=[10, 25])
    parser.add_argument("--sigma", type=float, default=0.1, help="exploration σ as a fraction of u_max")
    parser.add_argument("--starts", nargs="+", choices=("down", "up"), default=["down", "up"])
    parser.add_argument("--episodes", type=int, default=5, help="random episodes the model is fit on")
    parser.add_argument("--hidden", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--num-basis", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--figure", type=Path, default=None, help=f"default {FIGURE} (--quick: a temporary file)")
    parser.add_argument("--quick", action="store_true", help="K = 5, 20, 5 repeats, H = 10: a smoke test")
    args = parser.parse_args(argv)
    if args.quick:
        args.particles, args.repeats, args.horizons, args.episodes, args.epochs = [5, 20], 5, [10], 2, 5
    figure = args.figure or (Path(tempfile.gettempdir()) / "deep_pilco_gradient_variance_quick.png"
                             if args.quick else FIGURE)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    table = []
    for start in args.starts:
        model, policy, start_mean, start_chol, report = fixed_problem(start, args.episodes, args.hidden, args.epochs,
                                                                      args.num_basis, args.seed)
        n_params = sum(p.numel() for p in policy.parameters())
        print(f"start {start}: model fit on {args.episodes} random episodes, {report.epochs_run} epochs, holdout "
              f"MSE {report.best_val_mse[0]:.3f}; policy: {n_params} parameters; {time.perf_counter() - t0:.1f} s")
        for horizon in args.horizons:
            means = {}
            for k in args.particles:
                for name, (gradient, sigma, mm) in ESTIMATORS.items():
                    grads, seconds = estimates(model, policy, start_mean, start_chol, particles=k,
                                               repeats=args.repeats, horizon=horizon, gradient=gradient,
                                               sigma=args.sigma if sigma is None else sigma, moment_matching=mm,
                                               seed=args.seed + 17 * k)
                    deviation = (grads - grads.mean(0)).square().sum(1).sort().values  # ‖ĝ − ḡ‖² per repeat
                    trace_var = float(grads.var(0).sum())
                    mean_sq = float(grads.mean(0).square().sum())
                    means[(name, k)] = grads.mean(0)
                    table.append({"start": start, "H": horizon, "K": k, "estimator": name, "trace_var": trace_var,
                                  "mean_sq": mean_sq, "noise_to_signal": trace_var / mean_sq,
                                  "top3": float(deviation[-3:].sum() / deviation.sum()), "seconds": seconds})
            k = max(args.particles)
            a, b = means[("reparam", k)], means[("reinforce", k)]
            print(f"start {start}, H = {horizon}: cosine(mean reparam, mean reinforce) at K = {k}: "
                  f"{float(a @ b / (a.norm() * b.norm())):.3f} (the same gradient: 1 up to noise)")
    print(f"\n{args.repeats} estimates per row, σ = {args.sigma} u_max (MM rows: σ = 0); top-3 share: the part of "
          "tr Cov[ĝ] that the 3 farthest estimates carry (heavy tails make tr Cov uncertain)\n")
    print("| start | H | K | estimator | tr Cov[ĝ] | ‖ḡ‖² | tr Cov / ‖ḡ‖² | var / var(reparam) | top-3 share | "
          "s per estimate |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for row in table:
        ref = next(r for r in table if (r["start"], r["H"], r["K"], r["estimator"])
                   == (row["start"], row["H"], row["K"], "reparam"))
        print(f"| {row['start']} | {row['H']} | {row['K']} | {row['estimator']} | {row['trace_var']:.3g} | "
              f"{row['mean_sq']:.3g} | {row['noise_to_signal']:.3g} | {row['trace_var'] / ref['trace_var']:.3g} | "
              f"{row['top3']:.2f} | {row['seconds']:.3f} |")
    plot(table, figure, args.repeats)
    print(f"figure: {figure}; total {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
