"""The README's code blocks, run as a user types them.

Every ```python block and every command of every ```bash block runs in README order (later
blocks use what earlier ones trained) in a folder laid out like a checkout after ``make``:
``tools/`` and ``configs/`` linked from this repository, ``.venv`` from the environment that
runs the tests, ``PATH`` without the venv.
The user's own files the README assumes (``image.jpg``, ``/path/to/mydata/`` in the layout of
the fine-tune recipe's step 1) come from the tiny synthetic dataset; the published model
folder ``checkpoints/deformable-detr`` is a tiny random Hugging Face Deformable DETR saved with
its image processor. What differs from what
the README says is listed below, and nowhere else.
"""

import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _helpers import write_tiny_deformable_detr

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
ENV = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}

# Text in the README's blocks -> what runs instead. Each must occur, so none goes stale.
SUBSTITUTIONS = {
    # 18 images, not 2,200; clips of 8 frames
    "--num-train 2000 --num-val 200": "--num-train 12 --num-val 6 --video-frames 8 8 "
    "--num-shapes 12 6 --num-scenes 2 1",
    "epoch_9.pth": "epoch_1.pth",  # the runs train one epoch (FAST)
    "point_cls/epoch_8.pth": "point_cls/epoch_1.pth",
    "point_seg/epoch_12.pth": "point_seg/epoch_1.pth",
    "pretrain/epoch_10.pth": "pretrain/epoch_1.pth",
    "/path/to/mydata/": "{mydata}/",  # the synthetic data, laid out as the recipe's step 1
}
_NO_WORKERS = "{0}_dataloader.num_workers=0 {0}_dataloader.persistent_workers=False"
# Appended to the commands of these tools: one epoch (10 iterations for a config with an
# iteration budget), validated (so best_*.pth exists), no dataloader worker processes.
FAST = {
    "tools/train.py": "--cfg-options {train_cfg} "
    + " ".join(_NO_WORKERS.format(split) for split in ("train", "val", "test")),
    "tools/test.py": "--cfg-options " + _NO_WORKERS.format("test"),
}
_SHORT = {
    "EpochBasedTrainLoop": "train_cfg.max_epochs=1 train_cfg.val_interval=1",
    "IterBasedTrainLoop": "train_cfg.max_iters=10 train_cfg.val_interval=10",
}


def fast_options(command: str, cwd: Path) -> str:
    """What FAST appends to ``command`` run in ``cwd`` (for train.py its config's training
    loop decides)."""
    tool = next((t for t in FAST if f" {t} " in command), None)
    if tool is None:
        return ""
    train_cfg = ""
    if tool == "tools/train.py":
        from visionfm.engine import load_config

        config = shlex.split(command)[shlex.split(command).index(tool) + 1]
        cfg = load_config(str(cwd / config))
        loop = cfg.train_cfg.get("type", "EpochBasedTrainLoop")
        train_cfg = _SHORT[loop]
        if cfg.get("val_dataloader") is None:  # a pre-training config: no validation
            train_cfg = train_cfg.split(" train_cfg.val_interval")[0]
            return "--cfg-options " + train_cfg + " " + _NO_WORKERS.format("train")
    return FAST[tool].format(train_cfg=train_cfg)


