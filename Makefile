# Two entry points: `make demo` and `make test`. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean browser datasets reproduce reproduce-14 pretrain gpu-check docs

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks experiments
	$(VENV)/bin/lint-imports

# Headless Chromium for the explorer's browser test: Debian's package when missing and we are root;
# where it cannot be installed the build goes on and the browser test is skipped with its reason.
browser:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing chromium (apt-get) for the explorer's browser test"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	    || echo "could not install chromium: the browser test will be skipped"; \
	else echo "no /usr/bin/chromium and no root apt-get: the browser test will be skipped"; fi

# Debian's Fashion-MNIST (the real data set of the reproduction study); skipped where apt is unavailable.
datasets:
	@if [ -d /usr/share/datasets/fashion-mnist ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 \
	    || echo "could not install dataset-fashion-mnist: its tests are skipped"; \
	else echo "no root apt-get: Fashion-MNIST tests are skipped"; fi

# The suite also executes the example notebooks (tests/test_notebooks.py) and builds and checks the wheel
# (tests/test_wheel.py); the docs are built strictly, so a broken link or a missing API name fails.
test: $(STAMP) lint browser datasets
	$(PY) -m pytest -q
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --quiet --site-dir site

# The documentation site (mkdocs.yml, docs/) into site/; open site/index.html.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

demo: $(STAMP)
	$(PY) -m patchfield demo --out demo_out

bench: $(STAMP)
	$(PY) benchmarks/analysis.py
	$(PY) benchmarks/startup.py
	$(PY) benchmarks/claims.py
	$(PY) benchmarks/models.py

# The prepared device check (benchmarks/gpu_check.py; about 5 minutes on one H100): writes docs/gpu_check.json
# and prints it as its last line; exits 1 when a correctness check fails. A device image that already has
# every dependency (and no package registry) runs it with its own python3 and the sources; elsewhere the venv.
GPU_CHECK_ARGS ?=
gpu-check:
	@if $(PYTHON) -c "import torch, torchvision, timm, numpy, PIL, matplotlib, safetensors, tqdm" 2>/dev/null; then \
	  PYTHONPATH=src $(PYTHON) benchmarks/gpu_check.py $(GPU_CHECK_ARGS); \
	else $(MAKE) $(STAMP) && $(PY) benchmarks/gpu_check.py $(GPU_CHECK_ARGS); fi

# The reproduction study behind docs/reproduction.md (needs `make pretrain` first). The committed run
# took 4.5 hours on 2 cores (it prints its own estimate at the start); resumable across sessions.
reproduce: $(STAMP) datasets
	$(PY) -m patchfield reproduce --jobs 2

# The 14x14-grid study (docs/study.md): controls on U, about 4.4 hours on 2 cores by its own estimate; resumable
# (rerun the same line), `patchfield reproduce --grid 14 --status` says how far it is.
reproduce-14: $(STAMP)
	$(PY) -m patchfield reproduce --grid 14 --jobs 2

# The study's pretrained start: one tiny ViT per patch size on generated radial contours, written into
# src/patchfield/assets/pretrained (estimated 2 hours on 2 cores; resumable, finished runs skipped).
pretrain: $(STAMP)
	$(PY) -m patchfield pretrain --jobs 2

clean:
	rm -rf $(VENV) demo_out site

# The hostile corpus: bad values for every option, broken run folders and weights, malformed
# COCO files, damaged study folders, unsafe image names, interrupted output folders, and the AWD and WinfT runs
# the commands must show; each case ends in one line naming the file or option, with exit code 1 or 2.
.PHONY: fuzz
fuzz: $(STAMP)
	$(PY) -m pytest -q tests/test_cli_fuzz.py tests/test_bad_runs.py tests/test_hostile_outputs.py \
	  tests/test_awd_recipe.py tests/test_winft_commands.py tests/test_photo_corpus.py
