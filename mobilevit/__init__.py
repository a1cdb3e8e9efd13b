"""The MobileViT family (v1, v2, v3) as one parameterised builder. Depends on torch only.

>>> import mobilevit
>>> spec = mobilevit.get_fixed_point("mobilevit_s").spec
>>> model = mobilevit.create_model(spec.with_blocks(heads=1), num_classes=10)
"""

from mobilevit.model import MobileViT, create_model, num_params
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

__all__ = [
    "ArchSpec", "BlockSpec", "StageSpec", "SpecError", "block", "with_fusion", "make_divisible",
    "v2_channels", "MobileViT", "create_model", "num_params", "FIXED_POINTS", "FixedPoint",
    "Published", "list_models", "get_fixed_point", "fixed_point_name", "load_spec",
    "resolve_spec", "v1_spec", "v2_spec",
]
