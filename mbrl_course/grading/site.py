"""The course as a static web site: every lecture executed at a tier and rendered to HTML, with an index.

``make site`` runs::

    python -m mbrl_course.grading.site build --tier default --out _site [--jobs N] [--lectures 01,02]

which executes each lecture top to bottom in its own kernel (``python -m mbrl_course.grading.notebooks
run``, the command the tests use, with ``MBRL_COURSE_BUDGET`` set to the tier), keeps the executed
notebooks in ``_site/notebooks/``, renders one page per lecture with nbconvert's HTML exporter and writes
``_site/index.html``: the lectures in the course's order (their numbers, ``docs``' COURSE_PLAN) with their
measured run times, each followed by the graded assignment that comes after it, linked on the student
repository (:mod:`mbrl_course.grading.links`), and ``_site/times.json`` with the run times.

What a page holds: the notebook's markdown and code, its figures as PNG embedded in the page (``<img
src="data:...">``), its animations as they were displayed (matplotlib's JavaScript player or a GIF), and
ipywidgets as nbconvert shows them from the widget state stored at execution (the page loads
``@jupyter-widgets/html-manager`` from a CDN; a widget whose images were drawn at run time shows its last
state, sliders do not recompute without a kernel). Links between lectures (``05-ilqr-gps.ipynb``) point at
their pages; links to ``../assignments/...`` at the repository.

Rendering alone (the notebooks executed already, e.g. by the test suite)::

    python -m mbrl_course.grading.notebooks run lectures/*.ipynb --out-dir /tmp/executed
    python -m mbrl_course.grading.site render /tmp/executed --out _site
    python -m mbrl_course.grading.site check _site     # every page: figures, no errors; index links resolve

A lecture that fails still gets its page (with the error) and the build exits with status 1.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from mbrl_course.budget import TIERS
from mbrl_course.grading import links
from mbrl_course.grading.notebooks import RUN_METADATA, find_notebooks, format_seconds, repo_root

ASSIGNMENTS_AFTER: dict[str, tuple[str, ...]] = {
    "02": ("01-planning",),
    "03": ("03-ensembles-pets",),
    "04": ("04-moment-matching",),
    "06": ("02-kalman",),
    "07": ("05-vssm-elbo",),
    "09": ("06-dreamer",),
}
"""Lecture number -> the graded assignments (folders of ``assignments/``) that follow it (COURSE_PLAN)."""

PAGES = "lectures"
"""Sub-folder of the site with one page per lecture (``lectures/NN-topic.html``)."""
EXECUTED = "notebooks"
"""Sub-folder of the site with the executed notebooks the pages were rendered from."""
TIMES_FILE = "times.json"
"""The site's record of each lecture's run: tier, seconds, ok."""
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
"""matplotlib's backend in the kernels: figures become PNG outputs (what a page shows)."""

_IMG = re.compile(r"<img\b[^>]*\bsrc=\"data:image/", re.IGNORECASE)
_HREF = re.compile(r"\bhref=\"([^\"#]*)(#[^\"]*)?\"")


@dataclass(frozen=True)
class LectureRun:
    """One lecture executed at one tier."""

    lecture: str
    """Its path relative to the repository root, e.g. ``lectures/02-planning.ipynb``."""
    tier: str
    seconds: float | None
    """Wall-clock seconds from kernel start to the last cell (``None``: it did not get that far)."""
    ok: bool
    executed: str | None
    """The executed notebook (outputs kept), or ``None`` when none was written."""
    error: str = ""
    """The tail of what the run printed when it failed."""
    cpu_seconds: float | None = None
    """CPU seconds the kernel used (where the OS reports it): on a busy machine, a better estimate of the
    wall time on an idle one than ``seconds``."""


def lecture_paths(root: Path | None = None, only: Iterable[str] | None = None) -> list[Path]:
    """The lectures in course order (their ``NN-`` numbers), relative to ``root``; ``only``: numbers such
    as ``["01", "02"]`` (or whole stems). Raises ``ValueError`` for a number that matches no lecture."""
    root = repo_root() if root is None else Path(root)
    found = sorted(find_notebooks(root, ("lectures",)), key=lambda p: p.name)
    if only is None:
        return found
    picked = []
    for key in only:
        key = key.strip()
        match = [p for p in found if p.stem == key or p.stem.split("-", 1)[0] == key.zfill(2)]
        if not match:
            raise ValueError(f"lectures: {key!r} matches none of {', '.join(p.stem for p in found)}")
        picked += [p for p in match if p not in picked]
    return sorted(picked, key=lambda p: p.name)


