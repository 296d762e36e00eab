# Two entry points on a fresh machine with Python 3.10 and make:  `make run`  and  `make test`.
# Both install uv when it is missing and the locked environment (uv sync --frozen) first.
SHELL := /bin/bash
.DEFAULT_GOAL := run

# Python 3.10: $(PYTHON) if given, else the first python3.10 that runs (PATH, pyenv, system).
PYTHON ?= $(shell for p in python3.10 $$HOME/.pyenv/versions/3.10*/bin/python3.10 \
	/usr/local/bin/python3.10 /usr/bin/python3.10; do \
	"$$p" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null \
	&& { "$$p" -c 'import sys; print(sys.executable)'; break; }; done)
UV ?= $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
VENV := .venv
ARGS ?=
# pytest-xdist workers for the test targets: one per core of the 2-core machines CI runs on.
WORKERS ?= 2
XDIST := -n $(WORKERS) --dist loadgroup --no-loadscope-reorder

.PHONY: setup lint run test test-unit test-airflow test-gcs test-image test-lifecycle test-db test-cluster db db-stop bench bench-tools clean

.tools/bin/uv:
	@test -n "$(PYTHON)" || { echo "Python 3.10 not found: install it or pass PYTHON=/path/to/python3.10" >&2; exit 1; }
	$(PYTHON) -m venv .tools && .tools/bin/pip install --quiet uv

# The kubeflow extra is small and makes `agnews compile kubeflow` work out of the box; Airflow
# conflicts with it (see pyproject.toml) and lives in its own environment, .venv-airflow.
# --compile-bytecode: uv writes no .pyc by default, and where PYTHONDONTWRITEBYTECODE is set (as
# on these machines) Python never does either: then every process compiled TensorFlow's
# sources again (`import tensorflow` 12.5 s instead of 4.2 s). Compiling once costs ~30 s.
$(VENV)/.synced: pyproject.toml uv.lock Makefile | $(UV)
	@test -n "$(PYTHON)" || { echo "Python 3.10 not found: install it or pass PYTHON=/path/to/python3.10" >&2; exit 1; }
	$(UV) sync --frozen --compile-bytecode --extra kubeflow --python "$(PYTHON)"
	@touch $@

.venv-airflow/.synced: pyproject.toml uv.lock Makefile | $(UV)
	UV_PROJECT_ENVIRONMENT=.venv-airflow $(UV) sync --frozen --compile-bytecode --extra airflow --python "$(PYTHON)"
	@touch $@

setup: $(VENV)/.synced

run: setup  ## Run the whole pipeline on the embedded sample (ARGS="--data DIR ..." to change).
	$(VENV)/bin/agnews run $(ARGS)

lint: setup  ## ruff (lint, then format check) and mypy on the runtime package: seconds.
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test-unit: setup  ## tests/unit: no pipeline run, a few minutes: the loop for a change to one function.
	$(VENV)/bin/pytest $(XDIST) tests/unit $(ARGS)

test: setup  ## Unit and integration tests: real pipeline runs on tiny data, the server on real sockets.
	$(VENV)/bin/pytest $(XDIST) $(ARGS)

test-airflow: .venv-airflow/.synced  ## The pipeline and the monitor as Airflow 2 DAGs, run by `airflow dags test`.
	.venv-airflow/bin/pytest -m airflow $(ARGS)

test-image: setup  ## The Dockerfile's install steps run into a fresh venv, then the compiled KFP tasks in it (uv, ~2-4 min).
	$(VENV)/bin/pytest -m image $(ARGS)

test-lifecycle: setup  ## The pipeline over several spans (window, drift gate, warm start, nothing new), run after run (unchanged data, a worse candidate), a killed run.
	$(VENV)/bin/pytest -n $(WORKERS) --dist loadfile -m lifecycle $(ARGS)

test-gcs: setup  ## The gs:// file system tests against a local GCS emulator (root, Go, openssl).
	bash .ci/gcs-emulator $(VENV)/bin/pytest -m gcs $(ARGS)

test-db: setup  ## ML Metadata on a throwaway MariaDB server (installed from Debian's packages when missing: root).
	$(VENV)/bin/pytest -m db $(ARGS)

test-cluster: setup  ## Hosts in network namespaces (root): Beam's job service and workers, ML Metadata's MariaDB server, the model server and two training replicas, each on a host of its own.
	$(VENV)/bin/pytest -m cluster $(ARGS)

# A throwaway MariaDB server for --metadata-uri, its data and password under $(DB_DIR).
DB_DIR ?= .db
DB_PORT ?= 3307
db:  ## Start a throwaway MariaDB server (DB_DIR, DB_PORT): prints the --metadata-uri to give.
	tools/mariadb start $(DB_DIR) $(DB_PORT)

db-stop:  ## Stop the server `make db` started.
	tools/mariadb stop $(DB_DIR)

bench: setup  ## Benchmarks (bench/results/): trainer vs the lesson, accuracy over seeds (~45 min), ingest + Transform, serving (REST and gRPC under wrk/ghz), CLI, batch scoring, warm start, Transform's analyzer cache.
	$(VENV)/bin/python bench/train_vs_seed.py
	$(VENV)/bin/python bench/accuracy.py
	$(VENV)/bin/python bench/ingest_transform.py
	$(VENV)/bin/python bench/serve.py
	$(VENV)/bin/python bench/cli.py
	$(VENV)/bin/python bench/score.py
	$(VENV)/bin/python bench/warm_start.py
	$(VENV)/bin/python bench/transform_cache.py

bench-tools:  ## wrk (apt-get) and ghz (go install into bench/.tools/bin) for bench/serve.py, which runs this itself.
	bash bench/load_tools.sh

clean:
	rm -rf artifacts
