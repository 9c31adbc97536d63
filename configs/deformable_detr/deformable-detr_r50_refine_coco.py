# Deformable DETR R50 + iterative box refinement on COCO 2017 (SenseTime/deformable-detr-with-
# box-refine; the original r50_deformable_detr_plus_iterative_bbox_refinement): one class /
# box head per decoder layer, each layer's boxes the next layer's references. Published COCO
# val box AP 46.2 (the released checkpoint, original README). Otherwise as the plain config.
_base_ = ["./deformable-detr_r50_coco.py"]

model = dict(head=dict(with_box_refine=True))
