from mobilevit import get_fixed_point
from nas.study.budget import BudgetGate, invalid_verdict
from nas.study.config import Budget


def test_counts_use_the_budget_head_and_resolution():
    spec = get_fixed_point("mobilevit_s").spec.replace(num_classes=10)
    gate = BudgetGate(Budget(max_params=6_000_000))
    assert gate.counts(spec) == (5_578_632, 2_033_424_384)  # the 1000-class network at 256
    small = BudgetGate(Budget(count_classes=10, resolution=128))
    params, macs = small.counts(spec)
    assert params == 5_578_632 - (640 * 1000 + 1000) + (640 * 10 + 10)  # a 10-class classifier
    assert macs < 2_033_424_384 / 3  # a quarter of the pixels


def test_verdicts_are_relative_violations():
    spec = get_fixed_point("mobilevit_s").spec
    verdict = BudgetGate(Budget(max_params=5_000_000, max_macs=4_000_000_000)).check(spec)
    assert not verdict.feasible and verdict.violated() == ["params"]
    assert abs(verdict.constraints["params"] - (5_578_632 - 5e6) / 5e6) < 1e-12
    assert verdict.constraints["macs"] < 0  # slack under the MAC limit
    assert set(verdict.constraints) == {"params", "macs", "latency", "valid"}
    unlimited = BudgetGate(Budget()).check(spec)
    assert unlimited.feasible and all(v == 0 for v in unlimited.constraints.values())
    assert not invalid_verdict().feasible and invalid_verdict().violated() == ["valid"]


def test_latency_violation_and_cache(monkeypatch):
    import nas.study.budget

    counted = []
    real = nas.study.budget.complexity
    monkeypatch.setattr(nas.study.budget, "complexity",
                        lambda spec, res: counted.append(spec.spec_id) or real(spec, res))
    gate = BudgetGate(Budget(max_latency_ms=10))
    assert gate.latency_violation(12) == 0.2 and gate.latency_violation(5) == -0.5
    spec = get_fixed_point("mobilevit_xxs").spec
    first = gate.check(spec)
    assert gate.check(spec) == first and gate.check(spec.replace(num_classes=10)) == first
    assert len(counted) == 1  # counted once: the gate counts every head as a 1000-class one
