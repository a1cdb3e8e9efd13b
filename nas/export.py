"""Export a MobileViT-family network to a CoreML ML program (.mlpackage) or to ONNX.

CoreML conversion goes through ``torch.export`` (``torch.jit.trace`` fails on this torch version)
and runs on Linux; running the result needs macOS. CoreML rejects tensors of rank > 5, so every
converted program is checked and a violation is an error, not a package that fails on the phone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mobilevit import ArchSpec, MobileViT, fixed_point_name, resolve_spec
from nas.errors import NasError
from nas.runtime import quiet

FORMATS = ("coreml", "onnx")
COREML_MAX_RANK = 5


class ExportError(NasError):
    """An export that cannot produce a valid artefact."""


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_model` wrote."""

    path: Path
    format: str
    spec_id: str
    resolution: int
    max_rank: int | None  # highest tensor rank in the CoreML program (None for ONNX)


@contextlib.contextmanager
def quiet_converters() -> Iterator[None]:
    """Silence coremltools' import-time notices (no native runtime on Linux, untested torch
    version) and the converters' progress bars and banners; errors still raise.

    coremltools' progress bars (tqdm, on sys.stderr) and torch.onnx's progress lines (print)
    have no switch of their own, so the streams themselves are replaced for the block: see
    :func:`nas.runtime.quiet` for what that means for other threads, and how overlapping blocks
    restore everything exactly, also after an exception.
    """
    # torch.__trace: when a root handler takes DEBUG (pytest, Ray workers), torch.export builds
    # structured trace payloads for every graph, which makes a conversion 10x slower.
    with quiet(("coremltools", "torch.onnx", "torch.export", "torch.__trace"), streams=True):
        yield


def coreml_max_rank(mlmodel: Any) -> tuple[int, str]:
    """Highest rank of any tensor in a converted ML program, and the op that produces it."""
    best, where = 0, ""
    for function in mlmodel._mil_program.functions.values():
        for op in function.operations:
            for var in op.outputs:
                rank = len(var.shape) if var.shape is not None else 0
                if rank > best:
                    best, where = rank, f"{op.op_type} {op.name}"
    return best, where


def exported_program(model: nn.Module, resolution: int) -> Any:
    """``model`` (put in eval mode) as a batch-1 ATen-dialect ``torch.export`` program, the form
    coremltools converts."""
    example = torch.zeros(1, 3, resolution, resolution)
    with torch.no_grad():
        return torch.export.export(model.eval(), (example,)).run_decompositions({})


def coreml_inputs(resolution: int, image_input: bool = True) -> list[Any]:
    """The CoreML input description: an RGB image scaled by 1/255 (what an app passes), else a
    float tensor."""
    import coremltools as ct

    shape = (1, 3, resolution, resolution)
    if image_input:
        return [ct.ImageType(name="image", shape=shape, scale=1 / 255.0,
                             color_layout=ct.colorlayout.RGB)]
    return [ct.TensorType(name="image", shape=shape)]


