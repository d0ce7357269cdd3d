# Two commands do all the set-up: `make demo` and `make test`. Each builds its virtual environment
# outside the clone, keyed by the hash of its requirements file, so a fresh machine builds it once and
# later runs (and CI clones) reuse it. scripts/make_venv.py does the building: without a GPU it prefers
# torch's CPU-only wheels, and it prints what it installs and how large before downloading.
PYTHON ?= python3
VENV_ROOT ?= $(HOME)/.cache/rectvit
TEST_VENV := $(VENV_ROOT)/test-$(shell sha256sum requirements-test.txt | cut -c1-12)
DEMO_VENV := $(VENV_ROOT)/demo-$(shell sha256sum requirements-demo.txt | cut -c1-12)
# make test PYTEST_ARGS="tests/test_vit.py -k dynamic"   a subset (any pytest arguments)
# make test JOBS=1                                       one worker (pytest-xdist's -n)
# make test HYPOTHESIS_SEED=123                          repeat a run's property-test examples
PYTEST_ARGS ?=
JOBS ?= auto
ifeq ($(origin HYPOTHESIS_SEED),undefined)
HYPOTHESIS_SEED := $(shell od -An -N4 -tu4 /dev/urandom | tr -d ' ')
endif
# the whole suite's CPU time on one core of this project's 2-core CI machine, for the printed estimate
SUITE_CPU_S := 500

.PHONY: test demo python shell lint bench venv-test venv-demo clean

TEST_WHY := torch and torchvision, the oracles timm, transformers and onnxruntime, pytest, hypothesis and ruff
DEMO_WHY := torch, safetensors and numpy (rectvit's runtime) and matplotlib for the demo's picture

venv-test:
	@$(PYTHON) scripts/make_venv.py $(TEST_VENV) requirements-test.txt --why "$(TEST_WHY)"

venv-demo:
	@$(PYTHON) scripts/make_venv.py $(DEMO_VENV) requirements-demo.txt --why "$(DEMO_WHY)"

test: venv-test
	@jobs=$$($(TEST_VENV)/bin/python -c "import os; j='$(JOBS)'; print(len(os.sched_getaffinity(0)) if j == 'auto' else j)"); \
	if [ -z "$(PYTEST_ARGS)" ]; then \
		echo "rectvit: running the whole suite on $$jobs worker(s): about $$(( $(SUITE_CPU_S) / $$jobs / 60 + 1 )) min on a quiet machine"; \
	else echo "rectvit: running pytest $(PYTEST_ARGS) on $$jobs worker(s)"; fi; \
	echo "rectvit: hypothesis seed $(HYPOTHESIS_SEED) (to repeat its examples: make test HYPOTHESIS_SEED=$(HYPOTHESIS_SEED))"
	RECTVIT_REQUIRE_ORACLES=1 $(TEST_VENV)/bin/python -m pytest -n $(JOBS) --dist loadgroup --durations=25 --hypothesis-seed=$(HYPOTHESIS_SEED) $(PYTEST_ARGS)
	@echo "rectvit: this environment's Python: $(TEST_VENV)/bin/python (or: source $(TEST_VENV)/bin/activate)"

demo: venv-demo
	$(DEMO_VENV)/bin/rectvit demo
	@echo "rectvit: now use it: make python (an interpreter with rectvit), make shell (a shell with it on PATH),"
	@echo "rectvit:   or: source $(DEMO_VENV)/bin/activate"

python: venv-demo
	@$(DEMO_VENV)/bin/python $(ARGS)

shell: venv-demo
	@echo "rectvit: a shell with $(DEMO_VENV) active; exit to leave it"
	@VIRTUAL_ENV=$(DEMO_VENV) PATH=$(DEMO_VENV)/bin:$$PATH $${SHELL:-/bin/sh}

lint: venv-test
	$(TEST_VENV)/bin/ruff check src tests bench scripts
	$(TEST_VENV)/bin/ruff format --check src tests bench scripts

bench: venv-test
	$(TEST_VENV)/bin/python -m bench

clean:
	rm -rf build src/*.egg-info .pytest_cache .hypothesis
