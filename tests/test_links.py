"""Where the links of the course point: the student repository, configured once in pyproject.toml's
[tool.mbrl_course], overridden by environment variables, with defaults where no configuration is found;
`relink` and the release preprocessor point notebooks at it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from mbrl_course.grading import links
from mbrl_course.grading.links import LinkConfig, read_config
from mbrl_course.grading.notebooks import check_header, header_cells, relink_notebook
from mbrl_course.grading.preprocessors import ReleaseLinks

REPO = Path(__file__).resolve().parents[1]
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in (links.REPO_ENV, links.BRANCH_ENV)}


def write_pyproject(folder: Path, table: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pyproject.toml").write_text('[project]\nname = "mbrl_course"\n\n' + table)
    return folder


def test_defaults_where_there_is_no_configuration(tmp_path):
    assert read_config(tmp_path, environ={}) == LinkConfig(links.DEFAULT_REPO, links.DEFAULT_BRANCH, "defaults")
    write_pyproject(tmp_path, "[tool.ruff]\nline-length = 100\n")  # a pyproject without our table
    config = read_config(tmp_path, environ={})
    assert (config.repo, config.branch, config.origin) == (links.DEFAULT_REPO, links.DEFAULT_BRANCH, "defaults")


def test_the_table_of_pyproject_sets_repo_and_branch(tmp_path):
    write_pyproject(tmp_path, '[tool.mbrl_course]\nstudent_repo = "uni-x/mbrl-2026"\nbranch = "term2"\n')
    config = read_config(tmp_path, environ={})
    assert (config.repo, config.branch) == ("uni-x/mbrl-2026", "term2")
    assert "pyproject.toml" in config.origin and config.git_url == "https://github.com/uni-x/mbrl-2026"
    write_pyproject(tmp_path, '[tool.mbrl_course]\nstudent_repo = "uni-x/mbrl-2026"\n')
    assert read_config(tmp_path, environ={}).branch == links.DEFAULT_BRANCH


def test_environment_variables_override_the_file(tmp_path):
    write_pyproject(tmp_path, '[tool.mbrl_course]\nstudent_repo = "uni-x/mbrl-2026"\nbranch = "term2"\n')
    config = read_config(tmp_path, environ={links.REPO_ENV: "me/fork"})
    assert (config.repo, config.branch) == ("me/fork", "term2") and f"${links.REPO_ENV}" in config.origin
    config = read_config(tmp_path, environ={links.REPO_ENV: "me/fork", links.BRANCH_ENV: "preview"})
    assert (config.repo, config.branch) == ("me/fork", "preview")
    assert read_config(tmp_path / "nowhere", environ={links.BRANCH_ENV: "preview"}).repo == links.DEFAULT_REPO


@pytest.mark.parametrize("table, variable, phrase", [
    ('student_repo = "just-a-name"\n', "student_repo", "owner/name"),
    ('student_repo = "https://github.com/a/b"\n', "student_repo", "owner/name"),
    ('branch = "feature/x"\n', "branch", "no '/'"),
    ('branch = "two words"\n', "branch", "branch name"),
])
def test_bad_values_name_the_setting_and_the_file(tmp_path, table, variable, phrase):
    write_pyproject(tmp_path, "[tool.mbrl_course]\n" + table)
    with pytest.raises(ValueError, match=phrase) as err:
        read_config(tmp_path, environ={})
    assert variable in str(err.value) and "pyproject.toml" in str(err.value)
    with pytest.raises(ValueError, match=links.REPO_ENV):
        read_config(tmp_path / "nowhere", environ={links.REPO_ENV: "no-slash"})


def test_the_course_configures_its_student_repository_in_pyproject():
    config = read_config(REPO, environ={})
    assert "pyproject.toml" in config.origin
    if not (os.environ.get(links.REPO_ENV) or os.environ.get(links.BRANCH_ENV)):
        assert (links.REPO, links.BRANCH) == (config.repo, config.branch)


def _links_in_a_fresh_python(package_parent: Path, env: dict) -> list[str]:
    code = ("from mbrl_course.grading import links, notebooks; "
            "print(links.REPO, links.BRANCH, links.CONFIG.origin, sep='|'); print(notebooks.SETUP_SOURCE)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**env, "PYTHONPATH": str(package_parent)}, cwd=package_parent, check=True)
    return out.stdout.splitlines()


def test_an_installed_package_without_pyproject_uses_the_defaults_and_the_environment(tmp_path):
    """The package on Colab is installed from git: no pyproject.toml beside it."""
    shutil.copytree(REPO / "mbrl_course", tmp_path / "mbrl_course",
                    ignore=shutil.ignore_patterns("__pycache__"))
    first, *setup = _links_in_a_fresh_python(tmp_path, CLEAN_ENV)
    assert first == f"{links.DEFAULT_REPO}|{links.DEFAULT_BRANCH}|defaults"
    first, *setup = _links_in_a_fresh_python(tmp_path, {**CLEAN_ENV, links.REPO_ENV: "me/fork",
                                                        links.BRANCH_ENV: "preview"})
    assert first.startswith("me/fork|preview|")
    assert "git+https://github.com/me/fork@preview" in "\n".join(setup)


def test_relink_points_every_header_at_the_configured_repository(tmp_path):
    rel = "lectures/07-demo.ipynb"
    (tmp_path / "lectures").mkdir()
    nb = nbformat.v4.new_notebook(cells=[*header_cells("lectures/old-name.ipynb", title="# Demo"),
                                         nbformat.v4.new_code_cell("1 + 1")])
    for cell in nb.cells[:2]:
        cell.source = (cell.source.replace(f"/{links.REPO}/", "/someone/else/")
                       .replace(f"/{links.REPO}@", "/someone/else@").replace(f"/{links.BRANCH}", "/old"))
    nbformat.write(nb, tmp_path / rel)
    problems = check_header(nb, rel, tmp_path)
    assert any("opens someone/else@old" in p and f"expected {links.REPO}@{links.BRANCH}" in p for p in problems)
    assert any("cell 1 installs from someone/else@" in p for p in problems)
    assert "# Demo" in nb.cells[0].source

    assert relink_notebook(nb, rel) is True
    assert check_header(nb, rel, tmp_path) == []
    assert nb.cells[0].source.endswith("# Demo") and nb.cells[2].source == "1 + 1"
    assert relink_notebook(nb, rel) is False


def test_release_links_open_the_release_in_the_configured_repository():
    nb = nbformat.v4.new_notebook(cells=header_cells("src/09-x/09-x.ipynb", title="# A9"))
    nb.cells[0].source = nb.cells[0].source.replace(f"/{links.REPO}/", "/old/place/")
    nb.cells[1].source = nb.cells[1].source.replace(f"/{links.REPO}@", "/old/place@")
    out, _ = ReleaseLinks().preprocess(nb, {"nbgrader": {"notebook": "09-x", "assignment": "09-x"}})
    assert out.cells[0].source == header_cells("assignments/09-x/09-x.ipynb", title="# A9")[0].source
    assert out.cells[1].source == header_cells("assignments/09-x/09-x.ipynb")[1].source
