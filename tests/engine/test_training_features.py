"""Training features switched on from the config, each run for a few iterations through
``build_runner`` on tiny models: bf16 autocast, gradient accumulation, gradient clipping,
EMA (validation, checkpoint, resume), layer-wise lr decay on every backbone family,
per-module lr / weight-decay multipliers, warm-up + cosine / step schedules, torch.compile,
gradient checkpointing, frozen stages and the optional TensorBoard backend."""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import math
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.evaluator import BaseMetric
from mmengine.hooks import EMAHook, Hook
from mmengine.model import BaseModel
from mmengine.optim import build_optim_wrapper
from mmengine.registry import OPTIMIZERS, init_default_scope
from torch import nn
from torch.utils.data import Dataset

from visionfm.engine import AutocastOptimWrapper, build_runner, load_checkpoint_file
from visionfm.registry import DATASETS, HOOKS, METRICS, MODELS

ROOT = Path(__file__).resolve().parents[2]
_names = itertools.count()


# ---- toy parts ---------------------------------------------------------------------------
@MODELS.register_module(force=True)
class _TfRegressor(BaseModel):
    """MLP regressor without batch-dependent layers or dropout."""

    def __init__(self, dim: int = 8, hidden: int = 16):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, x, y, mode="loss"):
        out = self.net(x).float()
        if mode == "loss":
            return dict(loss=((out - y) ** 2).mean())
        return [dict(err=float(((o - t) ** 2).mean())) for o, t in zip(out, y)]


@MODELS.register_module(force=True)
class _TfClassifier(BaseModel):
    """A backbone + linear head on the last level's mean feature."""

    def __init__(self, backbone: nn.Module, num_classes: int = 3):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(list(backbone.out_channels.values())[-1], num_classes)

    def forward(self, x, y, mode="loss"):
        logits = self.head(list(self.backbone(x).values())[-1].mean((2, 3)))
        return dict(loss=F.cross_entropy(logits, y))


@DATASETS.register_module(force=True)
class _TfVectors(Dataset):
    def __init__(self, n: int = 12, dim: int = 8):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, dim, generator=g)
        self.y = torch.tanh(self.x[:, :1] - self.x[:, 1:2])

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return dict(x=self.x[i], y=self.y[i])


@DATASETS.register_module(force=True)
class _TfImages(Dataset):
    def __init__(self, n: int = 8, size: int = 32):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 3, size, size, generator=g)
        self.y = torch.arange(n) % 3

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return dict(x=self.x[i], y=self.y[i])


@METRICS.register_module(force=True)
class _TfError(BaseMetric):
    def process(self, data_batch, data_samples):
        self.results.extend(s["err"] for s in data_samples)

    def compute_metrics(self, results):
        return dict(mse=sum(results) / len(results))


@OPTIMIZERS.register_module(force=True)
class _TfNormRecordingSGD(torch.optim.SGD):
    """SGD that records the total gradient norm it is asked to apply."""

    norms: list[float] = []

    def step(self, closure=None):
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        type(self).norms.append(float(torch.linalg.vector_norm(torch.stack(
            [torch.linalg.vector_norm(g) for g in grads]))))  # fmt: skip
        return super().step(closure)


@HOOKS.register_module(force=True)
class _TfRecorder(Hook):
    """Records the lr and the loss of every training iteration, and the weights in validation."""

    priority = "LOWEST"

    def __init__(self):
        self.lrs, self.losses, self.val_weights = [], [], []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.lrs.append(runner.optim_wrapper.optimizer.param_groups[0]["lr"])

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.losses.append(float(outputs["loss"].detach()))

    def after_val_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.val_weights.append({k: v.clone() for k, v in runner.model.state_dict().items()})


def _cfg(work_dir: Path, model=None, dataset=None, batch_size=4, max_epochs=1, **extra) -> Config:
    cfg = dict(
        model=model or dict(type="_TfRegressor"),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=dataset or dict(type="_TfVectors"),
            batch_size=batch_size,
            sampler=dict(type="DefaultSampler", shuffle=False),
            collate_fn=dict(type="default_collate"),
        ),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.05)),
        default_hooks=dict(checkpoint=None, logger=dict(type="LoggerHook", interval=1000)),
        custom_hooks=[dict(type="_TfRecorder")],
        randomness=dict(seed=0),
        log_level="WARNING",
        experiment_name=f"tf_{work_dir.name}_{next(_names)}",
    )
    cfg.update(extra)
    return Config(cfg)


