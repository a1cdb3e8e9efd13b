"""The ledger's counts and Pareto front follow the storage without recounting it."""

import yaml

from nas.results import outcome
from nas.results.outcome import count_trials
from nas.search.ledger import Ledger
from nas.study.budget import Verdict
from nas.study.config import parse_study
from nas.study.prepare import prepare
from tests.nas.search.test_runner import SMOKE

FITS = Verdict(1_000_000, 100_000_000, {"params": -1.0})
OVER = Verdict(9_000_000, 100_000_000, {"params": 1.0})


def _ledgers(tmp_path):
    data = yaml.safe_load(SMOKE.read_text())
    data["objectives"] = [{"metric": "accuracy"}, {"metric": "params"}]
    prepared = prepare(parse_study(data, "smoke"), "smoke", run_dir=tmp_path / "run")
    # two ledgers on one journal file stand for a driver and what else changes the study
    return Ledger(prepared, prepared.config), Ledger(prepared, prepared.config)


def _check(ledger):
    assert ledger.counts == count_trials(ledger.trials())
    assert sorted(n for n, _ in ledger.front) == sorted(t.number for t in ledger.pareto())


def test_sync_follows_trials_added_and_finished_elsewhere(tmp_path):
    mine, other = _ledgers(tmp_path)
    mine.recount()
    first, second, third = other.ask(), other.ask(), other.ask()
    other.tell_ok(first, FITS, {"accuracy": 0.5})
    other.tell_infeasible(second, OVER, {"params": OVER.params, "macs": OVER.macs}, "over")
    mine.sync()
    _check(mine)
    assert mine.counts.running == 1 and mine.counts.evaluated == 1
    other.tell_ok(third, Verdict(500_000, 1, {"params": -1.0}), {"accuracy": 0.7})
    other.requeue(other.ask().number, {}, {})  # an interrupted trial and a waiting one
    mine.sync()
    _check(mine)
    assert [n for n, _ in mine.front] == [third.number]  # better on both objectives
    own = mine.ask()
    mine.tell_ok(own, FITS, {"accuracy": 0.9})
    other.tell_ok(other.ask(), FITS, {"accuracy": 0.9, "duplicate_of": own.number})
    mine.tell_ok(mine.ask(), FITS, {"accuracy": 0.9, "duplicate_of": own.number})
    mine.sync()
    _check(mine)
    assert mine.counts.repeated == 2 and mine.counts.counted == mine.counts.evaluated - 2
    assert mine.repeats_in_row == 1
    mine.close()
    other.close()


def test_sync_reads_only_new_and_unfinished_trials(tmp_path, monkeypatch):
    mine, other = _ledgers(tmp_path)
    for _ in range(6):
        other.tell_ok(other.ask(), FITS, {"accuracy": 0.5})
    running = other.ask()
    mine.recount()
    read = []
    of = outcome.TrialStatus.of
    monkeypatch.setattr(outcome.TrialStatus, "of",
                        classmethod(lambda cls, t: read.append(t.number) or of(t)))
    mine.sync()
    assert read == [running.number]  # the six finished trials are not looked at again
    read.clear()
    other.tell_ok(running, FITS, {"accuracy": 0.6})
    new = other.ask()
    mine.sync()
    assert read == [running.number, new.number]
    monkeypatch.undo()
    _check(mine)
    mine.close()
    other.close()
