"""DeepLabV3's atrous spatial pyramid pooling and head, laid out as torchvision's.

The module names match torchvision's ``DeepLabHead`` so its state dicts load as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from tseg.train.models.base import upsample

ASPP_CHANNELS = 256


def aspp_rates(output_stride: int) -> tuple[int, int, int]:
    """DeepLabV3's ASPP rates: (6, 12, 18) at output stride 16, doubled at 8."""
    return (6, 12, 18) if output_stride == 16 else (12, 24, 36)


class ASPPConv(nn.Sequential):
    """3x3 atrous conv + BN + ReLU: (N, C_in, h, w) -> (N, C_out, h, w)."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
        )


class ASPPPooling(nn.Sequential):
    """Image-level features: global average pool, 1x1 conv + BN + ReLU, upsampled back to (h, w)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        for module in self:
            x = module(x)
        return upsample(x, size)


class ASPP(nn.Module):
    """ASPP of DeepLabV3 (Chen et al. 2017, https://arxiv.org/abs/1706.05587).

    A 1x1 conv, one 3x3 atrous conv per rate and image pooling, concatenated and
    projected by a 1x1 conv + BN + ReLU (+ dropout 0.5):
    (N, C_in, h, w) -> (N, out_channels, h, w).
    """

    def __init__(self, in_channels: int, atrous_rates: Sequence[int], out_channels: int = ASPP_CHANNELS):
        super().__init__()
        branches: list[nn.Module] = [
            nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU())
        ]
        branches += [ASPPConv(in_channels, out_channels, rate) for rate in atrous_rates]
        branches.append(ASPPPooling(in_channels, out_channels))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(
            nn.Conv2d(len(self.convs) * out_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
            nn.Dropout(0.5),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([branch(x) for branch in self.convs], dim=1))


class DeepLabHead(nn.Sequential):
    """ASPP, then a 3x3 conv 256 + BN + ReLU and the 1x1 classifier (torchvision's head).

    The paper goes from ASPP's projection straight to the classifier; torchvision adds
    the 3x3 conv, and tseg keeps it so that torchvision's checkpoints load.
    (N, C_in, h, w) -> (N, num_classes, h, w).
    """

    def __init__(self, in_channels: int, num_classes: int, atrous_rates: Sequence[int] = (12, 24, 36)):
        super().__init__(
            ASPP(in_channels, atrous_rates),
            nn.Conv2d(ASPP_CHANNELS, ASPP_CHANNELS, 3, padding=1, bias=False),
            nn.BatchNorm2d(ASPP_CHANNELS),
            nn.ReLU(),
            nn.Conv2d(ASPP_CHANNELS, num_classes, 1),
        )
