# `make run` and `make test` each bootstrap .venv on a fresh machine (offline after the install).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# test-fast: no slow, ui, cluster or storage tests (the unit tests of every layer)
.PHONY: run test test-fast lint format bench install clean deploy serve upgrade-check

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/recflow run --config configs/default.yaml

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -n auto --maxprocesses 4 --dist loadgroup

test-fast: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n auto --maxprocesses 4 --dist loadgroup -m "not slow and not ui and not cluster and not storage"

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

# Register prefect.yaml's deployments on the server at $$PREFECT_API_URL, then automations.yaml's
# alerts to the webhook at $$RECFLOW_ALERT_WEBHOOK_URL (see README, Operations).
deploy: $(STAMP)
	$(BIN)/prefect work-pool create recflow-process --type process --overwrite
	$(BIN)/prefect work-pool set-concurrency-limit recflow-process 1
	$(BIN)/prefect --no-prompt deploy --all
	$(BIN)/python -m flows.automations

serve: $(STAMP)
	$(BIN)/recflow schedules

# The newest releases pyproject.toml allows (no constraints.txt) in a temp venv: the fast tests and a
# `recflow run --dask` smoke run against them (.ci/upgrade-check; needs PyPI). UPGRADE_VENV=dir keeps it.
upgrade-check:
	PYTHON=$(PYTHON) .ci/upgrade-check

bench: $(STAMP)
	$(BIN)/python -m bench.pipeline

clean:
	rm -rf $(VENV) artifacts/*/ artifacts/mlflow.db artifacts/.prefect
