"""Export a trained model for deployment: an ONNX file and / or a ``torch.export`` program.

    python tools/export.py CONFIG CHECKPOINT --out model.onnx [model.pt2] [--size H W] \
        [--static] [--opset 18] [--cfg-options k=v ...]

Each ``--out`` file's extension names its format (``.onnx``: ONNX, ``.pt2``: ``torch.export``
program); all come from one trace at ``--size`` (default 128 160: a size the model takes,
e.g. a multiple of the data preprocessor's ``size_divisor``). The file holds the network
from the data preprocessor's tensors to the heads' raw outputs: inputs ``images`` (B, 3, H, W)
normalised and padded, ``image_sizes`` (B, 2) each image's (h, w); outputs per head family
(DETR ``logits`` / ``boxes``, Mask2Former ``cls_logits`` / ``mask_logits``, dense heads
``maps``, top-down pose ``heatmaps``; ``visionfm.export.network``). The batch, height and
width stay free, except for models with adaptive pooling (UperNet), exported at ``--size``
with the reason printed; ``--static`` fixes one image of exactly ``--size``. ONNX files come
from the dynamo exporter (needs ``onnx`` and ``onnxscript``); deformable attention becomes
``GridSample`` (opset >= 16).

Run the file with the config's own pre- and post-processing::

    python tools/demo.py CONFIG model.onnx INPUT --backend onnxruntime
    Inferencer(CONFIG, "model.onnx")(image)               # the same predictions as eager

Models that are refused say why (prompted grounding heads, RoI pose, point models,
sliding-window segmentation).
"""

import argparse

from mmengine.config import DictAction

from visionfm.engine.checkpoint import load_model_weights
from visionfm.engine.cli import run_tool
from visionfm.engine.config import load_config
from visionfm.export import ExportError, export_model, format_of
from visionfm.export.runtime import fixed_axes
from visionfm.registry import MODELS


def main() -> None:
    parser = argparse.ArgumentParser(description="Export a visionfm model (ONNX, torch.export)")
    parser.add_argument("config")
    parser.add_argument("checkpoint")
    parser.add_argument(
        "--out", nargs="+", required=True, help="files to write: *.onnx and / or *.pt2"
    )
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (>= 16)")
    parser.add_argument(
        "--static", action="store_true", help="one image of exactly --size (batch fixed at 1)"
    )
    parser.add_argument(
        "--size", type=int, nargs=2, default=(128, 160), metavar=("H", "W"), help="traced size"
    )
    parser.add_argument("--cfg-options", nargs="+", action=DictAction)
    args = parser.parse_args()
    try:
        for path in args.out:
            format_of(path)
    except ExportError as err:
        parser.error(f"--out {err}")

    cfg = load_config(args.config, args.cfg_options)
    model = MODELS.build(cfg.model)
    meta = load_model_weights(model, args.checkpoint)
    model.eval()
    try:
        info = export_model(
            model,
            args.out,
            dynamic=not args.static,
            opset=args.opset,
            dataset_meta=meta.get("dataset_meta"),
            size=args.size,
        )
    except ExportError as err:
        parser.error(str(err))
    fixed = fixed_axes(info)
    print(
        f"wrote {', '.join(args.out)}: inputs {info['input_names']}, outputs "
        f"{info['output_names']}; "
        + (f"fixed: {fixed}" if fixed else "batch, height and width dynamic")
        + (f" ({info['fixed_size_reason']})" if info["fixed_size_reason"] else "")
    )


if __name__ == "__main__":
    run_tool(main)
