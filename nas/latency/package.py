"""CoreML packages on their way to the agent: converted and zipped by the client, unpacked and
checked by the agent (a bounded, safe unzip and a model description coremltools can read)."""

from __future__ import annotations

import io
import shutil
import tempfile
import zipfile
from pathlib import Path

from mobilevit import ArchSpec
from nas.latency.errors import AgentError


def read_package(archive: bytes, workdir: Path, max_bytes: int) -> Path:
    """Unpack a zipped ``.mlpackage`` into ``workdir`` and check that it is a CoreML package.

    Raises AgentError naming what is wrong: not a zip, unsafe or oversized members, no package,
    or a model description coremltools cannot read.
    """
    try:
        zf = zipfile.ZipFile(io.BytesIO(archive))
    except zipfile.BadZipFile:
        raise AgentError("the upload is not a zip archive of an .mlpackage") from None
    with zf:
        total = 0
        for info in zf.infolist():
            name = Path(info.filename)
            if name.is_absolute() or ".." in name.parts:
                raise AgentError(f"unsafe path in the archive: {info.filename}")
            total += info.file_size
            if total > max_bytes:
                raise AgentError(f"the package unpacks to more than {max_bytes // 2**20} MB")
        try:
            zf.extractall(workdir)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise AgentError(f"corrupt archive: {exc}") from None
    packages = [p for p in workdir.rglob("*.mlpackage") if p.is_dir()]
    if len(packages) != 1 or not (packages[0] / "Manifest.json").exists():
        raise AgentError("the archive must hold one .mlpackage folder with its Manifest.json")
    try:
        import coremltools as ct

        ct.utils.load_spec(str(packages[0]))
    except Exception as exc:  # coremltools raises assorted types for a broken package
        raise AgentError(f"corrupt CoreML package: {type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    return packages[0]


def package_metadata(package: Path) -> dict[str, str]:
    """The user-defined metadata of a CoreML package (``nas export`` stores the spec there)."""
    import coremltools as ct

    return dict(ct.utils.load_spec(str(package)).description.metadata.userDefined)


def zip_package(package: Path) -> bytes:
    """A ``.mlpackage`` folder as zip bytes (what ``POST /v1/measure`` takes)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(package.rglob("*")):
            if path.is_file():
                zf.write(path, Path(package.name) / path.relative_to(package))
    return buffer.getvalue()


def export_archive(spec: ArchSpec, resolution: int) -> bytes:
    """Convert ``spec`` as ``nas export`` does and zip the package for upload."""
    from nas.export import export_model

    with tempfile.TemporaryDirectory(prefix="nas-agent-client-") as tmp:
        result = export_model(spec, Path(tmp) / "candidate", to="coreml", resolution=resolution)
        archive = zip_package(result.path)
        shutil.rmtree(result.path, ignore_errors=True)
        return archive
