"""``add_caption``: the image unchanged on top, the text beneath in lines that fit its width,
every word kept in order (a word wider than a line cut into pieces that fit)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from visionfm.visualization import add_caption
from visionfm.visualization.instances import _FONT, _font_scale


@pytest.fixture
def lines(monkeypatch) -> list[str]:
    seen: list[str] = []
    put_text = cv2.putText

    def record(image, text, *args, **kwargs):
        seen.append(text)
        return put_text(image, text, *args, **kwargs)

    monkeypatch.setattr(cv2, "putText", record)
    return seen


def test_text_beneath_in_lines_that_fit(lines):
    image = np.random.default_rng(0).integers(0, 256, (90, 160, 3), np.uint8)
    long_word = "x" * 80  # wider than the image
    text = f"the small red circle left of the big square {long_word} near a green star"
    out = add_caption(image, text)
    assert out.shape[1] == 160 and out.shape[0] > 90
    assert np.array_equal(out[:90], image)
    strip = out[90:]
    assert (strip < 128).all(-1).any() and (strip == 255).all(-1).mean() > 0.5
    scale = _font_scale(image)
    assert all(cv2.getTextSize(line, _FONT, scale, 1)[0][0] <= 156 for line in lines)
    words = [w for line in lines for w in line.split()]
    pieces = [w for w in words if set(w) == {"x"}]
    assert "".join(pieces) == long_word and len(pieces) > 1
    assert [w for w in words if set(w) != {"x"}] == [w for w in text.split() if w != long_word]
    assert len(lines) >= 4  # 14 words and an 80-character one do not fit on fewer


def test_an_empty_text_is_an_empty_line(lines):
    out = add_caption(np.zeros((40, 50), np.uint8), "")
    assert out.shape[1] == 50 and out.shape[0] > 40 and lines == [""]
    assert (out[40:] == 255).all()
