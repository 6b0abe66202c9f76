# adaptbot: `make run` sets up and starts the bot; `make test` sets up and runs every test.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
# llama.cpp for any x86-64 with AVX2, not -march=native: a CPU (or VM) that advertises AMX without enabling it
# kills the process with SIGILL in the AMX kernels (seen on this build machine: `tilezero` in libggml-cpu)
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

.PHONY: setup run chat test bench lint clean ladder

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# CPU PyTorch first, pinned: an unpinned torch pulls several GB of CUDA packages
	$(BIN)/pip install -q torch==2.13.0
	# llama-cpp-python compiles from source (about 5 minutes on 2 cores), with our flags: not from pip's wheel
	# cache, which may hold a -march=native build
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip install -q --no-cache-dir llama-cpp-python==0.3.36
	$(BIN)/pip install -q -e '.[finetune,dev]'
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/adaptbot run

chat: $(STAMP)
	$(BIN)/adaptbot chat

test: $(STAMP)
	scripts/with-postgres.sh $(BIN)/python -m pytest -q -rs -p no:cacheprovider $(PYTEST_ARGS)

bench: $(STAMP)
	for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# The whole adaptation ladder on Gemma 3 270M, offline, about 35 minutes on 2 cores (examples/ladder/README.md);
# finished stages are skipped on a rerun. LADDER_ARGS: e.g. --fresh, --epochs 1, --runners 1
ladder: $(STAMP)
	$(BIN)/python examples/ladder/run.py $(LADDER_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check bot agents knowledge finetune tests bench

clean:
	rm -rf $(VENV) .pytest_cache
