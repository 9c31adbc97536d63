# make demo: install everything, then run the main job.   make test: install everything, then lint + tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= data/synthetic
WORK ?= work_dirs/demo
OUT ?= outputs/demo
CONFIG ?= configs/dino/dino_vit-t_synthetic.py
JOBS ?= 2
PROCS ?= 2

.PHONY: install demo test lint benchmark clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[dev,text,export,webui]"
	touch $@

install: $(VENV)/.installed

# The main job: synthetic data -> train the DINO demo detector on CPU -> COCO evaluation ->
# predictions drawn on the validation images -> demo on an image and a video -> learning curve.
# Training runs PROCS gloo DDP processes of one thread each (batch 4 each): this small model
# leaves a second intra-op thread mostly idle, two processes use both cores.
demo: export OMP_WAIT_POLICY = PASSIVE
demo: install
	$(PY) tools/make_synthetic.py --out $(DATA) --num-train 2000 --num-val 200 --seed 0
	OMP_NUM_THREADS=1 $(PY) -m torch.distributed.run --nproc_per_node $(PROCS) \
		tools/train.py $(CONFIG) --launcher pytorch --work-dir $(WORK) --cfg-options data_root=$(DATA)/
	$(PY) tools/test.py $(CONFIG) $$(cat $(WORK)/last_checkpoint) --work-dir $(WORK) \
		--out $(OUT)/results.json --show-dir $(OUT)/show --cfg-options data_root=$(DATA)/
	$(PY) tools/demo.py $(CONFIG) $$(cat $(WORK)/last_checkpoint) $(DATA)/images/val/000000.jpg --out $(OUT)
	$(PY) tools/demo.py $(CONFIG) $$(cat $(WORK)/last_checkpoint) $(DATA)/videos/val/video_000.mp4 --out $(OUT)
	$(PY) tools/analyze_logs.py $(WORK) --out $(OUT)/learning_curve.png --md $(OUT)/learning_curve.md
	@echo "demo results: metrics above; $(OUT)/results.json, $(OUT)/show/, $(OUT)/000000.png,"
	@echo "              $(OUT)/video_000.mp4, $(OUT)/learning_curve.png; checkpoints in $(WORK)/"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(PY) -m pytest -n $(JOBS) tests

benchmark: export OMP_WAIT_POLICY = PASSIVE
benchmark: install
	$(PY) benchmarks/run_all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) work_dirs outputs data
