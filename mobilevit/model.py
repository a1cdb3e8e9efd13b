"""The one builder: :func:`create_model` turns any valid :class:`ArchSpec` (or a fixed-point name)
into an ``nn.Module``."""

from __future__ import annotations

from os import PathLike

import torch
from torch import Tensor, nn

from mobilevit.blocks import MobileViTBlock
from mobilevit.layers import ConvNormAct, InvertedResidual
from mobilevit.spec import ArchSpec, Unit


class MobileViT(nn.Module):
    """A MobileViT-family classifier built from an :class:`ArchSpec`.

    Besides ``forward`` (logits), it offers a feature-map API for dense heads:
    :meth:`forward_intermediates` returns every stage's map, and :attr:`feature_info` lists their
    channels, output strides and module names, as timm does.
    """

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        self.spec = spec
        units = spec.units()
        self.stem = build_unit(units[0])
        stages, channels, at = [], spec.stem_channels, 1
        self.feature_info: list[dict[str, int | str]] = []
        for i, (stage, reduction) in enumerate(zip(spec.stages, spec.reductions, strict=True)):
            count = stage.num_mv2 + (stage.block is not None)
            stages.append(nn.Sequential(*[build_unit(u) for u in units[at:at + count]]))
            at += count
            channels = stage.out_channels
            self.feature_info.append(dict(num_chs=channels, reduction=reduction,
                                          module=f"stages.{i}"))
        self.stages = nn.Sequential(*stages)
        self.head_conv = (ConvNormAct(channels, spec.head_channels, 1) if spec.head_channels
                          else nn.Identity())
        self.num_features = spec.out_channels
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head_drop = nn.Dropout(spec.classifier_dropout)
        self.classifier = nn.Linear(self.num_features, spec.num_classes)
        self.apply(_init_weights)

    def forward_intermediates(self, x: Tensor) -> list[Tensor]:
        """Feature maps after each stage, [B, C_i, H / r_i, W / r_i] (see :attr:`feature_info`)."""
        x = self.stem(channels_last(x))
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps

    def forward_features(self, x: Tensor) -> Tensor:
        """The last feature map, after the 1x1 expansion conv when the spec has one."""
        return self.head_conv(self.stages(self.stem(channels_last(x))))

    def forward_head(self, x: Tensor, *, pre_logits: bool = False) -> Tensor:
        """Pool, dropout and classify a map from :meth:`forward_features`."""
        x = self.head_drop(self.pool(x).flatten(1))  # [B, C]
        return x if pre_logits else self.classifier(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


def channels_last(x: Tensor) -> Tensor:
    """``x`` [B, C, H, W] stored channels-last, the layout in which the CPU's (oneDNN's) and the
    GPU's convolutions are fastest; the conv outputs keep it, so one copy at the input sets the
    whole network's layout (values and shapes are unchanged)."""
    return x.contiguous(memory_format=torch.channels_last)


def build_unit(unit: Unit) -> nn.Module:
    """The module of one :class:`~mobilevit.spec.Unit` of a network, as :class:`MobileViT` builds
    it. The head unit is the expansion conv (if any), the pool and the classifier in sequence."""
    if unit.kind == "stem":
        return ConvNormAct(3, unit.out_channels, 3, stride=unit.stride)
    if unit.kind == "mv2":
        return InvertedResidual(unit.in_channels, unit.out_channels, stride=unit.stride,
                                expansion=unit.expansion)
    if unit.kind == "block":
        assert unit.block is not None
        return MobileViTBlock(unit.in_channels, unit.block)
    width = unit.out_channels or unit.in_channels
    head_conv = ConvNormAct(unit.in_channels, width, 1) if unit.out_channels else nn.Identity()
    return nn.Sequential(head_conv, nn.AdaptiveAvgPool2d(1), nn.Flatten(1),
                         nn.Linear(width, unit.num_classes))


@torch.no_grad()
def _init_weights(module: nn.Module) -> None:
    # cvnets' initialisation (reference section 3.7).
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out")
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif hasattr(module, "weight") and isinstance(module.weight, nn.Parameter) \
            and module.weight.dim() == 1:
        nn.init.ones_(module.weight)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)


def create_model(model: str | PathLike[str] | ArchSpec, *, num_classes: int | None = None) -> MobileViT:
    """Build a MobileViT-family network from a fixed-point name, a spec JSON file or an ArchSpec.

    Args:
        model: a name from :func:`mobilevit.list_models` (``"mobilevit_s"``), a path to a spec JSON
            file, or an :class:`ArchSpec`.
        num_classes: replace the spec's number of classes.

    Example:
        >>> import torch, mobilevit
        >>> net = mobilevit.create_model("mobilevit_xxs", num_classes=10).eval()
        >>> net(torch.zeros(1, 3, 256, 256)).shape
        torch.Size([1, 10])
    """
    from mobilevit.zoo import resolve_spec

    spec = resolve_spec(model)
    if num_classes is not None:
        spec = spec.replace(num_classes=num_classes)
    return MobileViT(spec)


def num_params(module: nn.Module) -> int:
    """Number of parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())
