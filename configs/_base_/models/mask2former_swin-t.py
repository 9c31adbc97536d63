# Mask2Former Swin-T (Cheng et al., CVPR 2022), the architecture of the published
# facebook/mask2former-swin-tiny-coco-panoptic (Hugging Face Mask2FormerForUniversalSegmentation)
# and of the facebookresearch/Mask2Former model zoo's Swin-T COCO panoptic model: Swin-T (HF
# SwinBackbone's windows: always_partition), pixel decoder 256 wide with 6 deformable encoder
# layers over strides 8-32 (biased input projections), 9 masked-attention decoder layers, 100
# queries, 8 heads, the level embedding added to the decoder's features, the batch's
# padding read as image content. To run / fine-tune
# the published weights: load_from=models/mask2former-swin-tiny-coco-panoptic (the folder as
# save_pretrained writes it) or the original model_final_*.pkl / .pth.
num_things_classes = 80
num_stuff_classes = 53
embed_dims = 256
num_queries = 100

_deform = dict(
    type="DeformableMemoryAttention", embed_dims=embed_dims, num_heads=8, num_levels=3, num_points=4
)
_attn = dict(type="DetrMultiheadAttention", embed_dims=embed_dims, num_heads=8)

model = dict(
    type="TaskModel",
    data_preprocessor=dict(type="DataPreprocessor", size_divisor=32),
    backbone=dict(
        type="swin_tiny", out_indices=(0, 1, 2, 3), always_partition=True, drop_path_rate=0.3
    ),
    neck=None,
    head=dict(
        type="Mask2FormerHead",
        num_things_classes=num_things_classes,
        num_stuff_classes=num_stuff_classes,
        num_queries=num_queries,
        level_embed_on="feats",
        mask_padding=False,  # padding is image content, as in the original code and HF
        pixel_decoder=dict(
            type="MSDeformAttnPixelDecoder",
            in_channels=dict(p2=96, p3=192, p4=384, p5=768),
            strides=dict(p2=4, p3=8, p4=16, p5=32),
            embed_dims=embed_dims,
            mask_dims=embed_dims,
            num_encoder_levels=3,
            input_bias=True,
            encoder=dict(
                type="DetrEncoder",
                num_layers=6,
                layer=dict(
                    type="DetrEncoderLayer",
                    self_attn=_deform,
                    ffn=dict(type="DetrFFN", embed_dims=embed_dims, feedforward_dims=1024),
                ),
            ),
        ),
        transformer_decoder=dict(
            type="MaskedAttentionDecoder",
            num_layers=9,  # HF's decoder_layers=10 counts the initial prediction
            layer=dict(
                type="MaskedAttentionDecoderLayer",
                cross_attn=_attn,
                self_attn=_attn,
                ffn=dict(type="DetrFFN", embed_dims=embed_dims, feedforward_dims=2048),
            ),
        ),
        matcher=dict(type="MaskHungarianMatcher", cost_class=2.0, cost_mask=5.0, cost_dice=5.0),
        # the paper's inference (test_cfg.postprocess='transformers': HF's image processor)
        test_cfg=dict(max_per_image=num_queries, postprocess="detectron2"),
    ),
)
