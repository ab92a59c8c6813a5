# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Both create .venv when missing and install torch==2.13.0 (CPU build) before the package.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	# the Keras front end's tests run on every backend: keras with tensorflow-cpu and jax
	$(BIN)/python -m pip install -q keras==3.15.1 tensorflow-cpu==2.21.0 jax==0.10.2 jaxlib==0.10.2
	$(BIN)/python -m pip install -q -e '.[test,lightning,view,browser-test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/seqacts demo --out demo_out

test: $(STAMP)
	@# the viewer's browser tests need a system Chromium; installed where apt-get and root are
	@# (CI), else those tests skip. Measured: ~3.5 min for apt-get update + install chromium.
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && \
	  [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq chromium >/dev/null; } || echo "no chromium: browser tests skip"
	$(BIN)/ruff check seqacts tests benchmarks examples
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_capture.py
	$(BIN)/python benchmarks/bench_internals.py
	$(BIN)/python benchmarks/bench_stream.py

clean:
	rm -rf $(VENV) demo_out .pytest_cache .mypy_cache .ruff_cache
