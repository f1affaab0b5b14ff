# trio-logd developer entry points. Everything runs from the checkout's own .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv run test lint fmt bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# pip >= 25.1 understands [dependency-groups] (PEP 735)
	$(BIN)/python -m pip install -q --upgrade 'pip>=25.1'
	$(BIN)/python -m pip install -q -e . --group dev
	@touch $@

run: venv
	@echo "trio-logd: config conf/logd.toml; ingest socket $(CURDIR)/run/log.sock,"
	@echo "  control socket $(CURDIR)/run/ctl.sock, records under $(CURDIR)/var/log/<uid>/"
	@echo "  try, in another shell:  logger -u run/log.sock hello   then   .venv/bin/logq -n 10"
	$(BIN)/trio-logd serve --config conf/logd.toml

test: venv
	@sh tests/setup-debian.sh
	$(BIN)/python -m pytest -q

lint: venv
	$(BIN)/ruff check trio_logd tests bench
	$(BIN)/ruff format --check trio_logd tests bench
	$(BIN)/mypy

fmt: venv
	$(BIN)/ruff format trio_logd tests bench
	$(BIN)/ruff check --fix trio_logd tests bench

bench: venv
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) run var .pytest_cache .mypy_cache .ruff_cache
