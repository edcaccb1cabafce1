# The two commands of the README:
#   make backfill   set up .venv and run the backfill on the bundled sample
#   make test       set up .venv and run the whole test suite (what CI runs)
# Every other target is a step of those two or a developer convenience.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat setup.py | cksum | cut -d' ' -f1)

.PHONY: backfill test lint bench sample clean

$(STAMP): setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

backfill: $(STAMP)
	$(BIN)/python -m pipelines.backfill $(ARGS)

# pytest exits 5 when it collected no test: that is a failure here.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

bench: $(STAMP)
	$(BIN)/python -m bench.backfill $(ARGS)

clean:
	rm -rf out .pytest_cache .mypy_cache .ruff_cache
