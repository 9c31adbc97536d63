"""visionfm.heads.losses: the set-prediction normaliser, alone and averaged over processes."""

from __future__ import annotations

import torch

from visionfm.heads.losses import average_num_boxes


def test_average_num_boxes_alone():
    assert average_num_boxes(torch.tensor(6), "cpu") == 6.0
    assert average_num_boxes(0, "cpu") == 1.0  # at least one: batches without boxes


def test_average_num_boxes_all_reduces(monkeypatch):
    calls = []

    def fake_all_reduce(t):
        calls.append(t.clone())
        t.add_(10.0)  # another process with 10 boxes

    monkeypatch.setattr(torch.distributed, "is_available", lambda: True)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    monkeypatch.setattr(torch.distributed, "all_reduce", fake_all_reduce)
    assert average_num_boxes(4, "cpu") == 7.0
    assert len(calls) == 1 and calls[0].item() == 4.0
    assert average_num_boxes(0, "cpu") == 5.0
