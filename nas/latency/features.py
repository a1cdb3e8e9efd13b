"""Latency features of a candidate, read from its converted CoreML ML program.

What a phone runs is the ML program, not the PyTorch graph: the converter fuses some ops, splits
others, inserts casts and layout changes, and folds constants. So the predictor's features are
counted on the program itself (``ct.convert(..., convert_to="milinternal")``, the same pipeline as
``nas export``, stopped before serialisation), per operation:

* work: multiply-accumulates of convolutions (dense and depthwise apart), of matmuls and linears;
* memory traffic: bytes read and written by each op's non-constant tensors (fp16), grouped as
  convolution, attention (matmul, softmax), layout (reshape, transpose, ...), normalisation and
  element-wise traffic, plus the weight bytes;
* structure: op counts per group, the highest tensor rank, and attention sizes (softmax elements,
  the largest token count).

Everything here runs on Linux: it needs coremltools' converter, not the CoreML runtime.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from mobilevit import ArchSpec

# Bytes per element as the phone runs the program: float tensors in fp16 (the ML-program default),
# whatever precision the program was converted at here.
BYTES = {"fp16": 2, "fp32": 2, "int32": 4, "int16": 2, "int8": 1, "uint8": 1, "bool": 1}
LAYOUT_OPS = frozenset({"reshape", "transpose", "squeeze", "expand_dims", "concat", "split",
                        "slice_by_index", "slice_by_size", "gather", "gather_nd", "tile",
                        "pixel_shuffle", "pixel_unshuffle", "space_to_depth", "depth_to_space",
                        "upsample_bilinear", "upsample_nearest_neighbor", "resize_bilinear",
                        "pad", "stack", "reshape_like", "crop_resize"})
NORM_OPS = frozenset({"layer_norm", "batch_norm", "instance_norm", "l2_norm", "reduce_mean",
                      "reduce_sum", "reduce_l2_norm", "rsqrt", "sqrt"})
ATTENTION_OPS = frozenset({"matmul", "softmax", "scaled_dot_product_attention"})
IGNORED_OPS = frozenset({"const", "cast"})

FEATURES = (
    "ops", "conv_ops", "layout_ops", "norm_ops", "attention_ops", "elementwise_ops",
    "conv_gmacs", "dwconv_gmacs", "matmul_gmacs",
    "conv_mb", "dwconv_mb", "attention_mb", "layout_mb", "norm_mb", "elementwise_mb",
    "weight_mb", "softmax_melems", "max_tokens", "max_rank",
)


@dataclass(frozen=True)
class ProgramFeatures:
    """Counts and sizes of one converted program (see the module docstring); MB are 1e6 bytes."""

    values: dict[str, float]
    op_types: dict[str, int]

    def __getitem__(self, name: str) -> float:
        return self.values[name]

    def to_dict(self) -> dict[str, Any]:
        return {"values": dict(self.values), "op_types": dict(self.op_types)}


def _numel(var: Any) -> int:
    shape = var.shape if var.shape is not None else ()
    return math.prod(int(d) if isinstance(d, int) else 1 for d in shape)


def _bytes(var: Any) -> int:
    name = getattr(var.dtype, "__name__", str(var.dtype))
    return _numel(var) * BYTES.get(name, 2)


def _is_const(var: Any) -> bool:
    return var.val is not None  # const ops' outputs and anything constant-folded


def program_features(program: Any) -> ProgramFeatures:
    """The features of a MIL program (``coremltools.converters.mil.Program``)."""
    return ops_features([op for function in program.functions.values()
                         for op in function.operations])


def ops_features(ops: Iterable[Any]) -> ProgramFeatures:
    """The features of some operations of a MIL program (all of them: :func:`program_features`)."""
    v = dict.fromkeys(FEATURES, 0.0)
    op_types: dict[str, int] = {}
    for op in ops:
        kind = op.op_type
        if kind in IGNORED_OPS:
            continue
        op_types[kind] = op_types.get(kind, 0) + 1
        v["ops"] += 1
        inputs = [x for x in op.inputs.values() if not isinstance(x, (list, tuple))]
        tensors = [x for x in inputs if not _is_const(x)]
        weights = [x for x in inputs if _is_const(x) and x.shape and len(x.shape) >= 2]
        traffic = (sum(_bytes(x) for x in tensors) + sum(_bytes(y) for y in op.outputs)) / 1e6
        v["weight_mb"] += sum(_bytes(w) for w in weights) / 1e6
        for y in op.outputs:
            if y.shape is not None:
                v["max_rank"] = max(v["max_rank"], len(y.shape))
        if kind == "conv":
            weight = op.inputs["weight"]
            cout, cin_per_group, *kernel = weight.shape
            macs = _numel(op.outputs[0]) * cin_per_group * math.prod(kernel) / 1e9
            depthwise = cin_per_group == 1 and int(op.inputs["groups"].val) > 1
            v["dwconv_gmacs" if depthwise else "conv_gmacs"] += macs
            v["dwconv_mb" if depthwise else "conv_mb"] += traffic
            v["conv_ops"] += 1
        elif kind in ("linear", "matmul"):
            x = op.inputs["x"]
            k = int(x.shape[-1]) if not op.inputs.get("transpose_x") or \
                not op.inputs["transpose_x"].val else int(x.shape[-2])
            v["matmul_gmacs"] += _numel(op.outputs[0]) * k / 1e9
            if kind == "matmul":
                v["attention_mb"] += traffic
                v["attention_ops"] += 1
            else:
                v["conv_mb"] += traffic
                v["conv_ops"] += 1
        elif kind in ATTENTION_OPS:
            v["attention_mb"] += traffic
            v["attention_ops"] += 1
            if kind == "softmax":
                out = op.outputs[0]
                v["softmax_melems"] += _numel(out) / 1e6
                v["max_tokens"] = max(v["max_tokens"], float(out.shape[-1]))
        elif kind in LAYOUT_OPS:
            v["layout_mb"] += traffic
            v["layout_ops"] += 1
        elif kind in NORM_OPS:
            v["norm_mb"] += traffic
            v["norm_ops"] += 1
        else:
            v["elementwise_mb"] += traffic
            v["elementwise_ops"] += 1
    return ProgramFeatures({k: round(x, 6) for k, x in v.items()}, dict(sorted(op_types.items())))


def convert_to_mil(spec: ArchSpec, resolution: int) -> Any:
    """The ML program of ``spec`` at ``resolution`` as ``nas export`` converts it.

    It runs coremltools' default pass pipeline itself, less two costs that change nothing the
    features count: the fp16 cast of the weights (a quarter of the passes' time; it adds only
    casts) and the validation of the whole program after each of the ~95 passes (coremltools'
    pipeline manager does that unconditionally; here the program is validated once, at the end).
    Together they were 40 % of the conversion time.
    """
    from mobilevit import MobileViT
    from nas.export import coreml_inputs, exported_program, quiet_converters

    with quiet_converters():
        import coremltools as ct

        return mil_program(exported_program(MobileViT(spec), resolution),
                           coreml_inputs(resolution), [ct.TensorType(name="logits")])


def mil_program(exported: Any, inputs: list[Any], outputs: list[Any] | None) -> Any:
    """Convert a ``torch.export`` program to a MIL program with the passes of
    :func:`convert_to_mil` (call it inside :func:`nas.export.quiet_converters`)."""
    import coremltools as ct
    from coremltools.converters.mil.mil.passes.pass_registry import PASS_REGISTRY

    program = ct.convert(exported, inputs=inputs, outputs=outputs, convert_to="milinternal",
                         minimum_deployment_target=ct.target.iOS16,
                         pass_pipeline=ct.PassPipeline.EMPTY)
    pipeline = ct.PassPipeline.DEFAULT
    for name in pipeline.passes:
        if name == "common::add_fp16_cast":
            continue
        graph_pass = PASS_REGISTRY[name]
        graph_pass.set_options(pipeline.get_options(name))
        graph_pass(program)
    program.validate(check_essential_scope=True)
    return program


@lru_cache(maxsize=256)
def spec_features(spec: ArchSpec, resolution: int) -> ProgramFeatures:
    """Convert ``spec`` and count its program's features (remembered per process)."""
    return program_features(convert_to_mil(spec, resolution))