def _recorder(runner) -> _TfRecorder:
    return next(h for h in runner.hooks if isinstance(h, _TfRecorder))


def _weights(runner) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in runner.model.state_dict().items()}


# ---- mixed precision ---------------------------------------------------------------------
def test_bf16_autocast_runs_matmuls_in_bf16_and_still_learns(tmp_path):
    cfg = _cfg(tmp_path, max_epochs=8, optim_wrapper=dict(
        type="AutocastOptimWrapper", dtype="bfloat16", optimizer=dict(type="SGD", lr=0.1)))  # fmt: skip
    runner = build_runner(cfg)
    seen = []
    for layer in runner.model.net[0], runner.model.net[2]:
        layer.register_forward_hook(lambda m, args, out: seen.append((args[0].dtype, out.dtype)))
    runner.train()
    assert isinstance(runner.optim_wrapper, AutocastOptimWrapper)
    # first Linear: fp32 data in, bf16 out; second Linear: bf16 in and out
    assert seen[:2] == [(torch.float32, torch.bfloat16), (torch.bfloat16, torch.bfloat16)]
    assert all(p.dtype == torch.float32 for p in runner.model.parameters())
    losses = _recorder(runner).losses
    assert sum(losses[-3:]) < 0.7 * sum(losses[:3])


def test_amp_flag_picks_bf16_autocast_on_cpu(monkeypatch):
    spec = importlib.util.spec_from_file_location("_train_tool", ROOT / "tools" / "train.py")
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = argparse.Namespace(
        config=str(ROOT / "configs/dino/dino_vit-t_synthetic.py"), cfg_options=None,
        launcher="none", work_dir="/tmp/unused", amp=True, resume=None)  # fmt: skip
    cfg = train.prepare_config(args)
    assert cfg.optim_wrapper.type == "AutocastOptimWrapper"
    assert cfg.optim_wrapper.dtype == "bfloat16"


def test_fp16_needs_a_gpu_loss_scaler():
    params = [nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="float16 needs loss scaling.*bfloat16.*AmpOptimWrapper"):
        AutocastOptimWrapper(optimizer=torch.optim.SGD(params, lr=0.1), dtype="float16")
    if not torch.cuda.is_available():  # mmengine's AmpOptimWrapper (fp16 + GradScaler): GPU only
        from mmengine.optim import AmpOptimWrapper

        with pytest.raises(AssertionError, match="only available training on gpu"):
            AmpOptimWrapper(optimizer=torch.optim.SGD(params, lr=0.1))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 + GradScaler needs CUDA")
def test_fp16_amp_with_dynamic_loss_scaling_on_gpu(tmp_path):
    cfg = _cfg(tmp_path, max_epochs=8, optim_wrapper=dict(
        type="AmpOptimWrapper", loss_scale="dynamic", dtype="float16",
        optimizer=dict(type="SGD", lr=0.1)))  # fmt: skip
    runner = build_runner(cfg)
    seen = []
    runner.model.net[0].register_forward_hook(lambda m, args, out: seen.append(out.dtype))
    runner.train()
    assert seen[0] == torch.float16 and next(runner.model.parameters()).is_cuda
    assert runner.optim_wrapper.loss_scaler.get_scale() > 1
    losses = _recorder(runner).losses
    assert sum(losses[-3:]) < 0.7 * sum(losses[:3])


# ---- gradient accumulation / clipping ----------------------------------------------------
def test_accumulating_k_batches_of_b_equals_one_batch_of_k_times_b(tmp_path):
    optim = dict(optimizer=dict(type="SGD", lr=0.1, momentum=0.9))
    small = build_runner(_cfg(tmp_path / "acc", batch_size=2, max_epochs=2,
                              optim_wrapper=dict(**optim, accumulative_counts=3)))  # fmt: skip
    big = build_runner(_cfg(tmp_path / "big", batch_size=6, max_epochs=2, optim_wrapper=optim))
    plain = build_runner(_cfg(tmp_path / "plain", batch_size=2, max_epochs=2, optim_wrapper=optim))
    for runner in small, big, plain:
        runner.train()
    assert small.iter == 12 and big.iter == 4
    for key, value in _weights(big).items():
        torch.testing.assert_close(_weights(small)[key], value, rtol=1e-5, atol=1e-6, msg=key)
    # guard: without accumulation the same 12 small steps end elsewhere
    assert not torch.allclose(_weights(plain)["net.0.weight"], _weights(big)["net.0.weight"])


