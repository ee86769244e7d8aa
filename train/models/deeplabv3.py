"""DeepLabV3 on ResNet-50/101 and MobileNetV3-Large, state-dict compatible with torchvision."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tseg.train.models import backbones
from tseg.train.models.aspp import DeepLabHead, aspp_rates
from tseg.train.models.base import FCNHead, IntermediateFeatures, SimpleSegmentationModel
from tseg.train.models.registry import register_model

MULTI_GRID = (1, 2, 4)


class DeepLabV3(SimpleSegmentationModel):
    """DeepLabV3 (Chen et al. 2017, "Rethinking Atrous Convolution for Semantic Image
    Segmentation", https://arxiv.org/abs/1706.05587).

    Dilated backbone -> ASPP head -> bilinear upsampling to the input size; an optional
    FCN head on an earlier stage gives "aux". (N, 3, H, W) -> {"out": (N, C, H, W)[, "aux"]}.
    """


def _deeplabv3_resnet(
    depth: int,
    *,
    num_classes: int,
    backbone_weights: str | Path | None,
    aux_loss: bool,
    output_stride: int,
    multi_grid: Sequence[int] | None,
) -> DeepLabV3:
    return_layers = {"layer4": "out"}
    if aux_loss:
        return_layers["layer3"] = "aux"
    features = backbones.dilated_resnet(
        depth,
        backbone_weights=backbone_weights,
        output_stride=output_stride,
        multi_grid=multi_grid,
        return_layers=return_layers,
    )
    return DeepLabV3(
        features,
        DeepLabHead(2048, num_classes, aspp_rates(output_stride)),
        FCNHead(1024, num_classes) if aux_loss else None,
    )


@register_model("deeplabv3_resnet50")
def deeplabv3_resnet50(
    *,
    num_classes: int,
    backbone_weights: str | Path | None = None,
    aux_loss: bool = False,
    output_stride: int = 16,
    multi_grid: Sequence[int] | None = MULTI_GRID,
) -> DeepLabV3:
    """DeepLabV3 on a dilated ResNet-50.

    The defaults are the paper's training setting: output stride 16, ASPP rates
    (6, 12, 18), multi-grid (1, 2, 4) in layer4 (rates 2, 4, 8). At output stride 8 the
    rates double (ASPP 12, 24, 36; layer4 4, 8, 16). ``output_stride=8, multi_grid=None``
    is torchvision's ``deeplabv3_resnet50`` exactly (its checkpoints load and give
    the same logits).

    Args:
        num_classes: output classes, background included.
        backbone_weights: None, "imagenet" or a path to a ResNet-50 state dict (.pth).
        aux_loss: add torchvision's FCN head on layer3 ("aux" output).
        output_stride: 16 or 8.
        multi_grid: unit rates of layer4's three blocks; None keeps torchvision's rates.
    """
    return _deeplabv3_resnet(
        50,
        num_classes=num_classes,
        backbone_weights=backbone_weights,
        aux_loss=aux_loss,
        output_stride=output_stride,
        multi_grid=multi_grid,
    )


@register_model("deeplabv3_resnet101")
def deeplabv3_resnet101(
    *,
    num_classes: int,
    backbone_weights: str | Path | None = None,
    aux_loss: bool = False,
    output_stride: int = 16,
    multi_grid: Sequence[int] | None = MULTI_GRID,
) -> DeepLabV3:
    """DeepLabV3 on a dilated ResNet-101; options as :func:`deeplabv3_resnet50`.

    ``output_stride=8, multi_grid=None`` is torchvision's ``deeplabv3_resnet101``.
    """
    return _deeplabv3_resnet(
        101,
        num_classes=num_classes,
        backbone_weights=backbone_weights,
        aux_loss=aux_loss,
        output_stride=output_stride,
        multi_grid=multi_grid,
    )


@register_model("deeplabv3_mobilenet_v3_large")
def deeplabv3_mobilenet_v3_large(
    *, num_classes: int, backbone_weights: str | Path | None = None, aux_loss: bool = False
) -> DeepLabV3:
    """DeepLabV3 on a dilated MobileNetV3-Large (output stride 16): the light member for CPUs.

    torchvision's configuration exactly (ASPP rates 12, 24, 36 on the stride-16 map;
    "aux" from the stride-8 stage), so its checkpoints load.

    Args:
        num_classes: output classes, background included.
        backbone_weights: None, "imagenet" or a path to a MobileNetV3-Large state dict (.pth).
        aux_loss: add the auxiliary FCN head on the stride-8 stage.
    """
    features = backbones.mobilenet_v3_large(backbone_weights=backbone_weights).features
    # C0, the strided blocks C1..C4, and the last block (C5, stride 16), as torchvision picks them.
    stages = [0] + [i for i, b in enumerate(features) if getattr(b, "_is_cn", False)] + [len(features) - 1]
    out_pos, aux_pos = stages[-1], stages[-4]
    return_layers = {str(out_pos): "out"}
    if aux_loss:
        return_layers[str(aux_pos)] = "aux"
    return DeepLabV3(
        IntermediateFeatures(features, return_layers),
        DeepLabHead(features[out_pos].out_channels, num_classes),
        FCNHead(features[aux_pos].out_channels, num_classes) if aux_loss else None,
    )
