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
# The checkout's commit: /ready's `revision` under `make run`, and the image's label; "unknown" outside git.
REVISION = $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)

# Offline machines: use the scikit-learn cache beside the checkout when there is one (as in CI);
# elsewhere scikit-learn downloads the dataset itself the first time.
ifeq ($(origin SCIKIT_LEARN_DATA),undefined)
ifneq ($(wildcard ../shared/data/scikit_learn_data/cal_housing*),)
export SCIKIT_LEARN_DATA := $(abspath ../shared/data/scikit_learn_data)
endif
endif

# Two install levels: serving+training (what `make run` needs) and everything (tests, linters, Pulumi).
TRAIN_STAMP := $(VENV)/.train-installed
DEV_STAMP := $(VENV)/.dev-installed

.PHONY: help venv dev train report run test lint bench rehearse docker docker-run bench-docker soak bootstrap

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(TRAIN_STAMP): requirements/runtime.txt requirements/train.txt constraints.txt
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python >= 3.11 is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -c constraints.txt -r requirements/train.txt
	touch $@

$(DEV_STAMP): $(TRAIN_STAMP) requirements/dev.txt requirements.txt
	$(BIN)/pip install -q --disable-pip-version-check -c constraints.txt -r requirements/dev.txt
	touch $@

# The policy pack's own venv (policy/PulumiPolicy.yaml): pulumi-policy pins protobuf 5, the program's
# venv runs protobuf 6, so the two never share one. `pulumi preview --policy-pack policy` runs from it.
PACK_STAMP := policy/.venv/.installed
# policy/requirements.txt applies the lock (-c policy/constraints.txt); a change to either remakes the venv.
$(PACK_STAMP): policy/requirements.txt policy/constraints.txt
	$(PYTHON) -m venv policy/.venv
	policy/.venv/bin/pip install -q --disable-pip-version-check -r policy/requirements.txt
	touch $@

venv: $(TRAIN_STAMP) ## create .venv with what training and serving need
dev: $(DEV_STAMP) $(PACK_STAMP) ## add the test, lint and infrastructure tools, and the policy pack's venv

# `make run`'s first training reuses the CV figures `make report` committed beside the report when
# their fingerprint is this checkout's (model/cache.py), else computes them; TRAIN_FLAGS adds options
# (bench/first_run.py measures this path). `make train`, `make report`, the image and CI always recompute.
EVALUATION_CACHE ?= docs/report/evaluation.json
TRAIN_FLAGS ?=
$(MODEL_DIR)/metadata.json: | $(TRAIN_STAMP)
	$(BIN)/python -m model.train --out $(MODEL_DIR) --reuse-evaluation $(EVALUATION_CACHE) $(TRAIN_FLAGS)

train: $(TRAIN_STAMP) ## train, evaluate, gate and write the artifact (always retrains)
	$(BIN)/python -m model.train --out $(MODEL_DIR)

