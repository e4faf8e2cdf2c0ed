# Two commands for a new user (see README.md): `make demo` and `make test`. Both build the virtualenv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= demo-output
DEMO_EPOCHS ?= 1

.PHONY: venv demo test quality clean browser

venv: $(STAMP)

# constraints.txt pins every transitive version that was tested together (see BUILD_NOTES.md).
$(STAMP): setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

# The demo colours with the unet (an ImageNet MobileNetV2 as its encoder, fine-tuned after a fifth of the steps)
# when ImageNet weights can be had: DEMO_WEIGHTS (default: Keras' download, cached in ~/.keras/models) or a
# local weights file of the full classifier. Offline it says so on one line and falls back to random weights and
# the beta model (no encoder to pretrain), whose colour is a sepia guess. 128 px, half width, classification,
# cosine schedule, zoom: as the quality study found best on a CPU (BENCHMARKS.md, Quality).
DEMO_WEIGHTS ?= imagenet
# Then it colours the photo again with three hints (README.md): sky blue where the demo's model put a pink
# halo, and green on the field, which it leaves bluish.
DEMO_HINTS ?= --hint 0.5,0.06,\#8fb3e6,0.03 --hint 0.75,0.72,\#5a8f3c,0.03 --hint 0.92,0.9,\#5a8f3c,0.03
demo: $(STAMP)
	@if $(BIN)/python -m pipeline.embedder mobilenet_v2 '$(DEMO_WEIGHTS)' >/dev/null 2>&1; then \
	    weights='$(DEMO_WEIGHTS)'; model=unet; else weights=random; model=beta; \
	    echo "demo: MobileNetV2's ImageNet weights ($(DEMO_WEIGHTS)) cannot be had here (offline?): falling back to random weights and --model beta, a sepia guess; DEMO_WEIGHTS=FILE takes a local weights file"; fi; \
	set -e; \
	$(BIN)/python -m pipeline.preprocess --output $(OUT)/records-$$model --embedder mobilenet_v2 \
	    --embedder-weights "$$weights" --image-size 128 --runner DirectRunner; \
	$(BIN)/python -m pipeline.inspect $(OUT)/records-$$model --limit 2; \
	$(BIN)/python -m trainer.task --data $(OUT)/records-$$model --job-dir $(OUT)/job-$$model --model $$model --width 0.5 \
	    --epochs $(DEMO_EPOCHS) --steps-per-epoch 100 --batch-size 8 --hints --noexport; \
	$(BIN)/python -m trainer.export --job-dir $(OUT)/job-$$model; \
	camera=$$($(BIN)/python -c 'import os, skimage.data; print(os.path.join(os.path.dirname(skimage.data.__file__), "camera.png"))'); \
	$(BIN)/python -m serving.colorize --model $(OUT)/job-$$model/export --output $(OUT)/coloured $$camera; \
	$(BIN)/python -m serving.colorize --model $(OUT)/job-$$model/export --output $(OUT)/coloured-hints $(DEMO_HINTS) $$camera

# Debian's Chromium, which tests/test_app_browser.py drives through Playwright (Playwright's own browser
# download cannot work offline). Installed only when missing; as root directly, else through sudo.
browser:
	@test -x /usr/bin/chromium || { $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq chromium \
	    >/dev/null && echo 'installed /usr/bin/chromium'; }

test: $(STAMP) browser
	$(BIN)/python -m pytest -q tests

# The quality study (BENCHMARKS.md): needs ../shared beside the repo. The unet and fusion, each
# 2500 steps on the ImageNet sample's train split and more-photos: about an hour on 2 cores.
quality: $(STAMP)
	$(BIN)/python benchmarks/quality.py --more-photos ../shared/data/more-photos --steps 2500 --epochs 5

clean:
	rm -rf $(VENV) $(OUT)
