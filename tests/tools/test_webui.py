"""tools/webui.py served on localhost and driven through ``gradio_client`` as the page drives
it: the boxes, scores and labels it returns and the image it draws are the Inferencer's on
the same image and weights (an image, every frame of a video, a live webcam frame, a
published model's folder, a grounding model's prompt), the score threshold filters them, the
prompt box shows for prompted models only; bad input is an error message and the server goes
on.

Not driven here: the browser's side of the webcam (its camera, the live tab's frame stream);
the test checks that the page offers the webcam and that the stream's event gives the
Inferencer's boxes on a frame."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

REASON = "gradio is the web demo's optional extra (pip install -e '.[webui]'; dev installs it)"
gradio = pytest.importorskip("gradio", reason=REASON)
gradio_client = pytest.importorskip("gradio_client", reason=REASON)

from _helpers import write_tiny_bert, write_tiny_detr  # noqa: E402
from gradio_client import handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from visionfm.apis import Inferencer  # noqa: E402
from visionfm.data.video import VideoWriter, open_source  # noqa: E402
from visionfm.engine import load_config  # noqa: E402
from visionfm.registry import MODELS  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "configs" / "dino" / "dino_vit-t_synthetic.py")
GROUNDING = str(ROOT / "configs" / "grounding_dino" / "grounding-dino_vit-t_synthetic.py")
IMAGE = np.random.default_rng(0).integers(0, 255, (72, 96, 3), dtype=np.uint8)  # RGB


def _load_webui():
    spec = importlib.util.spec_from_file_location("_webui", ROOT / "tools" / "webui.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    """The demo DINO's random weights, weights of another model, the image as a JPEG and the
    JPEG cut in half."""
    folder = tmp_path_factory.mktemp("webui")
    torch.manual_seed(0)
    model = MODELS.build(load_config(CONFIG).model)
    torch.save({"state_dict": model.state_dict()}, folder / "random.pth")
    cv2.imwrite(str(folder / "image.jpg"), cv2.cvtColor(IMAGE, cv2.COLOR_RGB2BGR))
    data = (folder / "image.jpg").read_bytes()
    (folder / "broken.jpg").write_bytes(data[: len(data) // 2])
    torch.save({"state_dict": {"head.other": torch.zeros(1)}}, folder / "mismatched.pth")
    names = ("random.pth", "mismatched.pth", "image.jpg", "broken.jpg")
    return {name.split(".")[0]: str(folder / name) for name in names}


@pytest.fixture(scope="module")
def client():
    """A client of the page served on a free localhost port (gradio's server thread)."""
    app = _load_webui().build_app(device="cpu")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app.launch(
        server_name="127.0.0.1",
        server_port=port,
        prevent_thread_lock=True,
        show_error=True,
        quiet=True,
    )
    try:
        yield gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False)
    finally:
        app.close()


def _predict(client, image: str, checkpoint: str, text: str = "", score_thr: float = 0.3):
    return client.predict(
        handle_file(image),
        CONFIG,
        checkpoint,
        text,
        score_thr,
        api_name="/predict_image",
    )


def test_an_image_gets_the_inferencers_boxes_and_drawing(client, files):
    reference = Inferencer(CONFIG, files["random"], device="cpu", score_thr=0.0)
    everything = reference(files["image"]).pred_instances
    threshold = float(everything.scores.median())  # random weights: about half above it
    reference.score_thr = threshold
    expected = reference(files["image"])
    drawn_png, results = _predict(client, files["image"], files["random"], score_thr=threshold)

    instances = results["instances"]
    pred = expected.pred_instances
    assert 0 < len(instances) == len(pred) < len(everything)
    assert [row["box"] for row in instances] == pred.bboxes.tolist()
    assert [row["score"] for row in instances] == pred.scores.tolist()
    assert [row["label"] for row in instances] == pred.labels.tolist()
    # the checkpoint has no class names: the Inferencer numbers the labels
    assert [row["name"] for row in instances] == [str(label) for label in pred.labels.tolist()]
    assert results["image_size"] == list(IMAGE.shape[:2])
    drawn = cv2.cvtColor(cv2.imread(drawn_png), cv2.COLOR_BGR2RGB)
    decoded = cv2.cvtColor(cv2.imread(files["image"]), cv2.COLOR_BGR2RGB)  # the JPEG's pixels
    assert np.array_equal(drawn, reference.visualize(decoded, expected))


