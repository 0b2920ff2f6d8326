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
PAPER_EXCHANGE_URL ?= http://127.0.0.1:$(PAPER_PORT)
export PAPER_SPEED WEB_PORT PAPER_PORT PAPER_STATE PAPER_EXCHANGE_URL

.PHONY: run reset test lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements/base.txt requirements/production.txt requirements/dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements/dev.txt
	touch $@

run: $(VENV)/.installed
	$(BIN)/python manage.py migrate --no-input
	$(BIN)/python manage.py bootstrap --replay-speed $(PAPER_SPEED)
	mkdir -p var
	$(BIN)/python -m tools.run_local Procfile.local

# Start over: a new paper account, an empty database (the next make run loads the defaults).
reset: $(VENV)/.installed
	rm -rf var $(PAPER_STATE)
	$(BIN)/python manage.py migrate --no-input --verbosity 0
	$(BIN)/python manage.py flush --no-input

test: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(VENV)/.installed
	$(BIN)/python -m paper.bench
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var staticfiles
