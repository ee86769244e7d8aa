"""DeepLabV3 (Chen et al. 2017, https://arxiv.org/abs/1706.05587).

Built by torchvision, so its state dicts load as they are.
"""

from __future__ import annotations

from torch import nn
from torchvision.models import MobileNet_V3_Large_Weights
from torchvision.models import segmentation as tv_seg
from tseg.train.models.registry import register_model
from tseg.train.models.weights import resolve_backbone_weights


@register_model("deeplabv3_mobilenet_v3_large")
def deeplabv3_mobilenet_v3_large(
    *, num_classes: int, backbone_weights: str | None = None, aux_loss: bool = False
) -> nn.Module:
    """DeepLabV3 on a dilated MobileNetV3-Large (output stride 16): the light member for CPUs.

    Args:
        num_classes: output classes, background included.
        backbone_weights: None or "imagenet".
        aux_loss: add the auxiliary FCN head on an intermediate feature map.
    """
    return tv_seg.deeplabv3_mobilenet_v3_large(
        weights=None,
        weights_backbone=resolve_backbone_weights(backbone_weights, MobileNet_V3_Large_Weights),
        num_classes=num_classes,
        aux_loss=aux_loss,
    )
