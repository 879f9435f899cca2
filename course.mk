# The course machinery: the environment doctor and the notebook conventions.
# Included by the Makefile (it defines PY and STAMP).
#
#   make doctor                                  check this environment, print what to fix
#   make notebooks-check                         launch links, set-up cells and stripped outputs of every notebook
#   make notebooks-strip                         strip the outputs of lectures/ (and solutions/) notebooks in place
#   make notebooks-relink                        point every notebook's links at [tool.mbrl_course] of pyproject.toml
#   make site [SITE_TIER=default SITE_JOBS=1]    run every lecture, build the static course site in _site/ (open _site/index.html)
#   make browser-test [BROWSER_ARGS=...]         open and run every lecture in JupyterLab in the system Chromium
#                                                (apt-get install chromium); screenshots in benchmarks/out/browser/
# BEGIN INSTRUCTOR ONLY (`mbrl-course course export-student` leaves these out of the student repository)
#
# The instructor's nbgrader pipeline and the student repository; see docs/instructor-guide.md.
#
#   make course-release [ASSIGNMENT=01-planning] regenerate assignments/ from solutions/ (all by default)
#   make course-validate [ASSIGNMENT=...]        release up to date and leak-free, solution full marks, blank 0
#   make course-autograde ASSIGNMENT=01-planning grade submitted/*/01-planning/, write grades/01-planning.csv
#   make course-export ASSIGNMENT=01-planning    grades/01-planning.csv from the gradebook
#   make course-feedback ASSIGNMENT=01-planning  feedback/<student>/01-planning/*.html
#   make course-export-student DIR=../student    write the student repository (no solutions, no hidden checks)
# END INSTRUCTOR ONLY

.PHONY: doctor notebooks-check notebooks-strip notebooks-relink site browser-test

SITE_TIER ?= default
SITE_JOBS ?= 1
BROWSER_ARGS ?=

doctor: $(STAMP)
	$(PY) -m mbrl_course.doctor

notebooks-check: $(STAMP)
	$(PY) -m mbrl_course.grading.notebooks check

notebooks-strip: $(STAMP)
	$(PY) -m mbrl_course.grading.notebooks strip $$(find lectures $(wildcard solutions) -name '*.ipynb' -not -path '*/.ipynb_checkpoints/*')

notebooks-relink: $(STAMP)
	$(PY) -m mbrl_course.grading.notebooks relink

site: $(STAMP)
	$(PY) -m mbrl_course.grading.site build --tier $(SITE_TIER) --out _site --jobs $(SITE_JOBS)

browser-test: $(STAMP)
	$(PY) -m mbrl_course.grading.browser $(BROWSER_ARGS)

# BEGIN INSTRUCTOR ONLY
ASSIGNMENT ?=
COURSE_ARGS ?=
DIR ?=
COURSE := $(PY) -m mbrl_course.grading.cli

.PHONY: course-release course-validate course-autograde course-export course-feedback course-export-student

course-release: $(STAMP)
	$(COURSE) release $(ASSIGNMENT) $(COURSE_ARGS)

course-validate: $(STAMP)
	$(COURSE) validate $(ASSIGNMENT) $(COURSE_ARGS)

course-autograde: $(STAMP)
	@test -n "$(ASSIGNMENT)" || { echo "usage: make course-autograde ASSIGNMENT=01-planning"; exit 2; }
	$(COURSE) autograde $(ASSIGNMENT) $(COURSE_ARGS)

course-export: $(STAMP)
	@test -n "$(ASSIGNMENT)" || { echo "usage: make course-export ASSIGNMENT=01-planning"; exit 2; }
	$(COURSE) export $(ASSIGNMENT) $(COURSE_ARGS)

course-feedback: $(STAMP)
	@test -n "$(ASSIGNMENT)" || { echo "usage: make course-feedback ASSIGNMENT=01-planning"; exit 2; }
	$(COURSE) feedback $(ASSIGNMENT) $(COURSE_ARGS)

# COURSE_ARGS="--force --git" replaces DIR's contents (keeping its .git) and commits them
course-export-student: $(STAMP)
	@test -n "$(DIR)" || { echo "usage: make course-export-student DIR=../mbrl_course-student [COURSE_ARGS='--force --git']"; exit 2; }
	$(COURSE) export-student "$(DIR)" $(COURSE_ARGS)
# END INSTRUCTOR ONLY
