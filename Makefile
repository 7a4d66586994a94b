# Backprop Ninja — every workflow is one target. `make` alone lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV       := .venv
PYTHON     := $(VENV)/bin/python
STAMP      := $(VENV)/.installed
NAMES      := data/names.txt
# A copy of names.txt kept beside the repository on the course's machines (no download needed).
SHARED_NAMES ?= ../shared/data/names.txt
NBGRADER   := $(VENV)/bin/nbgrader
# The hub's proxy, configurable-http-proxy, from the npm registry into grader/hub/node_modules.
HUB_PROXY  := grader/hub/node_modules/.bin/configurable-http-proxy
NBGRADER_CONFIG := --NbGrader.config_file=grader/nbgrader_config.py
ASSIGNMENT := backprop_ninja
WORKERS    ?= 2
# SANDBOX=no grades without bubblewrap (trusted code only; the grades say so).
SANDBOX    ?= yes
SANDBOX_OPTION := $(if $(filter no,$(SANDBOX)),--no-sandbox)
# DASK=tcp://HOST:PORT grades on a Dask cluster's workers instead of the local pool (grader/README.md).
DASK       ?=
DASK_OPTION := $(if $(DASK),--dask-scheduler $(DASK))

.PHONY: help setup data lab wheel test test-fast lint release grade collect autograde feedback export train bench clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: $(STAMP) $(HUB_PROXY) ## Create .venv and install the pinned environment (a second run does nothing)

$(STAMP): pyproject.toml constraints.txt setup.py
	@$(MAKE) --no-print-directory system-packages
	python3.11 -m venv $(VENV) 2>/dev/null || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	@# Ranges in pyproject.toml, the course's exact pins in constraints.txt (torch 2.13.0 CPU).
	$(PYTHON) -m pip install --quiet -c constraints.txt -e '.[lab,grade,dev,hub]'
	touch $@

# `npm ci`: exactly the versions of grader/hub/package-lock.json. Without npm (Node.js 18+)
# everything but the hub works: make setup says so and carries on.
$(HUB_PROXY): grader/hub/package.json grader/hub/package-lock.json
	@if command -v npm >/dev/null; then \
		npm ci --prefix grader/hub --no-audit --no-fund --silent && touch $@; \
	else echo "npm not found: make hub needs Node.js and npm (apt-get install nodejs npm)"; fi

