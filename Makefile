# `make demo` and `make test` do all set-up themselves and are idempotent:
# the venv is rebuilt only when pyproject.toml changes.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.simbench-installed
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check
# the make targets keep their stage cache in the checkout (`make clean` removes it); a plain `simbench run`
# uses the user cache directory.  The tests set their own (tests/conftest.py).
export SIMBENCH_CACHE_DIR ?= $(CURDIR)/.simbench-cache

.PHONY: demo test install bench clean publish

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build
	$(PIP) torch==2.13.0
	# the distribution is simbench-metrics (the index's "simbench" is another project); drop a venv's old name
	$(PY) -m pip uninstall --quiet --yes simbench 2>/dev/null || true
	$(PIP) -e '.[dev,dask]'
	# torchattacks declares torchvision and an old requests; it needs only torch/numpy/scipy
	$(PIP) --no-deps torchattacks==3.5.1
	touch $(STAMP)

demo: $(STAMP)
	# the leaderboard goes into the run directory; only `make publish` writes leaderboards/
	$(VENV)/bin/simbench run quick

test: $(STAMP)
	# one worker per core; whole files per worker, so each module-scoped fixture (a trained zoo,
	# a Dask cluster) is built once.  Plain `pytest -q` runs the same tests in one process.
	$(PY) -m pytest -q -n auto --dist loadfile

bench: $(STAMP)
	$(PY) benchmarks/bench_metrics.py
	$(PY) benchmarks/bench_training.py

publish: $(STAMP)
	$(VENV)/bin/simbench publish runs --out leaderboards

clean:
	rm -rf $(VENV) .simbench-cache runs
