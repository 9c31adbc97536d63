"""Run a trained model on an image, a folder, a video file, a webcam or point-cloud files.

    python tools/demo.py CONFIG CHECKPOINT INPUT [--out DIR] [--score-thr 0.3] [--device cpu]
                                                [--amp]
    python tools/demo.py DET_CONFIG DET_CHECKPOINT INPUT --pose-config POSE_CONFIG \
        --pose-checkpoint POSE_CHECKPOINT      # detection, then top-down pose per person
        [--cfg-options k=v ...]                # both models (data_root=..., ...)
        [--pose-cfg-options k=v ...]           # the pose model alone, after --cfg-options
    python tools/demo.py GROUNDING_CONFIG CHECKPOINT INPUT --text "person . red car ."
                                               # a prompted model: class names or a phrase
    python tools/demo.py MODEL_FOLDER INPUT    # a published model's Hugging Face folder, or
                                               # a tools/convert_checkpoint.py output folder
    python tools/demo.py CONFIG CHECKPOINT VIDEO --track [--batch-size 8]   # track objects
    python tools/demo.py CONFIG model.onnx INPUT [--backend onnxruntime]  # an exported model

CONFIG may be the config a training run saved in its work dir (``WORK_DIR/NAME.py``), which
holds that run's ``--cfg-options``. INPUT: an image file, a folder of images, a video file,
or a webcam index such as 0.
Images are written to OUT as PNGs with the predictions drawn (``Inferencer.visualize``, i.e.
``visionfm.visualization.draw_sample``: boxes, masks, keypoints, semantic and panoptic
maps over the image, depth beside it); a video becomes OUT/<name>.mp4 at the input's fps,
its frames drawn the same way (the input's size for detections, wider with dense panels); a
webcam is recorded to OUT/webcam.mp4 (stop with Ctrl-C or --max-frames), the frame rate
drawn at the top left. Video frames go through the model ``--batch-size`` at a time (a webcam's
one at a time); the progress bar shows frames per second.

``--track`` follows the detected objects from frame to frame (``visionfm.tracking.ByteTracker``:
detections at or above ``--score-thr`` start and continue tracks, those down to
``--track-low-thr`` only continue them) and draws each box with its track id, one colour per
id; the tracks are also written to OUT/<name>.txt in MOT-challenge format
(``frame,id,x,y,w,h,score,-1,-1,-1``, frames from 1), which ``tools/eval_tracking.py`` scores.
A folder of images is tracked as the frames of one video, in file-name order.

MODEL_FOLDER: a Hugging Face ``save_pretrained`` folder of a published family
(``config.json``, weights, ``preprocessor_config.json``) runs with the config
``tools/convert_checkpoint.py`` would write for it (the processor's resize and normalisation,
the ``id2label`` class names drawn); a converted folder runs its ``config.py`` + ``model.pth``.

A prompted model (Grounding DINO; CHECKPOINT may be a Hugging Face ``save_pretrained``
folder) needs ``--text``: class names each ending in "." (``"cat . red car ."``) or one
free-text phrase (``"the dog left of the car"``); boxes are captioned with the phrase they
match. The prompt is the same for every frame, so the text encoder runs once per input.

A point-cloud model (a config whose model is a ``PointModel``) takes a ``.ply`` / ``.npy`` /
``.txt`` file, a Pointcept scene folder (``coord.npy`` ...) or a folder of them, and writes
OUT/<name>.png: the cloud coloured by predicted class with a legend (segmentation), or in
its colours titled with the predicted class and score (classification); ``--turntable``
adds OUT/<name>.mp4, the view turning 360 degrees in ``--frames`` frames. ``--fields`` names
a ``.npy`` / ``.txt`` file's columns (default: coord, then the model's input features). A
bad file (NaN coordinates, a .ply without x/y/z) is an error when it is the input, and is
reported by name and skipped in a folder::

    python tools/demo.py POINT_CONFIG CHECKPOINT scene.ply --out out/ --turntable
"""

import argparse
import itertools
import os
import time
from pathlib import Path

import cv2
from mmengine.config import DictAction
from tqdm import tqdm

from visionfm.apis import Inferencer, PointInferencer, TopDownPipeline
from visionfm.apis.point_inferencer import list_point_inputs
from visionfm.apis.summary import label_names
from visionfm.data.mot_format import write_mot
from visionfm.data.video import VideoWriter, open_source
from visionfm.engine.cli import run_tool
from visionfm.export import BACKENDS, ExportError
from visionfm.tracking import ByteTracker
from visionfm.visualization import draw_fps, draw_tracks


