# mmfacekd — two commands a newcomer needs:
#   make demo   set up .venv if missing, generate the synthetic face set if
#               missing, train + evaluate the demo models, print the table
#   make test   set up .venv if missing, run the test suite
#   make comparison  every distillation method on the synthetic set
#               (GKD Table 5 shape; reuses make demo's finished runs)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test setup clean-demo comparison

setup: $(STAMP)

$(STAMP): requirements/runtime.txt requirements/tests.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements/runtime.txt -r requirements/tests.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(PY) tools/misc/run_demo.py

comparison: $(STAMP)
	test -f data/synthetic/meta.json || $(PY) tools/misc/make_synthetic_faces.py data/synthetic
	$(PY) tools/analysis/run_comparison.py --preset synthetic --keep-going

test: $(STAMP)
	$(PY) -m pytest -q tests

clean-demo:
	rm -rf work_dirs/demo data/synthetic
