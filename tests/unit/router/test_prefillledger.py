"""The router's record of prefill steps sent and answered, per prefill endpoint."""

from __future__ import annotations

from phalanx.router.prefillledger import PrefillLedger


def test_steps_are_recorded_per_endpoint_and_leave_on_their_answer() -> None:
    ledger = PrefillLedger()
    a, b = ledger.begin("p0", 1000), ledger.begin("p0", 2000)
    c = ledger.begin("p1", 500)
    assert len({a, b, c}) == 3  # keys are unique across endpoints
    assert [p.tokens for p in ledger.backlogs["p0"].pending] == [1000, 2000]
    ledger.end("p0", a, ok=True)
    assert [p.tokens for p in ledger.backlogs["p0"].pending] == [2000]
    assert ledger.backlogs["p0"].last_done is not None  # answered: the next one began then
    ledger.end("p1", c, ok=False)
    assert ledger.backlogs["p1"].pending == () and ledger.backlogs["p1"].rate is None


def test_a_forgotten_endpoint_starts_afresh_and_late_answers_are_ignored() -> None:
    ledger = PrefillLedger()
    key = ledger.begin("p0", 1000)
    ledger.forget("p0")
    ledger.end("p0", key, ok=True)  # the step of the pod that was replaced
    assert "p0" not in ledger.backlogs
    ledger.forget("never-seen")
