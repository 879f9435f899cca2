"""Where the course lives on the web, configured once: the student repository and its launch links.

Every notebook of the course (``lectures/``, ``solutions/``, ``assignments/``) opens with a
markdown cell holding two badges that open *that* notebook in the **student repository**::

    Colab   https://colab.research.google.com/github/<REPO>/blob/<BRANCH>/<path>
    Binder  https://mybinder.org/v2/gh/<REPO>/<BRANCH>?labpath=<path>

and a set-up cell that installs ``mbrl_course @ git+https://github.com/<REPO>@<BRANCH>`` on Colab.
``path`` is the notebook's path relative to the repository root, with forward slashes.

``REPO`` and ``BRANCH`` come from the ``[tool.mbrl_course]`` table of the course's
``pyproject.toml`` (the one next to the ``mbrl_course`` package folder), which instructors edit::

    [tool.mbrl_course]
    student_repo = "mbrl-course/mbrl_course"   # owner/name of the public repository students open
    branch = "main"                            # the branch the links open

The environment variables ``MBRL_COURSE_STUDENT_REPO`` and ``MBRL_COURSE_BRANCH`` override it. Where
there is no such table (the package installed from git on Colab or Binder has no ``pyproject.toml``
beside it), :data:`DEFAULT_REPO` and :data:`DEFAULT_BRANCH` apply. After changing the configuration,
``python -m mbrl_course.grading.notebooks relink`` rewrites every notebook's links.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

DEFAULT_REPO = "mbrl-course/mbrl_course"
"""The student repository where no configuration says otherwise."""
DEFAULT_BRANCH = "main"
"""The branch the links open where no configuration says otherwise."""
REPO_ENV = "MBRL_COURSE_STUDENT_REPO"
BRANCH_ENV = "MBRL_COURSE_BRANCH"
CONFIG_FILE = "pyproject.toml"
CONFIG_TABLE = "tool.mbrl_course"
"""The table of :data:`CONFIG_FILE` that holds ``student_repo`` and ``branch``."""

_NAME = r"[A-Za-z0-9_.-]+"
_REPO_FORM = re.compile(rf"{_NAME}/{_NAME}")
_BRANCH_FORM = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class LinkConfig:
    """The student repository the links open."""

    repo: str
    """``owner/name`` on GitHub."""
    branch: str
    """The branch the links open (letters, digits, ``_ . -``; no ``/``, so that links parse unambiguously)."""
    origin: str = "defaults"
    """Where the values came from, for messages: a file, environment variables, or the defaults."""

    def __post_init__(self) -> None:
        if not isinstance(self.repo, str) or not _REPO_FORM.fullmatch(self.repo):
            raise ValueError(f"student_repo ({self.origin}): expected 'owner/name' of a GitHub repository, "
                             f"got {self.repo!r}")
        if not isinstance(self.branch, str) or not _BRANCH_FORM.fullmatch(self.branch):
            raise ValueError(f"branch ({self.origin}): expected a branch name of letters, digits, '_', '.' "
                             f"and '-' (no '/'), got {self.branch!r}")

    @property
    def git_url(self) -> str:
        """The repository's address, e.g. ``https://github.com/owner/name``."""
        return f"https://github.com/{self.repo}"


def course_folder() -> Path:
    """The folder above the ``mbrl_course`` package: the course repository when run from a checkout."""
    return Path(__file__).resolve().parents[2]


def _read_table(path: Path) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path}: not valid TOML ({err})") from None
    table = data
    for key in CONFIG_TABLE.split("."):
        table = table.get(key, {}) if isinstance(table, dict) else {}
    if not isinstance(table, dict):
        raise ValueError(f"{path}: [{CONFIG_TABLE}] must be a table")
    return table


def read_config(root: str | Path | None = None, environ: Mapping[str, str] | None = None) -> LinkConfig:
    """The student repository and branch: ``<root>/pyproject.toml``'s ``[tool.mbrl_course]``, then the
    environment variables, then the defaults (``root``: default :func:`course_folder`; ``environ``:
    default ``os.environ``). Raises ``ValueError`` naming the file or variable that holds a bad value."""
    root = course_folder() if root is None else Path(root)
    environ = os.environ if environ is None else environ
    repo, branch, origins = DEFAULT_REPO, DEFAULT_BRANCH, []
    path = root / CONFIG_FILE
    if path.is_file():
        table = _read_table(path)
        if table:
            repo, branch = table.get("student_repo", repo), table.get("branch", branch)
            origins.append(f"{path} [{CONFIG_TABLE}]")
    for name in (REPO_ENV, BRANCH_ENV):
        if environ.get(name):
            origins.append(f"${name}")
    repo = environ.get(REPO_ENV) or repo
    branch = environ.get(BRANCH_ENV) or branch
    return LinkConfig(repo, branch, " + ".join(origins) or "defaults")


