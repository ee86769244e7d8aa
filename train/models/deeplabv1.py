"""DeepLabV1-LargeFOV on VGG16."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from tseg.train.models import backbones
from tseg.train.models.base import SimpleSegmentationModel
from tseg.train.models.registry import register_model

FC_CHANNELS = 1024


class DeepLabVGG16(nn.Module):
    """VGG16 at output stride 8, as DeepLab reshapes it: 3x3 max-pools with padding 1,
    pool1-3 at stride 2, pool4 and pool5 at stride 1, conv5 with dilation 2.

    (N, 3, H, W) -> {"out": (N, 512, ceil(H/8), ceil(W/8))}.
    """

    def __init__(self, vgg: nn.Module) -> None:
        super().__init__()
        features = vgg.features
        pools = [i for i, m in enumerate(features) if isinstance(m, nn.MaxPool2d)]
        for n, i in enumerate(pools):
            features[i] = nn.MaxPool2d(3, stride=2 if n < 3 else 1, padding=1)
        for module in features[pools[3] + 1 : pools[4]]:
            if isinstance(module, nn.Conv2d):
                module.dilation, module.padding = (2, 2), (2, 2)
        self.features = features

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.features(x)}


def _classifier(num_classes: int) -> nn.Conv2d:
    """fc8: 1x1 conv to the classes, Gaussian init (std 0.01) as in DeepLab's prototxt."""
    conv = nn.Conv2d(FC_CHANNELS, num_classes, 1)
    nn.init.normal_(conv.weight, std=0.01)
    nn.init.zeros_(conv.bias)
    return conv


class LargeFOVHead(nn.Sequential):
    """fc6 (3x3, dilation ``rate``, 1024) + ReLU + dropout, fc7 (1x1, 1024) + ReLU + dropout, fc8.

    fc6 and fc7 hold VGG16's ImageNet fc weights decimated as in the paper: every 4th
    output channel (4096 -> 1024), every 3rd tap of fc6's 7x7 (-> 3x3), and every 4th
    input channel of fc7. (N, 512, h, w) -> (N, num_classes, h, w).
    """

    def __init__(self, vgg: nn.Module, num_classes: int, rate: int) -> None:
        fc6, fc7 = vgg.classifier[0], vgg.classifier[3]
        super().__init__(
            OrderedDict(
                fc6=backbones.conv_from_fc(fc6, 512, padding=rate, dilation=rate, out_step=4, space_step=3),
                relu6=nn.ReLU(inplace=True),
                drop6=nn.Dropout(0.5),
                fc7=backbones.conv_from_fc(fc7, 4096, out_step=4, in_step=4),
                relu7=nn.ReLU(inplace=True),
                drop7=nn.Dropout(0.5),
                fc8=_classifier(num_classes),
            )
        )


class DeepLabV1(SimpleSegmentationModel):
    """DeepLabV1-LargeFOV (Chen et al. 2015, "Semantic Image Segmentation with Deep
    Convolutional Nets and Fully Connected CRFs", https://arxiv.org/abs/1412.7062).

    DeepLab's VGG16 (output stride 8) -> LargeFOV head (fc6 3x3 at rate 12) -> bilinear
    upsampling to the input size. (N, 3, H, W) -> {"out": (N, C, H, W)}. The paper's
    dense CRF is post-processing: see tseg.runtime.crf.
    """


@register_model("deeplabv1_vgg16")
def deeplabv1_vgg16(*, num_classes: int, backbone_weights: str | Path | None = None, rate: int = 12) -> DeepLabV1:
    """DeepLabV1-LargeFOV on VGG16 (no batch norm, as in the paper).

    Args:
        num_classes: output classes, background included.
        backbone_weights: None, "imagenet" or a path to a torchvision VGG16 state dict (.pth).
        rate: fc6's dilation (12 is LargeFOV).
    """
    vgg = backbones.vgg16(batch_norm=False, backbone_weights=backbone_weights)
    return DeepLabV1(DeepLabVGG16(vgg), LargeFOVHead(vgg, num_classes, rate))