def to_coreml(model: nn.Module, path: str | PathLike[str], *, resolution: int,
              precision: str = "float16", image_input: bool = True,
              metadata: dict[str, str] | None = None) -> tuple[Path, int]:
    """Convert ``model`` to an ML program saved at ``path`` (.mlpackage).

    Args:
        model: the network (put in eval mode here).
        path: output path; ``.mlpackage`` is appended when missing.
        resolution: square input size baked into the program.
        precision: ``"float16"`` (the ML-program default, what the Neural Engine runs) or
            ``"float32"``.
        image_input: take an RGB image scaled by 1/255 (what an app passes), else a float tensor.
        metadata: extra user-defined metadata stored in the package.

    Returns:
        The written path and the highest tensor rank in the program.
    """
    path = Path(path)
    if path.suffix != ".mlpackage":
        path = path.with_name(path.name + ".mlpackage")
    if precision not in ("float16", "float32"):
        raise ExportError(f"precision={precision!r}: expected float16 or float32")
    with quiet_converters():
        import coremltools as ct

        program = exported_program(model, resolution)
        try:
            mlmodel = ct.convert(
                program, inputs=coreml_inputs(resolution, image_input),
                outputs=[ct.TensorType(name="logits")],
                convert_to="mlprogram", minimum_deployment_target=ct.target.iOS16,
                compute_precision=(ct.precision.FLOAT16 if precision == "float16"
                                   else ct.precision.FLOAT32))
        except Exception as exc:  # coremltools raises many types; report one line
            raise ExportError(f"CoreML conversion failed: {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
        rank, where = coreml_max_rank(mlmodel)
        if rank > COREML_MAX_RANK:
            raise ExportError(f"CoreML program has a rank-{rank} tensor ({where}); CoreML accepts "
                              f"rank <= {COREML_MAX_RANK}")
        for key, value in (metadata or {}).items():
            mlmodel.user_defined_metadata[key] = value
        path.parent.mkdir(parents=True, exist_ok=True)
        mlmodel.save(str(path))
    return path, rank


def to_onnx(model: nn.Module, path: str | PathLike[str], *, resolution: int) -> Path:
    """Export ``model`` to ONNX (opset 20, ``torch.onnx`` dynamo exporter) at ``path``."""
    path = Path(path)
    if path.suffix != ".onnx":
        path = path.with_name(path.name + ".onnx")
    path.parent.mkdir(parents=True, exist_ok=True)
    with quiet_converters():
        try:
            import onnxscript  # noqa: F401  (the dynamo exporter needs it)
        except ImportError:
            raise ExportError("ONNX export needs the onnx extra: pip install "
                              "'mobilevit-nas[onnx]'") from None
        example = torch.zeros(1, 3, resolution, resolution)
        torch.onnx.export(model.eval(), (example,), str(path), dynamo=True,
                          input_names=["image"], output_names=["logits"])
    return path


def export_model(model: str | PathLike[str] | ArchSpec, path: str | PathLike[str], *,
                 to: str = "coreml", resolution: int | None = None,
                 weights: str | PathLike[str] | None = None,
                 precision: str = "float16") -> ExportResult:
    """Export a fixed point (by name), a spec JSON file or an ArchSpec.

    Args:
        model: what to export.
        path: output file (``.mlpackage`` or ``.onnx`` appended when missing).
        to: ``"coreml"`` or ``"onnx"``.
        resolution: input size (default: the spec's resolution).
        weights: optional state-dict file (``torch.save``) to load; otherwise the network has its
            initial weights, which is all that latency measurement needs.
        precision: CoreML compute precision.

    Example:
        >>> export_model("mobilevit_xxs", "/tmp/xxs", to="coreml").path.name
        'xxs.mlpackage'
    """
    if to not in FORMATS:
        raise ExportError(f"--to {to!r}: expected one of {', '.join(FORMATS)}")
    spec = resolve_spec(model)
    resolution = resolution or spec.resolution
    net = MobileViT(spec)
    if weights is not None:
        load_weights(net, weights)
    if to == "onnx":
        return ExportResult(to_onnx(net, path, resolution=resolution), to, spec.spec_id,
                            resolution, None)
    metadata = {"spec_id": spec.spec_id, "spec_json": spec.to_json(),
                "fixed_point": fixed_point_name(spec) or "", "resolution": str(resolution)}
    out, rank = to_coreml(net, path, resolution=resolution, precision=precision,
                          metadata=metadata)
    return ExportResult(out, to, spec.spec_id, resolution, rank)


def load_weights(model: nn.Module, path: str | PathLike[str]) -> None:
    """Load a state dict saved with ``torch.save`` into ``model``; mismatches are one-line errors."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as exc:
        raise ExportError(f"{path}: cannot read weights ({exc})") from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()
        raise ExportError(f"{path}: weights do not fit this spec ({' '.join(first[:2])})") from None
