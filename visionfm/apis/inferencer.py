"""``Inferencer``: a trained model on images, arrays or lists of them, from Python.

inferencer = Inferencer("configs/dino/dino_vit-s_synthetic.py", "work_dirs/.../epoch_12.pth")
sample = inferencer("demo.jpg")            # DataSample, predictions in original pixels
samples = inferencer([img_a, "b.jpg"])     # list of DataSample
drawn = inferencer.visualize(img_rgb, sample)
exported = Inferencer("configs/dino/dino_vit-s_synthetic.py", "dino.onnx")  # tools/export.py

A published model runs from its folder alone: a Hugging Face ``save_pretrained`` folder
(``config.json``, the weights, ``preprocessor_config.json``) of a family that describes its
model (``visionfm.models.published``), or a ``tools/convert_checkpoint.py`` output folder
(``config.py`` + ``model.pth``); the config is the one ``convert_checkpoint`` writes (its model,
the processor's resize and normalisation, the ``id2label`` class names)::

    detector = Inferencer("deformable-detr/")          # HF folder, or a converted one
    sample = detector("street.jpg")                    # boxes in street.jpg's pixels

A prompted model (Grounding DINO) takes the prompt as ``text=``::

    grounding = Inferencer("configs/grounding_dino/...", "grounding-dino-tiny/")  # HF folder ok
    sample = grounding("street.jpg", text="person . red car .")   # class names: one per '.'
    sample = grounding("street.jpg", text="the man left of the red car")  # free text
    sample.phrases[int(sample.pred_instances.labels[0])]          # what the first box is

A point-cloud model's config (a ``PointModel``) gives a
:class:`~visionfm.apis.point_inferencer.PointInferencer`, which reads ``.ply`` / ``.npy`` /
``.txt`` files and Pointcept scene folders::

    segmenter = Inferencer("configs/point/...py", "epoch_50.pth")
    sample = segmenter("scene.ply")            # pred_segment: one class per point of the file
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.structures import BaseDataElement

from visionfm.data import Compose, DataSample
from visionfm.engine.checkpoint import load_model_weights
from visionfm.engine.config import load_config
from visionfm.export import ExportedModel, ExportError, open_backend
from visionfm.heads.base import Head
from visionfm.models.published_config import find_num_classes, published_config
from visionfm.registry import MODELS
from visionfm.text import parse_prompt
from visionfm.visualization import draw_sample

_GROUND_TRUTH_TRANSFORMS = ("LoadAnnotations",)
CONVERTED_FILES = ("config.py", "model.pth")  # what tools/convert_checkpoint.py writes


class Inferencer:
    """Run ``config``'s model with ``checkpoint``'s weights on images.

    ``config`` may also be a folder: a published model's (Hugging Face ``save_pretrained``
    layout) or a ``tools/convert_checkpoint.py`` output; ``checkpoint`` then defaults to its
    weights (see the module doc, :func:`resolve_config`).

    Inputs are image paths or uint8 RGB arrays (H, W, 3); grey (H, W) / (H, W, 1) arrays are
    replicated to RGB and RGBA (H, W, 4) arrays lose their alpha (logged once), as image
    files do; other arrays (channel-first, float, 16-bit) are refused naming their shape and
    dtype (:class:`~visionfm.data.transforms.LoadImage` reads both). They go through the
    config's test pipeline (without annotation loading). ``dataset_meta`` (``classes``, ``palette``,
    ``skeleton``, ...) comes from the checkpoint (the training dataset's metainfo, saved by
    the runner), else from the config's ``metainfo`` or its test dataset's ``metainfo``;
    without class names the labels are named by number, as many as the model's
    ``num_classes`` (``num_things_classes + num_stuff_classes`` for panoptic heads). Every
    returned sample carries ``metainfo['classes']``, so ``draw_sample(image, sample)`` names
    its labels without the Inferencer.

    ``score_thr`` filters what is returned, not only what is drawn: instances of a sample's
    ``pred_instances`` scoring below it are dropped, all their fields alike (``bboxes``,
    ``labels``, ``scores``, ``masks``, ``keypoints``; detection, instance / panoptic heads'
    instances, grounding, pose). Dense maps (``pred_sem_seg``, ``pred_panoptic_seg``,
    ``pred_depth``) have no per-instance score and are returned whole (a panoptic head keeps
    its own ``test_cfg`` thresholds). ``score_thr=0`` returns every prediction the model makes
    (e.g. the top 100 of a DETR).

    ``amp=True`` runs the model (data preprocessor, forward, post-processing) under
    ``torch.autocast`` in bfloat16 on the inference device: matmuls and convolutions in bf16,
    weights stay fp32; the predictions are returned as float32 again. Faster for large models
    on CPUs with bf16 matrix units (AMX) and on GPUs, not for tiny ones; scores and boxes
    carry bf16's rounding (``benchmarks/bench_detector.py`` measures both).

    ``checkpoint`` may also be a file of ``tools/export.py``: a ``.onnx`` file runs in ONNX
    Runtime (CPU), a ``.pt2`` ``torch.export`` program in PyTorch; ``backend`` (``'pytorch'``,
    ``'onnxruntime'``, ``'torch-export'``; default: from the extension) names it and refuses
    a file of another kind. The config's data preprocessor and the heads' own post-processing
    run around the exported network (``visionfm.export.ExportedModel``), so the predictions
    match the checkpoint's; ``dataset_meta`` comes from the file.

    A prompted model (a head that ``needs_text``) takes the prompt as ``text=`` in every
    call, parsed by :func:`~visionfm.text.parse_prompt`: class names ending in ``.``
    (``"cat . red car ."``) set the samples' ``text``, ``phrases`` and ``phrase_spans`` (one
    score per name); anything else is free text (``text`` only) and the head names each box
    by the words it matches. Either way the returned samples carry ``phrases``, which their
    ``pred_instances.labels`` index, instead of ``metainfo['classes']``. The text encoder
    caches a prompt's features, so the frames of a video with one prompt encode it once.
    """

    def __new__(cls, config: str | Config, *args, **kwargs):
        """A :class:`~visionfm.apis.point_inferencer.PointInferencer` when ``config``'s model
        is a point model (same arguments), else an Inferencer."""
        if cls is Inferencer:
            from .point_inferencer import PointInferencer, is_point_config

            options = kwargs.get("cfg_options", args[3] if len(args) > 3 else None)
            if is_point_config(config, options):
                cls = PointInferencer
        return super().__new__(cls)

    def __init__(
        self,
        config: str | Config,
        checkpoint: str | None = None,
        device: str | None = None,
        score_thr: float = 0.3,
        cfg_options: dict | None = None,
        amp: bool = False,
        backend: str | None = None,
    ):
        cfg, checkpoint = resolve_config(config, checkpoint, cfg_options)
        self.cfg = cfg
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = MODELS.build(cfg.model)
        self.prompted = any(isinstance(m, Head) and m.needs_text for m in self.model.modules())
        exported = open_backend(checkpoint, backend)
        if exported is not None and amp:
            raise ExportError(
                "amp=True runs the PyTorch model under autocast; an exported file runs as it "
                "was exported: leave amp out"
            )
        if exported is None:
            meta = load_model_weights(self.model, checkpoint) if checkpoint else {}
        else:  # the weights are in the file; the model gives the pre- and post-processing
            meta = {"dataset_meta": exported.meta.get("dataset_meta")}
        self.model.to(self.device).eval()
        self.exported = None if exported is None else ExportedModel(self.model, exported)
        test_dataset = (cfg.get("test_dataloader") or {}).get("dataset") or {}
        self.dataset_meta = dict(
            meta.get("dataset_meta") or cfg.get("metainfo") or test_dataset.get("metainfo") or {}
        )
        if not self.prompted and not self.dataset_meta.get("classes"):
            num_classes = find_num_classes(cfg.model)
            self.dataset_meta["classes"] = tuple(str(i) for i in range(num_classes or 0))
        pipeline = cfg.test_dataloader.dataset.pipeline
        self.pipeline = Compose([t for t in pipeline if t["type"] not in _GROUND_TRUTH_TRANSFORMS])
        self.score_thr = score_thr
        self.amp = amp

    @torch.no_grad()
    def __call__(
        self,
        inputs: str | os.PathLike | np.ndarray | Sequence[str | os.PathLike | np.ndarray],
        batch_size: int = 1,
        text: str | None = None,
    ) -> DataSample | list[DataSample]:
        """Predictions for ``inputs`` (one or a list), ``text`` the prompt of a prompted
        model (the same for every input; see the class doc)."""
        prompt = self._parse_prompt(text)
        single = isinstance(inputs, (str, os.PathLike, np.ndarray, Mapping))  # Mapping: a cloud
        items = [inputs] if single else list(inputs)
        results: list[DataSample] = []
        for start in range(0, len(items), batch_size):
            batch = [self._prepare(x) for x in items[start : start + batch_size]]
            if prompt is not None:  # after the pipeline: PackInputs makes the samples
                for item in batch:
                    _set_prompt(item["data_samples"], *prompt)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                step = self.model.test_step if self.exported is None else self.exported.test_step
                results.extend(step(pseudo_collate(batch)))
        for sample in results:
            if self.amp:
                _to_float32(sample)
            _drop_low_scores(sample, self.score_thr)
            if not self.prompted:
                sample.set_metainfo(dict(classes=tuple(self.dataset_meta["classes"])))
        return results[0] if single else results

    def _parse_prompt(self, text: str | None) -> tuple[str, list[str], list, str] | None:
        """``parse_prompt(text)`` for a prompted model (None for the others); a prompt that is
        missing, empty or given to a model that reads none is refused."""
        if not self.prompted:
            if text is not None:
                raise ValueError(
                    f"text={text!r} given, but this model ({type(self.model).__name__} from "
                    "the config) reads no prompt: leave text out"
                )
            return None
        if text is None:
            raise ValueError(
                "this model is prompted: pass text='cat . dog .' (class names, each ending "
                "in '.') or a phrase ('the dog left of the car')"
            )
        return parse_prompt(text)

    def _prepare(self, item: str | os.PathLike | np.ndarray) -> dict:
        """The test pipeline's output for one input; its ``LoadImage`` reads / checks it."""
        if isinstance(item, (str, os.PathLike)):
            return self.pipeline(dict(img_path=os.fspath(item), img_id=0))
        if not isinstance(item, np.ndarray):
            raise TypeError(
                f"inputs must be image paths or uint8 RGB numpy arrays (H, W, 3), or a list of "
                f"them; got {type(item).__name__}"
            )
        return self.pipeline(dict(img=item, img_id=0))

    def visualize(
        self, image: np.ndarray, sample: DataSample, score_thr: float | None = None
    ) -> np.ndarray:
        """Predictions of ``sample`` drawn with ``image`` ((H, W, 3) uint8 RGB, original size)
        by :func:`~visionfm.visualization.draw_sample`: instances, semantic and panoptic
        maps over the image, depth / disparity beside it. Boxes of a prompted model are
        named by the sample's ``phrases``."""
        return draw_sample(
            image,
            sample,
            self.dataset_meta.get("classes"),
            skeleton=self.dataset_meta.get("skeleton"),
            prefix="pred",
            score_thr=self.score_thr if score_thr is None else score_thr,
            palette=self.dataset_meta.get("palette"),
        )


