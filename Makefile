# The project's commands. `make run` and `make test` are the two a new user needs.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
MODEL_DIR ?= artifacts
HOST ?= 127.0.0.1
PORT ?= 8080
export MODEL_DIR HOST PORT

# Two install levels: serving+training (what `make run` needs) and everything (tests, linters, Pulumi).
TRAIN_STAMP := $(VENV)/.train-installed
DEV_STAMP := $(VENV)/.dev-installed

.PHONY: help venv dev train run test lint bench rehearse

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(TRAIN_STAMP): requirements/runtime.txt requirements/train.txt constraints.txt
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python >= 3.11 is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -c constraints.txt -r requirements/train.txt
	touch $@

$(DEV_STAMP): $(TRAIN_STAMP) requirements/dev.txt
	$(BIN)/pip install -q --disable-pip-version-check -c constraints.txt -r requirements/dev.txt
	touch $@

venv: $(TRAIN_STAMP) ## create .venv with what training and serving need
dev: $(DEV_STAMP) ## add the test, lint and infrastructure tools

$(MODEL_DIR)/metadata.json: | $(TRAIN_STAMP)
	$(BIN)/python -m model.train --out $(MODEL_DIR)

train: $(TRAIN_STAMP) ## train, evaluate, gate and write the artifact (always retrains)
	$(BIN)/python -m model.train --out $(MODEL_DIR)

run: $(TRAIN_STAMP) $(MODEL_DIR)/metadata.json ## train if needed, then serve on http://$(HOST):$(PORT)
	@echo "Serving on http://$(HOST):$(PORT)  (Ctrl-C stops it). Try:"
	@echo "  curl -s http://$(HOST):$(PORT)/predict -H 'Content-Type: application/json' \\"
	@echo "    -d '{\"MedInc\": 8.3252, \"HouseAge\": 41, \"AveRooms\": 6.98, \"AveBedrms\": 1.02, \"Population\": 322, \"AveOccup\": 2.56, \"Latitude\": 37.88, \"Longitude\": -122.23}'"
	exec $(BIN)/gunicorn -c python:service.gunicorn_conf 'service:create_app()'

lint: $(DEV_STAMP) ## ruff, shellcheck, hadolint, actionlint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/actionlint -shellcheck $(BIN)/shellcheck

test: $(DEV_STAMP) lint ## lint, then every test group this machine can run (says loudly what it skipped)
	$(BIN)/python -m pytest

rehearse: $(DEV_STAMP) ## deploy rehearsal: build, push to a local registry, boot with the real user-data, smoke
	$(BIN)/python scripts/rehearse.py

bench: $(DEV_STAMP) $(MODEL_DIR)/metadata.json ## serving benchmark against the seed-like baseline
	$(BIN)/python -m bench.serving
