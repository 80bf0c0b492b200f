# The two commands: `make demo` and `make test`. Both create .venv and install what they need.
.PHONY: demo test lint typecheck unit bench soak install services clean

BIN := .venv/bin

install:
	@bash scripts/bootstrap.sh

# The PostgreSQL and Redis binaries the tests start throwaway servers from, and the Chromium the
# browser tests drive (docs/testing.md).
services:
	@bash scripts/ensure-test-services.sh
	@bash scripts/ensure-browser.sh

demo: install
	$(BIN)/python examples/00_wallet_tour.py
	$(BIN)/python examples/01_ledger_tour.py --simulate 200 --keep-running

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

unit: install services
	$(BIN)/python -m pytest

test: lint typecheck unit

bench: install
	$(BIN)/python -m bench

soak: install  # simulator only: no database servers or browser
	TRELLIS_SOAK=1 $(BIN)/python -m pytest -m soak

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache .hypothesis