def test_gradient_clipping_bounds_every_update(tmp_path):
    _TfNormRecordingSGD.norms = []
    max_norm = 0.05
    cfg = _cfg(tmp_path, max_epochs=2, optim_wrapper=dict(
        optimizer=dict(type="_TfNormRecordingSGD", lr=0.1),
        clip_grad=dict(max_norm=max_norm, norm_type=2)))  # fmt: skip
    runner = build_runner(cfg)
    runner.train()
    applied = _TfNormRecordingSGD.norms
    assert len(applied) == 6
    assert max(applied) <= max_norm * (1 + 1e-4)
    # clipping was active: mmengine logs the norm before clipping
    before = runner.message_hub.get_scalar("train/grad_norm").data[0]
    assert max(before) > 2 * max_norm


# ---- EMA -----------------------------------------------------------------------------------
def _ema_cfg(work_dir, max_epochs, resume=False):
    return _cfg(
        work_dir, max_epochs=max_epochs, resume=resume,
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.1, momentum=0.9)),
        val_dataloader=dict(dataset=dict(type="_TfVectors", n=4), batch_size=4,
                            sampler=dict(type="DefaultSampler", shuffle=False),
                            collate_fn=dict(type="default_collate")),
        val_cfg=dict(type="ValLoop"), val_evaluator=dict(type="_TfError"),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs, val_interval=1),
        default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=1),
                           logger=dict(type="LoggerHook", interval=1000)),
        custom_hooks=[dict(type="EMAHook", ema_type="ExponentialMovingAverage", momentum=0.3),
                      dict(type="_TfRecorder")],
    )  # fmt: skip


def test_ema_weights_are_validated_saved_and_resumed(tmp_path):
    runner = build_runner(_ema_cfg(tmp_path / "full", max_epochs=3))
    ema_during_epoch2 = {}

    @HOOKS.register_module(force=True)
    class _TfCatchEma(Hook):
        def after_train_epoch(self, runner):
            if runner.epoch == 1:
                ema_hook = next(h for h in runner.hooks if isinstance(h, EMAHook))
                ema = ema_hook.ema_model.module.state_dict()
                ema_during_epoch2.update(ema=_clone(ema), raw=_weights(runner))

    runner.register_custom_hooks([dict(type="_TfCatchEma")])
    runner.train()
    # validation after epoch 2 saw the EMA weights, not the raw ones
    seen = _recorder(runner).val_weights[1]
    for key, value in ema_during_epoch2["ema"].items():
        torch.testing.assert_close(seen[key], value, rtol=0, atol=0)
    assert not torch.equal(ema_during_epoch2["ema"]["net.0.weight"],
                           ema_during_epoch2["raw"]["net.0.weight"])  # fmt: skip
    # the checkpoint (read with weights_only=True) holds both: state_dict = EMA, ema = raw
    ckpt = load_checkpoint_file(str(tmp_path / "full" / "epoch_2.pth"))
    for key, value in ema_during_epoch2["ema"].items():
        torch.testing.assert_close(ckpt["state_dict"][key], value, rtol=0, atol=0)
        torch.testing.assert_close(ckpt["ema_state_dict"]["module." + key],
                                   ema_during_epoch2["raw"][key], rtol=0, atol=0)  # fmt: skip
    # resuming from epoch 2 ends exactly where the uninterrupted run ended (raw and EMA)
    split = tmp_path / "split"
    split.mkdir()
    shutil.copy(tmp_path / "full" / "epoch_2.pth", split / "epoch_2.pth")
    (split / "last_checkpoint").write_text(str(split / "epoch_2.pth"))
    resumed = build_runner(_ema_cfg(split, max_epochs=3, resume=True))
    resumed.train()
    assert resumed.iter == runner.iter == 9
    for key, value in _weights(runner).items():
        torch.testing.assert_close(_weights(resumed)[key], value, rtol=0, atol=1e-7, msg=key)
    final = load_checkpoint_file(str(split / "epoch_3.pth"))
    expected = load_checkpoint_file(str(tmp_path / "full" / "epoch_3.pth"))
    for key, value in expected["state_dict"].items():
        torch.testing.assert_close(final["state_dict"][key], value, rtol=0, atol=1e-7, msg=key)


def _clone(state: dict) -> dict:
    return {k: v.detach().clone() for k, v in state.items()}