def execute_lecture(lecture: str | Path, tier: str, out_dir: Path, root: Path | None = None,
                    timeout: int = 1800) -> LectureRun:
    """Run one lecture top to bottom at ``tier`` in a fresh Python and kernel; the executed notebook goes
    to ``out_dir/<name>.ipynb`` (the lecture itself stays untouched). ``timeout``: seconds per cell."""
    if tier not in TIERS:
        raise ValueError(f"tier: expected one of {', '.join(TIERS)}, got {tier!r}")
    root = repo_root() if root is None else Path(root)
    lecture = Path(lecture)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / lecture.name
    target.unlink(missing_ok=True)
    env = {**os.environ, "MBRL_COURSE_BUDGET": tier, "MPLBACKEND": INLINE_BACKEND,
           "PYTHONPATH": os.pathsep.join([str(root), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])}
    cmd = [sys.executable, "-m", "mbrl_course.grading.notebooks", "run", str(root / lecture),
           "--timeout", str(timeout), "--out-dir", str(out_dir)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    return run_record(lecture, target, error=(out.stdout + out.stderr)[-4000:] if out.returncode else "",
                      tier=tier)


def run_record(lecture: str | Path, executed: Path, error: str = "", tier: str | None = None) -> LectureRun:
    """The :class:`LectureRun` an executed notebook records in its metadata (``notebooks run --out-dir``)."""
    lecture = Path(lecture).as_posix()
    if not executed.is_file():
        return LectureRun(lecture, tier or "?", None, False, None, error or f"{executed} was not written")
    record = nbformat.read(executed, as_version=4).metadata.get(RUN_METADATA, {})
    ok = bool(record.get("ok")) and not error
    return LectureRun(lecture, record.get("tier", tier or "?"), record.get("seconds"), ok, str(executed),
                      error if error else ("" if ok else "the notebook records a failed run"),
                      record.get("cpu_seconds"))


def execute_lectures(lectures: list[Path], tier: str, out_dir: Path, jobs: int = 1, root: Path | None = None,
                     timeout: int = 1800, progress: bool = True) -> list[LectureRun]:
    """:func:`execute_lecture` for each of ``lectures``, ``jobs`` at a time, with a progress bar; in
    the order given."""
    from tqdm.auto import tqdm

    runs: dict[Path, LectureRun] = {}
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool, \
            tqdm(total=len(lectures), desc=f"lectures ({tier})", unit="lecture", disable=not progress) as bar:
        futures = {pool.submit(execute_lecture, p, tier, out_dir, root, timeout): p for p in lectures}
        for future in as_completed(futures):
            run = future.result()
            runs[futures[future]] = run
            seconds = "?" if run.seconds is None else f"{run.seconds:.0f} s"
            bar.set_postfix_str(f"{futures[future].stem}: {'ok' if run.ok else 'FAILED'} {seconds}")
            bar.update()
    return [runs[p] for p in lectures]


# ------------------------------------------------------------------------------ rendering
def lecture_title(nb: NotebookNode, fallback: str) -> str:
    """The first markdown heading of the notebook, without its ``#``; ``fallback`` where there is none."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return fallback


def repository_url(path: str) -> str:
    """The page of ``path`` (relative to the repository root) on the student repository's GitHub."""
    return f"{links.GIT_URL}/blob/{links.BRANCH}/{path}"


def _relink_page(text: str, lecture_stems: set[str]) -> str:
    """Links in a lecture page: ``NN-topic.ipynb`` of another lecture -> its page; ``../x`` -> the repository."""
    def fix(match: re.Match) -> str:
        target, anchor = match.group(1), match.group(2) or ""
        if target.endswith(".ipynb") and "/" not in target and Path(target).stem in lecture_stems:
            return f'href="{Path(target).stem}.html{anchor}"'
        if target.startswith("../") and "://" not in target:
            return f'href="{repository_url(target[3:])}{anchor}"'
        return match.group(0)

    return _HREF.sub(fix, text)


def _show_gifs(nb: NotebookNode) -> NotebookNode:
    """nbconvert's HTML drops ``image/gif`` outputs (``IPython.display.Image(format="gif")``, an animation):
    give each one an ``<img>`` of itself as its HTML (in place)."""
    for cell in nb.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            data = output.get("data", {})
            if "image/gif" in data and "text/html" not in data:
                gif = "".join(data["image/gif"]) if isinstance(data["image/gif"], list) else data["image/gif"]
                data["text/html"] = f'<img alt="animation" src="data:image/gif;base64,{gif.strip()}">'
    return nb


def render_page(executed: Path, out_file: Path, lecture_stems: set[str]) -> Path:
    """One lecture page: nbconvert's HTML (lab template) of the executed notebook, images embedded."""
    from nbconvert import HTMLExporter

    nb = _show_gifs(nbformat.read(executed, as_version=4))
    exporter = HTMLExporter(template_name="lab", embed_images=True)
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": lecture_title(nb, executed.stem)}})
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(_relink_page(body, lecture_stems), encoding="utf-8")
    return out_file


def _time_text(run: LectureRun) -> str:
    if run.seconds is None:
        return "did not run"
    return format_seconds(run.seconds) + ("" if run.ok else " (failed)")


def index_html(runs: list[LectureRun], titles: dict[str, str], root: Path | None = None) -> str:
    """The index page: lectures in order with their run times and the assignments that follow them."""
    root = repo_root() if root is None else Path(root)
    tiers = sorted({run.tier for run in runs})
    rows = []
    for run in runs:
        stem = Path(run.lecture).stem
        number = stem.split("-", 1)[0]
        rows.append(
            f'<tr><td>{html.escape(number)}</td><td><a href="{PAGES}/{stem}.html">{html.escape(titles[run.lecture])}'
            f'</a></td><td>{html.escape(_time_text(run))}</td><td><a href="{links.colab_url(run.lecture)}">Colab</a>'
            f' · <a href="{links.binder_url(run.lecture)}">Binder</a></td></tr>')
        for name in ASSIGNMENTS_AFTER.get(number, ()):
            path = f"assignments/{name}/{name}.ipynb"
            if not (root / path).is_file():
                continue
            rows.append(
                f'<tr class="assignment"><td></td><td>Assignment <a href="{repository_url(path)}">'
                f'{html.escape(name)}</a> (graded)</td><td></td><td><a href="{links.colab_url(path)}">Colab</a> · '
                f'<a href="{links.binder_url(path)}">Binder</a></td></tr>')
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Model-based reinforcement learning: the course</title>
<style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}}
table{{border-collapse:collapse;width:100%}}td,th{{padding:.4rem .6rem;border-bottom:1px solid #ddd;text-align:left}}
tr.assignment td{{font-size:.92em;color:#444}}</style></head><body>
<h1>Model-based reinforcement learning</h1>
<p>The lectures in order, executed at the <b>{html.escape(", ".join(tiers))}</b> tier; run time on the
machine that built this site. Each graded assignment follows the lecture it draws on.
Source: <a href="{links.GIT_URL}">{html.escape(links.GIT_URL)}</a>.</p>
<table><thead><tr><th>#</th><th>lecture</th><th>run time</th><th>open</th></tr></thead><tbody>
{chr(10).join(rows)}
</tbody></table></body></html>
"""


def render_site(runs: list[LectureRun], out: Path, root: Path | None = None) -> Path:
    """Pages for every run with an executed notebook, the index and ``times.json``; returns the index."""
    root = repo_root() if root is None else Path(root)
    stems = {Path(run.lecture).stem for run in runs}
    titles = {}
    for run in runs:
        stem = Path(run.lecture).stem
        if run.executed is None:
            titles[run.lecture] = stem
            continue
        executed = Path(run.executed)
        copy = out / EXECUTED / executed.name
        if executed.resolve() != copy.resolve():
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_bytes(executed.read_bytes())
        titles[run.lecture] = lecture_title(nbformat.read(copy, as_version=4), stem)
        render_page(copy, out / PAGES / f"{stem}.html", stems)
    (out / TIMES_FILE).write_text(json.dumps([asdict(run) for run in runs], indent=1))
    index = out / "index.html"
    index.write_text(index_html(runs, titles, root), encoding="utf-8")
    return index


def build_site(tier: str = "default", out: Path = Path("_site"), jobs: int = 1, only: Iterable[str] | None = None,
               root: Path | None = None, timeout: int = 1800, progress: bool = True) -> list[LectureRun]:
    """Execute the lectures at ``tier`` and render the site into ``out``; returns the runs."""
    root = repo_root() if root is None else Path(root)
    lectures = lecture_paths(root, only)
    runs = execute_lectures(lectures, tier, out / EXECUTED, jobs=jobs, root=root, timeout=timeout,
                            progress=progress)
    render_site(runs, out, root)
    return runs


def runs_from_executed(folder: Path, root: Path | None = None, only: Iterable[str] | None = None) -> list[LectureRun]:
    """The runs recorded in notebooks executed already (``notebooks run --out-dir folder``), in course order."""
    return [run_record(rel, folder / rel.name) for rel in lecture_paths(root, only)]


# ------------------------------------------------------------------------------ checking
def page_problems(page: Path, executed: Path) -> list[str]:
    """What is wrong with one lecture page: error outputs in the executed notebook, fewer embedded images
    than it has image outputs (or no image at all), a widget whose state was not stored (it would not show)."""
    nb = nbformat.read(executed, as_version=4)
    problems = []
    images = 0
    stored = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if output.get("output_type") == "error":
                problems.append(f"{page.name}: cell {index} raised {output.get('ename')}: {output.get('evalue')}")
            data = output.get("data", {})
            images += any(key.startswith("image/") for key in data)
            view = data.get("application/vnd.jupyter.widget-view+json")
            if view is not None and view.get("model_id") not in stored:
                problems.append(f"{page.name}: cell {index} shows a widget without stored state (it will not render)")
    text = page.read_text(encoding="utf-8")
    shown = len(_IMG.findall(text))
    if shown < max(images, 1):
        problems.append(f"{page.name}: {shown} embedded image(s), expected at least {max(images, 1)} "
                        f"(the notebook has {images} image output(s))")
    if "Traceback (most recent call last)" in text:
        problems.append(f"{page.name}: shows a traceback")
    return problems


def link_problems(page: Path, site: Path, root: Path | None = None) -> list[str]:
    """Links of ``page`` that do not resolve: relative ones to a missing file of the site, links to the
    student repository (GitHub, Colab, Binder) to a path this repository does not have."""
    root = repo_root() if root is None else Path(root)
    prefixes = (f"{links.GIT_URL}/blob/{links.BRANCH}/", links.COLAB_PREFIX, links.BINDER_PREFIX)
    problems = []
    for target, _ in _HREF.findall(page.read_text(encoding="utf-8")):
        if not target:
            continue
        repo_path = next((target[len(p):] for p in prefixes if target.startswith(p)), None)
        if repo_path is not None:
            if not (root / repo_path).is_file():
                problems.append(f"{page.relative_to(site)}: {target} names {repo_path}, not in the repository")
        elif "://" not in target and not target.startswith(("mailto:", "data:")):
            if not (page.parent / target).resolve().is_file():
                problems.append(f"{page.relative_to(site)}: {target} does not exist")
    return problems


def check_site(site: Path, root: Path | None = None) -> list[str]:
    """Everything wrong with a built site (empty: nothing): each lecture of ``times.json`` ran and has a
    page with its figures and no errors; the index's links and the pages' links resolve."""
    site = Path(site)
    if not (site / TIMES_FILE).is_file() or not (site / "index.html").is_file():
        return [f"{site}: no {TIMES_FILE} or index.html; build it first"]
    problems = []
    for entry in json.loads((site / TIMES_FILE).read_text()):
        run = LectureRun(**entry)
        stem = Path(run.lecture).stem
        page, executed = site / PAGES / f"{stem}.html", site / EXECUTED / f"{stem}.ipynb"
        if not run.ok:
            problems.append(f"{run.lecture}: the {run.tier} run failed: {run.error[-600:]}")
        if not page.is_file() or not executed.is_file():
            problems.append(f"{run.lecture}: no page {page.relative_to(site)}")
            continue
        problems += page_problems(page, executed) + link_problems(page, site, root)
    return problems + link_problems(site / "index.html", site, root)


# ------------------------------------------------------------------------------ command line
def _lectures_arg(text: str | None) -> list[str] | None:
    return None if not text else [part for part in text.split(",") if part.strip()]


def _report(runs: list[LectureRun], problems: list[str], out: Path, say: Callable[[str], None] = print) -> int:
    for run in runs:
        say(f"{'ok    ' if run.ok else 'FAILED'} {run.lecture} ({run.tier}): {_time_text(run)}")
    say("\n".join(problems) or f"site: {out / 'index.html'} (all pages fine)")
    return 1 if problems else 0


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mbrl_course.grading.site",
                                     description="Execute the lectures and render the course site.")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="execute every lecture at a tier and render the site")
    build.add_argument("--tier", choices=TIERS, default="default")
    build.add_argument("--out", type=Path, default=Path("_site"))
    build.add_argument("--jobs", type=int, default=1, help="lectures run at once (default 1)")
    build.add_argument("--lectures", default=None, help="comma-separated numbers, e.g. 01,02 (default: all)")
    build.add_argument("--timeout", type=int, default=1800, help="seconds per cell (default 1800)")
    render = sub.add_parser("render", help="render the site from notebooks executed already "
                                           "(python -m mbrl_course.grading.notebooks run ... --out-dir DIR)")
    render.add_argument("executed", type=Path)
    render.add_argument("--out", type=Path, default=Path("_site"))
    render.add_argument("--lectures", default=None)
    check = sub.add_parser("check", help="check a built site: figures, no errors, links resolve")
    check.add_argument("site", type=Path, nargs="?", default=Path("_site"))
    args = parser.parse_args(argv)

    if args.command == "check":
        return _report([], check_site(args.site), args.site)
    if args.command == "build":
        runs = build_site(args.tier, args.out, args.jobs, _lectures_arg(args.lectures), timeout=args.timeout)
    else:
        runs = runs_from_executed(args.executed, only=_lectures_arg(args.lectures))
        render_site(runs, args.out)
    return _report(runs, check_site(args.out), args.out)


if __name__ == "__main__":
    sys.exit(_main())
