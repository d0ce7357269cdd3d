# Two commands do all the set-up: `make demo` and `make test`. Each builds its virtual environment
# outside the clone, keyed by the hash of its requirements file, so a fresh machine builds it once and
# later runs (and CI clones) reuse it.
PYTHON ?= python3
VENV_ROOT ?= $(HOME)/.cache/rectvit
TEST_VENV := $(VENV_ROOT)/test-$(shell sha256sum requirements-test.txt | cut -c1-12)
DEMO_VENV := $(VENV_ROOT)/demo-$(shell sha256sum requirements-demo.txt | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: test demo lint bench venv-test venv-demo clean

# $(call make_venv,DIR,REQUIREMENTS): build DIR from REQUIREMENTS unless it is complete (.ready),
# then (re)install this checkout into it in editable mode.
define make_venv
	@if [ ! -f $(1)/.ready ]; then \
		echo "building $(1) from $(2) (first run only)"; \
		rm -rf $(1) && $(PYTHON) -m venv $(1) && \
		$(1)/bin/pip install --quiet --disable-pip-version-check -r $(2) && \
		touch $(1)/.ready || { rm -rf $(1); exit 1; }; \
	fi
	@$(1)/bin/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e . >/dev/null
endef

venv-test:
	$(call make_venv,$(TEST_VENV),requirements-test.txt)

venv-demo:
	$(call make_venv,$(DEMO_VENV),requirements-demo.txt)

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