# ---- layer-wise lr decay and parameter-wise multipliers ----------------------------------
BACKBONES = {
    "vit": dict(type="ViT", img_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=2),
    "swin": dict(type="SwinTransformer", embed_dim=16, depths=(1, 1, 2, 1),
                 num_heads=(1, 1, 2, 2), window_size=4),
    "swinv2": dict(type="SwinTransformerV2", embed_dim=16, depths=(1, 1, 2, 1),
                   num_heads=(1, 1, 2, 2), window_size=4),
    "pvtv2": dict(type="PyramidVisionTransformerV2", depths=(2, 1, 1, 1),
                  embed_dims=(16, 16, 32, 32), num_heads=(1, 1, 2, 2), mlp_ratios=2),
    "timm_vit": dict(type="TimmBackbone", model_name="test_vit"),
    "timm_resnet": dict(type="TimmBackbone", model_name="test_resnet"),
}  # fmt: skip


def _groups_by_param(optimizer) -> dict[int, dict]:
    return {id(p): g for g in optimizer.param_groups for p in g["params"]}


@pytest.mark.parametrize("name", BACKBONES)
def test_layer_decay_works_for_every_backbone(name):
    init_default_scope("visionfm")
    model = MODELS.build(dict(type="_TfClassifier", backbone=BACKBONES[name]))
    wrapper = build_optim_wrapper(model, dict(
        optimizer=dict(type="AdamW", lr=1.0, weight_decay=0.05),
        constructor="LayerDecayOptimWrapperConstructor",
        paramwise_cfg=dict(decay_rate=0.6)))  # fmt: skip
    groups = _groups_by_param(wrapper.optimizer)
    backbone = model.backbone
    top = backbone.num_layers + 1
    ids = backbone.layer_ids()
    assert set(ids.values()) >= {0, 1, backbone.num_layers}, "stem, first and last block"
    for pname, p in backbone.named_parameters():
        assert groups[id(p)]["lr"] == pytest.approx(0.6 ** (top - ids[pname])), pname
    first = next(p for n, p in backbone.named_parameters() if ids[n] == 1)
    last = next(p for n, p in backbone.named_parameters() if ids[n] == backbone.num_layers)
    ratio = groups[id(first)]["lr"] / groups[id(last)]["lr"]
    assert ratio == pytest.approx(0.6 ** (backbone.num_layers - 1)) and ratio < 1
    assert groups[id(model.head.weight)]["lr"] == 1.0  # heads: the full lr
    assert groups[id(model.head.weight)]["weight_decay"] == 0.05
    assert groups[id(model.head.bias)]["weight_decay"] == 0.0
    assert sum(len(g["params"]) for g in wrapper.optimizer.param_groups) == len(
        [p for p in model.parameters() if p.requires_grad]
    )


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = MODELS.build(BACKBONES["vit"])
        self.neck = nn.Sequential(nn.Linear(32, 32), nn.LayerNorm(32))
        self.head = nn.Linear(32, 3)


def test_mmengine_default_constructor_multipliers_and_its_custom_key_trap():
    init_default_scope("visionfm")
    model = _Net()
    wrapper = build_optim_wrapper(model, dict(
        optimizer=dict(type="AdamW", lr=1.0, weight_decay=0.1),
        paramwise_cfg=dict(custom_keys={"backbone": dict(lr_mult=0.1), "pos_embed":
                                        dict(decay_mult=0.0)},
                           norm_decay_mult=0.0, bias_decay_mult=0.0)))  # fmt: skip
    groups = _groups_by_param(wrapper.optimizer)
    assert groups[id(model.backbone.blocks[0].attn.qkv.weight)]["lr"] == pytest.approx(0.1)
    assert groups[id(model.head.weight)]["lr"] == 1.0
    assert groups[id(model.head.weight)]["weight_decay"] == 0.1
    assert groups[id(model.neck[1].weight)]["weight_decay"] == 0.0  # norm outside custom keys
    assert groups[id(model.head.bias)]["weight_decay"] == 0.0
    assert groups[id(model.backbone.pos_embed)]["weight_decay"] == 0.0
    # mmengine: a custom key overrides every other rule -> the backbone's norms DO decay, and
    # the longer key 'pos_embed' wins over 'backbone', losing its lr_mult (our constructor
    # multiplies them instead, see the next test)
    assert groups[id(model.backbone.blocks[0].norm1.weight)]["weight_decay"] == 0.1
    assert groups[id(model.backbone.pos_embed)]["lr"] == 1.0


