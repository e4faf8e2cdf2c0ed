# Two commands for a new user (see README.md): `make demo` and `make test`. Both build the virtualenv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= demo-output

.PHONY: venv demo test bench clean

venv: $(STAMP)

# constraints.txt pins every transitive version that was tested together (see BUILD_NOTES.md).
$(STAMP): setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m pipeline.preprocess --output $(OUT)/records --embedder mobilenet_v2 \
	    --embedder-weights random --runner DirectRunner
	$(BIN)/python -m pipeline.inspect $(OUT)/records --limit 2

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

clean:
	rm -rf $(VENV) $(OUT)
