"""Autograde a class of 30 Assignment 1 submissions (honest, wrong, misbehaving, malicious) and check
that every honest grade is exactly what the same notebook gets when graded alone.

    .venv/bin/python benchmarks/autograde_class.py [--cell-seconds 20] [--wall-seconds 90] [--keep DIR]

The class (built from the released notebook, as students would hand it in):

- honest: 8 reference solutions (some with comments and prints of their own), the blank release,
  9 wrong or unfinished solutions, one that raises, one with warnings on stderr, one with an
  endless loop in a free cell;
- malicious: ``Report.score`` patched (on a blank and on an honest notebook), the reference
  called with the profiler off, the reference's source executed or pasted, the hidden checks
  loaded, a fork bomb, a memory hog, harmful calls (``rm -rf ~``, sockets, signals, writes
  outside), a loop that ignores interrupts, a cell that sleeps past the wall time.

The honest submissions are graded a second time on their own, in a fresh course; their per-cell
scores must be identical. Each attack has what it may score at most. Prints one line per student
and, last, ``students=30 seconds=<s> per_student=<s> honest_intact=<bool> attacks_contained=<bool>``;
exits 1 if either is false.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from mbrl_course.grading import pipeline

REPO = Path(__file__).resolve().parents[1]
ASSIGNMENT = "01-planning"
NOTEBOOK = f"{ASSIGNMENT}.ipynb"
FULL = 12.0

WRONG = {
    "unbiased_std": ("refit", "def refit(elite_samples):\n    return elite_samples.mean(dim=0), elite_samples.std(dim=0)\n"),
    "argmin_elites": ("select_elites", "def select_elites(samples, returns, elites):\n"
                                       "    return samples[torch.topk(-returns, elites).indices]\n"),
    "whole_plan": ("mpc_step", None),  # filled in below: the reference's mpc_step returning the whole plan
    "uniform_from_zero": ("sample_uniform", "def sample_uniform(population, horizon, action_low, action_high, generator):\n"
                                            "    shape = (population, horizon, action_low.shape[0])\n"
                                            "    return torch.rand(shape, generator=generator, dtype=action_low.dtype)"
                                            " * action_high\n"),
    "shooting_argmin": ("random_shooting", "def random_shooting(objective, horizon, action_low, action_high, population,"
                                           " generator):\n"
                                           "    samples = sample_uniform(population, horizon, action_low, action_high,"
                                           " generator)\n"
                                           "    return samples[torch.argmin(objective(samples))]\n"),
    "gaussian_unclipped": ("sample_gaussian", "def sample_gaussian(mean, std, population, action_low, action_high,"
                                              " generator):\n"
                                              "    noise = torch.randn((population, *mean.shape), generator=generator,"
                                              " dtype=mean.dtype)\n    return mean + std * noise\n"),
    "global_rng": ("sample_uniform", "def sample_uniform(population, horizon, action_low, action_high, generator):\n"
                                     "    unit = torch.rand((population, horizon, action_low.shape[0]),"
                                     " dtype=action_low.dtype)\n"
                                     "    return action_low + unit * (action_high - action_low)\n"),
}
TAMPER = "from mbrl_course.grading import Report\nReport.score = lambda self: float(self.points)\n"
ATTACKS = {  # student: (what it does, where, code, the most it may score)
    "tamper_blank": ("patches Report.score on a blank notebook", "prepend:sample_uniform", TAMPER, 0.0),
    "profile_off_reference": ("calls mbrl_course.planning with the profiler off", "replace:random_shooting",
                              "import sys\nsys.setprofile(None)\nimport mbrl_course.planning as ref\n\n\n"
                              "def random_shooting(objective, horizon, action_low, action_high, population, generator):\n"
                              "    return ref.RandomShooting(horizon=horizon, population=population,"
                              " generator=generator).plan(objective, action_low, action_high)\n", FULL - 2),
    "exec_reference": ("executes the reference's source file", "replace:cem",
                       "import os, mbrl_course\nns = {}\nfolder = os.path.join(os.path.dirname(mbrl_course.__file__),"
                       " 'planning')\nfor name in ('base.py', 'cem.py'):\n"
                       "    exec(open(os.path.join(folder, name)).read(), ns)\n\n\n"
                       "def cem(objective, horizon, action_low, action_high, population, elites, iterations, generator,"
                       " init_mean=None, init_std=None):\n"
                       "    return ns['CEM'](horizon=horizon, population=population, elites=elites,"
                       " iterations=iterations, generator=generator).plan(objective, action_low, action_high)\n",
                       FULL - 3),
    "pasted_reference": ("pastes the reference's cem.py", "prepend:cem",
                         (REPO / "mbrl_course" / "planning" / "cem.py").read_text(), FULL - 3),
    "hidden_checks": ("loads the hidden checks", "prepend:sample_uniform",
                      "from mbrl_course.grading.instructor import hidden_checks\nhidden = hidden_checks('planning')\n",
                      FULL - 1),
    "fork_bomb": ("a fork bomb", "prepend:sample_uniform", "import os\nwhile True:\n    os.fork()\n", FULL - 1),
    "memory_hog": ("allocates 400 GB", "prepend:sample_uniform", "import torch\nhog = torch.empty(10**11)\n", FULL - 1),
    "harmful_calls": ("rm -rf ~, a socket, signals, writes outside", "free",
                      "import os, socket\nfor attack in (lambda: os.system('rm -rf ~'),\n"
                      "               lambda: socket.create_connection(('8.8.8.8', 53), timeout=2),\n"
                      "               lambda: os.kill(os.getpid() + 1, 9),\n"
                      "               lambda: open('/tmp/mbrl-class-escape', 'w').write('x')):\n"
                      "    try:\n        attack()\n    except Exception as err:\n        print(type(err).__name__)\n",
                      FULL),
    "stubborn_loop": ("a loop that ignores interrupts, in the refit cell", "prepend:refit",
                      "import time\nwhile True:\n    try:\n        time.sleep(5)\n    except KeyboardInterrupt:\n"
                      "        pass\n", 1 + 2 + 1 + 2),
    "past_wall_time": ("sleeps 15 s in every answer cell, past the wall time", "every",
                       "import time\ntime.sleep(15)\n", FULL - 2),
    "tamper_honest": ("patches Report.score on an unbiased-std notebook", "tamper_honest", TAMPER, None),
}


def _copy(nb):
    return nbformat.reads(nbformat.writes(nb), as_version=4)


def _cell(nb, grade_id):
    return next(c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id)


def build_class(release, reference) -> tuple[dict, dict[str, float | None]]:
    """student -> notebook, and for attacks the most each may score (None: as its honest twin)."""
    students: dict = {}
    for k in range(8):
        nb = _copy(reference)
        if k % 2:
            _cell(nb, "cem").source = f"# my CEM, version {k}\n" + _cell(nb, "cem").source
        if k % 3 == 2:
            _cell(nb, "refit").source += "\nprint('refit is ready')\n"
        students[f"reference_{k}"] = nb
    students["blank_release"] = _copy(release)
    wrong = dict(WRONG)
    wrong["whole_plan"] = ("mpc_step", _cell(reference, "mpc_step").source.replace("return plan[0]", "return plan"))
    for name, (grade_id, source) in wrong.items():
        nb = _copy(reference)
        _cell(nb, grade_id).source = source
        students[name] = nb
    half = _copy(release)
    for grade_id in ("sample_uniform", "random_shooting"):
        _cell(half, grade_id).source = _cell(reference, grade_id).source
    students["half_done"] = half
    crash = _copy(reference)
    _cell(crash, "refit").source = "elite_samples.mean(dim=0)\n\n" + _cell(crash, "refit").source
    students["raises_in_a_cell"] = crash
    endless = _copy(reference)
    endless.cells.append(nbformat.v4.new_code_cell("while True:\n    pass\n"))
    students["endless_free_cell"] = endless
    limits: dict[str, float | None] = {}
    for name, (_, where, code, most) in ATTACKS.items():
        kind, _, grade_id = where.partition(":")
        nb = _copy(release if name == "tamper_blank" else reference)
        if kind == "prepend":
            _cell(nb, grade_id).source = code + "\n" + _cell(nb, grade_id).source
        elif kind == "replace":
            _cell(nb, grade_id).source = code
        elif kind == "every":
            for cell in nb.cells:
                if cell.get("metadata", {}).get("nbgrader", {}).get("solution"):
                    cell.source = code + "\n" + cell.source
        elif kind == "free":
            nb.cells.append(nbformat.v4.new_code_cell(code))
        else:  # tamper_honest: the unbiased-std twin, plus the patch
            nb = _copy(students["unbiased_std"])
            _cell(nb, "sample_uniform").source = code + "\n" + _cell(nb, "sample_uniform").source
        students[name] = nb
        limits[name] = most
    return students, limits


def new_course(folder: Path, cell_seconds: float, wall_seconds: float) -> Path:
    folder.mkdir(parents=True)
    config = (REPO / "nbgrader_config.py").read_text()
    config += f"\nc.SandboxedExecute.cell_seconds = {cell_seconds}\nc.SandboxedExecute.wall_seconds = {wall_seconds}\n"
    (folder / "nbgrader_config.py").write_text(config)
    shutil.copytree(REPO / "solutions", folder / "solutions")
    return folder


def grade(course: Path, students: dict) -> tuple[dict, float]:
    for student, nb in students.items():
        pipeline.submit(course, student, ASSIGNMENT, {NOTEBOOK: nb})
    start = time.perf_counter()
    results = {r.student: r for r in pipeline.autograde(course, ASSIGNMENT)}
    return results, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell-seconds", type=float, default=20.0)
    parser.add_argument("--wall-seconds", type=float, default=90.0)
    parser.add_argument("--keep", type=Path, default=None, help="grade in this folder and keep it")
    args = parser.parse_args(argv)
    pipeline.ensure_alembic_on_path()
    work = args.keep or Path(tempfile.mkdtemp(prefix="mbrl-class-"))
    course = new_course(work / "class", args.cell_seconds, args.wall_seconds)
    pipeline.release(course, ASSIGNMENT)
    release = nbformat.read(course / "assignments" / ASSIGNMENT / NOTEBOOK, as_version=4)
    reference = pipeline.fill_release(release, nbformat.read(REPO / "solutions" / ASSIGNMENT / NOTEBOOK, as_version=4))
    students, limits = build_class(release, reference)
    assert len(students) == 30, len(students)
    results, seconds = grade(course, students)

    honest = {name: nb for name, nb in students.items() if name not in limits}
    alone_course = new_course(work / "alone", args.cell_seconds, args.wall_seconds)
    pipeline.release(alone_course, ASSIGNMENT)
    alone, _ = grade(alone_course, honest)

    intact, contained = True, True
    print(f"{'student':<24} {'score':>7}  check")
    for name, result in results.items():
        if name in honest:
            ok = result.cells == alone[name].cells and result.status == alone[name].status
            intact &= ok
            verdict = "same as graded alone" if ok else f"DIFFERS: alone {alone[name].score:g} {alone[name].cells}"
        else:
            most = limits[name] if limits[name] is not None else alone["unbiased_std"].score
            ok = result.score <= most + 1e-9
            contained &= ok
            verdict = f"attack ({ATTACKS[name][0]}): at most {most:g} {'ok' if ok else 'EXCEEDED'}"
        reason = f"  [{result.reason[:150]}]" if result.reason else ""
        print(f"{name:<24} {result.score:>7.4g}  {verdict}{reason}")
    escaped = Path("/tmp/mbrl-class-escape").exists()
    contained &= not escaped
    print(f"students={len(results)} seconds={seconds:.1f} per_student={seconds / len(results):.2f} "
          f"honest_intact={intact} attacks_contained={contained}")
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if intact and contained else 1


if __name__ == "__main__":
    sys.exit(main())
