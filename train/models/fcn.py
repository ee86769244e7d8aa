"""FCN-8s on VGG16: the competition's baseline."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from tseg.train.models import backbones
from tseg.train.models.base import upsample
from tseg.train.models.registry import register_model


def bilinear_kernel(channels: int, size: int) -> torch.Tensor:
    """FCN's bilinear upsampling filter as a (channels, channels, size, size) deconv weight."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    taps = 1 - (torch.arange(size, dtype=torch.float32) - center).abs() / factor
    weight = torch.zeros(channels, channels, size, size)
    weight[range(channels), range(channels)] = taps[:, None] * taps[None, :]
    return weight


def _upscore2(num_classes: int) -> nn.ConvTranspose2d:
    """A learnable x2 deconvolution (4x4, stride 2), bilinear-initialised as in the paper."""
    deconv = nn.ConvTranspose2d(num_classes, num_classes, 4, stride=2, bias=False)
    with torch.no_grad():
        deconv.weight.copy_(bilinear_kernel(num_classes, 4))
    return deconv


def _score(in_channels: int, num_classes: int) -> nn.Conv2d:
    """A 1x1 scoring layer, zero-initialised as in the paper."""
    conv = nn.Conv2d(in_channels, num_classes, 1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


def _crop_like(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Crops a 4x4/stride-2 deconvolution's output (2h + 2) to ``like``'s size, offset 1 (aligned)."""
    return x[:, :, 1 : 1 + like.shape[-2], 1 : 1 + like.shape[-1]]


class FCN8s(nn.Module):
    """FCN-8s (Long et al. 2015, "Fully Convolutional Networks for Semantic Segmentation",
    https://arxiv.org/abs/1411.4038) on VGG16.

    VGG16's conv stages, fc6 as a 7x7 conv of 4096 and fc7 as a 1x1 conv of 4096 (both
    holding the ImageNet fc weights), class scores fused with 1x1 scores of pool4 and
    pool3 through learnable, bilinear-initialised x2 deconvolutions, then x8 bilinear
    upsampling. tseg uses the "same"-padding variant (fc6 padded by 3, no 100-pixel input
    padding) with offset crops after each x2 deconvolution and a fixed bilinear resize to
    the input size (the paper's fixed bilinear upscore8), so any input size works.
    (N, 3, H, W) -> {"out": (N, C, H, W)}.
    """

    def __init__(self, vgg: nn.Module, num_classes: int) -> None:
        super().__init__()
        features = vgg.features
        pools = [i for i, m in enumerate(features) if isinstance(m, nn.MaxPool2d)]
        self.to_pool3 = features[: pools[2] + 1]
        self.to_pool4 = features[pools[2] + 1 : pools[3] + 1]
        self.to_pool5 = features[pools[3] + 1 : pools[4] + 1]
        self.fc = nn.Sequential(
            OrderedDict(
                fc6=backbones.conv_from_fc(vgg.classifier[0], 512, padding=3),
                relu6=nn.ReLU(inplace=True),
                drop6=nn.Dropout(0.5),
                fc7=backbones.conv_from_fc(vgg.classifier[3], 4096),
                relu7=nn.ReLU(inplace=True),
                drop7=nn.Dropout(0.5),
            )
        )
        self.score_fr = _score(4096, num_classes)
        self.score_pool4 = _score(512, num_classes)
        self.score_pool3 = _score(256, num_classes)
        self.upscore2 = _upscore2(num_classes)
        self.upscore_pool4 = _upscore2(num_classes)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        size = x.shape[-2:]
        pool3 = self.to_pool3(x)  # stride 8
        pool4 = self.to_pool4(pool3)  # stride 16
        score = self.score_fr(self.fc(self.to_pool5(pool4)))  # stride 32
        score4 = self.score_pool4(pool4)
        score = _crop_like(self.upscore2(score), score4) + score4
        score3 = self.score_pool3(pool3)
        score = _crop_like(self.upscore_pool4(score), score3) + score3
        return OrderedDict(out=upsample(score, size))


@register_model("fcn8s_vgg16")
def fcn8s_vgg16(*, num_classes: int, backbone_weights: str | Path | None = None) -> FCN8s:
    """FCN-8s on VGG16 (no batch norm, as in the paper); the competition's baseline.

    Args:
        num_classes: output classes, background included.
        backbone_weights: None, "imagenet" or a path to a torchvision VGG16 state dict
            (.pth); fc6/fc7 are taken from its classifier.
    """
    return FCN8s(backbones.vgg16(batch_norm=False, backbone_weights=backbone_weights), num_classes)
