"""How long each lecture takes to run top to bottom, per compute tier, as the course site builds it.

Each lecture runs in a fresh Python and kernel (``mbrl_course.grading.site.execute_lecture``: the
``notebooks run`` command with ``MBRL_COURSE_BUDGET`` set), ``--jobs`` at a time; its time is the wall clock
from kernel start to the last cell. The executed copies go to a temporary folder (the lectures stay
untouched). The ``full`` tier is not measured (paper-scale, meant for a GPU).

    python benchmarks/lecture_times.py                              # smoke and default, every lecture
    python benchmarks/lecture_times.py --tiers default --lectures 01,05   # re-measure some; others kept
    python benchmarks/lecture_times.py --keep /tmp/executed   # and keep the executed notebooks per tier

Writes ``benchmarks/out/lecture_times.json`` (merged with what it held: one entry per lecture and tier,
wall-clock ``seconds`` and the kernel's ``cpu_seconds``, with the machine's core count and load average
while it ran) and prints a markdown table for RESULTS.md. Then ``python -m mbrl_course.grading.notebooks
stamp-times benchmarks/out/lecture_times.json`` writes each lecture's run-time line. Run it on an otherwise
idle machine: wall times measured under load are upper bounds; there ``--clock cpu`` (the kernel's CPU
time, which for one torch thread is close to the wall time on an idle machine) is the better estimate.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from mbrl_course.grading.notebooks import format_seconds
from mbrl_course.grading.site import execute_lectures, lecture_paths

OUT = Path(__file__).resolve().parent / "out" / "lecture_times.json"
MEASURED_TIERS = ("smoke", "default")


def _load(path: Path) -> dict:
    if path.is_file():
        data = json.loads(path.read_text())
        if isinstance(data, dict) and isinstance(data.get("lectures"), dict):
            return data
    return {"lectures": {}}


def markdown_table(data: dict) -> str:
    """The RESULTS.md table: one row per lecture, one column per tier: wall time (the kernel's CPU time)
    (``—``: not measured; ``failed after``)."""
    rows = ["| lecture | smoke: wall (CPU) | default: wall (CPU) | full |", "|---|---|---|---|"]
    for lecture, tiers in sorted(data["lectures"].items()):
        cells = []
        for tier in MEASURED_TIERS:
            entry = tiers.get(tier)
            if entry is None:
                cells.append("—")
            else:
                text = "—" if entry["seconds"] is None else format_seconds(entry["seconds"])
                if entry.get("cpu_seconds") is not None:
                    text += f" ({format_seconds(entry['cpu_seconds'])})"
                cells.append(text if entry["ok"] else f"failed after {text}")
        rows.append(f"| `{Path(lecture).stem}` | {' | '.join(cells)} | GPU, not measured |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiers", default=",".join(MEASURED_TIERS), help="comma-separated (default smoke,default)")
    parser.add_argument("--lectures", default=None, help="comma-separated numbers (default: every lecture)")
    parser.add_argument("--jobs", type=int, default=1, help="lectures at once (default 1: times do not share cores)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell (default 3600)")
    parser.add_argument("--keep", type=Path, default=None,
                        help="keep the executed notebooks in KEEP/<tier>/ (python -m mbrl_course.grading.site "
                             "render KEEP/default --out _site renders them); default: a temporary folder")
    args = parser.parse_args(argv)
    tiers = [t.strip() for t in args.tiers.split(",") if t.strip()]
    bad = [t for t in tiers if t not in MEASURED_TIERS]
    if bad:
        parser.error(f"--tiers: expected some of {', '.join(MEASURED_TIERS)}, got {', '.join(bad)}")
    lectures = lecture_paths(only=None if not args.lectures else args.lectures.split(","))

    data = _load(args.out)
    failed = 0
    for tier in tiers:
        load_before = os.getloadavg()[0]
        if args.keep is not None:
            runs = execute_lectures(lectures, tier, args.keep / tier, jobs=args.jobs, timeout=args.timeout)
        else:
            with tempfile.TemporaryDirectory(prefix=f"lecture-times-{tier}-") as tmp:
                runs = execute_lectures(lectures, tier, Path(tmp), jobs=args.jobs, timeout=args.timeout)
        load_after = os.getloadavg()[0]
        for run in runs:
            failed += not run.ok
            data["lectures"].setdefault(run.lecture, {})[tier] = {
                "seconds": run.seconds, "cpu_seconds": run.cpu_seconds, "ok": run.ok, "jobs": args.jobs,
                "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "cpu_count": os.cpu_count(), "load_average": [round(load_before, 2), round(load_after, 2)],
                "machine": f"{platform.machine()} {platform.system()}",
            }
            if not run.ok:
                print(f"{run.lecture} ({tier}) failed:\n{run.error}", file=sys.stderr)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(data, indent=1, sort_keys=True))  # after each tier: keep what is done
    print(markdown_table(data))
    print(f"\nwritten {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
