PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[all,dev]"
	touch $(STAMP)

demo: venv
	$(BIN)/python -m yoloslim.demo

# one pytest-xdist worker per core the process may use, at most 4 (most tests compute on one
# thread; a container may show more cores than its share); worksteal evens out the few long
# end-to-end tests. TEST_WORKERS=1 make test runs them one at a time.
TEST_WORKERS ?= $(shell $(PY) -c "import os; print(min(4, len(os.sched_getaffinity(0))))" 2>/dev/null || echo 2)

test: venv
	$(BIN)/python -m pytest -q -x -n $(TEST_WORKERS) --dist worksteal --durations=15 tests

lint: venv
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf runs/demo .pytest_cache
