"""Each extension point of docs/architecture.md, used as a plugin would use it: a toy one is
added in its one place (a registration) and nothing else, and the pipeline takes it from there.

(The attention-kind seam has its own toy kinds, checked against fvcore, in
tests/mobilevit/test_attention_kinds.py.)
"""

import contextlib
import dataclasses
import pathlib
from typing import Literal

import pytest
import yaml
from pydantic import Field
from pydantic.fields import FieldInfo

import nas
from mobilevit import ArchSpec, load_spec
from mobilevit.complexity import complexity
from nas.evaluators.base import EvalResult
from nas.latency.base import LatencyResult, context_key
from nas.report import figures
from nas.study.check import check_study, check_text
from nas.study.config import (
    EVALUATOR_KINDS,
    LATENCY_KINDS,
    Section,
    StudyConfig,
    StudyError,
    load_study,
)

ROOT = pathlib.Path(__file__).resolve().parents[2]


# -- a toy evaluator: accuracy falls with size, no training ---------------------------------


@dataclasses.dataclass(frozen=True)
class SizeScore:
    penalty: float
    num_classes: int = 10
    name: str = "size_score"

    def evaluate(self, spec: ArchSpec, *, seed, workdir, threads, device, on_epoch=None):
        accuracy = 100 - self.penalty * complexity(spec).params / 1e6
        return EvalResult(accuracy=accuracy, curve=(accuracy,),
                          provenance={"evaluator": self.name, "seed": seed})


class SizeScoreConfig(Section):
    kind: Literal["size_score"]
    penalty: float = Field(1.0, gt=0)

    def build(self):
        return SizeScore(self.penalty)


# -- a toy latency oracle: milliseconds proportional to MACs --------------------------------


@dataclasses.dataclass(frozen=True)
class MacsClock:
    ms_per_gmac: float
    resolution: int
    name: str = "macs_clock"

    def _context(self):
        return {"backend": "macs-clock", "device": "toy", "compute_units": "none",
                "versions": {}, "resolution": self.resolution}

    def key(self, spec):
        return context_key(spec, {**self._context(), "ms_per_gmac": self.ms_per_gmac})

    def measure(self, spec):
        ms = self.ms_per_gmac * complexity(spec, self.resolution).macs / 1e9
        return LatencyResult.from_samples([ms], **self._context())


class MacsClockConfig(Section):
    kind: Literal["macs_clock"]
    ms_per_gmac: float = Field(gt=0)
    resolution: int = 64

    def build(self, device="cpu"):
        return MacsClock(self.ms_per_gmac, self.resolution)


@contextlib.contextmanager
def registered(registry, member):
    registry.register(member)
    try:
        yield
    finally:
        registry.unregister(member)


def _study_file(tmp_path, **sections):
    data = yaml.safe_load((ROOT / "studies" / "smoke.yaml").read_text())
    data.update(sections, trials=4)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _checked(tmp_path, **sections):
    """What `nas check` prints for the smoke study with ``sections``."""
    return check_text(check_study(_study_file(tmp_path, **sections)))


def _run_smoke(tmp_path, **sections):
    path = _study_file(tmp_path, **sections)
    study = dataclasses.replace(nas.load_study(path), run_dir=tmp_path / "run")
    nas.run_study(study, stream=None)
    return study.run_dir, nas.load_trials(study.run_dir)


def test_a_registered_evaluator_is_a_study_kind_end_to_end(tmp_path):
    with registered(EVALUATOR_KINDS, SizeScoreConfig):
        with pytest.raises(StudyError, match=r"evaluator\.penalty=-1\.0: input should be greater"):
            _run_smoke(tmp_path, evaluator={"kind": "size_score", "penalty": -1.0})
        checked = _checked(tmp_path, evaluator={"kind": "size_score", "penalty": 2.0})
        assert "evaluator     size_score: penalty 2.0" in checked
        assert "evaluation: size_score: penalty 2.0 (its cost is not estimated)" in checked
        run_dir, trials = _run_smoke(tmp_path, evaluator={"kind": "size_score", "penalty": 2.0})
    ok = trials[trials.status == "ok"]
    assert len(ok) >= 2
    evaluated = [load_spec(run_dir / "specs" / f"{s}.json") for s in ok.spec_id]
    assert list(ok.accuracy) == pytest.approx([100 - 2.0 * complexity(s).params / 1e6
                                               for s in evaluated])
    assert set(ok.evaluator) == {"size_score"}
    with pytest.raises(StudyError, match="unknown kind"):  # gone once unregistered
        _run_smoke(tmp_path, evaluator={"kind": "size_score"})


