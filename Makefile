# driftwatch — the two commands that matter: `make demo` and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-kafka4 lint typecheck unit bench clean kafka-up kafka-down \
	deps-install deps-demo deps-test deps-fuzz fuzz

install: $(STAMP)

# The Debian packages each target needs (deploy/deps.sh knows them): installed when missing and
# run as root, else one line with the exact `sudo apt-get install` command.
deps-install deps-demo deps-test deps-fuzz:
	@bash deploy/deps.sh $(@:deps-%=%)

# The editable install also compiles the C extension monitor/_featcols.c (gcc, Python headers).
$(STAMP): pyproject.toml monitor/_featcols.c | deps-install
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: deps-demo install
	bash deploy/demo.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest

test: deps-test lint typecheck unit

# The tests that use a broker (marker `kafka`), again on Kafka 4.0.2; `make test` runs them,
# with everything else, on 3.9.2. The fault suite (marker `faults`: kill -9 of workers, broker
# and Alertmanager, minutes of waiting) tests driftwatch's own recovery and runs on 3.9.2 only.
test-kafka4: install
	KAFKA_LINE=4 $(BIN)/pytest -m "kafka and not faults"

# The differential fuzzer (tests/fuzz/) for FUZZ_SECONDS, the C extension also built with
# AddressSanitizer and UndefinedBehaviorSanitizer (build/fuzz/); fails on any crash, sanitizer
# report or mismatch with the pydantic decoder.
FUZZ_SECONDS ?= 120
fuzz: deps-fuzz install
	FUZZ_SECONDS=$(FUZZ_SECONDS) bash tests/fuzz/run.sh

bench: install
	$(BIN)/python -m tests.benchmarks

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache

kafka-up:
	bash deploy/kafka/kafka.sh start

kafka-down:
	bash deploy/kafka/kafka.sh stop
