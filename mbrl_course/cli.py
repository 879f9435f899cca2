"""``mbrl-course``: the course's command line.

    mbrl-course train pets --env Pendulum-v1 --episodes 10 --seed 0 --device cpu --out runs/pets
    mbrl-course train mbmf --env Pendulum-v1 --out runs/mbmf --set planner.population=2000 --set fit.epochs=30
    mbrl-course train mbpo --env InvertedPendulum-v5 --episodes 50 --out runs/mbpo   (the Dyna loop: ensemble + SAC)
    mbrl-course train sac --env InvertedPendulum-v5 --episodes 50 --out runs/sac     (SAC alone, no model)
    mbrl-course train mbmf-ft --env mbrl_course/CartPoleSwingUp-v0 --episodes 125 --out runs/mbmf-ft
                                                   (15 MPC episodes -> 10 DAgger -> PPO)
    mbrl-course train planet --env Pendulum-v1 --pixels --out runs/planet   (MPC in an RSSM's latent space, from frames)
    mbrl-course train dreamer --env mbrl_course/CartPoleSwingUp-v0 --pixels --out runs/dreamer   (Dyna in it)
    mbrl-course evaluate runs/pets
    mbrl-course compare runs/pets runs/mbmf --out compare.png
    mbrl-course budget
    mbrl-course doctor
    mbrl-course course release|validate|autograde|export|feedback|export-student   (instructors; see docs/instructor-guide.md)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _parse_set(items: list[str]) -> dict[str, str]:
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"--set: expected KEY=VALUE, got {item!r}")
        overrides[key.strip()] = value.strip()
    return overrides


def build_parser() -> argparse.ArgumentParser:
    from mbrl_course.envs import SUPPORTED_ENVS
    from mbrl_course.runs import ALGORITHMS

    parser = argparse.ArgumentParser(prog="mbrl-course", description="Model-based RL course: train, evaluate, compare.")
    sub = parser.add_subparsers(dest="command", required=True)

    tr = sub.add_parser("train", help="train an agent, writing returns.csv, learning_curve.png, checkpoint.pt")
    tr.add_argument("algo", choices=sorted(ALGORITHMS),
                    help="which agent: pets, mbmf, planet (MPC loop); mbpo, sac, pilco, deep-pilco, dreamer, gps (Dyna loop); "
                         "mbmf-ft (MPC -> DAgger -> PPO)")
    tr.add_argument("--env", default="Pendulum-v1", choices=SUPPORTED_ENVS, help="gymnasium env id")
    tr.add_argument("--episodes", type=int, default=10, help="interaction budget τ in episodes (default 10)")
    tr.add_argument("--max-episode-steps", type=int, default=None,
                    help="episode length in env steps (default: the env's, or the algorithm's paper setting, "
                         "e.g. PILCO's 40-step cart-pole trials)")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    tr.add_argument("--out", type=Path, default=None, help="run directory (default runs/ALGO-ENV-seedN)")
    tr.add_argument("--budget", choices=("smoke", "default", "full"), default=None,
                    help="compute tier (default: MBRL_COURSE_BUDGET, smoke under CI, else default)")
    tr.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a setting of the config by its path, e.g. --set planner.horizon=20 (pets), "
                         "--set learner.lr=3e-4 --set model.ensemble_size=7 (mbpo); repeatable")
    group = tr.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    group.add_argument("--overwrite", action="store_true", help="start again even if --out holds a run")
    tr.add_argument("--pixels", action="store_true",
                    help="observe 64x64x3 frames (with the env's action repeat) instead of the state; planet and "
                         "dreamer need it, the other agents refuse it")
    tr.add_argument("--no-render", action="store_true", help="do not record rollout.gif")
    tr.add_argument("--quiet", action="store_true", help="no progress bars")

    ev = sub.add_parser("evaluate", help="reload a run's checkpoint and report returns")
    ev.add_argument("run_dir", type=Path)
    ev.add_argument("--episodes", type=int, default=3)
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--quiet", action="store_true")

    cmp_ = sub.add_parser("compare", help="draw several runs' learning curves in one PNG")
    cmp_.add_argument("run_dirs", type=Path, nargs="+")
    cmp_.add_argument("--out", type=Path, default=Path("compare.png"))
    cmp_.add_argument("--title", default="Learning curves")

    sub.add_parser("budget", help="print the compute tier this shell runs in")
    sub.add_parser("doctor", help="check this environment for the course and print what to fix")

    from mbrl_course.grading.cli import add_course_parser

    add_course_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["doctor"]:
        # before building the parser, which imports gymnasium: the doctor must run in a broken environment too
        from mbrl_course.doctor import main as doctor_main

        return doctor_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)

    if args.command == "course":
        from mbrl_course.grading.cli import run_course

        return run_course(args)

    if args.command == "budget":
        from mbrl_course.budget import budget

        print(budget())
        return 0

    if args.command == "compare":
        from mbrl_course.viz import plot_learning_curves, read_returns_csv

        runs = {str(d): read_returns_csv(d) for d in args.run_dirs}
        plot_learning_curves(runs, args.out, title=args.title)
        print(f"wrote {args.out}")
        return 0

    from mbrl_course.runs import evaluate, summarize, train

    if args.command == "train":
        if args.episodes < 1:
            parser.error(f"--episodes: expected an integer >= 1, got {args.episodes}")
        try:
            overrides = _parse_set(args.set)
        except argparse.ArgumentTypeError as err:
            parser.error(str(err))
        if args.max_episode_steps is not None and args.max_episode_steps < 1:
            parser.error(f"--max-episode-steps: expected an integer >= 1, got {args.max_episode_steps}")
        env_kwargs = {} if args.max_episode_steps is None else {"max_episode_steps": args.max_episode_steps}
        out = args.out or Path("runs") / f"{args.algo}-{args.env.replace('/', '_')}-seed{args.seed}"
        try:
            rows = train(args.algo, args.env, episodes=args.episodes, out=out, seed=args.seed, device=args.device,
                         tier=args.budget, overrides=overrides, resume=args.resume, overwrite=args.overwrite,
                         record=not args.no_render, progress=not args.quiet, env_kwargs=env_kwargs,
                         pixels=args.pixels)
        except (ValueError, FileExistsError) as err:
            parser.error(str(err))
        except FloatingPointError as err:  # a diverging loss: the message says where the last good checkpoint is
            print(f"mbrl-course train: error: {err}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
        print(f"{args.algo} on {args.env}: last return {rows[-1]['return']:.1f}; outputs in {out}")
        return 0

    if args.command == "evaluate":
        try:
            returns = evaluate(args.run_dir, episodes=args.episodes, device=args.device, progress=not args.quiet)
        except (ValueError, FileNotFoundError) as err:
            parser.error(str(err))
        print(" ".join(f"{r:.1f}" for r in returns))
        print(f"return: {summarize(returns)}")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
