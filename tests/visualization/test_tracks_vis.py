"""draw_tracks: boxes in their id's colour (the same id, the same colour, in any frame),
captions; bad labels refused. draw_fps: a caption at the top left, the rest untouched."""

import numpy as np
import pytest

from visionfm.visualization import draw_fps, draw_tracks, palette


def test_each_id_keeps_its_colour():
    image = np.full((120, 160, 3), 255, np.uint8)
    boxes = np.array([[10.0, 40, 50, 100], [90, 40, 150, 100]])
    one = draw_tracks(image, boxes, [3, 7], [0, 1], ["car", "person"], line_width=2)
    other = draw_tracks(image, boxes[::-1], [7, 3], [1, 0], ["car", "person"], line_width=2)
    np.testing.assert_array_equal(one, other)  # colour by id, not by position in the list
    assert one[70, 10].tolist() == palette(8)[3].tolist()  # left edge of track 3's box
    assert one[70, 90].tolist() == palette(8)[7].tolist()
    assert (image == 255).all()  # the input is not drawn on


def test_bad_labels_are_refused():
    with pytest.raises(ValueError, match="2 class names"):
        draw_tracks(np.zeros((10, 10, 3), np.uint8), [[0, 0, 5, 5]], [1], [2], ["a", "b"])


def test_fps_caption_at_the_top_left():
    image = np.full((100, 200, 3), 255, np.uint8)
    drawn = draw_fps(image, 12.34)
    changed = np.argwhere((drawn != 255).any(axis=2))
    assert len(changed) > 0 and changed[:, 0].max() < 30 and changed[:, 1].max() < 100
