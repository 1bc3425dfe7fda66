# `make test` and `make demo` set everything up from a clean checkout.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test test-fast test-slow demo bench clean

# constraints.txt pins every package to the tested version (torch and torchaudio as one exact pair).
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

# Set-up only: .venv with the project and its test extra, at the locked versions.
install: $(STAMP)

# Two passes: the quick suite, then the slow (fault-injection, multi-process, end-to-end) tests.
# pytest exits 5 when a pass selects no test; that is not a failure here.
test: $(STAMP)
	$(PY) -m pytest -q -m "not slow"
	$(PY) -m pytest -q -m "slow" || test $$? -eq 5

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

test-slow: $(STAMP)
	$(PY) -m pytest -q -m "slow" || test $$? -eq 5

# The main job end to end on the CPU: simulate, train tiny.yaml, evaluate, plot, localize one file.
demo: $(STAMP)
	$(PY) examples/demo.py

bench: $(STAMP)
	$(PY) benchmarks/bench_simulate.py
	$(PY) benchmarks/bench_model.py
	$(PY) benchmarks/bench_pipeline.py
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_localize.py
	bash examples/prepare_speech.sh
	$(PY) benchmarks/bench_accuracy.py

clean:
	rm -rf $(VENV) runs/ demo_out/