def test_layer_decay_combines_custom_keys_and_no_decay_rules():
    init_default_scope("visionfm")
    model = _Net()
    wrapper = build_optim_wrapper(model, dict(
        optimizer=dict(type="AdamW", lr=1.0, weight_decay=0.1),
        constructor="LayerDecayOptimWrapperConstructor",
        paramwise_cfg=dict(decay_rate=0.5, custom_keys={
            "backbone": dict(lr_mult=0.1), "neck": dict(lr_mult=2.0, decay_mult=0.5)})))  # fmt: skip
    groups = _groups_by_param(wrapper.optimizer)
    bb = model.backbone
    top = bb.num_layers + 1

    def lr(p):
        return groups[id(p)]["lr"]

    def wd(p):
        return groups[id(p)]["weight_decay"]

    qkv = bb.blocks[0].attn.qkv.weight
    assert lr(qkv) == pytest.approx(0.1 * 0.5 ** (top - 1))  # layer decay x lr_mult
    assert lr(bb.pos_embed) == pytest.approx(0.1 * 0.5**top) and wd(bb.pos_embed) == 0.0
    assert wd(qkv) == pytest.approx(0.1)
    assert wd(bb.blocks[0].norm1.weight) == 0.0 and wd(bb.blocks[0].attn.qkv.bias) == 0.0
    assert lr(model.neck[0].weight) == pytest.approx(2.0)
    assert wd(model.neck[0].weight) == pytest.approx(0.05)
    assert wd(model.neck[1].weight) == 0.0 and wd(model.neck[0].bias) == 0.0
    assert lr(model.head.weight) == 1.0 and wd(model.head.weight) == pytest.approx(0.1)


def test_layer_decay_options_can_turn_decay_back_on_and_typos_are_refused():
    init_default_scope("visionfm")
    model = _Net()
    wrapper = build_optim_wrapper(model, dict(
        optimizer=dict(type="AdamW", lr=1.0, weight_decay=0.1),
        constructor="LayerDecayOptimWrapperConstructor",
        paramwise_cfg=dict(norm_decay_mult=1.0, bias_decay_mult=0.5, no_decay_keys=())))  # fmt: skip
    groups = _groups_by_param(wrapper.optimizer)
    assert groups[id(model.neck[1].weight)]["weight_decay"] == pytest.approx(0.1)
    assert groups[id(model.head.bias)]["weight_decay"] == pytest.approx(0.05)
    assert groups[id(model.backbone.pos_embed)]["weight_decay"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="unknown paramwise_cfg key 'decay_rat'.*'decay_rate'"):
        build_optim_wrapper(model, dict(
            optimizer=dict(type="AdamW", lr=1.0), constructor="LayerDecayOptimWrapperConstructor",
            paramwise_cfg=dict(decay_rat=0.5)))  # fmt: skip


# ---- schedules -------------------------------------------------------------------------
def test_linear_warmup_then_cosine_per_iteration(tmp_path):
    """3 epochs x 3 iterations; warm-up from 0.1 x lr. mmengine's LinearLR(end=e) reaches the
    full lr at iteration e - 1 (``total_iters = end - begin - 1``)."""
    base, end, total = 0.05, 5, 9
    warm = end - 1
    runner = build_runner(_cfg(tmp_path, max_epochs=3, param_scheduler=[
        dict(type="LinearLR", start_factor=0.1, by_epoch=False, begin=0, end=end),
        dict(type="CosineAnnealingLR", by_epoch=True, begin=0, end=3, eta_min=0.0,
             convert_to_iter_based=True)]))  # fmt: skip
    runner.train()
    lrs = _recorder(runner).lrs
    assert len(lrs) == total
    for i, got in enumerate(lrs):
        warmup = 0.1 + 0.9 * min(i, warm) / warm
        expected = base * warmup * 0.5 * (1 + math.cos(math.pi * i / total))
        assert got == pytest.approx(expected, rel=1e-6), i


def test_linear_warmup_then_multistep_per_epoch(tmp_path):
    """Warm-up to iteration 4 (past the first epoch's end), then x0.1 after epochs 1 and 2."""
    base, warm = 0.05, 4
    runner = build_runner(_cfg(tmp_path, max_epochs=3, param_scheduler=[
        dict(type="LinearLR", start_factor=0.25, by_epoch=False, begin=0, end=warm + 1),
        dict(type="MultiStepLR", by_epoch=True, milestones=[1, 2], gamma=0.1)]))  # fmt: skip
    runner.train()
    lrs = _recorder(runner).lrs
    for i, got in enumerate(lrs):
        epoch = i // 3
        expected = base * (0.25 + 0.75 * min(i, warm) / warm) * 0.1**epoch
        assert got == pytest.approx(expected, rel=1e-6), i


