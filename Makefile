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

# mypy cannot follow the editable install's import hook, so it checks a tree of links laid out as installed
# (reasonq/{api,worker,shared} beside reasonq's own modules).
typecheck:
	rm -rf build/typecheck && mkdir -p build/typecheck/reasonq
	ln -s $(CURDIR)/reasonq/* build/typecheck/reasonq/
	ln -s $(CURDIR)/api $(CURDIR)/worker $(CURDIR)/shared build/typecheck/reasonq/
	mypy

test:
	pytest

bench:
	$(PY) -m bench

bench-smoke:
	$(PY) -m bench --smoke