def _set_prompt(
    sample: DataSample, caption: str, phrases: list[str], spans: list, kind: str
) -> None:
    """Put a parsed prompt on ``sample``: class names as ``phrases`` and their spans (a score
    per name); an expression as the ``text`` alone (free text: the head names the boxes)."""
    sample.text = caption
    sample.set_metainfo(dict(prompt_type=kind))
    if kind == "classes":
        sample.phrases = list(phrases)
        sample.phrase_spans = [[list(span) for span in phrase] for phrase in spans]


def _drop_low_scores(sample: DataSample, score_thr: float) -> None:
    """``sample.pred_instances`` (N instances) without those scoring below ``score_thr``, every
    per-instance field indexed alike, in place; a sample without scored instances is kept."""
    instances = sample.get("pred_instances")
    if instances is not None and "scores" in instances and score_thr > 0:
        sample.pred_instances = instances[instances.scores >= score_thr]


def _to_float32(element: BaseDataElement) -> None:
    """Every reduced-precision float tensor of ``element`` (and of its nested elements, e.g.
    ``pred_instances``) as float32, in place."""
    for key, value in list(element.items()):
        if isinstance(value, BaseDataElement):
            _to_float32(value)
        elif isinstance(value, torch.Tensor) and value.dtype in (torch.bfloat16, torch.float16):
            setattr(element, key, value.float())


def resolve_config(
    config: str | os.PathLike | Config, checkpoint: str | None, cfg_options: dict | None = None
) -> tuple[Config, str | None]:
    """``(config, checkpoint)`` for the Inferencer / demo: a config file or object as given;
    a ``convert_checkpoint`` output folder -> its ``config.py`` and ``model.pth``; a published
    model's folder -> the config ``convert_checkpoint`` would write for it
    (:func:`~visionfm.models.published_config.published_config`) and the folder's weights."""
    if isinstance(config, Config):
        return config, checkpoint
    if not os.path.isdir(config):
        return load_config(os.fspath(config), cfg_options), checkpoint
    converted = [os.path.join(config, name) for name in CONVERTED_FILES]
    if all(os.path.isfile(path) for path in converted):
        return load_config(converted[0], cfg_options), checkpoint or converted[1]
    cfg = Config(published_config(config)[0])
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg, checkpoint or os.fspath(config)
