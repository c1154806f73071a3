"""OFA's image backbone: ResNet stem + stages 1-3 of bottleneck blocks (stride 16, 1024 channels).

OFA drops stage 4, so a 256 px image becomes a 16x16 grid of 1024-d patch features. Module names follow
the checkpoints (``conv1``, ``bn1``, ``layer1.0.conv1`` ... ``downsample.0/1``).
"""

from __future__ import annotations

import torch
from torch import nn


class DropPath(nn.Module):
    """Stochastic depth on the residual branch (per sample); identity at eval or rate 0."""

    def __init__(self, rate: float = 0.0, batch_dim: int = 0):
        super().__init__()
        self.rate = rate
        self.batch_dim = batch_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.rate == 0.0 or not self.training:
            return x
        keep = 1.0 - self.rate
        shape = [1] * x.ndim
        shape[self.batch_dim] = x.shape[self.batch_dim]
        mask = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(keep)
        return x / keep * mask


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck (stride on the 3x3 conv), as in OFA and torchvision."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 drop_path_rate: float = 0.0):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.drop_path = DropPath(drop_path_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(identity + self.drop_path(out))


class _ChannelsLast(torch.autograd.Function):
    """Channels-last copy of an image batch whose gradient comes back in the caller's (NCHW) layout, so
    attack code may ``.view`` input gradients as torchattacks does."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous()


class ResNet(nn.Module):
    """Stem + three bottleneck stages; output (B, 16 * base_planes, H/16, W/16) = (B, 1024, ...) for OFA.

    ``base_planes`` (64 in every OFA release) scales all widths; narrower backbones exist only for the
    small CPU-trained embedded model, where the full-width stem and stages dominate the compute.
    """

    #: Output channels of OFA's backbone (``base_planes`` = 64); instances carry their own ``out_channels``.
    out_channels = 1024
    #: Recompute each stage in backward when training (``OFAModel.set_activation_checkpointing``).
    activation_checkpointing = False

    def __init__(self, layers: list[int], drop_path_rate: float = 0.0, base_planes: int = 64):
        super().__init__()
        self.inplanes = base_planes
        self.out_channels = 4 * base_planes * Bottleneck.expansion
        self.conv1 = nn.Conv2d(3, base_planes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(base_planes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(base_planes, layers[0], 1, drop_path_rate)
        self.layer2 = self._make_layer(2 * base_planes, layers[1], 2, drop_path_rate)
        self.layer3 = self._make_layer(4 * base_planes, layers[2], 2, drop_path_rate)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, planes: int, blocks: int, stride: int, drop_path_rate: float) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * Bottleneck.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * Bottleneck.expansion),
            )
        rates = torch.linspace(0, drop_path_rate, blocks).tolist()
        mods = [Bottleneck(self.inplanes, planes, stride, downsample)]  # OFA: no drop path on block 0
        self.inplanes = planes * Bottleneck.expansion
        mods += [Bottleneck(self.inplanes, planes, drop_path_rate=rates[i]) for i in range(1, blocks)]
        return nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Channels-last activations: oneDNN's convolutions, batch norm and pooling run about a quarter
        # faster on CPU that way (measured on the embedded architecture's training step); the weights and
        # the checkpoint layout are unchanged, and the values agree with NCHW to float rounding.
        x = _ChannelsLast.apply(x)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in (self.layer1, self.layer2, self.layer3):
            x = self._stage(stage, x)
        return x

    def _stage(self, stage: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """One stage, checkpointed when asked, training, and its BatchNorm frozen: a training BatchNorm
        would update its running statistics again when the stage is replayed."""
        if (self.activation_checkpointing and self.training and torch.is_grad_enabled()
                and not any(m.training for m in stage.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))):
            from torch.utils.checkpoint import checkpoint

            return checkpoint(stage, x, use_reentrant=False)
        return stage(x)
