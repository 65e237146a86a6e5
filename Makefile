# Two commands do all set-up on a fresh machine:
#   make demo   - install, prepare ML-1M, train HyMoERec briefly, show metrics and a top-10
#   make test   - install, then lint, type-check and run the test suite
PYTHON ?= python3
VENV ?= .venv
DATA ?= ../shared/data
DATASET ?= ml-1m
BIN = $(VENV)/bin

.PHONY: install demo test lint

$(BIN)/hymoerec: pyproject.toml requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

install: $(BIN)/hymoerec

demo: install
	$(BIN)/hymoerec demo $(DATASET) --data-dir $(DATA)

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

test: lint
	HYMOEREC_DATA=$(DATA) $(BIN)/pytest -q
