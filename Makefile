# make test: creates .venv if missing, installs the package with what the tests need, runs pytest.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: test install demo bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[edge,train,dev,review]'
	# pysparkplug declares paho-mqtt<2 but its payload classes work with paho 2 (see docs/deployment.md).
	$(BIN)/pip install --quiet --no-deps 'pysparkplug>=0.6.1,<0.7'
	touch $@

install: $(VENV)/.installed

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: install
	$(BIN)/inspector demo

bench: install
	$(BIN)/python -m bench all

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
