"""Shared fixtures: a small synthetic dataset written once per test session, seeding, threads,
mmengine log capture."""

import logging
import os
import random
import uuid

import numpy as np
import pytest
import torch
from mmengine.logging import MMLogger


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    from visionfm.data.synthetic import make_synthetic
    from visionfm.data.synthetic.points import write_point_datasets

    root = tmp_path_factory.mktemp("synthetic")
    make_synthetic(root, num_train=12, num_val=6, seed=0, num_videos=1, progress=False)
    # as tools/make_synthetic.py --points, smaller (0.2 s)
    write_point_datasets(root / "points", 12, 6, num_scenes=(2, 1), scene_points=4096)
    return root


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same random state, whichever tests ran before it in its
    (xdist) process: an unseeded model init is then the same in every run.
    ``VISIONFM_TEST_SEED=N`` starts them from another one (to find tests that hold for one
    seed only)."""
    seed = int(os.environ.get("VISIONFM_TEST_SEED", "0"))
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@pytest.fixture(autouse=True)
def _single_thread():
    """Tiny models gain nothing from intra-op threads; under xdist they only oversubscribe."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def logs() -> list[str]:
    """Messages logged to mmengine's current logger during the test: a fresh one at INFO, so
    neither the level nor the handlers that earlier tests' runners left behind matter."""
    messages: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = MMLogger.get_instance(f"test_{uuid.uuid4().hex}", log_level="INFO")
    logger.addHandler(handler)
    yield messages
    logger.removeHandler(handler)
