"""Grounding data: the ODVG / refcoco files of make_synthetic read back, bad input, class
prompts within a token budget, and the flip / crop rules for phrases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from visionfm.data.datasets import (
    ClassPrompt,
    CocoFormatError,
    GroundingFormatError,
    ODVGDataset,
    RefCOCODataset,
)
from visionfm.data.synthetic import COLORS, make_synthetic
from visionfm.data.synthetic.grounding import mentions
from visionfm.data.transforms import PackInputs, RandomCrop, RandomFlip
from visionfm.registry import DATASETS
from visionfm.text import load_tokenizer

PIPELINE = [dict(type="LoadImage"), dict(type="LoadAnnotations"), dict(type="PackInputs")]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    return make_synthetic(tmp_path_factory.mktemp("grounding"), 4, 4, num_videos=0, progress=False)


def _odvg(world: dict, split: str = "train", **kwargs) -> ODVGDataset:
    return ODVGDataset(
        ann_file=str(world[split]["odvg"]),
        label_map_file=str(world[split]["label_map"]),
        data_prefix=dict(img=str(world[split]["images"])),
        pipeline=PIPELINE,
        **kwargs,
    )


def _sentences(world: dict, split: str) -> list[tuple[dict, str]]:
    refs = json.loads(world[split]["refs"].read_text())
    return [(ref, s["sent"]) for ref in refs for s in ref["sentences"]]


# ---- make_synthetic's grounding files, read back ------------------------------------------
def test_odvg_lines_read_back_as_class_prompts_and_expressions(world):
    ds = _odvg(world, test_mode=True)
    coco = json.loads(world["train"]["instances"].read_text())
    sentences = _sentences(world, "train")
    assert ds.metainfo["classes"] == ("circle", "square", "triangle", "star", "person")
    with_expressions = {ref["image_id"] for ref, _ in sentences}
    assert len(ds) == len(coco["images"]) + len(with_expressions)  # no pair held out here
    first = ds[0]["data_samples"]  # detection line of image 1, every class in order (test)
    assert first.text == "circle . square . triangle . star . person ."
    assert first.metainfo["prompt_type"] == "classes"
    assert first.metainfo["phrase_ids"] == [0, 1, 2, 3, 4]
    anns = [a for a in coco["annotations"] if a["image_id"] == 1]
    assert first.gt_instances.labels.tolist() == [a["category_id"] - 1 for a in anns]
    x, y, w, h = anns[0]["bbox"]
    assert first.gt_instances.bboxes[0].tolist() == pytest.approx([x, y, x + w, y + h])
    # the first grounding line: every expression of the first image that has some
    first_image = sentences[0][0]["image_id"]
    mine = [(ref, s) for ref, s in sentences if ref["image_id"] == first_image]
    sample = ds[len(coco["images"])]["data_samples"]
    assert sample.text == " . ".join(s for _, s in mine) + " ."
    assert sample.phrases == [s for _, s in mine]
    assert [sample.text[a:b] for [[a, b]] in sample.phrase_spans] == sample.phrases
    assert sample.metainfo["prompt_type"] == "expression"
    assert sample.gt_instances.labels.tolist() == list(range(len(mine)))
    for (ref, _), box in zip(mine, sample.gt_instances.bboxes):
        x, y, w, h = coco["annotations"][ref["ann_id"] - 1]["bbox"]
        assert box.tolist() == pytest.approx([x, y, x + w, y + h])


def test_refcoco_json_reads_back_one_sample_per_expression(world):
    ds = RefCOCODataset(
        ann_file=str(world["val"]["refcoco"]),
        data_prefix=dict(img=str(world["val"]["images"])),
        split="val",
        test_mode=True,
        pipeline=PIPELINE,
    )
    sentences = _sentences(world, "val")
    coco = json.loads(world["val"]["instances"].read_text())
    assert len(ds) == len(sentences)
    for i in (0, len(ds) - 1):
        sample = ds[i]["data_samples"]
        ref, sentence = sentences[i]
        assert sample.text == sentence and sample.phrases == [sentence]
        assert sample.img_path.endswith(ref["file_name"])
        meta = sample.metainfo
        assert (meta["dataset_name"], meta["split"], meta["expression_id"]) == (
            "synthetic_refcoco", "val", i + 1)  # fmt: skip
        assert meta["held_out"] is False
        x, y, w, h = coco["annotations"][ref["ann_id"] - 1]["bbox"]
        assert sample.gt_instances.bboxes.tolist() == [pytest.approx([x, y, x + w, y + h])]


def test_holdout_leaves_the_pair_out_of_train_and_flags_it_in_val(tmp_path, world):
    # hold out the colour + category of the first expression that names both
    sent = next(s for _, s in _sentences(world, "train") if s.split()[-2] in COLORS)
    color, category = sent.split()[-2:]
    pair = ((color, category),)
    paths = make_synthetic(tmp_path, 4, 4, num_videos=0, progress=False, holdout_pairs=pair)
    train = [img["caption"] for img in json.loads(paths["train"]["refcoco"].read_text())["images"]]
    assert not any(mentions(c, pair) for c in train)
    assert len(train) == sum(not mentions(s, pair) for _, s in _sentences(world, "train"))
    lines = [json.loads(x) for x in paths["train"]["odvg"].read_text().splitlines()]
    phrases = [r["phrase"] for x in lines if "grounding" in x for r in x["grounding"]["regions"]]
    assert phrases == train  # the same expressions in both formats
    detections = [i for x in lines if "detection" in x for i in x["detection"]["instances"]]
    assert category in {i["category"] for i in detections}  # the category still appears
    val = json.loads(paths["val"]["refcoco"].read_text())["images"]
    assert [img["held_out"] for img in val] == [mentions(img["caption"], pair) for img in val]
    assert [img["caption"] for img in val] == [s for _, s in _sentences(world, "val")]
    # and the existing outputs do not depend on the hold-out
    for name in ("instances_train.json", "refs_train.json", "refs_val.json"):
        assert (paths["root"] / "annotations" / name).read_bytes() == (
            world["root"] / "annotations" / name
        ).read_bytes()


# ---- class prompts within a token budget --------------------------------------------------
def test_training_prompts_keep_the_positives_and_fill_the_budget_with_negatives():
    tokenizer = load_tokenizer(None)
    classes = [f"class{i} name" for i in range(40)]
    prompt = ClassPrompt(classes, max_tokens=40)
    rng = np.random.RandomState(0)
    seen = set()
    for _ in range(20):
        p = prompt.sample([3, 17, 3], rng)
        n_tokens = len(tokenizer(p["text"])["input_ids"])
        assert n_tokens <= 40
        assert {3, 17} <= set(p["phrase_ids"]) and len(set(p["phrase_ids"])) == len(p["phrase_ids"])
        # one more class would not have fitted (every "classN name ." costs the same)
        assert n_tokens + len(tokenizer("class0 name .")["input_ids"]) - 2 > 40
        assert p["phrases"] == [classes[i] for i in p["phrase_ids"]]
        for phrase, [(s, e)] in zip(p["phrases"], p["phrase_spans"]):
            assert p["text"][s:e] == phrase
        seen.add(tuple(p["phrase_ids"]))
    assert len(seen) > 1  # negatives and order are random
    everything = prompt.all_classes()  # test time: all classes in order, never truncated
    assert everything["phrase_ids"] == list(range(40))
    assert len(tokenizer(everything["text"])["input_ids"]) > 40


def test_positives_beyond_the_budget_are_dropped_and_counted():
    # [CLS] [SEP] + 7 tokens per "a b c d e f ." + 2 for "m .": one positive and "m" fit
    prompt = ClassPrompt(["a b c d e f", "g h i j k l", "m"], max_tokens=11)
    p = prompt.sample([0, 1], np.random.RandomState(0))
    assert sorted(p["phrase_ids"]) in ([0, 2], [1, 2]) and prompt.num_dropped_classes == 1
    assert "num_dropped_classes=1" in repr(prompt)


def test_coco_grounding_dataset_relabels_instances_by_phrase(world):
    ds = DATASETS.build(dict(type="CocoGroundingDataset", ann_file=str(world["train"]["instances"]),
                             data_prefix=dict(img=str(world["train"]["images"])),
                             pipeline=PIPELINE))  # fmt: skip
    coco = json.loads(world["train"]["instances"].read_text())
    np.random.seed(0)
    sample = ds[0]["data_samples"]
    ids = sample.metainfo["phrase_ids"]
    names = [sample.phrases[i] for i in sample.gt_instances.labels.tolist()]
    img_id = sample.img_id
    expected = sorted(
        ds.metainfo["classes"][a["category_id"] - 1]
        for a in coco["annotations"]
        if a["image_id"] == img_id
    )
    assert sorted(names) == expected and sorted(ids) == [0, 1, 2, 3, 4]


# ---- bad input -----------------------------------------------------------------------------
def _write_lines(path: Path, lines: list) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


GOOD = {"filename": "a.jpg", "height": 20, "width": 30,
        "grounding": {"caption": "the red circle", "regions": [
            {"bbox": [1, 2, 10, 12], "phrase": "red circle", "tokens_positive": [[4, 14]]}]}}  # fmt: skip


def test_tokens_positive_outside_the_caption_names_the_file_and_line(tmp_path):
    bad = json.loads(json.dumps(GOOD))
    bad["grounding"]["regions"][0]["tokens_positive"] = [[4, 30]]
    ann = _write_lines(tmp_path / "g.jsonl", [GOOD, bad])
    with pytest.raises(GroundingFormatError, match=r"g\.jsonl, line 2, region 0: "
                       r"'tokens_positive' .* <= 14"):  # fmt: skip
        ODVGDataset(ann_file=str(ann))
    ds = ODVGDataset(ann_file=str(ann), on_error="skip")
    assert len(ds) == 1 and ds.num_invalid == 1


def test_a_corrupt_line_and_a_detection_line_without_label_map(tmp_path):
    ann = _write_lines(tmp_path / "g.jsonl", [GOOD, '{"filename": "b.jpg", "heig', GOOD])
    with pytest.raises(GroundingFormatError, match=r"g\.jsonl, line 2: not valid JSON"):
        ODVGDataset(ann_file=str(ann))
    assert ODVGDataset(ann_file=str(ann), on_error="skip").num_invalid == 1
    det = {"filename": "a.jpg", "height": 20, "width": 30,
           "detection": {"instances": [{"bbox": [1, 1, 5, 5], "label": 0}]}}  # fmt: skip
    ann = _write_lines(tmp_path / "d.jsonl", [det])
    with pytest.raises(GroundingFormatError, match=r"d\.jsonl, line 1: .*needs .*label_map_file"):
        ODVGDataset(ann_file=str(ann))


def test_several_boxes_for_one_expression_is_refused_or_skipped(tmp_path, world):
    refcoco = json.loads(world["val"]["refcoco"].read_text())
    extra = dict(refcoco["annotations"][0], id=10_000)
    refcoco["annotations"].append(extra)
    ann = tmp_path / "refcoco.json"
    ann.write_text(json.dumps(refcoco))
    with pytest.raises(CocoFormatError, match=r"refcoco\.json: image id 1 .* has 2 boxes"):
        RefCOCODataset(ann_file=str(ann))
    ds = RefCOCODataset(ann_file=str(ann), on_error="skip")
    assert len(ds) == len(refcoco["images"]) - 1 and ds.num_invalid == 1


# ---- transforms ----------------------------------------------------------------------------
def _results(prompt_type: str, text: str, phrases: list, spans: list, labels: list) -> dict:
    return dict(
        img=np.zeros((20, 40, 3), np.uint8),
        gt_bboxes=np.array([[0, 0, 8, 8], [30, 10, 38, 18], [2, 2, 6, 6]], np.float32)[
            : len(labels)
        ],
        gt_labels=np.array(labels, np.int64),
        text=text,
        phrases=phrases,
        phrase_spans=spans,
        prompt_type=prompt_type,
    )


def test_flip_swaps_left_and_right_in_expressions_only():
    text = "the circle left of the star"
    res = RandomFlip(prob=1.0)(_results("expression", text, [text], [[[0, 27]]], [0]))
    assert res["text"] == "the circle right of the star"
    assert res["phrases"] == ["the circle right of the star"]
    assert res["phrase_spans"] == [[[0, 28]]]
    assert res["gt_bboxes"][0].tolist() == [32, 0, 40, 8]
    classes = "left . right ."  # class names are names: never swapped
    res = RandomFlip(prob=1.0)(
        _results("classes", classes, ["left", "right"], [[[0, 4]], [[7, 12]]], [0])
    )
    assert res["text"] == classes and res["phrases"] == ["left", "right"]


def test_crop_drops_and_counts_an_expression_phrase_cut_away():
    text = "the square and the star"
    spans = [[[0, 10]], [[15, 23]]]
    crop = RandomCrop((20, 20))  # only x0 = 0..20 fits: the left box stays, the right goes
    np.random.seed(1)
    for _ in range(100):  # a window keeping box 0 (x < 8) and losing box 1 (x >= 30)
        res = crop(_results("expression", text, ["the square", "the star"], spans, [1, 0]))
        if res is not None and len(res["gt_labels"]) == 1 and res["gt_bboxes"][0, 0] < 8:
            break
    # box 0 (label 1, "the star") kept: "the square" lost its box and is dropped
    assert res["phrases"] == ["the star"] and res["phrase_spans"] == [[[15, 23]]]
    assert res["gt_labels"].tolist() == [0] and res["text"] == text
    assert crop.num_dropped_phrases >= 1 and "num_dropped_phrases=" in repr(crop)
    packed = PackInputs()(res)["data_samples"]
    assert packed.phrases == ["the star"] and packed.gt_instances.labels.tolist() == [0]


def test_crop_keeps_class_names_as_negatives():
    crop = RandomCrop((20, 20))
    np.random.seed(0)
    for _ in range(100):
        res = crop(_results("classes", "a . b .", ["a", "b"], [[[0, 1]], [[4, 5]]], [0, 1]))
        if res is not None and len(res["gt_labels"]) == 1:
            break
    assert res["phrases"] == ["a", "b"] and crop.num_dropped_phrases == 0
    assert res["gt_labels"].tolist() in ([0], [1])


def test_the_synthetic_grounding_config_builds_its_datasets(world):
    from visionfm.engine.config import load_config

    path = Path(__file__).resolve().parents[2] / "configs/_base_/datasets/synthetic_grounding.py"
    cfg = load_config(str(path), {"data_root": f"{world['root']}/"})
    train = DATASETS.build(cfg.train_dataloader["dataset"])
    val = DATASETS.build(cfg.val_dataloader["dataset"])
    odvg = DATASETS.build(cfg.odvg_train_dataset)
    coco = DATASETS.build(cfg.class_prompt_test_dataloader["dataset"])
    assert len(train) and len(val) and len(odvg) and len(coco)
    sample = val[0]["data_samples"]
    assert sample.metainfo["split"] == "val" and max(sample.img_shape) == 128
    # the test pipeline keeps the ground truth at the original size for the metric
    assert sample.ori_shape != sample.img_shape
    assert sample.gt_instances.bboxes[0].tolist() == pytest.approx(
        val.get_data_info(0)["instances"][0]["bbox"]
    )
