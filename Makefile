# Every target creates the virtual environment in .venv when it is missing.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# dbt-core 1.12 needs dbt-core-experimental-parser, whose source package downloads a binary at
# build time; its pre-release wheel on the package index installs offline.
PIP_FLAGS := --only-binary dbt-core-experimental-parser
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export GX_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export DBT_SEND_ANONYMOUS_USAGE_STATS := false

.PHONY: demo test lint venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(PIP_FLAGS) -e '.[dev]'
	touch $@

demo: venv
	$(BIN)/creditflow demo

test: venv
	$(BIN)/python -m pytest

lint: venv
	$(BIN)/ruff check flows ml api tests benchmarks
	$(BIN)/sqlfluff lint dbt_project/models dbt_project/tests dbt_project/macros

clean:
	rm -rf $(VENV) .creditflow dbt_project/target dbt_project/logs