def test_a_registered_latency_oracle_is_a_study_kind_end_to_end(tmp_path):
    with registered(LATENCY_KINDS, MacsClockConfig):
        with pytest.raises(StudyError, match=r"latency\.ms_per_gmac: missing"):
            _run_smoke(tmp_path, latency={"kind": "macs_clock"})
        checked = _checked(tmp_path, latency={"kind": "macs_clock", "ms_per_gmac": 5.0})
        assert "latency       macs_clock: ms_per_gmac 5.0, resolution 64" in checked
        run_dir, trials = _run_smoke(tmp_path,
                                     latency={"kind": "macs_clock", "ms_per_gmac": 5.0})
        classes = nas.load_study(run_dir).config.budget.count_classes  # the network it times
    ok = trials[trials.status == "ok"]
    assert len(ok) >= 2
    specs = [load_spec(run_dir / "specs" / f"{s}.json").replace(num_classes=classes)
             for s in ok.spec_id]
    assert list(ok.latency_ms) == pytest.approx(  # results keep 4 decimals
        [5.0 * complexity(s, 64).macs / 1e9 for s in specs], abs=1e-4)
    assert set(ok.oracle.str.contains("macs-clock")) == {True}


def test_a_registered_figure_is_drawn_and_exported(tmp_path):
    run_dir, _ = _run_smoke(tmp_path)

    def draw(data):
        import plotly.graph_objects as go

        return go.Figure(go.Histogram(x=data.trials["accuracy"]))

    toy = figures.Figure("accuracy_histogram", "Accuracy histogram", "Trials per accuracy bin.",
                         draw=draw, table=lambda data: data.trials[["number", "accuracy"]])
    figures.register_figure(toy)
    try:
        files = nas.write_report(run_dir)
    finally:
        figures.unregister_figure(toy.id)
    html = files.html.read_text()
    assert 'id="fig-accuracy_histogram"' in html and "Accuracy histogram" in html
    table = (files.html.parent / "data" / "accuracy_histogram.csv").read_text().splitlines()
    assert table[0] == "number,accuracy" and len(table) > 1
    assert "accuracy_histogram" not in figures.FIGURES


@contextlib.contextmanager
def extra_field(name, field):
    StudyConfig.model_fields[name] = field
    StudyConfig.model_rebuild(force=True)
    try:
        yield
    finally:
        del StudyConfig.model_fields[name]
        StudyConfig.model_rebuild(force=True)


def test_a_new_study_field_is_validated_overridable_and_fingerprinted(tmp_path):
    # A study field is one typed line in nas/study/config.py: validation, the one-line errors,
    # --set and the run folder's fingerprint all follow from it.
    path = tmp_path / "s.yaml"
    path.write_text("name: s\ntrials: 2\nevaluator: {kind: dummy}\nwarmup_rounds: 3\n")
    with pytest.raises(StudyError, match="warmup_rounds: unknown field"):
        load_study(path)
    with extra_field("warmup_rounds", FieldInfo(annotation=int, default=1, gt=0)):
        config = load_study(path)
        assert config.warmup_rounds == 3
        assert load_study(path, ["warmup_rounds=5"]).warmup_rounds == 5
        assert load_study(path, ["warmup_rounds=5"]).fingerprint() != config.fingerprint()
        with pytest.raises(StudyError, match=r"^.*s\.yaml: --set warmup_rounds=0: input should "
                                             r"be greater than 0$"):
            load_study(path, ["warmup_rounds=0"])
