"""A web demo: a model's predictions on an uploaded image or video or the webcam, in a browser.

    pip install -e ".[webui]"                                   # gradio
    python tools/webui.py [CONFIG [CHECKPOINT]] [--device cpu] [--port 7860] [--share]

then open http://127.0.0.1:7860. Pick the model in the page: a config file and its checkpoint,
or a model folder (a published model's Hugging Face ``save_pretrained`` folder or a
``tools/convert_checkpoint.py`` output) with the checkpoint left empty; CONFIG and CHECKPOINT
given here fill those fields. A model loads at its first request and the last
``CACHED_MODELS`` stay loaded, so a new image, threshold or prompt only runs the model again.

The Image tab takes an uploaded or pasted image or a webcam shot; the Video tab an uploaded
video or a webcam recording (drawn into an mp4 frame by frame; the browser plays it once
gradio has converted it with ffmpeg, else download it); the Webcam (live) tab streams the
camera to the model, a frame every ``LIVE_FRAME_S`` seconds. Each shows the predictions drawn as ``tools/demo.py`` draws them
(``Inferencer.visualize``) and the raw results as json
(:func:`visionfm.apis.summary.summarize`: boxes, scores, labels and names; the classes'
pixel fractions of a segmentation; depth statistics), one entry per frame for a video. The
score threshold filters both (``Inferencer(score_thr=...)``). A grounding model needs the text
prompt (class names ``"cat . red car ."`` or a phrase); the prompt box hides, emptied, when the
picked model's config has no prompted head (:func:`reads_prompt`), and a prompt given to such a
model anyway is refused. Point-cloud models are for ``tools/demo.py``. A bad input (a corrupt
image, a missing checkpoint, a config typo) is an error message in the page, and the server
goes on.

The page's events are also an API (``gradio_client``)::

    from gradio_client import Client, handle_file
    client = Client("http://127.0.0.1:7860/")
    drawn_png, results = client.predict(handle_file("image.jpg"), CONFIG, CHECKPOINT, "", 0.3,
                                        api_name="/predict_image")
    drawn_mp4, per_frame = client.predict(handle_file("clip.mp4"), CONFIG, CHECKPOINT, "", 0.3,
                                          api_name="/predict_video")
    client.predict(CONFIG, api_name="/prompt_box")  # {"visible": bool, ...}: the prompt box

The live webcam stream (``/predict_webcam``) is a browser stream, which gradio_client does not
speak.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

try:
    import gradio as gr
except ImportError as error:  # an optional extra
    raise SystemExit(f"tools/webui.py needs gradio ({error}): pip install -e '.[webui]'") from error

from visionfm.apis import Inferencer
from visionfm.apis.inferencer import resolve_config
from visionfm.apis.point_inferencer import is_point_config
from visionfm.apis.summary import summarize
from visionfm.data.video import VideoWriter, open_source
from visionfm.engine.cli import USER_ERRORS
from visionfm.heads.base import Head
from visionfm.registry import MODELS

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
CACHED_MODELS = 2
LIVE_FRAME_S = 0.5  # the live webcam tab sends a frame this often (seconds)
# errors of the user's input, shown in the page; anything else is a bug and keeps its traceback
INPUT_ERRORS = (*USER_ERRORS, ValueError, OSError)
# the cached Inferencers are shared by the page's events: one runs at a time (score_thr is
# set per call)
_RUN = threading.Lock()


@functools.lru_cache(maxsize=CACHED_MODELS)
def load_model(config: str, checkpoint: str | None, device: str | None) -> Inferencer:
    """The Inferencer of ``config`` (a file or a model folder) with ``checkpoint``'s weights,
    kept for the next calls; a config file without weights and point-cloud models are
    refused."""
    if not config:
        raise ValueError("pick a model: a config file and its checkpoint, or a model folder")
    if is_point_config(config):
        raise ValueError(
            f"{config} is a point-cloud model; the web demo shows images and videos: run "
            f"tools/demo.py {config} CHECKPOINT scene.ply"
        )
    if checkpoint is None and not os.path.isdir(config):
        raise ValueError(
            f"{config} is a config file: give its checkpoint (only a model folder, Hugging "
            "Face or converted, runs without one)"
        )
    return Inferencer(config, checkpoint, device=device)


def predict(
    inferencer: Inferencer, frame: np.ndarray, text: str, score_thr: float
) -> tuple[np.ndarray, dict]:
    """``(drawn (H', W', 3) uint8 RGB, summarize(sample))`` of ``inferencer`` on ``frame``
    ((H, W, 3) uint8 RGB), ``text`` its prompt ('' for none)."""
    with _RUN:
        inferencer.score_thr = score_thr
        sample = inferencer(frame, text=text.strip() or None)
        return inferencer.visualize(frame, sample), summarize(sample)


def predict_image(
    image: str | None,
    config: str | None,
    checkpoint: str | None,
    text: str | None,
    score_thr: float,
    device: str | None = None,
) -> tuple[np.ndarray, dict]:
    """The predictions of the model of ``config`` + ``checkpoint`` (see :func:`load_model`)
    on the image file ``image``: drawn, and as json (see the module doc)."""
    if not image:
        raise gr.Error("no image: upload or paste one, or take a webcam shot")
    with _shown_in_page():
        source = open_source(image)
        if source.kind != "image":
            raise ValueError(f"{os.path.basename(image)} is not an image file")
        ((_, frame),) = source  # read here: a corrupt file raises
    return predict_frame(frame, config, checkpoint, text, score_thr, device)


def predict_frame(
    frame: np.ndarray | None,
    config: str | None,
    checkpoint: str | None,
    text: str | None,
    score_thr: float,
    device: str | None = None,
) -> tuple[np.ndarray, dict]:
    """:func:`predict_image` on ``frame`` ((H, W, 3) uint8 RGB: a live webcam frame)."""
    if frame is None:
        raise gr.Error("no webcam frame: allow the browser to use the camera")
    with _shown_in_page():
        inferencer = load_model(*_model_fields(config, checkpoint), device)
        return predict(inferencer, frame, text or "", score_thr)


def predict_video(
    video: str | None,
    config: str | None,
    checkpoint: str | None,
    text: str | None,
    score_thr: float,
    out_dir: str,
    device: str | None = None,
    progress: gr.Progress | None = None,
) -> tuple[str, list[dict]]:
    """The predictions on the video file ``video``: an mp4 in ``out_dir`` of the drawn frames
    (the input's fps) and the json of each frame (``frame``: its index from 0, then
    ``summarize``'s); ``progress`` follows the frames."""
    if not video:
        raise gr.Error("no video: upload one or record one with the webcam")
    with _shown_in_page():
        inferencer = load_model(*_model_fields(config, checkpoint), device)
        source = open_source(video)
        if source.kind != "video":
            raise ValueError(f"{os.path.basename(video)} is not a video file")
        frames = source if progress is None else progress.tqdm(source, total=len(source))
        handle, path = tempfile.mkstemp(suffix=".mp4", prefix=f"{Path(video).stem}_", dir=out_dir)
        os.close(handle)
        results = []
        with VideoWriter(path, source.fps) as writer:
            for _, frame in frames:
                drawn, summary = predict(inferencer, frame, text or "", score_thr)
                writer.write(drawn)
                results.append({"frame": len(results), **summary})
    if not results:
        raise gr.Error(f"{os.path.basename(video)} has no frame that can be read")
    return path, results


def reads_prompt(config: str | None) -> bool | None:
    """Whether the model of ``config`` (a config file or a model folder) reads a text prompt
    (a head class that ``needs_text``), from the config alone: no weights are read, so the
    page can show or hide the prompt box as soon as a model is picked. None when ``config``
    is empty or cannot be read (the run says why)."""
    config = (config or "").strip()
    if not config:
        return None
    try:
        cfg, _ = resolve_config(config, None)
    except Exception:  # a hint only: a config that cannot be read is reported by the run
        return None
    return _has_prompted_head(cfg.model)


def _has_prompted_head(node) -> bool:
    """Whether a ``type`` in the model config ``node`` (nested dicts / lists) is a Head class
    with ``needs_text``."""
    if isinstance(node, (list, tuple)):
        return any(_has_prompted_head(value) for value in node)
    if not isinstance(node, dict):
        return False
    kind = node.get("type")
    cls = MODELS.get(kind) if isinstance(kind, str) else kind
    if isinstance(cls, type) and issubclass(cls, Head) and cls.needs_text:
        return True
    return any(_has_prompted_head(value) for value in node.values())


def _model_fields(config: str | None, checkpoint: str | None) -> tuple[str, str | None]:
    """The page's config and checkpoint fields as :func:`load_model` takes them: spaces
    around them stripped, no checkpoint as None."""
    return (config or "").strip(), (checkpoint or "").strip() or None


@contextlib.contextmanager
def _shown_in_page() -> Iterator[None]:
    """An error of the user's input (:data:`INPUT_ERRORS`) raised inside becomes a
    ``gr.Error``, which the page shows with its message."""
    try:
        yield
    except INPUT_ERRORS as error:
        raise gr.Error(str(error)) from error


def shipped_configs() -> list[str]:
    """The configs under ``configs/`` (not ``_base_``), as paths from the current folder."""
    paths = (p for p in CONFIGS.rglob("*.py") if "_base_" not in p.parts)
    return sorted(os.path.relpath(p) for p in paths)


def build_app(config: str = "", checkpoint: str = "", device: str | None = None) -> gr.Blocks:
    """The page (see the module doc), its model fields filled with ``config`` and
    ``checkpoint``; models run on ``device`` (default: CUDA when there is one). Its events'
    API names: ``/predict_image``, ``/predict_video``, ``/predict_webcam`` (the live stream),
    ``/prompt_box`` (the prompt box's visibility for a picked config)."""

    def image_event(image, config, checkpoint, text, score_thr):
        return predict_image(image, config, checkpoint, text, score_thr, device)

    def webcam_event(frame, config, checkpoint, text, score_thr):
        return predict_frame(frame, config, checkpoint, text, score_thr, device)

    def prompt_box(config):  # hidden, and emptied, for a model known to read no prompt
        if reads_prompt(config) is False:
            return gr.update(visible=False, value="")
        return gr.update(visible=True)

    videos = tempfile.TemporaryDirectory(prefix="visionfm-webui-")  # removed with the app

    def video_event(video, config, checkpoint, text, score_thr, progress=gr.Progress()):  # noqa: B008
        out = videos.name
        return predict_video(video, config, checkpoint, text, score_thr, out, device, progress)

    with gr.Blocks(title="visionfm demo", analytics_enabled=False) as app:
        gr.Markdown("## visionfm demo: a model's predictions on an image, a video or a webcam")
        with gr.Row():
            model = gr.Dropdown(
                shipped_configs(),
                value=config or None,
                allow_custom_value=True,
                label="Config file, or a model folder (Hugging Face / converted)",
            )
            weights = gr.Textbox(checkpoint, label="Checkpoint (empty for a model folder)")
        with gr.Row():
            text = gr.Textbox(
                label="Text prompt of a grounding model: 'cat . red car .' or a phrase",
                visible=reads_prompt(config) is not False,
            )
            score_thr = gr.Slider(0.0, 1.0, value=0.3, step=0.01, label="Score threshold")
        settings = [model, weights, text, score_thr]
        with gr.Tab("Image"):
            with gr.Row():
                image = gr.Image(
                    type="filepath", sources=["upload", "webcam", "clipboard"], label="Image"
                )
                drawn = gr.Image(label="Predictions", format="png", interactive=False)
            image_button = gr.Button("Run", variant="primary")
            image_json = gr.JSON(label="Raw results")
        with gr.Tab("Video"):
            with gr.Row():
                video = gr.Video(sources=["upload", "webcam"], label="Video")
                drawn_video = gr.Video(label="Predictions", interactive=False)
            video_button = gr.Button("Run", variant="primary")
            video_json = gr.JSON(label="Raw results, per frame")
        with gr.Tab("Webcam (live)"):
            with gr.Row():
                camera = gr.Image(sources=["webcam"], streaming=True, label="Webcam")
                drawn_live = gr.Image(label="Predictions", interactive=False)
            live_json = gr.JSON(label="Raw results")
        model.change(prompt_box, model, text, api_name="prompt_box")
        image_button.click(
            image_event, [image, *settings], [drawn, image_json], api_name="predict_image"
        )
        video_button.click(
            video_event, [video, *settings], [drawn_video, video_json], api_name="predict_video"
        )
        camera.stream(
            webcam_event,
            [camera, *settings],
            [drawn_live, live_json],
            stream_every=LIVE_FRAME_S,
            concurrency_limit=1,
            api_name="predict_webcam",
        )
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="visionfm web demo (gradio)")
    parser.add_argument("config", nargs="?", default="", help="config file or model folder")
    parser.add_argument("checkpoint", nargs="?", default="", help="weights of a config file")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if any)")
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to serve the network")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--share", action="store_true", help="also a public gradio.live link")
    args = parser.parse_args()
    app = build_app(args.config, args.checkpoint, args.device)
    app.launch(server_name=args.host, server_port=args.port, share=args.share, show_error=True)


if __name__ == "__main__":
    main()
