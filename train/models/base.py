"""What every family shares: the feature getter and the backbone -> head -> upsample forward."""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn


class IntermediateFeatures(nn.ModuleDict):
    """Runs a model's children in order and returns some of their outputs by new names.

    torchvision's ``IntermediateLayerGetter``: the children after the last returned one
    are dropped (e.g. a ResNet's avgpool and fc), and the state-dict keys stay the
    model's own (``layer4.0.conv1.weight``), so torchvision's checkpoints load as they are.

    Args:
        model: a module whose children run in sequence (a ResNet, MobileNetV3's features).
        return_layers: child name -> output name, e.g. {"layer4": "out", "layer3": "aux"}.
    """

    def __init__(self, model: nn.Module, return_layers: dict[str, str]) -> None:
        children = dict(model.named_children())
        missing = sorted(set(return_layers) - set(children))
        if missing:
            raise ValueError(f"return_layers {missing} are not children of {type(model).__name__}")
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        remaining = set(return_layers)
        for name, module in children.items():
            layers[name] = module
            remaining.discard(name)
            if not remaining:
                break
        super().__init__(layers)
        self.return_layers = dict(return_layers)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """(N, 3, H, W) -> {output name: (N, C_i, H_i, W_i)}."""
        out: dict[str, torch.Tensor] = OrderedDict()
        for name, module in self.items():
            x = module(x)
            if name in self.return_layers:
                out[self.return_layers[name]] = x
        return out


class SimpleSegmentationModel(nn.Module):
    """Backbone -> classifier -> bilinear upsampling to the input size (torchvision's base).

    Args:
        backbone: (N, 3, H, W) -> {"out": features[, "aux": features]}.
        classifier: "out" features -> (N, num_classes, h, w) logits.
        aux_classifier: "aux" features -> (N, num_classes, h', w') logits, or None.
    """

    def __init__(self, backbone: nn.Module, classifier: nn.Module, aux_classifier: nn.Module | None = None):
        super().__init__()
        self.backbone = backbone
        self.classifier = classifier
        self.aux_classifier = aux_classifier

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """(N, 3, H, W) -> {"out": (N, C, H, W)[, "aux": (N, C, H, W)]} logits."""
        size = x.shape[-2:]
        features = self.backbone(x)
        result = OrderedDict()
        result["out"] = upsample(self.classifier(features["out"]), size)
        if self.aux_classifier is not None:
            result["aux"] = upsample(self.aux_classifier(features["aux"]), size)
        return result


def upsample(x: torch.Tensor, size) -> torch.Tensor:
    """Bilinear resize of (N, C, h, w) to (N, C, *size), align_corners=False as torchvision."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class FCNHead(nn.Sequential):
    """torchvision's auxiliary head: 3x3 conv to in/4 channels, BN, ReLU, dropout, 1x1 classifier."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        inter = in_channels // 4
        super().__init__(
            nn.Conv2d(in_channels, inter, 3, padding=1, bias=False),
            nn.BatchNorm2d(inter),
            nn.ReLU(),
            nn.Dropout(0.1),
            nn.Conv2d(inter, num_classes, 1),
        )
