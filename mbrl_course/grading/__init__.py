"""Grading: what the assignments' test cells use, and the instructor's nbgrader pipeline.

For test cells (imported by the notebooks; light, no nbgrader needed):

- :class:`Report`: a graded cell's weighted checks, messages and partial credit
  (``report.score()`` is the number nbgrader reads).
- :class:`GradingError`: a failed check, with a message for the student.
- :mod:`mbrl_course.grading.checks`: compare with a reference (shape, bounds, values) and
  detect calls into the reference implementation (``expect_independent``).
- :mod:`mbrl_course.grading.planning`: the visible checks of Assignment 1 (planning).
- :mod:`mbrl_course.grading.kalman`: the visible checks of Assignment 2 (Kalman filtering, marginal likelihood).
- :mod:`mbrl_course.grading.ensembles`: the visible checks of Assignment 3 (probabilistic ensembles and PETS).
- :mod:`mbrl_course.grading.moment_matching`: the visible checks of Assignment 4 (moment matching for PILCO).
- :mod:`mbrl_course.grading.vssm`: the visible checks of Assignment 5 (the ELBO of a variational state-space model).
- :mod:`mbrl_course.grading.dreamer`: the visible checks of Assignment 6 (Dreamer's λ-returns and losses, PlaNet's
  latent objective).

  Visible checks draw their own examples and never compute an answer for a student's inputs, nor
  import the reference implementation. The hidden tests' oracles, comparisons with the reference
  and catalogues of mistakes are not in the package: :mod:`mbrl_course.grading.instructor` loads
  them from the instructor's ``solutions/hidden_checks/``.

For authors and instructors:

- :mod:`mbrl_course.grading.links`: the student repository's address (``[tool.mbrl_course]`` of
  ``pyproject.toml``) and the Colab / Binder links.
- :mod:`mbrl_course.grading.notebooks`: notebook conventions (header cells, stripped outputs, running).
- :mod:`mbrl_course.grading.pipeline`: release, validate, autograde, export, feedback (nbgrader).
- :mod:`mbrl_course.grading.cli`: ``mbrl-course course release|validate|autograde|feedback|export``.
- :mod:`mbrl_course.grading.preprocessors`: nbgrader preprocessors the course's config uses.
- :mod:`mbrl_course.grading.execute`, :mod:`~mbrl_course.grading.remote`, :mod:`~mbrl_course.grading.wire`,
  :mod:`~mbrl_course.grading.sandbox`, :mod:`~mbrl_course.grading.worker`: autograding in two processes,
  the student's cells in an OS sandbox and the test cells in the grader (the instructor guide's "The sandbox").
- :mod:`mbrl_course.grading.instructor`: loads the hidden checks from ``solutions/hidden_checks/``.
- :mod:`mbrl_course.grading.export`: the public student repository (``course export-student``).
- :mod:`mbrl_course.grading.similarity`: answer cells that paste the reference implementation.
"""

from mbrl_course.grading.links import BRANCH, REPO, binder_url, colab_url, launch_badges
from mbrl_course.grading.report import GradingError, Part, Report, describe_exception

__all__ = [
    "BRANCH",
    "REPO",
    "GradingError",
    "Part",
    "Report",
    "binder_url",
    "colab_url",
    "describe_exception",
    "launch_badges",
]
