# The two commands a newcomer runs: `make demo` and `make test`. Both create .venv when missing
# and reinstall only when pyproject.toml changed, so a second run is quick.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := demo-out

.PHONY: demo test lint bench-quality clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,service,spark]"
	$(BIN)/python -m likelens.warm
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/likelens simulate --scenario demo --seed 1 --out $(DEMO)/sim
	$(BIN)/likelens scan $(DEMO)/sim/events.parquet --out $(DEMO)/scan --profile
	$(BIN)/likelens eval --truth $(DEMO)/sim/truth.parquet $(DEMO)/scan
	@echo "HTML report: $(abspath $(DEMO)/scan/report.html)"

test: $(STAMP)
	$(BIN)/ruff check likelens tests bench
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check likelens tests bench

bench-quality: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/likelens bench quality

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache .ruff_cache
