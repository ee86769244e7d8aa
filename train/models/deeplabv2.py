"""DeepLabV2 (ASPP, branches summed) on VGG16 and ResNet-101."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from tseg.train.models import backbones
from tseg.train.models.base import IntermediateFeatures, SimpleSegmentationModel
from tseg.train.models.deeplabv1 import DeepLabVGG16, LargeFOVHead
from tseg.train.models.registry import register_model

ASPP_L_RATES = (6, 12, 18, 24)


class SummedBranches(nn.ModuleList):
    """DeepLabV2's ASPP fusion: every branch sees the same input; their logits are summed."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self[0](x)
        for branch in self[1:]:
            out = out + branch(x)
        return out


def _atrous_classifier(in_channels: int, num_classes: int, rate: int) -> nn.Conv2d:
    """A 3x3 conv at ``rate`` straight to the classes, Gaussian init (std 0.01) as in DeepLab."""
    conv = nn.Conv2d(in_channels, num_classes, 3, padding=rate, dilation=rate)
    nn.init.normal_(conv.weight, std=0.01)
    nn.init.zeros_(conv.bias)
    return conv


class DeepLabV2(SimpleSegmentationModel):
    """DeepLabV2 (Chen et al. 2017, "DeepLab: Semantic Image Segmentation with Deep
    Convolutional Nets, Atrous Convolution, and Fully Connected CRFs",
    https://arxiv.org/abs/1606.00915).

    Backbone at output stride 8 -> ASPP-L (rates 6, 12, 18, 24; branch logits summed) ->
    bilinear upsampling to the input size. (N, 3, H, W) -> {"out": (N, C, H, W)}.
    """


@register_model("deeplabv2_vgg16")
def deeplabv2_vgg16(
    *, num_classes: int, backbone_weights: str | Path | None = None, rates: Sequence[int] = ASPP_L_RATES
) -> DeepLabV2:
    """DeepLabV2 on VGG16: DeepLab's VGG16 (as LargeFOV) and one fc6/fc7/fc8 branch per rate.

    Args:
        num_classes: output classes, background included.
        backbone_weights: None, "imagenet" or a path to a torchvision VGG16 state dict (.pth);
            every branch's fc6/fc7 start from its decimated fc weights.
        rates: fc6's dilation in each branch.
    """
    vgg = backbones.vgg16(batch_norm=False, backbone_weights=backbone_weights)
    head = SummedBranches([LargeFOVHead(vgg, num_classes, rate) for rate in rates])
    return DeepLabV2(DeepLabVGG16(vgg), head)


@register_model("deeplabv2_resnet101")
def deeplabv2_resnet101(
    *, num_classes: int, backbone_weights: str | Path | None = None, rates: Sequence[int] = ASPP_L_RATES
) -> DeepLabV2:
    """DeepLabV2 on ResNet-101 at output stride 8: every block of layer3 at rate 2, of
    layer4 at rate 4, and one 3x3 conv per ASPP rate straight to the classes.

    Args:
        num_classes: output classes, background included.
        backbone_weights: None, "imagenet" or a path to a torchvision ResNet-101 state dict (.pth).
        rates: the ASPP branches' dilations.
    """
    resnet = backbones.resnet(101, backbone_weights=backbone_weights, output_stride=8)
    backbones.set_dilation(resnet.layer3, [2] * len(resnet.layer3))
    backbones.set_dilation(resnet.layer4, [4] * len(resnet.layer4))
    features = IntermediateFeatures(resnet, {"layer4": "out"})
    head = SummedBranches([_atrous_classifier(2048, num_classes, rate) for rate in rates])
    return DeepLabV2(features, head)
