# mmfacekd — two commands a newcomer needs:
#   make demo   set up .venv if missing, generate the synthetic face set if
#               missing, train + evaluate teacher / student / KD / GKD on
#               2 CPU cores, print the table with 95 % CIs
#   make test   set up .venv if missing, run the test suite
# and, for maintainers:
#   make lint        ruff (pycodestyle, pyflakes, isort order; ruff.toml)
#   make comparison  every distillation method on the synthetic set, masked
#                    sets included, 3 seeds of student / KD / GKD
#                    (reuses make demo's finished runs; duration unmeasured)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
LINT_STAMP := $(VENV)/.lint-installed

.PHONY: demo test lint setup clean-demo comparison

setup: $(STAMP)

$(STAMP): requirements/runtime.txt requirements/tests.txt requirements/deploy.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements/runtime.txt -r requirements/tests.txt -r requirements/deploy.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

$(LINT_STAMP): requirements/lint.txt $(STAMP)
	$(PY) -m pip install -q -r requirements/lint.txt
	touch $(LINT_STAMP)

demo: $(STAMP)
	$(PY) tools/misc/run_demo.py

comparison: $(STAMP)
	test -f data/synthetic/ijb/meta.json || $(PY) tools/misc/make_synthetic_faces.py data/synthetic --identification --ijb
	$(PY) tools/analysis/run_comparison.py --preset synthetic --keep-going \
	    --seeds 3 --suite configs/_base_/datasets/synthetic_masked.py

test: $(STAMP)
	$(PY) -m pytest -q tests

lint: $(LINT_STAMP)
	$(VENV)/bin/ruff check mmfacekd tools tests configs

clean-demo:
	rm -rf work_dirs/demo data/synthetic checkpoints/demo
