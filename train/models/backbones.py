"""torchvision backbones, weights loaded through :mod:`weights`, reshaped for dense prediction."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torchvision import models as tvm

from tseg.runtime.errors import TsegError
from tseg.train.models.base import IntermediateFeatures
from tseg.train.models.weights import load_backbone_weights

OUTPUT_STRIDES = (8, 16)
_RESNETS = {50: (tvm.resnet50, tvm.ResNet50_Weights), 101: (tvm.resnet101, tvm.ResNet101_Weights)}


MAX_MULTI_GRID = 16


def check_output_stride(output_stride: int) -> None:
    """Raises TsegError unless ``output_stride`` is 8 or 16."""
    if output_stride not in OUTPUT_STRIDES:
        raise TsegError(f"output_stride must be one of {OUTPUT_STRIDES}, got {output_stride!r}")


def resnet(depth: int, *, backbone_weights: str | Path | None, output_stride: int) -> tvm.ResNet:
    """A torchvision ResNet-50/101 with weights, its last strides turned into dilation.

    torchvision's ``replace_stride_with_dilation``: at output stride 16 layer4 is dilated
    (rates 1, 2, 2 over its blocks); at 8 layer3 too (1, 2, 2, ...) and layer4 gets 2, 4, 4.
    The first block of a dilated layer keeps the previous rate.

    Args:
        depth: 50 or 101.
        backbone_weights: None, "imagenet" or a .pth path (see :func:`load_backbone_weights`).
        output_stride: 8 or 16.
    """
    check_output_stride(output_stride)
    builder, enum_cls = _RESNETS[depth]
    model = builder(weights=None, replace_stride_with_dilation=[False, output_stride == 8, True])
    return load_backbone_weights(model, backbone_weights, enum_cls, optional=("fc.",))


def set_dilation(layer: nn.Sequential, rates: Sequence[int]) -> None:
    """Sets the 3x3 convolutions of a ResNet layer's bottlenecks to the given rates, in place.

    Only dilation and padding change (no parameters), so weights still load.

    Args:
        layer: e.g. ``resnet.layer4``.
        rates: one rate per block (multi-grid (1, 2, 4) at rate 2 is (2, 4, 8)).
    """
    if len(rates) != len(layer):
        raise TsegError(f"need {len(layer)} rates, one per block, got {tuple(rates)}")
    for block, rate in zip(layer, rates, strict=True):
        block.conv2.dilation = (rate, rate)
        block.conv2.padding = (rate, rate)


def multi_grid_rates(output_stride: int, multi_grid: Sequence[int]) -> tuple[int, ...]:
    """layer4's rates: the unit rates of multi-grid times layer4's base rate (2 at OS16, 4 at OS8)."""
    # A rate is also the padding of its 3x3 convolutions: a huge one would pad every feature map huge.
    if (
        not isinstance(multi_grid, (list, tuple))
        or len(multi_grid) != 3
        or not all(isinstance(r, int) and not isinstance(r, bool) and 1 <= r <= MAX_MULTI_GRID for r in multi_grid)
    ):
        raise TsegError(
            f"multi_grid must be three ints from 1 to {MAX_MULTI_GRID} (e.g. (1, 2, 4)), got {multi_grid!r}"
        )
    base = 32 // output_stride
    return tuple(base * r for r in multi_grid)


def dilated_resnet(
    depth: int,
    *,
    backbone_weights: str | Path | None,
    output_stride: int,
    multi_grid: Sequence[int] | None,
    return_layers: dict[str, str],
) -> IntermediateFeatures:
    """A dilated ResNet (:func:`resnet`) with multi-grid on layer4, returning some layers' outputs.

    Args:
        depth, backbone_weights, output_stride: as :func:`resnet`.
        multi_grid: unit rates of layer4's blocks (:func:`multi_grid_rates`); None keeps
            torchvision's rates.
        return_layers: layer name -> output name, e.g. {"layer4": "out", "layer3": "aux"}.
    """
    model = resnet(depth, backbone_weights=backbone_weights, output_stride=output_stride)
    if multi_grid is not None:
        set_dilation(model.layer4, multi_grid_rates(output_stride, multi_grid))
    return IntermediateFeatures(model, return_layers)


def vgg16(*, batch_norm: bool, backbone_weights: str | Path | None) -> tvm.VGG:
    """torchvision's VGG16 (``vgg16_bn`` when ``batch_norm``), with weights.

    The classifier's fc6/fc7 are kept (families turn them into convolutions); a weight
    file may lack fc8 (``classifier.6``), which no family uses.
    """
    builder, enum_cls = (tvm.vgg16_bn, tvm.VGG16_BN_Weights) if batch_norm else (tvm.vgg16, tvm.VGG16_Weights)
    return load_backbone_weights(builder(weights=None), backbone_weights, enum_cls, optional=("classifier.6.",))


def vgg_stages(features: nn.Sequential) -> list[nn.Sequential]:
    """VGG's five conv stages (conv [+ BN] + ReLU blocks), split at and without the max-pools."""
    stages, current = [], []
    for module in features:
        if isinstance(module, nn.MaxPool2d):
            stages.append(nn.Sequential(*current))
            current = []
        else:
            current.append(module)
    return stages


@torch.no_grad()
def conv_from_fc(
    fc: nn.Linear,
    in_channels: int,
    *,
    padding: int = 0,
    dilation: int = 1,
    out_step: int = 1,
    in_step: int = 1,
    space_step: int = 1,
) -> nn.Conv2d:
    """A convolution that holds a fully connected layer's weights, optionally decimated.

    FCN reshapes VGG's fc6 (25088 -> 4096) into a 7x7 conv over 512 channels and fc7
    into a 1x1 conv; DeepLab-LargeFOV then decimates fc6 to 3x3 (``space_step=3``) and
    both to 1024 channels (``out_step=4``, and ``in_step=4`` for fc7).

    Args:
        fc: the linear layer, (out, in_channels * k * k) weight.
        in_channels: channels of the feature map it reads.
        padding, dilation: of the convolution.
        out_step, in_step, space_step: keep every n-th output channel, input channel, tap.
    """
    kernel = round((fc.in_features // in_channels) ** 0.5)
    weight = fc.weight.view(fc.out_features, in_channels, kernel, kernel)
    weight = weight[::out_step, ::in_step, ::space_step, ::space_step]
    conv = nn.Conv2d(weight.shape[1], weight.shape[0], weight.shape[2], padding=padding, dilation=dilation)
    conv.weight.copy_(weight)
    conv.bias.copy_(fc.bias[::out_step])
    return conv


def mobilenet_v3_large(*, backbone_weights: str | Path | None) -> tvm.MobileNetV3:
    """torchvision's MobileNetV3-Large with its last stage dilated (output stride 16), with weights."""
    model = tvm.mobilenet_v3_large(weights=None, dilated=True)
    return load_backbone_weights(model, backbone_weights, tvm.MobileNet_V3_Large_Weights, optional=("classifier.",))
