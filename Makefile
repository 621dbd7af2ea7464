# The two commands of the README's quick start, and the pieces they are made of.
# Every target creates .venv on first use; torch is pinned to the CPU wheel this machine carries.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test format bench docs clean

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

# The documentation site (mkdocs.yml): --strict turns a broken link or anchor into an error.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet  # without the banner on MkDocs 2

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) build site src/*.egg-info .pytest_cache .ruff_cache