# docs/model.md shows committed copies of the report; tests/test_report.py fails when their numbers differ
# from a fresh training run's, and this one command brings them back in step.
# It also saves the run's CV figures with their fingerprint (docs/report/evaluation.json) for `make run`.
report: $(TRAIN_STAMP) ## retrain, then copy the model report into docs/report/ (commit it; docs/model.md shows it)
	$(BIN)/python -m model.train --out $(MODEL_DIR) --save-evaluation $(MODEL_DIR).evaluation.json
	rm -rf docs/report && mkdir -p docs/report
	cp $(MODEL_DIR)/report/* docs/report/
	mv $(MODEL_DIR).evaluation.json $(EVALUATION_CACHE)
	@echo "docs/report/ updated; commit it with the change that altered the model"

run: $(TRAIN_STAMP) $(MODEL_DIR)/metadata.json ## train if needed, then serve on http://$(HOST):$(PORT)
	@echo "Serving on http://$(HOST):$(PORT)  (Ctrl-C stops it). Try:"
	@echo "  curl -s http://$(HOST):$(PORT)/predict -H 'Content-Type: application/json' \\"
	@echo "    -d '{\"MedInc\": 8.3252, \"HouseAge\": 41, \"AveRooms\": 6.98, \"AveBedrms\": 1.02, \"Population\": 322, \"AveOccup\": 2.56, \"Latitude\": 37.88, \"Longitude\": -122.23}'"
	GIT_REVISION="$${GIT_REVISION:-$(REVISION)}" \
	  exec $(BIN)/gunicorn -c python:service.gunicorn_conf 'service:create_app()'

lint: $(DEV_STAMP) ## ruff, shellcheck, hadolint, actionlint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint Dockerfile
	$(BIN)/actionlint -shellcheck $(BIN)/shellcheck

test: $(DEV_STAMP) $(PACK_STAMP) lint ## lint, then every test group this machine can run (says loudly what it skipped)
	$(BIN)/python -m pytest

rehearse: $(DEV_STAMP) ## deploy rehearsal: build, push to a local registry, boot with the real user-data, guardrail; a broken build rolled back
	$(BIN)/python scripts/rehearse.py

bench: $(DEV_STAMP) $(MODEL_DIR)/metadata.json ## /health floor vs /predict, seed-like ratio, batch of 1,000 (~3 min; exit 1 on a missed target)
	$(BIN)/python -m bench.serving

# The image trains the model during its build. The host's scikit-learn cache ($SCIKIT_LEARN_DATA, or
# the CI machine's shared one) is staged in .build-data/ (git-ignored) so the build downloads nothing;
# without it the build downloads the dataset itself.
IMAGE ?= cali-housing
SKLEARN_DATA ?= $(or $(SCIKIT_LEARN_DATA),../shared/data/scikit_learn_data)

# The staged copy is removed when the build ends, however it ends: a leftover would only confuse
# (infra/release.py never hashes it, so it cannot change the content tag either way).
docker: ## build the image (trains inside); tags $(IMAGE):<model version> and $(IMAGE):latest
	rm -rf .build-data && mkdir -p .build-data/scikit_learn_data
	trap 'rm -rf .build-data' EXIT; \
	if compgen -G '$(SKLEARN_DATA)/cal_housing*' >/dev/null; then \
	  cp '$(SKLEARN_DATA)'/cal_housing* .build-data/scikit_learn_data/; \
	else echo "no California Housing cache in $(SKLEARN_DATA): the build will download it"; fi; \
	nice docker build --build-arg GIT_REVISION="$(REVISION)" \
	  --tag $(IMAGE):latest .
	version="$$(docker run --rm --entrypoint python $(IMAGE):latest -c \
	  'import json; print(json.load(open("/opt/model/metadata.json"))["model_version"])')"; \
	docker tag $(IMAGE):latest "$(IMAGE):$$version"; \
	echo "built $(IMAGE):$$version (also $(IMAGE):latest)"

docker-run: ## run $(IMAGE):latest on http://127.0.0.1:$(PORT) (Ctrl-C stops it)
	@echo "Serving the image on http://127.0.0.1:$(PORT)  (Ctrl-C stops it); try /ready, /predict, /"
	exec docker run --rm -p 127.0.0.1:$(PORT):8080 $(IMAGE):latest

bench-docker: $(DEV_STAMP) ## image size, cold and warm build time, time to ready -> bench/results.json
	$(BIN)/python -m bench.docker_figures

soak: $(DEV_STAMP) docker ## 5 min at concurrency 32 against the container: errors, p99 drift, RSS -> bench/results.json
	$(BIN)/python -m bench.soak --image $(IMAGE):latest

# The one-time account setup (docs/deploy.md, section 1). boto3 comes with the dev tools, so this works
# from a fresh clone: `make bootstrap GITHUB_REPO=OWNER/REPO` (without GITHUB_REPO: no CI identities).
GITHUB_REPO ?=
bootstrap: $(DEV_STAMP) ## one-time account setup: state bucket, secrets key, image repositories, CI roles
	$(BIN)/python -m account.bootstrap $(if $(GITHUB_REPO),--github-repo $(GITHUB_REPO))