@pytest.mark.parametrize(
    "image, checkpoint, text, message",
    [
        ("broken", "random", "", "truncated JPEG"),
        ("image", "", "", "is a config file: give its checkpoint"),
        ("image", "missing", "", "missing.pth"),
        ("image", "mismatched", "", "does not match the model"),
        ("image", "random", "a cat .", "reads no prompt"),
    ],
)
def test_bad_input_is_an_error_message_and_the_server_goes_on(
    client, files, image, checkpoint, text, message
):
    weights = {
        "random": files["random"],
        "": "",
        "missing": str(Path(files["random"]).parent / "missing.pth"),
        "mismatched": files["mismatched"],
    }
    with pytest.raises(AppError, match=message):
        _predict(client, files[image], weights[checkpoint], text)
    _, results = _predict(client, files["image"], files["random"], score_thr=0.0)
    assert len(results["instances"]) == 30  # the config's num_queries


def test_a_point_cloud_model_is_refused_naming_the_tool_for_it(client, files):
    point = str(ROOT / "configs" / "point_seg" / "ptv3_synthetic-scenes.py")
    with pytest.raises(AppError, match="is a point-cloud model.*run tools/demo.py"):
        client.predict(handle_file(files["image"]), point, "", "", 0.3, api_name="/predict_image")


def test_a_video_gets_the_inferencers_boxes_on_every_frame(client, files, tmp_path):
    clip = str(tmp_path / "clip.mp4")
    with VideoWriter(clip, fps=5.0) as writer:
        for shift in (0, 8, 16):
            writer.write(np.roll(IMAGE, shift, axis=1))
    frames = [frame for _, frame in open_source(clip)]  # as decoded
    reference = Inferencer(CONFIG, files["random"], device="cpu", score_thr=0.0)
    drawn_mp4, results = client.predict(
        handle_file(clip), CONFIG, files["random"], "", 0.0, api_name="/predict_video"
    )
    assert [row["frame"] for row in results] == [0, 1, 2]
    for expected, row in zip(reference(frames), results, strict=True):
        assert _boxes(row["instances"]) == _expected(expected)
    drawn = [frame for _, frame in open_source(drawn_mp4)]
    assert len(drawn) == 3 and drawn[0].shape == IMAGE.shape


def _boxes(rows: list[dict]) -> dict[str, list]:
    """The boxes, scores, labels and names of a summary's ``instances``."""
    return {key: [row[key] for row in rows] for key in ("box", "score", "label", "name")}


def _expected(sample) -> dict[str, list]:
    """:func:`_boxes` of an Inferencer's ``sample``, named by its classes or phrases."""
    pred = sample.pred_instances
    names = sample.get("phrases") or sample.metainfo["classes"]
    labels = pred.labels.tolist()
    return dict(box=pred.bboxes.tolist(), score=pred.scores.tolist(), label=labels,
                name=[names[label] for label in labels])  # fmt: skip


