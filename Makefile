# make demo: install everything, then run the main job.   make test: install everything, then lint + tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= data/synthetic
OUT ?= outputs/demo
JOBS ?= 2

.PHONY: install demo test lint benchmark clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) tools/make_synthetic.py --out $(DATA) --num-train 200 --num-val 50 --seed 0
	$(PY) tools/browse_dataset.py configs/_base_/datasets/synthetic_instances.py --out $(OUT) --num 8 \
		--cfg-options data_root=$(DATA)/
	@echo "demo: ground truth drawn over synthetic images in $(OUT)/"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(PY) -m pytest -n $(JOBS) tests

benchmark: install
	$(PY) benchmarks/bench_attention.py
	$(PY) benchmarks/bench_vit.py

clean:
	rm -rf $(VENV) work_dirs outputs data
