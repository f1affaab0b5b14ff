# trio-logd developer entry points. Everything runs from the checkout's own .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv run test lint fmt bench fuzz fuzz-merge clean dist reach

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# pip >= 25.1 understands [dependency-groups] (PEP 735)
	$(BIN)/python -m pip install -q --upgrade 'pip>=25.1'
	$(BIN)/python -m pip install -q -e . --group dev
	@$(MAKE) -s reach
	@touch $@

# Other users run .venv/bin/logq through the venv's interpreter: say so when
# a directory on its way is closed to them (pyenv under /root, a 0700 home).
REACH_EXE ?= $(BIN)/python
reach:
	@p=$$(readlink -f "$(REACH_EXE)"); exe=$$p; \
	while [ "$$p" != / ]; do \
		case $$(stat -c %a "$$p") in *[1357]) ;; *) \
			echo "note: other users cannot run .venv/bin/logq or .venv/bin/trio-logd:"; \
			echo "  the interpreter $$exe is under $$p, closed to them (mode $$(stat -c %a "$$p"))."; \
			echo "  For them, make the venv from a system interpreter (3.11 or later):"; \
			echo "  rm -rf $(VENV) && make venv PYTHON=/usr/bin/python3"; \
			break;; \
		esac; \
		p=$$(dirname "$$p"); \
	done

# A wheel in dist/, to install where there is no checkout (docs/operators.md).
dist: venv
	$(BIN)/python -m pip wheel -q --no-deps -w dist .

run: venv
	@echo "trio-logd: config conf/logd.toml; ingest socket $(CURDIR)/run/log.sock,"
	@echo "  control socket $(CURDIR)/run/ctl.sock, records under $(CURDIR)/var/log/<uid>/"
	@echo "  try, in another shell:  logger -u run/log.sock hello   then   .venv/bin/logq -n 10"
	@mkdir -p run var  # conf/logd.toml's parents of the sockets and log_dir
	$(BIN)/trio-logd serve --config conf/logd.toml

test: venv
	@sh tests/setup-debian.sh
	$(BIN)/python -m pytest -q

lint: venv
	$(BIN)/ruff check trio_logd tests bench fuzz
	$(BIN)/ruff format --check trio_logd tests bench fuzz
	$(BIN)/mypy

fmt: venv
	$(BIN)/ruff format trio_logd tests bench fuzz
	$(BIN)/ruff check --fix trio_logd tests bench fuzz

bench: venv
	$(BIN)/python -m bench

# Coverage-guided fuzzing (atheris) of the parsers, FUZZ_SECONDS per target.
# New inputs and crashes go to .fuzz-work/ (crash-*: replay with
# `python -m fuzz TARGET FILE`, then make it a test in tests/fuzz/);
# `make fuzz-merge` keeps the new inputs that add coverage in fuzz/corpus/.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= ingest control claim

fuzz: venv
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p .fuzz-work/$$t; \
		echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
		$(BIN)/python -m fuzz $$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
			-artifact_prefix=.fuzz-work/$$t- .fuzz-work/$$t fuzz/corpus/$$t \
			2>.fuzz-work/$$t.log || { tail -40 .fuzz-work/$$t.log; exit 1; }; \
		grep -E "^Done|stat::number_of_executed_units" .fuzz-work/$$t.log | tail -1; \
	done

fuzz-merge: venv
	@for t in $(FUZZ_TARGETS); do \
		$(BIN)/python -m fuzz $$t -merge=1 fuzz/corpus/$$t .fuzz-work/$$t 2>>.fuzz-work/merge.log; \
	done

clean:
	rm -rf $(VENV) run var dist .pytest_cache .mypy_cache .ruff_cache .fuzz-work
