"""Where the course lives on the web, defined once: launch links for Colab and Binder.

Every notebook of the course (``lectures/``, ``solutions/``, ``assignments/``) opens with a
markdown cell holding two badges that open *that* notebook::

    Colab   https://colab.research.google.com/github/<REPO>/blob/<BRANCH>/<path>
    Binder  https://mybinder.org/v2/gh/<REPO>/<BRANCH>?labpath=<path>

``path`` is the notebook's path relative to the repository root, with forward slashes.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

REPO = "mbrl-course/mbrl_course"
"""owner/name of the course's public GitHub repository."""
BRANCH = "main"
"""The branch the launch links open."""
GIT_URL = f"https://github.com/{REPO}"
"""The repository's address (what the Colab set-up cell installs from)."""

COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
BINDER_BADGE = "https://mybinder.org/badge_logo.svg"

COLAB_PREFIX = f"https://colab.research.google.com/github/{REPO}/blob/{BRANCH}/"
BINDER_PREFIX = f"https://mybinder.org/v2/gh/{REPO}/{BRANCH}?labpath="

COLAB_LINK = re.compile(re.escape(COLAB_PREFIX) + r"(?P<path>[^)\s]+)")
"""Finds a Colab link to this repository's branch; group ``path`` is the notebook's path."""
BINDER_LINK = re.compile(re.escape(BINDER_PREFIX) + r"(?P<path>[^)\s]+)")
"""Finds a Binder link to this repository's branch; group ``path`` is the notebook's path."""


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
    """The notebook paths a markdown text links to: (Colab paths, Binder paths)."""
    return (
        [m.group("path") for m in COLAB_LINK.finditer(markdown)],
        [m.group("path") for m in BINDER_LINK.finditer(markdown)],
    )
