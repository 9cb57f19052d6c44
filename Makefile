# pixverse-jobs: every command sets itself up (a virtualenv in .venv) before it runs.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The virtualenv is made with the Lambda runtime's Python (3.13) wherever this machine has one, on
# PATH or under pyenv (scripts/find_python.sh); else python3 >= 3.11, with a note. PYTHON=... overrides.
ifeq ($(origin PYTHON),undefined)
PYTHON := $(shell scripts/find_python.sh)
endif
ifeq ($(PYTHON),)
$(error no usable Python: see the message above)
endif
# A virtualenv made with another minor version than PYTHON's is made again.
VENV_VERSION_CHECK := import sys; print('%d.%d' % sys.version_info[:2])
ifneq ($(wildcard $(BIN)/python),)
ifneq ($(shell $(BIN)/python -c "$(VENV_VERSION_CHECK)" 2>/dev/null),$(shell $(PYTHON) -c "$(VENV_VERSION_CHECK)"))
$(info note: $(VENV) was made with another Python than $(PYTHON); making it again)
$(shell rm -rf $(VENV))
endif
endif

.PHONY: help setup test unit integration lint demo run build deploy delete openapi bench clean

help:
	@echo "make demo   - start the local stack, run two jobs end to end, print objects and events"
	@echo "make test   - lint, type-check and run the whole test suite (what CI runs)"
	@echo "make run    - the local stack in the foreground until Ctrl-C"
	@echo "make build  - sam build (no containers) into .aws-sam/build"
	@echo "make deploy - make build, then sam deploy --guided (asks for stack name, region, parameters)"
	@echo "make delete - sam delete (the table and bucket are retained; see README, Cleanup)"
	@echo "make openapi - regenerate functions/submit/openapi.json from the code"
	@echo "make bench  - the benchmarks, written to bench/results.json and bench/results.md"
	@echo "make reliability - the reliability suite at full size (300+ jobs, faults, bad input); figures in reliability/results.json"

setup: $(STAMP)

$(STAMP): requirements-dev.txt layers/shared/requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c 'import sys; print("virtualenv: Python %d.%d.%d" % sys.version_info[:3])'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/cfn-lint template.yaml
	SAM_CLI_TELEMETRY=0 $(BIN)/sam validate --lint --region us-east-1 --template-file template.yaml
	$(BIN)/python scripts/openapi.py --check

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit -q

integration: $(STAMP)
	$(BIN)/python -m pytest tests/integration -q

test: lint $(STAMP)
	@$(BIN)/python -c 'import sys; print("tests on Python %d.%d.%d" % sys.version_info[:3], "(the Lambda runtime is 3.13)")'
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

run: $(STAMP)
	$(BIN)/python -m pixverse_local

build: $(STAMP)
	scripts/sam_build.sh

deploy: build
	SAM_CLI_TELEMETRY=0 $(BIN)/sam deploy --guided $(DEPLOY_ARGS)

delete: $(STAMP)
	SAM_CLI_TELEMETRY=0 $(BIN)/sam delete $(DELETE_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/run.py

.PHONY: reliability
reliability: $(STAMP)
	RELIABILITY_SCALE=full RELIABILITY_COMMAND="make reliability" $(BIN)/python -m pytest tests/reliability -m reliability -q

openapi: $(STAMP)
	$(BIN)/python scripts/openapi.py

clean:
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache
