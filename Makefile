# Two commands: `make run` (serve the portal on 127.0.0.1, opened as http://localhost:PORT/) and `make test` (everything CI runs).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
export PORTAL_ENV ?= development

.PHONY: run test test-sqlite test-postgres lint format install install-test translations screenshots mutation clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip > /dev/null 2>&1 || true

# Reinstall when the dependency list changes.
# pip's output goes to a log, shown only when the install fails.
$(VENV)/.installed: setup.cfg pyproject.toml MANIFEST.in setup.py | $(BIN)/python
	@echo "Installing the portal into $(VENV) (log: $(VENV)/install.log)"
	@$(BIN)/pip install --quiet -e . > $(VENV)/install.log 2>&1 || (cat $(VENV)/install.log; exit 1)
	@touch $@

$(VENV)/.installed-test: setup.cfg pyproject.toml MANIFEST.in setup.py | $(BIN)/python
	@echo "Installing the portal and its test tools into $(VENV) (log: $(VENV)/install.log)"
	@$(BIN)/pip install --quiet -e '.[test]' > $(VENV)/install.log 2>&1 || (cat $(VENV)/install.log; exit 1)
	touch $(VENV)/.installed $@

$(VENV)/.installed-dev: setup.cfg pyproject.toml MANIFEST.in setup.py | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(VENV)/.installed $(VENV)/.installed-test $@

# The compiled catalogues (.mo files, not in git), rebuilt whenever their .po changes.
# Without them the portal still runs, in Japanese only.
CATALOGUES := $(patsubst %.po,%.mo,$(wildcard portal/translations/*/LC_MESSAGES/messages.po))

$(CATALOGUES): %.mo: %.po | $(VENV)/.installed
	@$(BIN)/pybabel compile --statistics -i $< -o $@ > $(VENV)/babel.log 2>&1 || (cat $(VENV)/babel.log; exit 1)

translations: $(CATALOGUES)

install: $(VENV)/.installed translations

install-test: $(VENV)/.installed-test translations
	scripts/ensure-chromium.sh
	scripts/ensure-redis.sh
	scripts/ensure-postgres.sh

# Quiet set-up, then the address and demo accounts framed as the last lines before the
# access log (gunicorn logs warnings and errors only, so a busy port still shows).
run: install
	@$(BIN)/flask --app wsgi db upgrade > $(VENV)/migrate.log 2>&1 || (cat $(VENV)/migrate.log; exit 1)
	@PORT=$(PORT) $(BIN)/flask --app wsgi demo-accounts
	@$(BIN)/gunicorn --bind 127.0.0.1:$(PORT) --workers 2 --worker-class gthread --threads 4 --log-level warning --access-logfile - wsgi:app

# The sign-in benchmark (bench/README.md): seeds its own members into a throwaway
# database, starts gunicorn and prints every figure, e.g.
# make bench-signin BENCH_ARGS="--database-url postgresql://bench@127.0.0.1:5433/signin --with-redis"
.PHONY: bench-signin
bench-signin: install
	$(BIN)/python bench/signin.py $(BENCH_ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-test
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The whole suite twice: on SQLite, then on PostgreSQL (a server of its own in a temporary
# folder, tests/postgres_server.py). One pass alone: `make test-sqlite` or `make
# test-postgres` (no lint); PYTEST_ARGS goes to pytest in each, e.g. PYTEST_ARGS='-x -k policy'.
test: install-test lint
	PORTAL_TEST_DATABASE=sqlite $(BIN)/python -m pytest $(PYTEST_ARGS)
	PORTAL_TEST_DATABASE=postgresql $(BIN)/python -m pytest $(PYTEST_ARGS)

test-sqlite: install-test
	PORTAL_TEST_DATABASE=sqlite $(BIN)/python -m pytest $(PYTEST_ARGS)

test-postgres: install-test
	PORTAL_TEST_DATABASE=postgresql $(BIN)/python -m pytest $(PYTEST_ARGS)

# The README's pictures: the main pages and dialogs at 1280 and 390 px, from a temporary
# database with demo data, into docs/screenshots/ (chromium and a Japanese font are
# installed with apt-get when missing).
screenshots: $(VENV)/.installed-test
	scripts/ensure-chromium.sh
	scripts/ensure-fonts.sh
	$(BIN)/python scripts/screenshots.py

# Mutation testing of portal/twofactor/ (configured in pyproject.toml, [tool.mutmut]);
# slow (about 40 minutes on 2 cores), so not part of `make test`. Always a fresh run:
# mutmut 3's cache can report mutants as survivors that newly added tests kill. The
# summary compares the survivors with the list in tests/MUTATION.md.
MUTMUT_CHILDREN ?= 2
mutation: $(VENV)/.installed-dev translations
	rm -rf mutants
	$(BIN)/mutmut run --max-children $(MUTMUT_CHILDREN)
	@$(BIN)/mutmut results
	$(BIN)/python scripts/mutation-summary.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info mutants $(CATALOGUES)
