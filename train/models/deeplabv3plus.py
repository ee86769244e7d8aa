"""DeepLabV3+ on ResNet-50/101: the V3 encoder plus a decoder on low-level features."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from tseg.train.models import backbones
from tseg.train.models.aspp import ASPP, ASPP_CHANNELS, aspp_rates
from tseg.train.models.base import FCNHead, upsample
from tseg.train.models.deeplabv3 import MULTI_GRID
from tseg.train.models.registry import register_model

LOW_LEVEL_CHANNELS = 48


def _conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    ]


class DeepLabV3PlusDecoder(nn.Module):
    """The V3+ decoder: 1x1 conv to 48 channels on the stride-4 features, concatenated with
    the upsampled ASPP output, two 3x3 convs of 256 and the 1x1 classifier.

    ((N, 256, h, w) ASPP, (N, C_low, 4h', 4w') low-level) -> (N, num_classes, h_low, w_low).
    """

    def __init__(self, low_level_channels: int, num_classes: int) -> None:
        super().__init__()
        self.low_level = nn.Sequential(*_conv_bn_relu(low_level_channels, LOW_LEVEL_CHANNELS, 1))
        self.fuse = nn.Sequential(
            *_conv_bn_relu(ASPP_CHANNELS + LOW_LEVEL_CHANNELS, ASPP_CHANNELS, 3),
            *_conv_bn_relu(ASPP_CHANNELS, ASPP_CHANNELS, 3),
        )
        self.classifier = nn.Conv2d(ASPP_CHANNELS, num_classes, 1)

    def forward(self, aspp: torch.Tensor, low_level: torch.Tensor) -> torch.Tensor:
        low_level = self.low_level(low_level)
        x = torch.cat([upsample(aspp, low_level.shape[-2:]), low_level], dim=1)
        return self.classifier(self.fuse(x))


class DeepLabV3Plus(nn.Module):
    """DeepLabV3+ (Chen et al. 2018, "Encoder-Decoder with Atrous Separable Convolution for
    Semantic Image Segmentation", https://arxiv.org/abs/1802.02611), ResNet variant.

    Backbone {"low": stride 4, "out": stride 16 or 8[, "aux"]} -> ASPP -> decoder ->
    bilinear upsampling to the input size. (N, 3, H, W) -> {"out": (N, C, H, W)[, "aux"]}.
    """

    def __init__(
        self,
        backbone: nn.Module,
        aspp: nn.Module,
        decoder: nn.Module,
        aux_classifier: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.aspp = aspp
        self.decoder = decoder
        self.aux_classifier = aux_classifier

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        size = x.shape[-2:]
        features = self.backbone(x)
        result = OrderedDict()
        result["out"] = upsample(self.decoder(self.aspp(features["out"]), features["low"]), size)
        if self.aux_classifier is not None:
            result["aux"] = upsample(self.aux_classifier(features["aux"]), size)
        return result


def _deeplabv3plus_resnet(
    depth: int,
    *,
    num_classes: int,
    backbone_weights: str | Path | None,
    aux_loss: bool,
    output_stride: int,
    multi_grid: Sequence[int] | None,
) -> DeepLabV3Plus:
    return_layers = {"layer1": "low", "layer4": "out"}
    if aux_loss:
        return_layers["layer3"] = "aux"
    features = backbones.dilated_resnet(
        depth,
        backbone_weights=backbone_weights,
        output_stride=output_stride,
        multi_grid=multi_grid,
        return_layers=return_layers,
    )
    return DeepLabV3Plus(
        features,
        ASPP(2048, aspp_rates(output_stride)),
        DeepLabV3PlusDecoder(256, num_classes),
        FCNHead(1024, num_classes) if aux_loss else None,
    )


@register_model("deeplabv3plus_resnet50")
def deeplabv3plus_resnet50(
    *,
    num_classes: int,
    backbone_weights: str | Path | None = None,
    aux_loss: bool = False,
    output_stride: int = 16,
    multi_grid: Sequence[int] | None = MULTI_GRID,
) -> DeepLabV3Plus:
    """DeepLabV3+ on a dilated ResNet-50.

    Encoder as :func:`tseg.train.models.deeplabv3.deeplabv3_resnet50` (output stride 16,
    ASPP 6/12/18, multi-grid (1, 2, 4) by default; 8 doubles the rates); decoder on layer1.

    Args:
        num_classes: output classes, background included.
        backbone_weights: None, "imagenet" or a path to a ResNet-50 state dict (.pth).
        aux_loss: add an FCN head on layer3 ("aux" output).
        output_stride: 16 or 8.
        multi_grid: unit rates of layer4's three blocks; None keeps torchvision's rates.
    """
    return _deeplabv3plus_resnet(
        50,
        num_classes=num_classes,
        backbone_weights=backbone_weights,
        aux_loss=aux_loss,
        output_stride=output_stride,
        multi_grid=multi_grid,
    )


@register_model("deeplabv3plus_resnet101")
def deeplabv3plus_resnet101(
    *,
    num_classes: int,
    backbone_weights: str | Path | None = None,
    aux_loss: bool = False,
    output_stride: int = 16,
    multi_grid: Sequence[int] | None = MULTI_GRID,
) -> DeepLabV3Plus:
    """DeepLabV3+ on a dilated ResNet-101; options as :func:`deeplabv3plus_resnet50`."""
    return _deeplabv3plus_resnet(
        101,
        num_classes=num_classes,
        backbone_weights=backbone_weights,
        aux_loss=aux_loss,
        output_stride=output_stride,
        multi_grid=multi_grid,
    )
