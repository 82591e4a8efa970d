# The README's commands. Needs only python3 and make: uv is installed when missing.
SHELL := /bin/bash
# Some machines set PYTHONDONTWRITEBYTECODE: then every service process (tests spawn many)
# compiles every module again at start, seconds of CPU each. Let Python cache its bytecode.
unexport PYTHONDONTWRITEBYTECODE
UV := $(shell command -v uv 2>/dev/null || echo python3 -m uv)
PKGS := contracts/src libs/servicekit/src services/intake/src services/referrals/src \
        services/partner-gateways/src services/notifications/src services/reporting/src cli/src

.PHONY: demo dev test install lint typecheck imports schemas asyncapi docs unit integration e2e bench bench-quick bench-steady bench-intake clean uv

uv:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || \
	  { python3 -m pip --version >/dev/null 2>&1 || python3 -m ensurepip --upgrade; \
	    python3 -m pip install --quiet --disable-pip-version-check uv; }

install: uv
	@$(UV) sync --frozen --quiet --compile-bytecode

## Play a morning at PIMMS sites on the embedded broker and SQLite (starts the platform if needed).
demo: install
	$(UV) run pimms demo

## Run the platform until Ctrl-C (embedded broker unless KAFKA_BOOTSTRAP_SERVERS is set).
dev: install
	$(UV) run pimms dev

## Lint, formatting, types, import rules, then unit and integration tests (real broker, SQLite and
## PostgreSQL). The end-to-end suites (whole platform as processes) are `make test-e2e`.
test: install lint typecheck imports
	$(UV) run pytest -q -m "not e2e"

## The end-to-end suites: the platform as real processes (demo, hostile input, SIGKILL, runbook).
.PHONY: test-e2e
test-e2e: install
	$(UV) run pytest -q -m "e2e and not faults"

lint:
	$(UV) run ruff check .
	$(UV) run ruff format --check .

typecheck:
	$(UV) run mypy $(PKGS)

imports:
	$(UV) run lint-imports

## Re-export contracts/schemas after a (non-breaking) contract change.
schemas: install
	$(UV) run python -m pimms_contracts.schemas export

## Re-generate each service's AsyncAPI document (contracts/asyncapi/) from its code.
asyncapi: install
	$(UV) run python -m tools.asyncapi export

## Serve the AsyncAPI documents on http://127.0.0.1:8780/.
docs: install
	$(UV) run pimms docs

unit: install
	$(UV) run pytest -q -m "not integration and not e2e"

e2e: test-e2e

## End-to-end bench (bench/e2e.py): every service as a process, EDF answering, a raw relay baseline.
## BENCH_DB=postgresql for fresh PostgreSQL databases; BENCH_ARGS="--rate 100 --duration 60" for a
## steady load instead of a backlog. Table on the terminal, JSON in bench/results/.
BENCH_DB ?= sqlite
BENCH_ARGS ?=
bench: install
	$(UV) run python bench/e2e.py --needs 20000 --database $(BENCH_DB) $(BENCH_ARGS)

## The same on a small backlog: about a minute on an idle machine (2-3 minutes on a loaded one).
bench-quick: install
	$(UV) run python bench/e2e.py --needs 2000 --baseline-needs 10000 --database $(BENCH_DB) $(BENCH_ARGS)

## A steady 100 needs/s for 60 s (the latency target of issue 11) instead of a backlog.
bench-steady: install
	$(UV) run python bench/e2e.py --rate 100 --duration 60 --database $(BENCH_DB) $(BENCH_ARGS)

## Intake alone, in this process (the former `make bench`).
bench-intake: install
	$(UV) run python bench/pipeline_throughput.py --database $(BENCH_DB)

clean:
	rm -rf .pimms .pytest_cache .mypy_cache .ruff_cache

## The fault suite (issue 6): services killed, broker frozen, PostgreSQL stopped, malformed input.
## Not part of `make test`. PIMMS_FAULT_NEEDS sets the needs per scenario (default 80).
.PHONY: test-faults
test-faults: install
	$(UV) run pytest -q -s -m faults tests/faults
