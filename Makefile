# isokit: `make report` runs the main job, `make test` runs the tests.
# Both create (or reuse) a virtual environment in .venv.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
# A CPU build of torch. On a machine whose pip serves the CUDA build under this name, point
# TORCH_INDEX at the CPU wheel index; a GPU user sets TORCH_INDEX to a CUDA wheel index instead
# (see README). An existing torch in the environment is kept.
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
OUT ?= out/report

.PHONY: install report test test-slow lint check-report bench clean analyses analyses-quick

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || \
		$(PY) -m pip install $(TORCH) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install -e '.[test]'
	touch $@

install: $(VENV)/.installed

report: install
	$(VENV)/bin/isokit report --out $(OUT)

test: lint
	$(PY) -m pytest -q

test-slow: install
	$(PY) -m pytest -q -m slow; rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ]

lint: install
	$(VENV)/bin/ruff check isokit tests benchmarks analyses
	$(VENV)/bin/ruff format --check isokit tests benchmarks analyses

ANALYSES := nonsquare momentum_toy conv_stem depth dead_weights trainability ablation theory_map hf_models

# The full analyses, one after the other (hours on 2 cores; each resumes where it stopped).
analyses: install
	for a in $(ANALYSES); do $(PY) analyses/$$a.py || exit 1; done

analyses-quick: install
	for a in $(ANALYSES); do $(PY) analyses/$$a.py --quick --out out/figures-quick || exit 1; done

check-report: report
	$(PY) -m isokit.report.screenshot $(OUT)

bench: install
	$(PY) benchmarks/bench_probe.py

clean:
	rm -rf $(VENV) out .pytest_cache
