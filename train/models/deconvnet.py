"""DeconvNet on VGG16 with batch norm."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from tseg.train.models import backbones
from tseg.train.models.registry import register_model

# Decoder stages, mirroring VGG16's conv stages 5..1: (in, out) channels per deconvolution.
DECODER = (
    ((512, 512), (512, 512), (512, 512)),
    ((512, 512), (512, 512), (512, 256)),
    ((256, 256), (256, 256), (256, 128)),
    ((128, 128), (128, 64)),
    ((64, 64), (64, 64)),
)


def _deconv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3) -> nn.Sequential:
    """Deconvolution (stride 1, size-preserving) + BN + ReLU, the decoder's unit."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def _with_bn_relu(conv: nn.Conv2d) -> nn.Sequential:
    return nn.Sequential(conv, nn.BatchNorm2d(conv.out_channels), nn.ReLU(inplace=True))


class DeconvNet(nn.Module):
    """DeconvNet (Noh et al. 2015, "Learning Deconvolution Network for Semantic
    Segmentation", https://arxiv.org/abs/1505.04366).

    Encoder: VGG16-BN's five conv stages, each followed by a 2x2 max-pool whose indices
    are kept; fc6 as a 7x7 conv of 4096 and fc7 as a 1x1 conv of 4096 (holding the
    ImageNet fc weights), each with BN + ReLU. Decoder, the mirror image: a 7x7
    deconvolution back to 512 channels, then per stage max-unpooling with the encoder's
    indices and 3x3 deconvolution + BN + ReLU blocks, then a 1x1 classifier. fc6 and its
    deconvolution are padded by 3 (the paper's 224x224 crops shrink pool5 to 1x1), so
    any input size works and the logits come out at the input size.
    (N, 3, H, W) -> {"out": (N, C, H, W)}.
    """

    def __init__(self, vgg: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.encoder = nn.ModuleList(backbones.vgg_stages(vgg.features))
        self.fc = nn.Sequential(
            OrderedDict(
                fc6=_with_bn_relu(backbones.conv_from_fc(vgg.classifier[0], 512, padding=3)),
                fc7=_with_bn_relu(backbones.conv_from_fc(vgg.classifier[3], 4096)),
                deconv_fc6=_deconv_bn_relu(4096, 512, kernel_size=7),
            )
        )
        self.decoder = nn.ModuleList(nn.Sequential(*(_deconv_bn_relu(i, o) for i, o in stage)) for stage in DECODER)
        self.classifier = nn.Conv2d(64, num_classes, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        pooled = []  # (indices, size before pooling) per stage
        for stage in self.encoder:
            x = stage(x)
            size = x.shape[-2:]
            x, indices = F.max_pool2d(x, 2, 2, return_indices=True)
            pooled.append((indices, size))
        x = self.fc(x)
        for stage, (indices, size) in zip(self.decoder, reversed(pooled), strict=True):
            x = stage(F.max_unpool2d(x, indices, 2, 2, output_size=size))
        return OrderedDict(out=self.classifier(x))


@register_model("deconvnet_vgg16_bn")
def deconvnet_vgg16_bn(*, num_classes: int, backbone_weights: str | Path | None = None) -> DeconvNet:
    """DeconvNet on VGG16 with batch norm (~252M parameters, most in fc6 and its mirror).

    Args:
        num_classes: output classes, background included.
        backbone_weights: None, "imagenet" or a path to a torchvision VGG16-BN state dict
            (.pth); fc6/fc7 are taken from its classifier.
    """
    return DeconvNet(backbones.vgg16(batch_norm=True, backbone_weights=backbone_weights), num_classes)
