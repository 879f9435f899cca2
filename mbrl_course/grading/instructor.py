"""The instructor's hidden checks: loaded from the course's sources, never installed with the package.

Hidden tests need more than the visible checks students see: oracles with the students' own
signatures, comparisons with the reference implementation, catalogues of typical mistakes. If
they shipped in :mod:`mbrl_course`, every student who installs the package could call them. They
live with the solutions instead, in ``solutions/hidden_checks/<name>.py`` of the instructor's
(private) repository, and a hidden test region loads them by name::

    ### BEGIN HIDDEN TESTS
    from mbrl_course.grading.instructor import hidden_checks
    hidden = hidden_checks("planning")
    with report.part("the elites are the sequences with the largest returns", weight=2):
        hidden.check_select_elites_top(select_elites, seed=14)
    ### END HIDDEN TESTS

The course folder is found, in this order: :func:`set_course_root` (the grading pipeline calls
it), the environment variable ``MBRL_COURSE_ROOT``, or the nearest folder holding
``nbgrader_config.py`` from the working directory up (how the instructor's own Jupyter finds it
when running ``solutions/<assignment>/<notebook>.ipynb``).
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path
from types import ModuleType

HIDDEN_DIR = Path("solutions") / "hidden_checks"
"""Where hidden checks live, relative to the course folder."""
ENV_VAR = "MBRL_COURSE_ROOT"
_MODULE_PREFIX = "mbrl_course_hidden_checks"
_root: Path | None = None


class HiddenChecksMissing(ImportError):
    """The hidden checks are not here: this is a student's copy of the course (as it should be)."""


def set_course_root(root: str | Path | None) -> None:
    """Load hidden checks from ``root`` (a course folder) from now on; ``None`` forgets it."""
    global _root
    _root = Path(root).resolve() if root is not None else None


def course_root() -> Path | None:
    """The course folder hidden checks are loaded from, or ``None`` where there is none."""
    if _root is not None:
        return _root
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "nbgrader_config.py").is_file():
            return folder
    return None


def hidden_checks(name: str) -> ModuleType:
    """The module ``solutions/hidden_checks/<name>.py`` of the course folder (loaded once per folder).

    Raises :class:`HiddenChecksMissing` where the file is not there, e.g. in the student repository.
    """
    if not isinstance(name, str) or not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        raise ValueError(f"name: expected a module name such as 'planning', got {name!r}")
    root = course_root()
    path = root / HIDDEN_DIR / f"{name}.py" if root is not None else None
    if path is None or not path.is_file():
        raise HiddenChecksMissing(
            f"hidden checks {name!r} are not in this copy of the course (looked for "
            f"{path if path is not None else HIDDEN_DIR / (name + '.py')}): they are part of the "
            "instructor's repository only. Set MBRL_COURSE_ROOT to the instructor's course folder."
        )
    key = f"{_MODULE_PREFIX}.{abs(hash(str(path.parent)))}.{name}"
    module = sys.modules.get(key)
    if module is not None and getattr(module, "__file__", None) == str(path):
        return module
    spec = importlib.util.spec_from_file_location(key, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(key, None)
        raise
    return module
