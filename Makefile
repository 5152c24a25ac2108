# `make demo` and `make test` do all set-up on a fresh machine (see scripts/setup.sh).
.PHONY: setup demo test test-unit lint format bench reliability clean stack-up stack-down model k8s-validate ui

VENV := .venv/bin

setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/vad demo

test: setup
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/lint-imports --no-cache
	$(VENV)/python -m pytest -q tests --ignore=tests/integration/reliability

test-unit: setup
	$(VENV)/python -m pytest -q tests -m "not integration" --ignore=tests/integration/reliability

lint: setup
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/lint-imports --no-cache

format: setup
	$(VENV)/ruff format .
	$(VENV)/ruff check --fix .

bench: setup
	$(VENV)/python -m bench.run

# The fault suite (docs/reliability.md): every scenario against the real stack, then one JSON line.
RELIABILITY := tests/integration/reliability
reliability: setup
	PYTHONPATH=$(RELIABILITY) $(VENV)/python -m pytest -q -p reliability_plugin $(RELIABILITY) \
	  tests/integration/test_exactly_once.py tests/integration/test_redis_outage.py \
	  tests/integration/test_edge_restart.py tests/integration/test_edge_delivery_failure.py \
	  tests/integration/test_idle_skew_and_ttl.py tests/integration/test_stream_holes.py; \
	status=$$?; PYTHONPATH=$(RELIABILITY) $(VENV)/python $(RELIABILITY)/report.py; exit $$status

# The default model, trained on the Ped2 training clips (see docs/models.md).
model: setup
	$(VENV)/vad train --data ../shared/datasets/ucsd_ped2 --out models/default

# Render k8s/ with kustomize and validate offline (kubeconform, schemas from registries).
k8s-validate:
	bash k8s/tools/validate.sh

stack-up: setup
	$(VENV)/vad stack up

# The live review page (docs/ui.md) on the local stack, started first if it is not up; Ctrl-C stops the page.
ui: stack-up
	$(VENV)/vad ui $(if $(PORT),--port $(PORT))

stack-down:
	$(VENV)/vad stack down

clean:
	rm -rf .cache java/target .pytest_cache .ruff_cache .import_linter_cache
