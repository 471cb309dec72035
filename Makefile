# Developer shortcuts. CI runs `.ci/run`, which is the README's test command.
PY ?= .venv/bin/python

.PHONY: install check test golden kb-check bench format

install:
	python3 -m venv .venv && .venv/bin/pip install --quiet -e '.[dev]'

check: test

test:
	$(PY) -m pytest

golden:
	$(PY) -m pytest tests/unit/test_render.py --update-golden

kb-check:
	.venv/bin/netboard kb check

bench:
	$(PY) bench/run.py
	$(PY) bench/ask_accuracy.py

format:
	.venv/bin/ruff format src tests bench
	.venv/bin/ruff check --fix src tests bench
