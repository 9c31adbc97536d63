# Mask2Former (Cheng et al., 2022) on a plain ViT with ViTDet's simple feature pyramid:
# strides 4 / 8 / 16 / 32 from a patch-8 ViT; the pixel decoder's deformable encoder reads
# strides 8-32, the stride-4 level gives the mask features. Sizes here are the small demo
# model; real-scale configs override backbone / widths / classes.
num_things_classes = 5
num_stuff_classes = 1
embed_dims = 128
num_queries = 20

_deform = dict(
    type="DeformableMemoryAttention", embed_dims=embed_dims, num_heads=8, num_levels=3, num_points=4
)
_ffn = dict(type="DetrFFN", embed_dims=embed_dims, feedforward_dims=4 * embed_dims)
_attn = dict(type="DetrMultiheadAttention", embed_dims=embed_dims, num_heads=8)

model = dict(
    type="TaskModel",
    data_preprocessor=dict(type="DataPreprocessor", size_divisor=32),
    backbone=dict(
        type="ViT",
        img_size=224,
        patch_size=8,
        embed_dim=96,
        depth=4,
        num_heads=4,
        class_token=False,
    ),
    neck=dict(
        type="SimpleFeaturePyramid",
        in_channels=96,
        out_channels=embed_dims,
        scale_factors=(2.0, 1.0, 0.5),
        in_stride=8,
        top_block=True,  # + stride 32
    ),
    head=dict(
        type="Mask2FormerHead",
        num_things_classes=num_things_classes,
        num_stuff_classes=num_stuff_classes,
        num_queries=num_queries,
        num_points=1024,
        pixel_decoder=dict(
            type="MSDeformAttnPixelDecoder",
            in_channels=dict(p2=embed_dims, p3=embed_dims, p4=embed_dims, p5=embed_dims),
            strides=dict(p2=4, p3=8, p4=16, p5=32),
            embed_dims=embed_dims,
            mask_dims=embed_dims,
            num_encoder_levels=3,
            encoder=dict(
                type="DetrEncoder",
                num_layers=2,
                layer=dict(type="DetrEncoderLayer", self_attn=_deform, ffn=_ffn),
            ),
        ),
        transformer_decoder=dict(
            type="MaskedAttentionDecoder",
            num_layers=6,  # two rounds over the three levels
            layer=dict(
                type="MaskedAttentionDecoderLayer", cross_attn=_attn, self_attn=_attn, ffn=_ffn
            ),
        ),
        matcher=dict(
            type="MaskHungarianMatcher",
            cost_class=2.0,
            cost_mask=5.0,
            cost_dice=5.0,
            num_points=1024,
        ),
        test_cfg=dict(
            semantic_on=True,
            instance_on=True,
            panoptic_on=True,
            object_mask_thr=0.8,
            overlap_thr=0.8,
            max_per_image=num_queries,
        ),
    ),
)
