# Fine-tune Grounding DINO Swin-T on RefCOCO (MDETR's json: final_refcoco_{train,val,testA,
# testB}.json), from the published weights:
#   tools/train.py configs/grounding_dino/grounding-dino_swin-t_refcoco.py --cfg-options \
#       model.text_encoder.path=models/grounding-dino-tiny load_from=models/grounding-dino-tiny
# Reported: Acc@0.5 = refexp/P@1 (and P@5 / P@10) per split.
_base_ = ["./grounding-dino_swin-t_odvg.py"]

_refcoco = dict(
    type="RefCOCODataset",
    data_root="data/coco/",
    on_error="raise",
    data_prefix=dict(img="train2014/"),
    dataset_name="refcoco",
)
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        **_refcoco,
        ann_file="mdetr_annotations/final_refcoco_train.json",
        split="train",
        pipeline={{_base_.train_pipeline}},
    )
)
val_dataloader = dict(
    dataset=dict(
        _delete_=True,
        **_refcoco,
        ann_file="mdetr_annotations/final_refcoco_val.json",
        split="val",
        test_mode=True,
        pipeline={{_base_.test_pipeline}},
    )
)
test_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type="ConcatDataset",
        datasets=[
            dict(
                **_refcoco,
                ann_file=f"mdetr_annotations/final_refcoco_{split}.json",
                split=split,
                test_mode=True,
                pipeline={{_base_.test_pipeline}},
            )
            for split in ("val", "testA", "testB")
        ],
    )
)
val_evaluator = dict(_delete_=True, type="RefExpMetric", topk=(1, 5, 10), iou_thr=0.5)
test_evaluator = val_evaluator

max_epochs = 5
train_cfg = dict(max_epochs=max_epochs)
optim_wrapper = dict(optimizer=dict(lr=1e-4))
param_scheduler = [
    dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type="MultiStepLR", by_epoch=True, begin=0, end=max_epochs, milestones=[4], gamma=0.1),
]
default_hooks = dict(checkpoint=dict(save_best="refexp/P@1", rule="greater"))