def main() -> None:
    parser = argparse.ArgumentParser(
        description="visionfm demo on images / videos / webcam / point clouds"
    )
    parser.add_argument("config", help="config file, or a model folder (then no CHECKPOINT)")
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="[CHECKPOINT] INPUT",
        help="image, folder, video, webcam, point file",
    )
    parser.add_argument("--out", default="outputs/demo")
    parser.add_argument("--score-thr", type=float, default=0.3)
    parser.add_argument("--device", default=None)
    parser.add_argument(
        "--amp", action="store_true", help="bf16 autocast (faster for ViT-B-sized models)"
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="run CHECKPOINT as a PyTorch checkpoint or as a tools/export.py file (.onnx in "
        "onnxruntime, .pt2 torch.export); default: from its extension",
    )
    parser.add_argument("--max-frames", type=int, default=None, help="stop after N frames")
    parser.add_argument("--batch-size", type=int, default=1, help="video frames per forward pass")
    parser.add_argument("--track", action="store_true", help="track objects across frames")
    parser.add_argument(
        "--track-low-thr",
        type=float,
        default=0.1,
        help="--track: detections from this score up to --score-thr continue tracks",
    )
    parser.add_argument("--cfg-options", nargs="+", action=DictAction)
    parser.add_argument("--pose-config", help="top-down pose model run on the person boxes")
    parser.add_argument("--pose-checkpoint", help="weights of --pose-config")
    parser.add_argument(
        "--pose-cfg-options",
        nargs="+",
        action=DictAction,
        help="overrides of --pose-config alone (--cfg-options apply to both models)",
    )
    parser.add_argument("--person-class", default="person", help="the detector's person class")
    parser.add_argument(
        "--text", help="prompt of a grounding model: 'cat . red car .' or a free-text phrase"
    )
    parser.add_argument(
        "--turntable", action="store_true", help="point clouds: also an mp4 turning the view"
    )
    parser.add_argument("--frames", type=int, default=60, help="frames of a --turntable video")
    parser.add_argument(
        "--fields", nargs="+", help="point clouds: the columns of .npy / .txt inputs, in order"
    )
    args = parser.parse_args()
    if len(args.paths) > 2:
        parser.error(f"expected [CHECKPOINT] INPUT after the config, got {args.paths}")
    args.checkpoint = args.paths[0] if len(args.paths) == 2 else None
    args.input = args.paths[-1]
    if args.checkpoint is None and not os.path.isdir(args.config):
        parser.error(
            f"{args.config} is a config file: give its CHECKPOINT before INPUT (only a model "
            "folder, Hugging Face or converted, runs without one)"
        )
    if args.text is not None and args.pose_config:
        parser.error("--text is for a grounding model alone, not with --pose-config")
    if args.pose_cfg_options and not args.pose_config:
        parser.error("--pose-cfg-options is for the model of --pose-config: give that too")
    if args.track and args.pose_config:
        parser.error("--track follows a detector's boxes: leave out --pose-config")
    if args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1, got {args.batch_size}")

    try:
        inferencer = Inferencer(
            args.config,
            args.checkpoint,
            device=args.device,
            # the tracker's second stage needs the low-score detections too
            score_thr=min(args.score_thr, args.track_low_thr) if args.track else args.score_thr,
            cfg_options=args.cfg_options,
            amp=args.amp,
            backend=args.backend,
        )
    except ExportError as err:  # an exported file that does not fit --backend or the config
        parser.error(str(err))
    if isinstance(inferencer, PointInferencer):
        if args.text is not None or args.pose_config or args.track:
            parser.error("--text, --pose-config and --track are not for a point-cloud model")
        point_demo(args, inferencer)
        return
    if inferencer.prompted and args.text is None:
        parser.error("this model is prompted: pass --text 'cat . dog .' or a phrase")
    if args.pose_config:
        pose = Inferencer(
            args.pose_config,
            args.pose_checkpoint,
            device=args.device,
            cfg_options={**(args.cfg_options or {}), **(args.pose_cfg_options or {})},
            amp=args.amp,
        )
        inferencer = TopDownPipeline(
            pose, inferencer, det_score_thr=args.score_thr, person_class=args.person_class
        )
    source = open_source(args.input)
    os.makedirs(args.out, exist_ok=True)
    total = None if source.kind == "webcam" else len(source)
    if args.max_frames is not None:
        total = args.max_frames if total is None else min(total, args.max_frames)

    writer = None
    if source.kind in ("video", "webcam"):
        name = (
            "webcam"
            if source.kind == "webcam"
            else os.path.splitext(os.path.basename(args.input))[0]
        )
        # sized by the first drawn frame: dense predictions add panels (a depth map beside the
        # frame, one panel per semantic / panoptic map), which must not be squeezed
        writer = VideoWriter(os.path.join(args.out, f"{name}.mp4"), source.fps)
    tracker, tracks = None, []  # tracks: one dict per frame (ByteTracker.update's)
    if args.track:
        tracker = ByteTracker(
            high_thr=args.score_thr, low_thr=min(args.track_low_thr, args.score_thr)
        )
    batch_size = 1 if source.kind == "webcam" else args.batch_size
    frames = itertools.islice(source, args.max_frames)
    progress = tqdm(total=total, desc=source.kind, unit="frame")
    fps, last = None, time.perf_counter()
    written = []
    try:
        while chunk := list(itertools.islice(frames, batch_size)):
            images = [frame for _, frame in chunk]
            samples = (
                [inferencer(image) for image in images]  # TopDownPipeline: one image a call
                if args.pose_config
                else inferencer(images, batch_size=len(images), text=args.text)
            )
            for (name, frame), sample in zip(chunk, samples):
                if tracker is None:
                    drawn = inferencer.visualize(frame, sample)
                else:
                    tracks.append(track_frame(tracker, sample))
                    boxes, ids, labels = (tracks[-1][k] for k in ("bboxes", "ids", "labels"))
                    drawn = draw_tracks(frame, boxes, ids, labels, label_names(sample))
                if source.kind == "webcam":  # smoothed over about ten frames
                    now = time.perf_counter()
                    rate = 1.0 / max(now - last, 1e-6)
                    fps, last = rate if fps is None else 0.9 * fps + 0.1 * rate, now
                    drawn = draw_fps(drawn, fps)
                if writer is not None:
                    writer.write(drawn)
                else:
                    stem = os.path.splitext(os.path.basename(name))[0]
                    path = os.path.join(args.out, stem + ".png")
                    cv2.imwrite(path, cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
                    written.append(path)
                progress.update()
    except KeyboardInterrupt:
        pass
    finally:
        progress.close()
        if writer is not None:
            writer.close()
            if os.path.exists(writer.path):  # not when no frame was read
                written.append(writer.path)
        if tracker is not None and tracks:
            stem = "webcam" if source.kind == "webcam" else Path(args.input).stem
            written.append(os.path.join(args.out, f"{stem}.txt"))
            write_mot(written[-1], tracks)
    print(
        f"demo output: {', '.join(written) if len(written) <= 4 else args.out + '/ (' + str(len(written)) + ' files)'}"
    )


def track_frame(tracker: ByteTracker, sample) -> dict:
    """``tracker`` advanced by the boxes of ``sample`` (a DataSample with ``pred_instances``);
    returns the frame's tracks (``ByteTracker.update``'s dict). Boxes without area (an
    untrained model's) cannot be followed and are left out."""
    pred = sample.get("pred_instances")
    if pred is None or "bboxes" not in pred:
        raise SystemExit(
            "error: --track follows boxes, and this model predicts none (no "
            "pred_instances.bboxes): use a detector's config"
        )
    boxes, scores = pred.bboxes.float().cpu().numpy(), pred.scores.float().cpu().numpy()
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return tracker.update(boxes[keep], scores[keep], pred.labels.cpu().numpy()[keep])


def point_demo(args: argparse.Namespace, inferencer: PointInferencer) -> None:
    """Predict and draw every cloud of ``args.input`` into ``args.out`` (see the module doc)."""
    paths = list_point_inputs(args.input)
    folder = paths != [str(Path(args.input))]  # a folder of clouds, not one file / scene
    os.makedirs(args.out, exist_ok=True)
    written, skipped = [], []
    for path in tqdm(paths, desc="point clouds", disable=not folder):
        name = os.path.splitext(os.path.basename(os.path.normpath(path)))[0]
        try:
            cloud = inferencer.read(path, args.fields)
            sample = inferencer({**cloud, "file": path})
        except (ValueError, OSError) as err:
            if not folder:
                raise SystemExit(f"error: {err}") from err
            tqdm.write(f"skipped {path}: {err}")
            skipped.append(path)
            continue
        png = os.path.join(args.out, f"{name}.png")
        drawn = inferencer.visualize(cloud, sample)
        cv2.imwrite(png, cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
        written.append(png)
        if args.turntable:
            mp4 = os.path.join(args.out, f"{name}.mp4")
            written.append(inferencer.turntable(cloud, sample, mp4, frames=args.frames))
    summary = ", ".join(written) if len(written) <= 4 else f"{args.out}/ ({len(written)} files)"
    print(f"demo output: {summary}")
    if skipped:
        print(f"{len(skipped)} of {len(paths)} point clouds skipped (bad files, named above)")


if __name__ == "__main__":
    run_tool(main)
