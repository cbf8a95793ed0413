# The same steps CI runs (.ci/run).
PY ?= python

.PHONY: install lint format typecheck test bench bench-smoke

install:
	$(PY) -m pip install -e '.[dev]'

lint:
	ruff check .
	ruff format --check .

format:
	ruff check --fix .
	ruff format .

typecheck:
	mypy

test:
	pytest

bench:
	$(PY) -m bench

bench-smoke:
	$(PY) -m bench --smoke
