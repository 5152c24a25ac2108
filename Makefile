# `make demo` and `make test` do all set-up on a fresh machine (see scripts/setup.sh).
.PHONY: setup demo test test-unit lint format bench clean stack-up stack-down model k8s-validate

VENV := .venv/bin

setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/vad demo

test: setup
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/lint-imports --no-cache
	$(VENV)/python -m pytest -q tests

test-unit: setup
	$(VENV)/python -m pytest -q tests -m "not integration"

lint: setup
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/lint-imports --no-cache

format: setup
	$(VENV)/ruff format .
	$(VENV)/ruff check --fix .

bench: setup
	$(VENV)/python -m bench.run

# The default model, trained on the Ped2 training clips (see docs/models.md).
model: setup
	$(VENV)/vad train --data ../shared/datasets/ucsd_ped2 --out models/default

# Render k8s/ with kustomize and validate offline (kubeconform, schemas from registries).
k8s-validate:
	bash k8s/tools/validate.sh

stack-up: setup
	$(VENV)/vad stack up

stack-down:
	$(VENV)/vad stack down

clean:
	rm -rf .cache java/target .pytest_cache .ruff_cache .import_linter_cache
