"""The MobileViT family (v1, v2, v3) as one parameterised builder. Depends on torch only.

>>> import mobilevit
>>> spec = mobilevit.get_fixed_point("mobilevit_s").spec
>>> model = mobilevit.create_model(spec.with_blocks(heads=1), num_classes=10)

Specs, the zoo and the analytic counts (``mobilevit.complexity``) need no torch: ``import
mobilevit`` loads torch only when a network is built (``MobileViT``, ``create_model``,
``num_params``), so commands that only read specs answer at once.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mobilevit.spec import (
                            ArchSpec,
                            BlockSpec,
                            SpecError,
                            StageSpec,
                            block,
                            make_divisible,
                            v2_channels,
                            with_fusion,
)
from mobilevit.zoo import (
                            FIXED_POINTS,
                            FixedPoint,
                            Published,
                            fixed_point_name,
                            get_fixed_point,
                            list_models,
                            load_spec,
                            resolve_spec,
                            v1_spec,
                            v2_spec,
)

if TYPE_CHECKING:
    from mobilevit.model import MobileViT, create_model, num_params

_BUILDER = ("MobileViT", "create_model", "num_params")  # in mobilevit.model, which needs torch


def __getattr__(name: str) -> Any:
    if name in _BUILDER:
        return getattr(importlib.import_module("mobilevit.model"), name)
    if name in ("model", "layers", "attention_modules"):
        return importlib.import_module(f"mobilevit.{name}")
    raise AttributeError(f"module 'mobilevit' has no attribute {name!r}")


__all__ = [
    "ArchSpec", "BlockSpec", "StageSpec", "SpecError", "block", "with_fusion", "make_divisible",
    "v2_channels", "MobileViT", "create_model", "num_params", "FIXED_POINTS", "FixedPoint",
    "Published", "list_models", "get_fixed_point", "fixed_point_name", "load_spec",
    "resolve_spec", "v1_spec", "v2_spec",
]