def test_the_page_offers_the_webcam_and_a_live_frame_gets_the_inferencers_boxes(client, files):
    inputs = {c["props"]["label"]: c for c in client.config["components"]
              if c["type"] in ("image", "video") and c["props"]["label"] != "Predictions"}  # fmt: skip
    assert {label: c["props"]["sources"] for label, c in inputs.items()} == {
        "Image": ["upload", "webcam", "clipboard"],
        "Video": ["upload", "webcam"],
        "Webcam": ["webcam"],
    }
    assert inputs["Webcam"]["props"]["streaming"] is True
    (live,) = [d for d in client.config["dependencies"] if d["api_name"] == "predict_webcam"]
    assert live["targets"] == [[inputs["Webcam"]["id"], "stream"]]
    # gradio_client cannot hold a stream open: the stream's function, called as gradio does
    reference = Inferencer(CONFIG, files["random"], device="cpu", score_thr=0.0)
    decoded = cv2.cvtColor(cv2.imread(files["image"]), cv2.COLOR_BGR2RGB)
    drawn, results = _load_webui().predict_frame(decoded, CONFIG, files["random"], "", 0.0, "cpu")
    expected = reference(decoded)
    assert _boxes(results["instances"]) == _expected(expected)
    assert np.array_equal(drawn, reference.visualize(decoded, expected))


def test_a_published_model_folder_runs_without_a_checkpoint(client, files, tmp_path):
    pytest.importorskip("transformers")
    write_tiny_detr(tmp_path / "detr")
    folder = str(tmp_path / "detr")
    expected = Inferencer(folder, device="cpu", score_thr=0.0)(files["image"])
    _, results = client.predict(
        handle_file(files["image"]), folder, "", "", 0.0, api_name="/predict_image"
    )
    assert _boxes(results["instances"]) == _expected(expected)
    assert results["instances"][0]["name"].startswith("LABEL_")  # config.json's id2label


@pytest.fixture(scope="module")
def grounding(tmp_path_factory) -> tuple[str, str]:
    """A tiny Grounding DINO (tiny BERT, one layer everywhere, boxes at any score) as a config
    file and random weights."""
    pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("grounding")
    options = {
        "model.text_encoder.path": write_tiny_bert(folder / "bert"),
        "model.backbone.depth": 1,
        "model.head.encoder.num_layers": 1,
        "model.head.decoder.num_layers": 1,
        "model.head.test_cfg.box_thr": 0.0,
    }
    load_config(GROUNDING, options).dump(folder / "tiny_grounding.py")
    torch.manual_seed(0)
    model = MODELS.build(load_config(str(folder / "tiny_grounding.py")).model)
    torch.save({"state_dict": model.state_dict()}, folder / "random.pth")
    return str(folder / "tiny_grounding.py"), str(folder / "random.pth")


def test_the_prompt_box_shows_for_a_prompted_model_and_reaches_it(client, files, grounding):
    assert client.predict(GROUNDING, api_name="/prompt_box")["visible"] is True
    assert client.predict(grounding[0], api_name="/prompt_box")["visible"] is True
    hidden = client.predict(CONFIG, api_name="/prompt_box")
    assert hidden["visible"] is False and hidden["value"] == ""
    for unreadable in ("no/such/config.py", str(ROOT / "tools" / "webui.py")):
        assert client.predict(unreadable, api_name="/prompt_box")["visible"] is True

    prompt = "red circle . person ."
    reference = Inferencer(*grounding, device="cpu", score_thr=0.0)
    expected = reference(files["image"], text=prompt)
    _, results = client.predict(
        handle_file(files["image"]), *grounding, prompt, 0.0, api_name="/predict_image"
    )
    assert results["phrases"] == ["red circle", "person"]
    assert len(results["instances"]) > 0
    assert _boxes(results["instances"]) == _expected(expected)
    with pytest.raises(AppError, match="this model is prompted"):
        client.predict(handle_file(files["image"]), *grounding, "", 0.0, api_name="/predict_image")


def test_without_gradio_the_tool_names_the_extra_to_install():
    run = "import runpy, sys; sys.modules['gradio'] = None; runpy.run_path('tools/webui.py')"
    done = subprocess.run([sys.executable, "-c", run], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 1
    assert (
        "tools/webui.py needs gradio" in done.stderr and "pip install -e '.[webui]'" in done.stderr
    )
