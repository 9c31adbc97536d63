"""benchmarks/gpu_check.py and its sections (benchmarks/_gpu_check_*.py) on CPU: the --quick
run writes every section, and its checks can fail (a comparison beyond tolerance, a broken
attention backend or deformable-attention op, a section that raises); the out-of-memory retry,
the time-to-AP stops (target, budget), a failed background data run, the refusal of --device
cuda without a GPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import _gpu_check_common as checks  # noqa: E402
import _gpu_check_kernels as kernels  # noqa: E402
import _gpu_check_mfu as mfu  # noqa: E402
import _gpu_check_training as training  # noqa: E402
import gpu_check  # noqa: E402

from visionfm.ops import attention as attention_module  # noqa: E402
from visionfm.ops import deform_attn  # noqa: E402


def _ctx() -> SimpleNamespace:
    """What the comparison sections read of the run, for a --quick CPU run."""
    return SimpleNamespace(
        device="cpu",
        device_type="cpu",
        quick=True,
        facts={"xformers": "not installed"},
        progress=lambda text: None,
    )


def test_quick_cpu_run_reports_every_section(tmp_path):
    out = tmp_path / "report.md"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks/gpu_check.py"),
        "--device",
        "cpu",
        "--quick",
        "--out",
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for i, name in enumerate(gpu_check.SECTIONS, 1):  # a progress line per section
        assert f"[gpu_check] {i}/5 {name}: started" in proc.stdout
    text = out.read_text()
    assert "# GPU check: cpu (--quick: tiny sizes)" in text
    for i, name in enumerate(gpu_check.SECTIONS, 1):
        assert f"## {i}. " in text and f"({name}): " in text
    sections = json.loads(out.with_suffix(".json").read_text())["sections"]
    assert list(sections) == list(gpu_check.SECTIONS)
    status = {name: s["status"] for name, s in sections.items()}
    # the comparisons pass on CPU; size-dependent thresholds are INFO at --quick sizes
    assert status == dict(
        attention="PASS", deform_attn="PASS", amp_training="PASS", mfu="INFO", time_to_ap="INFO"
    )
    rows = {r["precision"]: r for r in sections["amp_training"]["data"]}
    assert rows["fp16"]["status"] == "SKIP" and "CUDA" in rows["fp16"]["reason"]
    assert rows["fp32"]["non_finite"] == 0 and rows["fp32"]["iterations"] == 4
    xformers = [row["xformers"] for row in sections["attention"]["data"]]
    assert all(x["status"] == "SKIP" for x in xformers)  # never reported as a pass on CPU
    assert len(sections["time_to_ap"]["data"]["curve"]) == 2  # validated after each epoch


def test_compare_fails_beyond_tolerance():
    ref = {"out": torch.tensor([1.0, -2.0, 4.0])}
    close = checks.compare({"out": ref["out"] + 1e-5}, ref, 1e-4)
    assert close["status"] == "PASS" and close["errors"]["out"] == pytest.approx(2.5e-6, rel=1e-2)
    assert close["abs_errors"]["out"] == pytest.approx(1e-5, rel=1e-2)
    assert checks.compare({"out": ref["out"] * 1.01}, ref, 1e-4)["status"] == "FAIL"
    nan = checks.compare({"out": torch.tensor([1.0, float("nan"), 4.0])}, ref, 1.0)
    assert nan["status"] == "FAIL"
    per_key = checks.compare(
        {"a": ref["out"] * 1.01, "b": ref["out"]},
        {"a": ref["out"], "b": ref["out"]},
        {"a": 0.02, "b": 0.0},
    )
    assert per_key["status"] == "PASS"


def test_attention_section_fails_on_a_wrong_backend(monkeypatch):
    sdpa = attention_module._IMPLS["sdpa"]

    def off_scale(q, k, v, bias, mask, dropout_p, scale):  # a 1 % wrong logit scale
        return sdpa(q, k, v, bias, mask, dropout_p, scale * 1.01)

    monkeypatch.setitem(attention_module._IMPLS, "sdpa", off_scale)
    result = kernels.attention_section(_ctx())
    assert result["status"] == "FAIL"
    float32 = [row for row in result["data"] if row["dtype"] == "float32"]
    assert all(
        row["sdpa"]["status"] == "FAIL" and row["math"]["status"] == "PASS" for row in float32
    )


def test_deform_attn_section_fails_on_a_wrong_op(monkeypatch):
    op = deform_attn.multi_scale_deformable_attention

    def shifted(value, spatial_shapes, level_start_index, locations, weights):
        return op(value, spatial_shapes, level_start_index, locations + 1e-3, weights)

    monkeypatch.setattr(deform_attn, "multi_scale_deformable_attention", shifted)
    result = kernels.deform_attn_section(_ctx())
    assert result["status"] == "FAIL"
    assert result["data"][0]["status"] == "FAIL"  # float32 against the grid_sample reference
    assert result["data"][0]["errors"]["out"] > 1e-3


def test_a_failing_section_is_reported_and_the_next_still_runs(tmp_path, monkeypatch):
    def boom(ctx):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 80 GiB")

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # main() sets it for --device cpu
    monkeypatch.setitem(gpu_check.SECTION_FNS, "attention", ("Attention backends", boom))
    out = tmp_path / "r.md"
    code = gpu_check.main(
        ["--device", "cpu", "--quick", "--sections", "attention", "deform_attn", "--out", str(out)]
    )
    assert code == 1
    text = out.read_text()
    assert "| attention | FAIL |" in text and "OutOfMemoryError: CUDA out of memory" in text
    assert "Traceback" in text and "in boom" in text
    assert "| deform_attn | PASS |" in text
    assert "| amp_training | — | — | not selected (--sections) |" in text
    assert gpu_check.slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"


def test_out_of_memory_halves_the_batch_then_gives_up():
    ctx = SimpleNamespace(batch=8, device_type="cpu", progress=lambda text: None)
    tried = []

    def step(ctx):
        tried.append(ctx.batch)
        if ctx.batch > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return dict(batch=ctx.batch)

    assert mfu.halving_batch_on_oom(step, ctx, "batch") == dict(batch=2, oom_retries=2)
    assert tried == [8, 4, 2]
    ctx.batch = 1
    with pytest.raises(torch.cuda.OutOfMemoryError):
        mfu.halving_batch_on_oom(lambda ctx: step(SimpleNamespace(batch=64)), ctx, "batch")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without a GPU")
def test_cuda_without_a_gpu_is_refused_with_what_to_run_instead():
    with pytest.raises(SystemExit, match="is False.*--device cpu --quick"):
        gpu_check.main(["--device", "cuda"])


def test_recorder_stops_training_at_the_target_and_at_the_budget(monkeypatch):
    loop = SimpleNamespace(stop_training=False)
    runner = SimpleNamespace(train_loop=loop, epoch=1, iter=10, optim_wrapper=object())
    clock = iter([0.0, 30.0, 60.0, 61.0, 200.0])
    monkeypatch.setattr(training.time, "perf_counter", lambda: next(clock))
    rec = training.Recorder(120.0, ("coco/bbox_mAP", 0.5), progress=lambda text: None)
    rec.before_train(runner)  # t = 0
    rec.after_train_iter(runner, 0, outputs={"loss": torch.tensor(2.0)})  # t = 30 s
    rec.after_val_epoch(runner, {"coco/bbox_mAP": 0.4})  # t = 60 s: below the target
    assert not loop.stop_training and rec.curve[-1]["minutes"] == 1.0
    rec.after_val_epoch(runner, {"coco/bbox_mAP": 0.5})  # t = 61 s: reached
    assert loop.stop_training and "after_budget" not in rec.curve[-1]
    with pytest.raises(training.BudgetSpent):  # t = 200 s > 120 s
        rec.after_train_iter(runner, 1, outputs={"loss": torch.tensor(1.0)})
    assert rec.losses == [2.0, 1.0] and rec.scales == [None, None]


def test_background_data_that_fails_is_reported_with_the_tools_output(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "executable", "/bin/sh")  # runs tools/make_synthetic.py as sh
    data = training.SyntheticData(tmp_path, background=True)
    data.start(4, 2)
    with pytest.raises(RuntimeError, match="tools/make_synthetic.py exited with [1-9]"):
        data.wait(4, 2)
