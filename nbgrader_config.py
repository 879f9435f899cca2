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
# Autograding runs each submission in two processes (docs/instructor-guide.md, "The sandbox"):
# the student's cells in a sandbox with the limits below, the test cells (hidden tests too) in
# the grader, which never runs the student's code. A cell or a call from a test past
# cell_seconds is interrupted (that part scores 0, the rest goes on); a submission past
# wall_seconds is stopped and loses what it had not earned yet; the CSV says which limit.
c.SandboxedExecute.memory_mb = 4096  # address space of the student's process
c.SandboxedExecute.wall_seconds = 600  # the whole submission
c.SandboxedExecute.cell_seconds = 120  # one cell, or one call of a student's function from a test
c.SandboxedExecute.file_mb = 256  # largest file the student's code may write


# The reference implementation each assignment's students write themselves: inside the sandbox
# these cannot be imported or read (calling them costs the part's points).
c.SandboxedExecute.reference_modules = {
    "01-planning": ["mbrl_course.planning", "mbrl_course.agents", "mbrl_course.runs"],
    "02-kalman": ["mbrl_course.filters", "mbrl_course.viz.filtering"],
    "03-ensembles-pets": ["mbrl_course.models", "mbrl_course.data", "mbrl_course.agents", "mbrl_course.runs"],
    "04-moment-matching": ["mbrl_course.models.moment_matching", "mbrl_course.models.gp", "mbrl_course.rl.controllers",
                           "mbrl_course.agents"],
    # Assignment 5 uses the Kalman filter and the RTS smoother (mbrl_course.filters) as its oracle, in the
    # notebook too: only the package's VSSM code is the reference here.
    "05-vssm-elbo": ["mbrl_course.ssm"],
    # Assignment 6 plans and learns with the RSSM (mbrl_course.ssm, the students' to use): the reference is the
    # actor-critic maths, PlaNet's latent objective and the agents built on them.
    "06-dreamer": ["mbrl_course.rl.actor_critic", "mbrl_course.planning.latent", "mbrl_course.agents"],
}
# Modules the student's process imports before the audit hook (which refuses ctypes and
# subprocesses): for an assignment whose notebook makes MuJoCo environments, list
# "mbrl_course.envs", "mujoco" and the gymnasium modules of those environments (e.g.
# "gymnasium.envs.mujoco.half_cheetah_v5"); MuJoCo's import loads plugins with ctypes and starts
# a process. They must not import an assignment's reference modules.
c.SandboxedExecute.preload_modules = []
# Our notebooks start in seconds; the kernel settings below are for plain `nbgrader` commands
# that still use a Jupyter kernel (validate in the instructor's Jupyter, formgrader).
c.Execute.timeout = 120
c.Execute.startup_timeout = 120
c.Execute.interrupt_on_timeout = True
c.Execute.execute_retries = 0
c.Execute.shutdown_kernel = "immediate"

# ----------------------------------------------------------------------------- autograde
# A deleted test cell comes back (and is graded); edited read-only cells are restored by nbgrader.
c.OverwriteCells.add_missing_cells = True
# nbgrader gives 0 to a test cell with any stderr output: library warnings must not zero a
# correct answer, so stderr is relabelled stdout after execution (errors still score 0).
c.Autograde.autograde_preprocessors = [
    "mbrl_course.grading.execute.SandboxedExecute",
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

# ----------------------------------------------------------------------------- feedback
# Feedback shows every check's message, but not the hidden tests' code (their seeds and the
# names of the instructor's checks stay private; the autograded copies keep them).
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "nbgrader.preprocessors.ClearHiddenTests",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]