# Commands that are not run, and why. They are still checked to name programs and files
# that exist.
SKIPPED = {
    "make demo": "the whole demo: 14 minutes of training; its steps are the quickstart's",
    "make test": "runs this test suite",
    ".venv/bin/torchrun": "two training processes; tests/engine/test_ddp.py runs DDP",
    ".venv/bin/python tools/test.py configs/deformable_detr/deformable-detr_r50_coco.py": "COCO "
    "val2017 with an R-50 model; tests/tools/test_convert_checkpoint.py evaluates a converted "
    "tiny model with tools/test.py",
    ".venv/bin/python tools/train.py configs/custom/deformable-detr_r50_custom-coco.py": "R-50 "
    "training; tests/engine/test_finetune_published.py fine-tunes a tiny published model with "
    "this config's settings",
    ".venv/bin/python tools/convert_dataset.py yolo data/my_yolo": "your own YOLO folder; "
    "tests/tools/test_convert_dataset.py converts every format on files it writes",
    ".venv/bin/python tools/export.py": "~2 minutes of tracing on one core; "
    "tests/export/test_export_detection.py exports the demo config's DINO (fewer layers) to "
    "both formats and checks them against eager",
    ".venv/bin/python tools/demo.py configs/dino/dino_vit-t_synthetic.py outputs/export/": "needs "
    "the export above; tests/export/test_export_detection.py runs tools/demo.py on an exported "
    "ONNX file",
    ".venv/bin/python tools/webui.py": "a web server that runs until stopped; "
    "tests/tools/test_webui.py serves the page and drives it with gradio_client",
}

_FENCE = re.compile(r"^( *)```(bash|python)\n(.*?)^\1```", re.MULTILINE | re.DOTALL)


def readme_blocks() -> list[tuple[str, str]]:
    """(language, code) of the README's ```bash and ```python blocks, in order."""
    text = README.read_text()
    return [(lang, textwrap.dedent(code)) for _, lang, code in _FENCE.findall(text)]


def commands(script: str) -> list[str]:
    """The commands of a bash block: continued lines joined, comments dropped."""
    lines = script.replace("\\\n", " ").splitlines()
    return [c for line in lines if (c := re.sub(r"(^|\s)#.*", "", line).strip())]


@pytest.fixture
def checkout(tmp_path) -> Path:
    work = tmp_path / "checkout"
    work.mkdir()
    for name in ("tools", "configs"):
        (work / name).symlink_to(ROOT / name)
    (work / ".venv").symlink_to(sys.prefix)
    return work


def test_every_command_names_a_program_and_files_that_exist(checkout):
    """After ``make`` only /usr/bin, /bin and .venv/bin hold programs (the venv is not
    activated); the tools and configs a command names exist. Skipped commands too."""
    for lang, code in readme_blocks():
        for command in commands(code) if lang == "bash" else []:
            program, *args = shlex.split(command)
            found = (checkout / program).is_file() or shutil.which(program, path=ENV["PATH"])
            assert found, f"README command {command!r}: {program!r} is not installed by make"
            for arg in args:
                if arg.startswith(("tools/", "configs/")) and "*" not in arg:
                    assert (checkout / arg).is_file(), f"README command {command!r}: no {arg}"


def _run(args: list[str], cwd: Path, what: str) -> None:
    proc = subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600)
    if proc.returncode:
        pytest.fail(f"README {what} failed:\n{args[-1]}\n{(proc.stdout + proc.stderr)[-4000:]}")


@pytest.mark.slow
def test_readme_blocks_run(checkout, synthetic_root, tmp_path):
    shutil.copy(synthetic_root / "images" / "val" / "000000.jpg", checkout / "image.jpg")
    write_tiny_deformable_detr(checkout / "checkpoints" / "deformable-detr")
    mydata = tmp_path / "mydata"
    (mydata / "annotations").mkdir(parents=True)
    (mydata / "images").symlink_to(synthetic_root / "images")
    for split in ("train", "val"):
        source = synthetic_root / "annotations" / f"instances_{split}.json"
        shutil.copy(source, mydata / "annotations" / f"{split}.json")

    unused = set(SUBSTITUTIONS)
    for lang, code in readme_blocks():
        for old, new in SUBSTITUTIONS.items():
            if old in code:
                code = code.replace(old, new.format(mydata=mydata))
                unused.discard(old)
        if lang == "python":
            _run([sys.executable, "-c", code], checkout, "python block")
            continue
        for command in commands(code):
            if command.startswith(tuple(SKIPPED)):
                continue
            extra = fast_options(command, checkout)
            _run(["bash", "-c", f"{command} {extra}"], checkout, "command")
    assert not unused, f"substitutions that match nothing in the README: {sorted(unused)}"
