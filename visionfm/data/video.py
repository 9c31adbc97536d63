"""Frame sources for demos and a video writer that keeps the input's fps.

``open_source(spec)`` accepts an image file, a folder of images, a video file or a
webcam index (``"0"``) and returns a ``FrameSource``: iterate it for
``(name, frame (H, W, 3) uint8 RGB)``; ``len()`` is the frame count when known.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import cv2
import numpy as np
from mmengine.logging import print_log

from visionfm.data.files import has_alpha, read_image_file

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


class FrameSource:
    """Frames of one input; ``kind`` is 'image', 'folder', 'video' or 'webcam'."""

    def __init__(self, spec: str):
        self.spec = spec
        self.fps: float | None = None
        self.size: tuple[int, int] | None = None  # (w, h) for videos / webcams
        if spec.isdigit():
            self.kind, self._capture = "webcam", self._open_capture(int(spec))
            self.paths: list[str] = []
        elif os.path.isdir(spec):
            self.kind = "folder"
            self.paths = sorted(
                os.path.join(spec, f)
                for f in os.listdir(spec)
                if f.lower().endswith(IMAGE_EXTENSIONS)
            )
            if not self.paths:
                raise FileNotFoundError(
                    f"folder {spec} has no images ({', '.join(IMAGE_EXTENSIONS)})"
                )
        elif not os.path.exists(spec):
            raise FileNotFoundError(
                f"input not found: {spec} (an image, folder, video or webcam index)"
            )
        elif spec.lower().endswith(VIDEO_EXTENSIONS):
            self.kind, self._capture = "video", self._open_capture(spec)
            self.paths = []
        elif spec.lower().endswith(IMAGE_EXTENSIONS):
            self.kind, self.paths = "image", [spec]
        else:
            raise ValueError(
                f"cannot tell what {spec} is: expected an image ({', '.join(IMAGE_EXTENSIONS)}), "
                f"a video ({', '.join(VIDEO_EXTENSIONS)}), a folder or a webcam index"
            )

    def _open_capture(self, target: str | int) -> cv2.VideoCapture:
        capture = cv2.VideoCapture(target)
        if not capture.isOpened():
            raise OSError(f"cannot open video source {target!r}")
        self.fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
        self.size = (
            int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
        return capture

    def __len__(self) -> int:
        if self.kind == "video":
            return int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if self.kind == "webcam":
            raise TypeError("a webcam has no length")
        return len(self.paths)

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        if self.kind in ("image", "folder"):
            alpha_noted = False
            for path in self.paths:
                if not alpha_noted and has_alpha(path):
                    alpha_noted = True
                    print_log(
                        f"{path} has an alpha channel: it is dropped (the image is read as "
                        "RGB); noted once per input",
                        logger="current",
                    )
                yield path, cv2.cvtColor(read_image_file(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            return
        index = 0
        while True:
            ok, frame = self._capture.read()
            if not ok:
                break
            yield f"frame_{index:06d}", cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            index += 1
        self._capture.release()


def open_source(spec: str) -> FrameSource:
    return FrameSource(str(spec))


class VideoWriter:
    """mp4 writer: ``write(frame RGB)``. With ``size`` (w, h) frames of another size are
    resized to it. With ``size=None`` the file opens at the first frame's size (drawings that
    add panels beside the frame, e.g. a depth map, keep their shape), rounded up to even
    numbers (mp4v drops an odd last row / column): frames of that first size are padded
    with black at the bottom / right, others resized."""

    def __init__(self, path: str, fps: float, size: tuple[int, int] | None = None):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.path, self.fps, self.size = path, fps, size
        self._first: tuple[int, int] | None = None  # (w, h) of the first frame, size=None only
        self._writer = None if size is None else self._open(size)

    def _open(self, size: tuple[int, int]) -> cv2.VideoWriter:
        writer = cv2.VideoWriter(self.path, cv2.VideoWriter_fourcc(*"mp4v"), self.fps, size)
        if not writer.isOpened():
            raise OSError(f"cannot write video {self.path}")
        return writer

    def write(self, frame: np.ndarray) -> None:
        shape = (frame.shape[1], frame.shape[0])  # (w, h)
        if self._writer is None:
            self._first = shape
            self.size = (shape[0] + shape[0] % 2, shape[1] + shape[1] % 2)
            self._writer = self._open(self.size)
        if shape == self._first and shape != self.size:
            pad_w, pad_h = self.size[0] - shape[0], self.size[1] - shape[1]
            frame = cv2.copyMakeBorder(frame, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=0)
        elif shape != self.size:
            frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
        self._writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
