# The two commands of the README's quick start, and the pieces they are made of.
# Every target creates .venv on first use; torch is pinned to the CPU wheel this machine carries.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test format bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# The main job: the tutorial's MNIST classifier with its defaults. --resume makes it safe to run
# again: a killed run continues, a finished one just reports its results.
run: $(STAMP)
	$(BIN)/rnnlab mnist --resume

bench: $(STAMP)
	$(BIN)/rnnlab bench

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache
