"""Drawing of ground truth and predictions: pure numpy/cv2, RGB uint8 in and out.

- ``palette(n)``: n distinct, deterministic colours;
- ``draw_instances`` (``instances.py``): boxes with labelled captions (long names cut at a
  word), instance masks, keypoints + skeleton;
- ``draw_sem_seg`` (``dense.py``): a label map blended over the image, class names at region
  centres;
- ``draw_panoptic_seg`` (``dense.py``): a panoptic map (``label * PANOPTIC_LABEL_DIVISOR +
  instance``): stuff in its class colour, each thing instance in its own shade of its class
  colour, outlines between segments, class names;
- ``colorize_depth`` (``dense.py``): a depth map through a colormap (turbo or viridis);
- ``draw_depth`` (``dense.py``): ``colorize_depth`` with a colour bar and the min / max values
  beneath;
- ``draw_tracks`` / ``draw_fps`` (``tracks.py``): boxes captioned with their track id in
  one colour per id; a frame rate caption;
- ``side_by_side`` (``sample.py``): images in one row;
- ``add_caption`` (``sample.py``): text beneath an image (an expression, a prompt), wrapped to
  its width;
- ``draw_sample`` (``sample.py``): everything a ``DataSample`` holds (what every tool draws
  with); a grounding sample's boxes are named by its ``phrases``;
- ``render_points`` / ``write_turntable`` / ``draw_point_sample`` (``points.py``): point
  clouds as depth-sorted splats coloured by RGB, class (the palette masks use) or height,
  with a legend and a title; a turning-view mp4; a point sample's labels or class.

None of them modifies its input; each returns a new (H, W, 3) uint8 RGB image
(``draw_depth``, ``add_caption`` and ``draw_sample`` a taller / wider one: see there).
"""

from visionfm.data.palette import palette

from .dense import colorize_depth, draw_depth, draw_panoptic_seg, draw_sem_seg
from .instances import draw_instances
from .points import draw_point_sample, render_points, write_turntable
from .sample import add_caption, draw_sample, side_by_side
from .tracks import draw_fps, draw_tracks

__all__ = [
    "add_caption",
    "colorize_depth",
    "draw_depth",
    "draw_fps",
    "draw_instances",
    "draw_panoptic_seg",
    "draw_point_sample",
    "draw_sample",
    "draw_sem_seg",
    "draw_tracks",
    "palette",
    "render_points",
    "side_by_side",
    "write_turntable",
]
