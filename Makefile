# The two commands: `make run` and `make test`. Both set everything up on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# make run: the paper exchange replays the shipped candles this many times faster than real time.
PAPER_SPEED ?= 60
# make run: where the admin and the paper exchange listen; the paper exchange keeps its account in
# PAPER_STATE, so the next make run resumes it (make reset starts over).
WEB_PORT ?= 8000
PAPER_PORT ?= 8700
PAPER_STATE ?= var/paper-state.json
PAPER_STREAM_PORT ?= $(shell expr $(PAPER_PORT) + 1)
PAPER_EXCHANGE_URL ?= http://127.0.0.1:$(PAPER_PORT)
PAPER_STREAM_URL ?= ws://127.0.0.1:$(PAPER_STREAM_PORT)/ws
export PAPER_SPEED WEB_PORT PAPER_PORT PAPER_STREAM_PORT PAPER_STATE PAPER_EXCHANGE_URL \
	PAPER_STREAM_URL

# `make test` runs the order path, guard and emergency close again with the paper exchange playing
# the other side wherever Binance's documentation and its observed behaviour differ
# (see paper/options.py).
PAPER_OTHER_SIDE := exit_on_flat=expire,oversize_reduce_only=shrink,close_without_position=accept
BOTH_SIDES_TESTS := tests/trading/test_position_open.py tests/trading/test_position_close.py \
	tests/guard/test_pass.py tests/guard/test_reattach.py tests/guard/test_closing.py \
	tests/operator/test_emergency_close.py

# Every process defaults to the production settings; development is chosen here, explicitly.
LOCAL := DJANGO_SETTINGS_MODULE=arena.settings.local
# Lock files: every package, transitive ones included, pinned with its hashes (`make lock`).
PIP_COMPILE := $(BIN)/pip-compile --quiet --generate-hashes --strip-extras --no-emit-index-url \
	--no-emit-find-links

.PHONY: run reset test lint format bench clean lock

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Exactly what CI tested: the dev lock, hashes checked.
$(VENV)/.installed: requirements/dev.lock.txt | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes \
		-r requirements/dev.lock.txt
	touch $@

run: $(VENV)/.installed
	$(LOCAL) $(BIN)/python manage.py migrate --no-input
	$(LOCAL) $(BIN)/python manage.py bootstrap --replay-speed $(PAPER_SPEED)
	mkdir -p var
	$(LOCAL) $(BIN)/python -m tools.run_local Procfile.local

# Start over: a new paper account, an empty database (the next make run loads the defaults).
reset: $(VENV)/.installed
	rm -rf var $(PAPER_STATE)
	$(LOCAL) $(BIN)/python manage.py migrate --no-input --verbosity 0
	$(LOCAL) $(BIN)/python manage.py flush --no-input

test: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	DJANGO_SETTINGS_MODULE=arena.settings.test $(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/pytest
	PAPER_OPTIONS=$(PAPER_OTHER_SIDE) $(BIN)/pytest $(BOTH_SIDES_TESTS)

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(VENV)/.installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(VENV)/.installed
	$(BIN)/python -m paper.bench
	$(BIN)/python -m bench
	$(BIN)/python -m bench.soak --seconds 600
	$(BIN)/python -m bench.stream
	$(BIN)/python -m bench.entry

# After editing requirements/*.txt: pin the new set, transitive packages and hashes included.
# The dev lock keeps every production pin, so CI tests what production installs.
lock: $(VENV)/.installed
	$(PIP_COMPILE) --output-file requirements/production.lock.txt requirements/production.txt
	$(PIP_COMPILE) --constraint requirements/production.lock.txt \
		--output-file requirements/dev.lock.txt requirements/dev.txt

clean:
	rm -rf $(VENV) var staticfiles
