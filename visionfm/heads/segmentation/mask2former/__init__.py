"""Mask2Former universal segmentation (Cheng et al., CVPR 2022): pixel decoder, masked-
attention decoder, mask matcher and head, registered in ``MODELS``.

Modules: ``pixel_decoder`` (multi-scale deformable encoder + FPN), ``decoder`` (masked
attention), ``matcher`` (point-sampled Hungarian matching), ``losses``, ``inference``
(semantic / instance / panoptic), ``inference_hf`` (the same as transformers' image
processor), ``head``; ``convert`` / ``model_config``: published Hugging Face and
facebookresearch weights (the ``'mask2former'`` published family).
"""

from .decoder import MaskedAttentionDecoder, MaskedAttentionDecoderLayer, masked_attention_mask
from .head import Mask2FormerHead
from .inference import instance_inference, panoptic_inference, semantic_inference
from .matcher import MaskHungarianMatcher
from .pixel_decoder import MSDeformAttnPixelDecoder

__all__ = [
    "MSDeformAttnPixelDecoder",
    "Mask2FormerHead",
    "MaskHungarianMatcher",
    "MaskedAttentionDecoder",
    "MaskedAttentionDecoderLayer",
    "instance_inference",
    "masked_attention_mask",
    "panoptic_inference",
    "semantic_inference",
]
