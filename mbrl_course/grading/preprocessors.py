"""nbgrader preprocessors that ``nbgrader_config.py`` plugs into the course's pipeline.

- :class:`StderrToStdout` (autograde, after ``Execute``): nbgrader gives 0 to a test cell
  with *any* stderr output (``nbgrader.utils.determine_grade``), so a library warning would
  zero a correct answer. This relabels stderr streams as stdout: the text stays visible in
  the feedback, exceptions (``error`` outputs) still score 0.
- :class:`ReleaseLinks` (generate_assignment, first): the launch links of a source notebook
  open ``solutions/<a>/<nb>.ipynb``; in the release they must open
  ``assignments/<a>/<nb>.ipynb`` in the configured student repository
  (:mod:`mbrl_course.grading.links`). It rewrites them, and the set-up cell's install.

Only nbgrader and nbconvert are imported here (nbgrader imports this module by name).
"""

from __future__ import annotations

from nbconvert.preprocessors import Preprocessor
from traitlets import Bool, Unicode

from mbrl_course.grading.links import relink


def stderr_to_stdout(cell) -> int:
    """Relabel the stderr streams of one code cell as stdout, in place; return how many."""
    changed = 0
    if cell.get("cell_type") != "code":
        return 0
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream" and output.get("name") == "stderr":
            output["name"] = "stdout"
            changed += 1
    return changed


class StderrToStdout(Preprocessor):
    """Turn stderr output of every code cell into stdout, so that warnings cost no points."""

    enabled = Bool(True, help="run this preprocessor (nbconvert skips disabled ones)").tag(config=True)

    def preprocess_cell(self, cell, resources, index):
        stderr_to_stdout(cell)
        return cell, resources


class ReleaseLinks(Preprocessor):
    """Point the launch links of a released notebook at its own path in the release folder of the
    configured student repository, and its Colab set-up cell at that repository."""

    enabled = Bool(True, help="run this preprocessor (nbconvert skips disabled ones)").tag(config=True)

    release_directory = Unicode("assignments", help="release folder, relative to the repository root").tag(config=True)

    def preprocess(self, nb, resources):
        info = resources.get("nbgrader", {})
        notebook, assignment = info.get("notebook"), info.get("assignment")
        if not notebook or not assignment or not nb.cells:
            return nb, resources
        path = f"{self.release_directory}/{assignment}/{notebook}.ipynb"
        first = nb.cells[0]
        if first.cell_type == "markdown":
            first.source = relink(first.source, path)
        if len(nb.cells) > 1 and nb.cells[1].cell_type == "code":
            nb.cells[1].source = relink(nb.cells[1].source)
        return nb, resources
