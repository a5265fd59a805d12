# Two entry points (see README): `make book` runs the mini study and builds the book;
# `make test` runs the test suite (what CI runs). Both create .venv and install what they need.
PYTHON ?= python3
VENV   ?= .venv
VPY    := $(VENV)/bin/python
# torch first and pinned: a bare `torch` requirement pulls a multi-GB CUDA build on CPU machines.
TORCH  ?= torch==2.13.0
# what is installed: the project with its book and dev (test) extras, or with its book extras only
STAMP      := $(VENV)/.installed
BOOK_STAMP := $(VENV)/.installed-book
# stages of the study run at once (torch threads are split among them)
JOBS   ?= 2
# test processes (pytest-xdist; each takes whole test files, so module fixtures are built once)
TEST_JOBS ?= 2
PYTEST = $(VPY) -m pytest -q -n $(TEST_JOBS) --dist loadfile
# extra options of the study, e.g. STUDY_ARGS=--prompt3 (GRPO with prompt <3>, an opt-in part: aqa_core/study/design.py)
STUDY_ARGS ?=

export HF_HUB_OFFLINE = 1
export TOKENIZERS_PARALLELISM = false
# DeepSpeed (a test dependency) installs as pure Python; its ops compile on first use
export DS_BUILD_OPS = 0

.PHONY: install lint test test-fast book book-only check-book clean-book clean

$(VPY):
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip

# torch first, pinned, unless present (either install below)
INSTALL_TORCH = @$(VPY) -c "import torch" 2>/dev/null || $(VPY) -m pip install --quiet $(TORCH)

$(STAMP): pyproject.toml | $(VPY)
	$(INSTALL_TORCH)
	$(VPY) -m pip install --quiet -e ".[book,dev]"
	@touch $@ $(BOOK_STAMP)

# `make book` needs no test tool (pytest, DeepSpeed for the ZeRO-3 test): a fresh clone installs less
$(BOOK_STAMP): pyproject.toml | $(VPY)
	$(INSTALL_TORCH)
	$(VPY) -m pip install --quiet -e ".[book]"
	@touch $@

install: $(STAMP)

## The linter (ruff, pinned in the dev extras; its rules in pyproject.toml).
lint: $(STAMP)
	$(VENV)/bin/ruff check .

## The whole test suite, smoke runs of every pipeline stage included (what CI runs), after the linter.
test: lint
	$(PYTEST) --durations=25

## The fast subset for the edit loop: no model training (`slow`), no book build (`book`).
test-fast: lint
	$(PYTEST) -m "not slow and not book"

## The main job: the mini reproduction (cached stage by stage), then the book.
book: $(BOOK_STAMP)
	$(VPY) -m aqa_core study --out runs/mini --jobs $(JOBS) $(STUDY_ARGS)
	$(VENV)/bin/jupyter-book build book --warningiserror --keep-going

## Rebuild the book from existing results only.
book-only: $(BOOK_STAMP)
	$(VENV)/bin/jupyter-book build book

## Read the built book as a reader meets it (headless chromium, Debian's package, at 1300 px): word
## counts per page, the landing page's first screen, nothing wider than the text column.
check-book:
	$(VPY) scripts/check_book.py book/_build/html

clean-book:
	rm -rf book/_build

clean: clean-book
	rm -rf $(VENV)
