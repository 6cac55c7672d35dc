# mmfacekd — two commands a newcomer needs:
#   make demo   set up .venv if missing, generate the synthetic face set if
#               missing, train + evaluate the demo models, print the table
#   make test   set up .venv if missing, run the test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test setup clean-demo

setup: $(STAMP)

$(STAMP): requirements/runtime.txt requirements/tests.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements/runtime.txt -r requirements/tests.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(PY) tools/misc/run_demo.py

test: $(STAMP)
	$(PY) -m pytest -q tests

clean-demo:
	rm -rf work_dirs/demo data/synthetic
