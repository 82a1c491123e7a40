# Two commands do all set-up on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test test-fast lint format bench clean-venv python-check

# Django 6.1 needs Python 3.12+. The default python3 may be older and version shims may exist but
# fail, so each candidate is run, and the first that really is 3.12+ is kept.
python-check:
	@if [ -x $(PY) ] && ! $(PY) -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then \
	  echo "$(VENV) uses $$($(PY) --version 2>&1); recreating it with Python 3.12+"; rm -rf $(VENV); fi

$(PY): | python-check
	@py=""; \
	for c in python3.14 python3.13 python3.12 \
	    $$(ls -d $$(pyenv root 2>/dev/null || echo /nonexistent)/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -rV) \
	    /usr/local/bin/python3 /usr/bin/python3 python3; do \
	  if "$$c" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then py="$$c"; break; fi; \
	done; \
	if [ -z "$$py" ]; then \
	  echo "No Python 3.12 or newer found (tried python3.14, python3.13, python3.12, pyenv's versions, python3)." >&2; \
	  echo "Install one (e.g. 'pyenv install 3.12' or your system's python3.12 package) and run make again." >&2; \
	  exit 1; \
	fi; \
	echo "Creating $(VENV) with $$py ($$("$$py" --version))"; \
	"$$py" -m venv $(VENV)

$(VENV)/.run-deps: requirements.txt | $(PY)
	$(PY) -m pip install -q -r requirements.txt
	@touch $@

$(VENV)/.test-deps: requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install -q -r requirements-dev.txt
	@touch $@ $(VENV)/.run-deps

## make run: set everything up and serve the admin with its delivery worker (WEB_BIND, default
## http://127.0.0.1:8000/admin/); it prints the address and where PagerDuty events go
run: python-check $(VENV)/.run-deps
	$(PY) -m project.envfile
	@# The checks that read the database are shown, but never stop the product: one destination's
	@# unreadable or empty key (destinations.E002/E003) must not stop every other destination's pages.
	$(PY) manage.py migrate --noinput --skip-checks
	$(PY) manage.py check --database default --fail-level CRITICAL
	$(PY) manage.py collectstatic --noinput -v 0
	$(PY) manage.py create_first_admin
	@$(PY) -m project.serve

## make test: install the test tools and run the whole suite (PYTEST_ARGS to narrow it)
test: python-check $(VENV)/.test-deps
	$(PY) -m pytest $(PYTEST_ARGS)

## make test-fast: the suite but its slow and browser tests, on every core, for a quick run
## (PYTEST_ARGS as above)
test-fast: python-check $(VENV)/.test-deps
	$(PY) -m pytest -n auto -m "not slow and not browser" $(PYTEST_ARGS)

lint: python-check $(VENV)/.test-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: python-check $(VENV)/.test-deps
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

## make bench: the benchmarks of bench/, written to bench/results.json
bench: python-check $(VENV)/.test-deps
	$(PY) -m bench

clean-venv:
	rm -rf $(VENV)