# ---- torch.compile -----------------------------------------------------------------------
def test_compile_with_the_eager_backend_trains(tmp_path):
    """The plumbing: cfg.compile reaches torch.compile (dynamo traces, no code generation)."""
    runner = build_runner(_cfg(tmp_path, max_epochs=2, compile=dict(backend="eager")))
    runner.train()
    assert "train_step" in vars(runner.model)  # replaced by the compiled function
    losses = _recorder(runner).losses
    assert losses[-1] < losses[0]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                    reason="torch.compile's inductor backend needs a C++ compiler on CPU")  # fmt: skip
def test_compile_true_trains_with_inductor(tmp_path):
    """About 30 s on 2 CPU cores: inductor generates and compiles C++ for each graph."""
    plain = build_runner(_cfg(tmp_path / "plain"))
    plain.train()
    compiled = build_runner(_cfg(tmp_path / "compiled", compile=True))
    compiled.train()
    torch.testing.assert_close(
        _recorder(compiled).losses, _recorder(plain).losses, rtol=1e-4, atol=1e-5
    )


# ---- gradient checkpointing and frozen stages --------------------------------------------
@pytest.mark.parametrize("name", ["vit", "swin", "pvtv2", "timm_vit"])
def test_grad_checkpointing_gives_the_same_loss_and_grads(name):
    torch.manual_seed(0)
    plain = MODELS.build(dict(type="_TfClassifier", backbone=BACKBONES[name]))
    ckpt = MODELS.build(dict(type="_TfClassifier",
                             backbone=dict(BACKBONES[name], grad_checkpointing=True)))  # fmt: skip
    ckpt.load_state_dict(plain.state_dict())
    assert ckpt.backbone.grad_checkpointing and not plain.backbone.grad_checkpointing
    # float64: recomputation must give the same numbers, not merely close float32 noise
    plain, ckpt = plain.double(), ckpt.double()
    x, y = torch.randn(2, 3, 32, 32, dtype=torch.float64), torch.tensor([0, 2])
    results = []
    for model in plain, ckpt:
        model.train()
        loss = model(x, y)["loss"]
        loss.backward()
        results.append((loss.detach(), {n: p.grad for n, p in model.named_parameters()}))
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-12, atol=1e-12)
    for key, grad in results[0][1].items():
        torch.testing.assert_close(results[1][1][key], grad, rtol=1e-9, atol=1e-10, msg=key)


def test_frozen_stages_from_the_config_do_not_change_with_layer_decay(tmp_path):
    backbone = dict(BACKBONES["vit"], frozen_stages=1, drop_path_rate=0.1)
    cfg = _cfg(tmp_path, model=dict(type="_TfClassifier", backbone=backbone),
               dataset=dict(type="_TfImages"), batch_size=4, max_epochs=2,
               optim_wrapper=dict(optimizer=dict(type="AdamW", lr=1e-2, weight_decay=0.05),
                                  constructor="LayerDecayOptimWrapperConstructor",
                                  paramwise_cfg=dict(decay_rate=0.7)))  # fmt: skip
    runner = build_runner(cfg)
    before = _weights(runner)
    runner.train()
    after = _weights(runner)
    frozen = [k for k in before if k.startswith(("backbone.patch_embed", "backbone.pos_embed",
                                                 "backbone.cls_token", "backbone.blocks.0."))]  # fmt: skip
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    trained = [k for k in before if k.startswith(("backbone.blocks.2.", "head."))]
    assert all(not torch.equal(before[k], after[k]) for k in trained)
    assert not runner.model.backbone.blocks[0].training  # frozen blocks stay in eval mode


# ---- TensorBoard -----------------------------------------------------------------------
@pytest.mark.parametrize("installed", [False, True])
def test_tensorboard_backend_only_when_tensorboard_is_importable(monkeypatch, installed):
    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        if name == "tensorboard":
            return object() if installed else None
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    cfg = Config.fromfile(str(ROOT / "configs/_base_/default_runtime.py"))
    types = [b["type"] for b in cfg.visualizer.vis_backends]
    assert types == (["LocalVisBackend", "TensorboardVisBackend"] if installed
                     else ["LocalVisBackend"])  # fmt: skip
