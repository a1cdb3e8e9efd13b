import numpy as np
import pytest
import torch

from mobilevit import MobileViT, create_model, get_fixed_point
from nas.export import COREML_MAX_RANK, ExportError, export_model, load_weights

pytestmark = pytest.mark.coreml

# One network per block design, plus odd patches that need the resize paths.
COREML_CASES = {
    "mobilevit_xxs": ("mobilevit_xxs", 256),
    "v2_050": ("mobilevitv2_050", 256),
    "v3_xxs": ("mobilevitv3_xxs", 256),
    "v3_050": ("mobilevitv3_050", 224),
    "v1_patch3_at_224": (get_fixed_point("mobilevit_xxs").spec.with_blocks(patch_size=(3, 3)), 224),
}


@pytest.mark.parametrize("case", list(COREML_CASES))
def test_coreml_conversion_keeps_rank_at_most_5(case, tmp_path):
    import coremltools as ct

    model, res = COREML_CASES[case]
    result = export_model(model, tmp_path / "m", to="coreml", resolution=res)
    assert result.path.suffix == ".mlpackage" and result.path.is_dir()
    assert result.max_rank is not None and result.max_rank <= COREML_MAX_RANK
    loaded = ct.models.MLModel(str(result.path), skip_model_load=True)
    meta = loaded.user_defined_metadata
    assert meta["spec_id"] == result.spec_id
    description = loaded.get_spec().description
    assert description.input[0].type.imageType.width == res
    assert [o.name for o in description.output] == ["logits"]
    assert loaded.get_spec().WhichOneof("Type") == "mlProgram"


def test_coreml_metadata_round_trips_the_spec(tmp_path):
    import coremltools as ct

    from mobilevit import ArchSpec

    result = export_model("mobilevit_xxs", tmp_path / "xxs.mlpackage")
    meta = ct.models.MLModel(str(result.path), skip_model_load=True).user_defined_metadata
    assert ArchSpec.from_json(meta["spec_json"]) == get_fixed_point("mobilevit_xxs").spec
    assert meta["fixed_point"] == "mobilevit_xxs"


def test_onnx_export_matches_torch_numerically(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = create_model("mobilevitv3_050").eval()
    weights = tmp_path / "w.pt"
    torch.save(model.state_dict(), weights)
    result = export_model("mobilevitv3_050", tmp_path / "m", to="onnx", weights=weights,
                          resolution=128)
    x = torch.rand(1, 3, 128, 128)
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"image": x.numpy()})
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)


def test_bad_format_and_bad_weights_are_one_line_errors(tmp_path):
    with pytest.raises(ExportError, match=r"^--to 'tflite': expected one of coreml, onnx$"):
        export_model("mobilevit_xxs", tmp_path / "m", to="tflite")
    other = tmp_path / "other.pt"
    torch.save(create_model("mobilevitv2_050").state_dict(), other)
    with pytest.raises(ExportError) as info:
        load_weights(MobileViT(get_fixed_point("mobilevit_xxs").spec), other)
    assert "weights do not fit this spec" in str(info.value) and "\n" not in str(info.value)
    missing = tmp_path / "missing.pt"
    with pytest.raises(ExportError, match="cannot read weights"):
        load_weights(MobileViT(get_fixed_point("mobilevit_xxs").spec), missing)


def test_coreml_conversion_leaves_the_process_as_it_found_it(tmp_path):
    # streams, the loggers it quiets, the warning filters, torch's thread count
    from tests.nas.process_state import unchanged_process_state

    with unchanged_process_state():
        result = export_model("mobilevit_xxs", tmp_path / "m", resolution=64)
    assert result.path.is_dir()
