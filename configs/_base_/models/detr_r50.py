# DETR R50 (Carion et al., ECCV 2020), the architecture of the published facebook/detr-resnet-50
# (Hugging Face DetrForObjectDetection) and facebookresearch/detr's detr-r50-e632da11.pth:
# ResNet-50 with frozen batch norms, its stride-32 map projected by a biased 1x1 conv (no
# norm), normalised sine positions (temperature 10000, offset 0), 256 wide, 6 + 6 post-norm
# layers, 8 heads, FFN 2048, 100 learned queries, a LayerNorm on every decoder layer's output,
# DETR's softmax classification over 91 COCO category ids + "no object" (weight 0.1) and its
# matcher (class 1, L1 5, GIoU 2), dropout 0.1 (attention weights too, as the original).
# The same model as visionfm.heads.detr.detr_config.detr_model() builds; load the published
# weights with --cfg-options load_from=<HF folder or detr-r50-e632da11.pth> (converted on
# load, strictly). R101: backbone.model_name='resnet101'; DC5: backbone.output_stride=16 with
# the head's in_channels / strides at p4 (stride 16).
num_classes = 91
embed_dims = 256

_attn = dict(type="GlobalMemoryAttention", embed_dims=embed_dims, num_heads=8, dropout=0.1)
_ffn = dict(type="DetrFFN", embed_dims=embed_dims, feedforward_dims=2048, dropout=0.1)

model = dict(
    type="Detector",
    data_preprocessor=dict(type="DataPreprocessor"),  # ImageNet mean / std, RGB
    backbone=dict(
        type="TimmBackbone",
        model_name="resnet50",
        out_indices=(4,),
        frozen_bn=True,  # DETR's FrozenBatchNorm2d
        frozen_stages=1,  # stem + layer1 frozen, as DETR trains layer2-4 only
    ),
    neck=None,
    head=dict(
        type="DETRHead",
        num_classes=num_classes,
        embed_dims=embed_dims,
        num_queries=100,
        in_channels=dict(p5=2048),
        strides=dict(p5=32),
        input_norm=None,
        positional_encoding=dict(type="SinePositionalEncoding", num_feats=embed_dims // 2),
        encoder=dict(
            type="DetrEncoder",
            num_layers=6,
            layer=dict(type="DetrEncoderLayer", self_attn=_attn, ffn=_ffn, dropout=0.1),
        ),
        decoder=dict(
            type="DetrDecoder",
            num_layers=6,
            layer=dict(
                type="DetrDecoderLayer",
                self_attn=dict(
                    type="DetrMultiheadAttention", embed_dims=embed_dims, num_heads=8, dropout=0.1
                ),
                cross_attn=_attn,
                ffn=_ffn,
                dropout=0.1,
            ),
        ),
        matcher=dict(
            type="HungarianMatcher",
            cost_class=1.0,
            cost_bbox=5.0,
            cost_giou=2.0,
            classification="softmax",
        ),
        classification="softmax",
        no_object_weight=0.1,
        loss_cls=1.0,
        loss_bbox=5.0,
        loss_giou=2.0,
        test_cfg=dict(max_per_img=100),
    ),
)
