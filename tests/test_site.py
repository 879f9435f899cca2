"""The course site (``python -m mbrl_course.grading.site``), built from a small course of its own.

Three tiny lectures in a temporary repository: one draws a figure and shows a GIF, one draws a figure,
shows a widget and links to the first lecture and to an assignment, one fails. They run as the site runs
the real lectures (a fresh Python and kernel each, ``notebooks run``), two at once. The checks must find
the failure, a page without its figures and links that do not resolve. The real lectures are rendered and
checked at the smoke tier in tests/test_notebooks.py, from the runs that test makes anyway.

Cost: about 15-25 s (three kernels of a second or two each, on 2 busy cores).
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import nbformat
import pytest

from mbrl_course.grading import links, site
from mbrl_course.grading.notebooks import RUN_METADATA, header_cells

REPO = Path(__file__).resolve().parents[1]

FIGURE = "import matplotlib.pyplot as plt\nplt.plot([0, 1], [1, 0])\nplt.show()"
GIF = ("import io\nfrom PIL import Image as PILImage\nfrom IPython.display import Image\nbuf = io.BytesIO()\n"
       "PILImage.new('RGB', (4, 4), 'red').save(buf, format='GIF')\nImage(data=buf.getvalue(), format='gif')")
WIDGET = "import ipywidgets\nipywidgets.IntSlider(value=3, description='horizon')"


def _lecture(root: Path, rel: str, title: str, *cells) -> None:
    nb = nbformat.v4.new_notebook(cells=[*header_cells(rel, title=title), *cells])
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, root / rel)


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("course")
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    _lecture(root, "lectures/01-first.ipynb", "# Lecture 1: first", code(FIGURE), code(GIF))
    _lecture(root, "lectures/02-second.ipynb", "# Lecture 2: second",
             md("Back to [lecture 1](01-first.ipynb#top); then [the assignment](../assignments/01-planning/01-planning.ipynb)."),
             code(FIGURE), code(WIDGET))
    _lecture(root, "lectures/03-broken.ipynb", "# Lecture 3: broken", code(FIGURE), code("1 / 0"))
    _lecture(root, "assignments/01-planning/01-planning.ipynb", "# A1")
    return root


@pytest.fixture(scope="module")
def built(course, tmp_path_factory):
    out = tmp_path_factory.mktemp("site") / "_site"
    runs = site.build_site("smoke", out, jobs=2, root=course, timeout=120, progress=False)
    return out, runs


def test_lectures_come_in_course_order_and_can_be_picked(course):
    assert [p.as_posix() for p in site.lecture_paths(course)] == [
        "lectures/01-first.ipynb", "lectures/02-second.ipynb", "lectures/03-broken.ipynb"]
    assert site.lecture_paths(course, ["3", "01"]) == [Path("lectures/01-first.ipynb"), Path("lectures/03-broken.ipynb")]
    with pytest.raises(ValueError, match="'07' matches none of 01-first"):
        site.lecture_paths(course, ["07"])


def test_the_assignments_after_each_lecture_exist_in_this_repository():
    released = {p.name for p in (REPO / "assignments").iterdir() if p.is_dir()}
    named = [name for names in site.ASSIGNMENTS_AFTER.values() for name in names]
    assert sorted(named) == sorted(released), "each released assignment follows exactly one lecture"
    numbers = {p.stem.split("-", 1)[0] for p in site.lecture_paths(REPO)}
    assert set(site.ASSIGNMENTS_AFTER) <= numbers


def test_build_runs_each_lecture_and_records_tier_and_time(built, course):
    out, runs = built
    assert [(Path(r.lecture).stem, r.tier, r.ok) for r in runs] == [
        ("01-first", "smoke", True), ("02-second", "smoke", True), ("03-broken", "smoke", False)]
    assert all(r.seconds is not None and 0 < r.seconds < 120 for r in runs)
    assert "ZeroDivisionError" in runs[2].error
    recorded = json.loads((out / site.TIMES_FILE).read_text())
    assert [(e["lecture"], e["seconds"]) for e in recorded] == [(r.lecture, r.seconds) for r in runs]
    assert all(r.cpu_seconds is not None and 0 < r.cpu_seconds <= r.seconds + 1 for r in runs)
    executed = nbformat.read(out / site.EXECUTED / "02-second.ipynb", as_version=4)
    assert executed.metadata[RUN_METADATA]["tier"] == "smoke"
    assert "application/vnd.jupyter.widget-state+json" in executed.metadata.get("widgets", {})
    assert nbformat.read(course / "lectures/02-second.ipynb", as_version=4).cells[3].outputs == []  # untouched


def test_pages_embed_figures_animations_and_widgets_and_link_within_the_site(built):
    out, _ = built
    first = (out / site.PAGES / "01-first.html").read_text()
    assert len(re.findall(r'<img\b[^>]*src="data:image/png', first)) == 1
    assert len(re.findall(r'<img\b[^>]*src="data:image/gif', first)) == 1
    second = (out / site.PAGES / "02-second.html").read_text()
    assert 'href="01-first.html#top"' in second
    assert f'href="{links.GIT_URL}/blob/{links.BRANCH}/assignments/01-planning/01-planning.ipynb"' in second
    assert "application/vnd.jupyter.widget-state+json" in second and "IntSliderModel" in second
    assert "Lecture 2: second" in second


def test_index_lists_lectures_in_order_with_times_and_the_assignment_after_its_lecture(built, course):
    out, runs = built
    index = (out / "index.html").read_text()
    places = [index.index(f'href="{site.PAGES}/{Path(r.lecture).stem}.html"') for r in runs]
    assert places == sorted(places)
    assignment = index.index(site.repository_url("assignments/01-planning/01-planning.ipynb"))
    assert places[1] < assignment < places[2]  # 01-planning follows lecture 02
    assert "Lecture 1: first" in index and "(failed)" in index
    for run in runs:
        assert site.format_seconds(run.seconds) in index


def test_check_finds_the_failure_and_nothing_else(built, course):
    out, _ = built
    problems = site.check_site(out, course)
    assert len(problems) == 3, problems
    assert problems[0].startswith("lectures/03-broken.ipynb: the smoke run failed")
    assert problems[1:] == ["03-broken.html: cell 3 raised ZeroDivisionError: division by zero",
                            "03-broken.html: shows a traceback"]


def test_check_finds_missing_figures_lost_widgets_and_broken_links(built, course, tmp_path):
    out, _ = built
    copy = tmp_path / "_site"
    import shutil

    shutil.copytree(out, copy)
    page = copy / site.PAGES / "01-first.html"
    page.write_text(re.sub(r'<img\b[^>]*src="data:image/png[^>]*>', "", page.read_text(), count=1))
    index = copy / "index.html"
    index.write_text(index.read_text().replace('href="lectures/02-second.html"', 'href="lectures/02-gone.html"')
                     .replace("assignments/01-planning/01-planning.ipynb", "assignments/99-gone/99-gone.ipynb", 1))
    executed = nbformat.read(copy / site.EXECUTED / "02-second.ipynb", as_version=4)
    del executed.metadata["widgets"]
    nbformat.write(executed, copy / site.EXECUTED / "02-second.ipynb")
    problems = site.check_site(copy, course)
    assert any("01-first.html: 1 embedded image(s), expected at least 2" in p for p in problems), problems
    assert "02-second.html: cell 4 shows a widget without stored state (it will not render)" in problems
    assert any(p.startswith("index.html: lectures/02-gone.html does not exist") for p in problems), problems
    assert any("names assignments/99-gone/99-gone.ipynb, not in the repository" in p for p in problems), problems
    assert site.check_site(tmp_path / "nothing") == [f"{tmp_path / 'nothing'}: no times.json or index.html; build it first"]


def test_render_alone_reuses_executed_notebooks(built, course, tmp_path):
    out, runs = built
    again = tmp_path / "again"
    rerun = site.runs_from_executed(out / site.EXECUTED, course, ["01", "02"])
    assert [(r.lecture, r.seconds, r.ok) for r in rerun] == [(r.lecture, r.seconds, r.ok) for r in runs[:2]]
    site.render_site(rerun, again, course)
    assert site.check_site(again, course) == []


def test_the_benchmark_table_marks_failures_and_missing_tiers():
    spec = importlib.util.spec_from_file_location("lecture_times", REPO / "benchmarks" / "lecture_times.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    table = module.markdown_table({"lectures": {
        "lectures/02-b.ipynb": {"smoke": {"seconds": 30.0, "ok": True}, "default": {"seconds": 250.0, "ok": False}},
        "lectures/01-a.ipynb": {"default": {"seconds": 61.0, "cpu_seconds": 50.0, "ok": True}}}})
    assert table.splitlines()[2:] == ["| `01-a` | — | 2 min (50 s) | GPU, not measured |",
                                      "| `02-b` | 30 s | failed after 5 min | GPU, not measured |"]
