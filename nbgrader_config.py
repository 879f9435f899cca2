"""nbgrader configuration of the mbrl_course course: the repository root is the course folder.

    solutions/<assignment>/      nbgrader's source folder: notebooks with solutions and hidden tests
    assignments/<assignment>/    the release, generated from solutions/ (committed)
    submitted/<student>/<assignment>/    what students hand in        (ignored by git)
    autograded/<student>/<assignment>/   the executed, graded copies  (ignored by git)
    feedback/<student>/<assignment>/     HTML feedback                 (ignored by git)
    gradebook.db                         the gradebook (sqlite)        (ignored by git)

Commands (see docs/instructor-guide.md): ``mbrl-course course release|validate|autograde|feedback|export``
or plain ``nbgrader`` run from this folder, which reads this file too.
"""

import os

c = get_config()  # noqa: F821 (provided by traitlets when nbgrader loads this file)

# ----------------------------------------------------------------------------- the course folder
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "assignments"
c.CourseDirectory.submitted_directory = "submitted"
c.CourseDirectory.autograded_directory = "autograded"
c.CourseDirectory.feedback_directory = "feedback"
# gradebook.db in the course root (nbgrader's default, sqlite:///<root>/gradebook.db).
# On a JupyterHub with nbgrader's exchange, set the course id the exchange knows:
c.CourseDirectory.course_id = os.environ.get("NBGRADER_COURSE_ID", "mbrl_course")
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "gradebook.db"]

# ----------------------------------------------------------------------------- release
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
# Released launch links must open the release, not the source.
c.GenerateAssignment.preprocessors = [
    "mbrl_course.grading.preprocessors.ReleaseLinks",
    "nbgrader.preprocessors.IncludeHeaderFooter",
    "nbgrader.preprocessors.InstantiateTests",
    "nbgrader.preprocessors.LockCells",
    "nbgrader.preprocessors.ClearSolutions",
    "nbgrader.preprocessors.ClearOutput",
    "nbgrader.preprocessors.CheckCellMetadata",
    "nbgrader.preprocessors.ComputeChecksums",
    "nbgrader.preprocessors.SaveCells",
    "nbgrader.preprocessors.ClearHiddenTests",
    "nbgrader.preprocessors.ClearMarkScheme",
    "nbgrader.preprocessors.ComputeChecksums",
    "nbgrader.preprocessors.CheckCellMetadata",
]
c.ReleaseLinks.release_directory = "assignments"

# ----------------------------------------------------------------------------- execution
# Our notebooks run in seconds in the smoke budget (NBGRADER_EXECUTION selects it); a cell that
# takes longer than this is a student's infinite loop: it is interrupted, scores 0, and the
# rest of the notebook still runs.
c.Execute.timeout = 120
c.Execute.startup_timeout = 120
c.Execute.interrupt_on_timeout = True
c.Execute.execute_retries = 0
c.Execute.shutdown_kernel = "immediate"  # nothing to save in a grading kernel: saves ~1 s per student

# ----------------------------------------------------------------------------- autograde
# A deleted test cell comes back (and is graded); edited read-only cells are restored by nbgrader.
c.OverwriteCells.add_missing_cells = True
# nbgrader gives 0 to a test cell with any stderr output: library warnings must not zero a
# correct answer, so stderr is relabelled stdout after execution (errors still score 0).
c.Autograde.autograde_preprocessors = [
    "nbgrader.preprocessors.Execute",
    "mbrl_course.grading.preprocessors.StderrToStdout",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]
c.LimitOutput.max_lines = 200
c.LimitOutput.max_traceback = 60
