# The two commands of the README. Both create .venv with pip when it is missing and install into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo fewshot-demo example test test-fast test-docs lint install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# Two-colors where BMG learns an entropy schedule (the public PyTorch port's configuration, `port`
# preset, 3 seeds x 2M steps): fixed entropy cost vs MG vs BMG; beside them BMG at the related
# work's published values (`demo` preset, 3 seeds x 1M steps), where it does not; one table + plots
# (docs/two-colors.md).
demo: $(STAMP)
	@set -e; dir=runs/demo/$$(date +%Y%m%d-%H%M%S); port="--seeds 3 --steps 2000000"; \
	$(BIN)/bmg two-colors port --algo fixed $$port --out $$dir/port-fixed; \
	$(BIN)/bmg two-colors port --algo mg --k 1 $$port --out $$dir/port-mg; \
	$(BIN)/bmg two-colors port --algo bmg $$port --out $$dir/port-bmg; \
	$(BIN)/bmg two-colors demo --algo bmg --k 1 --l 8 --seeds 3 --out $$dir/related-bmg; \
	$(BIN)/bmg compare $$dir/port-fixed $$dir/port-mg $$dir/port-bmg $$dir/related-bmg \
	  --out $$dir/compare

# Few-shot, MAML vs BMG on the tiny preset (synthetic 16x16 data, 300 meta-steps), table + plots.
fewshot-demo: $(STAMP)
	@set -e; dir=runs/fewshot-demo/$$(date +%Y%m%d-%H%M%S); \
	$(BIN)/bmg fewshot make-synthetic --out $$dir/data --format pkl --classes 20 --per-class 60 \
	  --size 16; \
	for algo in maml bmg; do \
	  $(BIN)/bmg fewshot tiny --algo $$algo --data-dir $$dir/data --out $$dir/$$algo; \
	done; \
	$(BIN)/bmg compare $$dir/maml $$dir/bmg --out $$dir

example: $(STAMP)
	$(BIN)/python examples/meta_lr_regression.py

# Every test (the README's command) but the second tier (test-docs): the run of every documented
# command (each is still parsed and validated here), and the heavy checks that start several
# processes each (golden traces, 1 device = 4 devices = 2 processes). Two workers: XLA compiles on one
# thread, and compiling is most of a test's time on 2 cores; each file stays on one worker (its
# fixtures are built once).
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile -m "not docs and not heavy"

# The unit tier for day-to-day work: everything but the end-to-end runs marked slow (the golden
# traces included: a change to the engine must keep them).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile -m "not slow"

# The second tier (CI runs it after test): every `bmg ...` command of README.md and docs/*.md run
# scaled down, the worked examples, and the heavy checks.
test-docs: $(STAMP)
	$(BIN)/python -m pytest -m "docs or heavy"

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples scripts
	$(BIN)/ruff format --check src tests benchmarks examples scripts

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