CONFIG = read_config()
"""The configuration this process uses (read once, at import)."""
REPO = CONFIG.repo
"""owner/name of the course's public (student) GitHub repository."""
BRANCH = CONFIG.branch
"""The branch the launch links open."""
GIT_URL = CONFIG.git_url
"""The repository's address (what the Colab set-up cell installs from)."""

COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
BINDER_BADGE = "https://mybinder.org/badge_logo.svg"

COLAB_PREFIX = f"https://colab.research.google.com/github/{REPO}/blob/{BRANCH}/"
BINDER_PREFIX = f"https://mybinder.org/v2/gh/{REPO}/{BRANCH}?labpath="

COLAB_LINK = re.compile(re.escape(COLAB_PREFIX) + r"(?P<path>[^)\s]+)")
"""Finds a Colab link to the configured repository's branch; group ``path`` is the notebook's path."""
BINDER_LINK = re.compile(re.escape(BINDER_PREFIX) + r"(?P<path>[^)\s]+)")
"""Finds a Binder link to the configured repository's branch; group ``path`` is the notebook's path."""

ANY_COLAB_LINK = re.compile(
    rf"https://colab\.research\.google\.com/github/(?P<repo>{_NAME}/{_NAME})/blob/(?P<branch>[^/\s)]+)/(?P<path>[^)\s]+)")
"""A Colab link to any repository and branch (groups ``repo``, ``branch``, ``path``)."""
ANY_BINDER_LINK = re.compile(
    rf"https://mybinder\.org/v2/gh/(?P<repo>{_NAME}/{_NAME})/(?P<branch>[^?\s)]+)\?labpath=(?P<path>[^)\s]+)")
"""A Binder link to any repository and branch (groups ``repo``, ``branch``, ``path``)."""
ANY_INSTALL_SPEC = re.compile(
    rf"mbrl_course(?P<extra>\[[^\]]*\])? @ git\+https://github\.com/(?P<repo>{_NAME}/{_NAME})@(?P<branch>[^\s\"'\\]+)")
"""A pip requirement that installs the package from any GitHub repository and branch."""


def _as_repo_path(path: str | PurePosixPath) -> str:
    text = str(path).replace("\\", "/")
    if not text or text.startswith("/") or ".." in PurePosixPath(text).parts:
        raise ValueError(f"path: expected a path relative to the repository root, got {str(path)!r}")
    return str(PurePosixPath(text))


def colab_url(path: str | PurePosixPath) -> str:
    """The "Open in Colab" address of the notebook at ``path`` (relative to the repository root)."""
    return COLAB_PREFIX + _as_repo_path(path)


def binder_url(path: str | PurePosixPath) -> str:
    """The "Launch Binder" address that opens the notebook at ``path`` in JupyterLab."""
    return BINDER_PREFIX + _as_repo_path(path)


def launch_badges(path: str | PurePosixPath) -> str:
    """Markdown with both badges for the notebook at ``path``."""
    return (
        f"[![Open In Colab]({COLAB_BADGE})]({colab_url(path)}) "
        f"[![Launch Binder]({BINDER_BADGE})]({binder_url(path)})"
    )


def linked_paths(markdown: str) -> tuple[list[str], list[str]]:
    """The notebook paths a markdown text links to in the configured repository: (Colab paths, Binder paths)."""
    return (
        [m.group("path") for m in COLAB_LINK.finditer(markdown)],
        [m.group("path") for m in BINDER_LINK.finditer(markdown)],
    )


@dataclass(frozen=True)
class CourseLink:
    """A link in a notebook that opens or installs the course from some repository."""

    kind: str
    """``"Colab"``, ``"Binder"`` or ``"install"``."""
    repo: str
    branch: str
    path: str | None
    """The notebook it opens (``None`` for an install)."""


def course_links(text: str) -> list[CourseLink]:
    """Every Colab and Binder launch link and every ``mbrl_course @ git+...`` install in ``text``,
    whichever repository and branch they name."""
    found = [CourseLink("Colab", m["repo"], m["branch"], m["path"]) for m in ANY_COLAB_LINK.finditer(text)]
    found += [CourseLink("Binder", m["repo"], m["branch"], m["path"]) for m in ANY_BINDER_LINK.finditer(text)]
    found += [CourseLink("install", m["repo"], m["branch"], None) for m in ANY_INSTALL_SPEC.finditer(text)]
    return found


def relink(text: str, path: str | PurePosixPath | None = None) -> str:
    """``text`` with every launch link and ``mbrl_course`` install pointed at the configured repository
    and branch; launch links open ``path`` when it is given, else the path they opened before."""
    target = None if path is None else _as_repo_path(path)
    text = ANY_COLAB_LINK.sub(lambda m: colab_url(target or m["path"]), text)
    text = ANY_BINDER_LINK.sub(lambda m: binder_url(target or m["path"]), text)
    return ANY_INSTALL_SPEC.sub(lambda m: f"mbrl_course{m['extra'] or ''} @ git+{GIT_URL}@{BRANCH}", text)
