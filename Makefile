# Two commands do all the set-up: `make demo` and `make test`. Each builds its virtual environment
# outside the clone, keyed by the hash of its requirements file, so a fresh machine builds it once and
# later runs (and CI clones) reuse it.
PYTHON ?= python3
VENV_ROOT ?= $(HOME)/.cache/rectvit
TEST_VENV := $(VENV_ROOT)/test-$(shell sha256sum requirements-test.txt | cut -c1-12)
DEMO_VENV := $(VENV_ROOT)/demo-$(shell sha256sum requirements-demo.txt | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: test demo lint bench venv-test venv-demo clean

# $(call make_venv,DIR,REQUIREMENTS,WHY): build DIR from REQUIREMENTS unless it is complete (.ready),
# saying what each step installs and why, then (re)install this checkout into it in editable mode.
define make_venv
	@if [ ! -f $(1)/.ready ]; then \
		echo "rectvit: building $(1) from $(2) (first run only; later runs reuse it)"; \
		echo "rectvit: [1/3] creating a virtual environment with $(PYTHON)"; \
		rm -rf $(1) && $(PYTHON) -m venv $(1) && \
		echo "rectvit: [2/3] installing $(3); pip's progress follows" && \
		echo "rectvit:       $$(grep -v '^#' $(2) | tr '\n' ' ')" && \
		$(1)/bin/pip install --disable-pip-version-check -r $(2) && \
		echo "rectvit: [3/3] installing this checkout into it (editable, no dependencies)" && \
		touch $(1)/.ready || { rm -rf $(1); exit 1; }; \
	else \
		echo "rectvit: using $(1) (built from $(2); delete it to rebuild)"; \
	fi
	@$(1)/bin/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e . >/dev/null
endef

TEST_WHY := torch (CPU) and torchvision, timm and transformers as test oracles, pytest, hypothesis, ruff: about 6 GB, minutes
DEMO_WHY := a CPU build of torch, safetensors, numpy and matplotlib for the picture

venv-test:
	$(call make_venv,$(TEST_VENV),requirements-test.txt,$(TEST_WHY))

venv-demo:
	$(call make_venv,$(DEMO_VENV),requirements-demo.txt,$(DEMO_WHY))

test: venv-test
	$(TEST_VENV)/bin/python -m pytest $(PYTEST_ARGS)

demo: venv-demo
	$(DEMO_VENV)/bin/rectvit demo

lint: venv-test
	$(TEST_VENV)/bin/ruff check src tests bench scripts
	$(TEST_VENV)/bin/ruff format --check src tests bench scripts

bench: venv-test
	$(TEST_VENV)/bin/python -m bench

clean:
	rm -rf build src/*.egg-info .pytest_cache .hypothesis
