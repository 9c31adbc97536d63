# Runtime settings every visionfm config inherits.
default_scope = "visionfm"

default_hooks = dict(
    timer=dict(type="IterTimerHook"),
    logger=dict(type="LoggerHook", interval=20),
    param_scheduler=dict(type="ParamSchedulerHook"),
    checkpoint=dict(type="CheckpointHook", interval=1, max_keep_ckpts=3),
    sampler_seed=dict(type="DistSamplerSeedHook"),
)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
    dist_cfg=dict(backend="nccl"),  # tools/train.py switches to gloo when there is no GPU
)

log_processor = dict(type="LogProcessor", window_size=20, by_epoch=True)
log_level = "INFO"
load_from = None
resume = False
randomness = dict(seed=0)

# Scalars also go to TensorBoard when the `tensorboard` package is installed (it is optional;
# mmengine's TensorboardVisBackend would fail at the first write without it). `__import__`,
# not an import statement: an import would switch mmengine to its lazy-import config style.
vis_backends = [dict(type="LocalVisBackend")] + (
    [dict(type="TensorboardVisBackend")]
    if __import__("importlib.util").util.find_spec("tensorboard") is not None
    else []
)
# No `name`: the runner names it after the run (config name + timestamp), so that a second
# run in one process (a notebook, the tests) writes to its own work dir, not the first one's.
visualizer = dict(type="Visualizer", vis_backends=vis_backends)