# Debian packages the course runs, as command:package (the command tells whether it is there):
# bubblewrap sandboxes every student's code when grading; the tests start a throwaway
# PostgreSQL server from postgresql's binaries and drive Debian's chromium with playwright.
# Installed only when missing (as root, or through sudo); elsewhere grader/README.md says how.
SYSTEM_PACKAGES := bwrap:bubblewrap pg_ctlcluster:postgresql chromium:chromium
.PHONY: system-packages
system-packages: ## Install the Debian packages grading and the tests need (bubblewrap, postgresql, chromium) when missing
	@missing=$$(for pair in $(SYSTEM_PACKAGES); do command -v $${pair%%:*} >/dev/null || echo $${pair#*:}; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		sudo=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$sudo apt-get update -qq && $$sudo apt-get install -y -qq $$missing >/dev/null; \
	fi

data: setup ## Put data/names.txt in place (copied from ../shared or downloaded, sha256-checked)
	@$(PYTHON) -m backprop_ninja.data --dest $(NAMES) --local-copy $(SHARED_NAMES)

lab: setup data ## Open the student notebooks in the student Lab (Validate, no instructor tools)
	$(VENV)/bin/backprop-ninja lab notebooks/$(ASSIGNMENT)

# Tests run on every core (at most 4): most of their time is spent waiting on kernels, servers
# and a browser. A module, and modules that share a folder or accounts, run on one worker
# (tests/conftest.py's scheduler).
PARALLEL := -n auto --maxprocesses 4
test: setup data lint ## Set up, lint, then run every test (unit, notebooks, grading pipeline)
	$(PYTHON) -m pytest $(PARALLEL)

# The markers of tests that need more than Python (pyproject.toml [tool.pytest]): test-fast skips them.
HEAVY_MARKERS := sandbox or pipeline or notebooks or browser or postgres or dask or hub
test-fast: setup data ## Unit tests only (under 3 minutes): no kernels, servers, sandbox or browser
	$(PYTHON) -m pytest $(PARALLEL) -m "not ($(HEAVY_MARKERS))"

LINTED := src tests bench grader setup.py
lint: setup ## The gates: ruff check, ruff format --check, mypy (also run by make test)
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)
	$(VENV)/bin/mypy

release: setup ## Regenerate the student notebooks (notebooks/) from the solutions with nbgrader
	@# First the course's public address (course.py) into the README's links and the install cell.
	$(PYTHON) -m backprop_ninja.maintainer.distribution
	@# The venv's bin/ first on PATH: nbgrader runs `alembic` to create a new gradebook.
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(NBGRADER) generate_assignment $(ASSIGNMENT) --force $(NBGRADER_CONFIG)

# ---- grading (grader/README.md): a class lives in CLASS (submissions, autograded copies,
# feedback, logs, grades.csv); its gradebook is grader/gradebook.db or BACKPROP_NINJA_DB_URL.
CLASS      ?= grader/class
DEMO_CLASS := grader/work/demo
CLASSROOM  := $(PYTHON) -m backprop_ninja.grading

collect: setup ## Collect submissions into grader/class/submitted: ZIP=download.zip (LMS) or, without ZIP, nbgrader's exchange
	$(CLASSROOM) collect --class-dir $(CLASS) $(if $(ZIP),--zip "$(ZIP)")

autograde: setup data ## Autograde every submission (WORKERS=2 at once; DASK=tcp://HOST:PORT: on a Dask cluster; SANDBOX=no: trusted code only)
	$(CLASSROOM) autograde --class-dir $(CLASS) --workers $(WORKERS) $(SANDBOX_OPTION) $(DASK_OPTION)

feedback: setup ## Feedback HTML per student and notebook (each test's verdict in the grader's words) in grader/class/feedback
	$(CLASSROOM) feedback --class-dir $(CLASS) --workers $(WORKERS)

export: setup ## Grades to grader/class/grades.csv (per student), grades_by_notebook.csv (with notes), grades_canvas.csv (not graded: empty; UNGRADED_AS_ZERO=yes: 0)
	$(CLASSROOM) export --class-dir $(CLASS) $(if $(CANVAS_COLUMN),--canvas-column "$(CANVAS_COLUMN)") $(if $(filter yes,$(UNGRADED_AS_ZERO)),--ungraded-as-zero)

grade: setup data ## See it work: autograde a generated demo class, print the table, write CSV + feedback
	$(PYTHON) grader/make_demo_class.py --class-dir $(DEMO_CLASS)
	$(CLASSROOM) grade --class-dir $(DEMO_CLASS) --workers $(WORKERS) $(SANDBOX_OPTION) $(DASK_OPTION)
	$(PYTHON) grader/make_demo_class.py --check --class-dir $(DEMO_CLASS) $(SANDBOX_OPTION)

# ---- the instructor's view: the class report and the Formgrader. Both take CLASS;
# on a clone with no real class yet (no $(CLASS)/submitted) they use make grade's demo class.
# make export's CANVAS_COLUMN='Backprop Ninja (1234)' names grades_canvas.csv's points column.
VIEWED_CLASS    = $(if $(wildcard $(CLASS)/submitted),$(CLASS),$(DEMO_CLASS))
FORMGRADER_PORT ?= 8890
.PHONY: report formgrader
report: setup ## The class report, <class>/report.html: scores, pass rate per test, diagnoses (instructors only)
	$(CLASSROOM) class-report --class-dir $(VIEWED_CLASS)

formgrader: setup ## nbgrader's Formgrader on the class (127.0.0.1:FORMGRADER_PORT, token); prints the URL
	$(CLASSROOM) formgrader --class-dir $(VIEWED_CLASS) --port $(FORMGRADER_PORT)

.PHONY: solutions
solutions: setup data ## Re-execute the solution notebooks in place (their outputs are what nbval checks)
	$(PYTHON) -m backprop_ninja.maintainer.notebooks refresh

train: setup data ## Run notebook 4's solution with the lecture's 200,000 steps (into build/); print the losses
	$(PYTHON) -m backprop_ninja.maintainer.notebooks train

bench: setup data ## Time training, the fused backward passes and grading against their baselines; one table (bench/results.json)
	$(PYTHON) -m bench

# ---- students anywhere: the wheel students pip-install (notebooks + names.txt inside)
.PHONY: wheel
wheel: setup data ## Build dist/backprop_ninja-*.whl from solutions/ (nbgrader generates its notebooks into build/release)
	rm -rf dist build/lib build/release
	$(PYTHON) -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir dist .
	@ls dist/*.whl

clean: ## Remove the environment, the data and every generated grading artefact
	rm -rf $(VENV) $(NAMES) dist grader/gradebook.db grader/class grader/work .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# ---- the mistake catalogue (tests/mistakes/) through the notebooks' tests
.PHONY: diagnose
diagnose: setup data ## Run the mistake catalogue through the visible tests; print each half's (development, held-out) share whose message names the cause
	$(PYTHON) -m backprop_ninja.maintainer.catalogue

# ---- a class on the course's JupyterHub (grader/README.md, "Teach a class on a hub"); as root.
# State (hub database, cookie secret, proxy token, each Lab's config) in grader/hub/state/;
# the exchange at HUB_EXCHANGE (nbgrader's default folder); HUB_PORT on 127.0.0.1.
HUB_PORT     ?= 8000
HUB_EXCHANGE ?= /srv/nbgrader/exchange
HUB          := $(PYTHON) -m backprop_ninja.hub --exchange $(HUB_EXCHANGE) --class-dir $(CLASS)
.PHONY: hub hub-users hub-release hub-feedback test-hub
hub: setup data ## JupyterHub for the class on 127.0.0.1:HUB_PORT (prints HUB_URL; Ctrl-C stops everything)
	$(HUB) serve --port $(HUB_PORT)

hub-users: setup ## Accounts for ROSTER=roster.csv (username,first_name,last_name,role); prints first-login passwords
	@test -n "$(ROSTER)" || { echo "usage: make hub-users ROSTER=roster.csv"; exit 2; }
	$(HUB) users "$(ROSTER)"

hub-release: setup ## The four notebooks into the hub's exchange (DUEDATE='2026-12-24 23:59:00 UTC' marks late ones)
	$(HUB) release $(if $(DUEDATE),--duedate "$(DUEDATE)")

hub-feedback: setup ## The class's feedback pages (make feedback) into the exchange: students press Fetch Feedback
	$(HUB) release-feedback

test-hub: setup data ## The end-to-end browser test of a class on the hub (root; a few minutes)
	$(PYTHON) -m pytest tests/test_hub.py tests/test_hub_culling.py -m hub
