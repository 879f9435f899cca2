# mbrl_course: two commands for a fresh machine with only Python.
#   make demo   set-up, then PETS on Pendulum-v1 in the default budget (writes runs/demo/)
#   make test   set-up, then the whole test suite
# Set-up creates .venv if it is missing and installs the package with its course and dev extras.
# torch: where no NVIDIA GPU is visible, a CPU build is installed first (TORCH_CPU_VERSION,
# with TORCH_CPU_PIP_ARGS, e.g. a CPU wheel index); a torch that already imports in .venv,
# such as your own CUDA build, is never replaced.
# MuJoCo's GL backend (MUJOCO_GL) is chosen by the package (mbrl_course/envs/rendering.py); set it to override.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mbrl_course_installed
TORCH_CPU_VERSION ?= 2.13.0
TORCH_CPU_PIP_ARGS ?=
TORCH_GPU_SPEC ?= torch<=2.14.1
PYTEST_ARGS ?=
DEMO_ARGS ?=

.PHONY: setup demo test lab lint bench clean-venv

setup: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	@if $(PY) -c "import torch" 2>/dev/null; then \
	  echo "torch already installed in $(VENV): keeping it"; \
	elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
	  echo "NVIDIA GPU found: installing a CUDA build of torch"; \
	  $(PY) -m pip install --quiet "$(TORCH_GPU_SPEC)"; \
	else \
	  echo "no GPU found: installing the CPU build torch==$(TORCH_CPU_VERSION)"; \
	  $(PY) -m pip install --quiet "torch==$(TORCH_CPU_VERSION)" $(TORCH_CPU_PIP_ARGS); \
	fi
	$(PY) -m pip install --quiet -e ".[course,dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (mbrl_course)" >/dev/null
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m mbrl_course.cli train pets --env Pendulum-v1 --episodes 10 --seed 0 --out runs/demo --overwrite $(DEMO_ARGS)
	@echo "demo finished: see runs/demo/learning_curve.png, runs/demo/rollout.gif and runs/demo/checkpoint.pt"

# pytest exits 5 when it collects no tests; that alone is not a failure.
test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadfile $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$rc

lab: $(STAMP)
	$(VENV)/bin/jupyter lab lectures/

lint: $(STAMP)
	$(VENV)/bin/ruff check mbrl_course tests benchmarks

clean-venv:
	rm -rf $(VENV)

include course.mk
