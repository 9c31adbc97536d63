# Two-stage Deformable DETR R50 + box refinement on COCO 2017 (SenseTime/deformable-detr-with-
# box-refine-two-stage; the original ..._plus_plus_two_stage): queries from the top-300
# encoder proposals ranked by class 0's logit (the original trains the encoder's class head
# class-agnostically: every target is class 0 in its loss), border / padding tokens
# selectable with the full-image box, as the original code; their sine code through
# Linear + LayerNorm gives positions and content. Published COCO val box AP 46.9 (the
# released checkpoint, original README). Otherwise as the plain config.
_base_ = ["./deformable-detr_r50_coco.py"]

model = dict(
    head=dict(
        two_stage=True,
        with_box_refine=True,
        select_invalid_proposals=True,
        class_agnostic_proposals=True,
    )
)
