# The course machinery: nbgrader pipeline, notebook conventions, environment doctor.
# Included by the Makefile (it defines PY and STAMP); see docs/instructor-guide.md.
#
#   make doctor                                  check this environment, print what to fix
#   make course-release [ASSIGNMENT=01-planning] regenerate assignments/ from solutions/ (all by default)
#   make course-validate [ASSIGNMENT=...]        release up to date and leak-free, solution full marks, blank 0
#   make course-autograde ASSIGNMENT=01-planning grade submitted/*/01-planning/, write grades/01-planning.csv
#   make course-export ASSIGNMENT=01-planning    grades/01-planning.csv from the gradebook
#   make course-feedback ASSIGNMENT=01-planning  feedback/<student>/01-planning/*.html
#   make notebooks-check                         launch links, set-up cells and stripped outputs of every notebook
#   make notebooks-strip                         strip the outputs of lectures/ and solutions/ notebooks in place

ASSIGNMENT ?=
COURSE_ARGS ?=
COURSE := $(PY) -m mbrl_course.grading.cli

.PHONY: doctor course-release course-validate course-autograde course-export course-feedback notebooks-check notebooks-strip

doctor: $(STAMP)
	$(PY) -m mbrl_course.doctor

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

notebooks-check: $(STAMP)
	$(PY) -m mbrl_course.grading.notebooks check

notebooks-strip: $(STAMP)
	$(PY) -m mbrl_course.grading.notebooks strip $$(find lectures solutions -name '*.ipynb' -not -path '*/.ipynb_checkpoints/*')
