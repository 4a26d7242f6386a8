"""The shared core: atomic writes, seeds, overrides, rules and verdicts."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from repro import UsageError
from repro.records import write_csv
from repro.rules import Rule, Verdict
from repro.runner import choose_seeds, override, parse_seeds


def test_atomic_write_leaves_no_partial_file_when_the_writer_raises(tmp_path, monkeypatch):
    path = tmp_path / "table.csv"
    write_csv(pd.DataFrame({"a": [1, 2]}), path)
    before = path.read_bytes()

    def failing_to_csv(self, target, **kwargs):
        open(target, "w").write("a\n1\n")  # half a table, then the writer dies
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", failing_to_csv)
    with pytest.raises(OSError):
        write_csv(pd.DataFrame({"a": [1, 2, 3]}), path)
    assert path.read_bytes() == before  # the old complete file survives
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]  # no temporary left behind


def test_parse_seeds_accepts_ranges_and_lists():
    assert parse_seeds("0-4") == (0, 1, 2, 3, 4)
    assert parse_seeds("7") == (7,)
    assert parse_seeds("0,2,5-6") == (0, 2, 5, 6)


@pytest.mark.parametrize("text", ["4-1", "a", "-3", "1-", ""])
def test_parse_seeds_rejects_bad_ranges(text):
    with pytest.raises(UsageError):
        parse_seeds(text)


@dataclasses.dataclass(frozen=True)
class Toy:
    rate: float = 0.5
    sizes: tuple[int, ...] = (1, 2)

    def __post_init__(self):
        if not 0 <= self.rate < 1:
            raise ValueError(f"rate must be in [0, 1), got {self.rate}")


def test_choose_seeds_takes_given_seeds_or_shifts_the_profile_s():
    assert choose_seeds((0, 1, 2), None, 0) == (0, 1, 2)
    assert choose_seeds((0, 1, 2), None, 1000) == (1000, 1001, 1002)
    assert choose_seeds((0, 1, 2), "7-8", 0) == (7, 8)
    with pytest.raises(UsageError, match="not both"):
        choose_seeds((0, 1, 2), "7-8", 1000)


def test_override_converts_types_and_runs_the_config_validation():
    assert override(Toy(), ["rate=0.25", "sizes=3,4"]) == Toy(0.25, (3, 4))
    with pytest.raises(UsageError, match="rate must be in"):
        override(Toy(), ["rate=1.5"])
    with pytest.raises(UsageError, match="unknown setting"):
        override(Toy(), ["depth=3"])
    with pytest.raises(UsageError, match="not a valid value"):
        override(Toy(), ["rate=high"])


LECTURE = {"kind": "lecture", "slide": "Dropout"}


def lecture(name, measured, op, threshold, **interval):
    return Rule(name, measured, op, threshold, **interval, **LECTURE)


def test_rule_outcome_is_computed_from_the_numbers():
    assert lecture("x", 0.01, "<=", 0.02).outcome == "pass"
    assert lecture("x", 0.03, "<=", 0.02).outcome == "fail"
    assert not Verdict("c", (lecture("a", 1, ">", 0), lecture("b", 1, "<", 0))).reproduced
    assert Verdict("c", (lecture("a", 1, ">", 0),)).label == "REPRODUCED"


@pytest.mark.parametrize(
    ("low", "high", "outcome"),
    [(0.6, 0.9, "pass"), (0.1, 0.4, "fail"), (0.4, 0.6, "inconclusive"), (0.5, 0.9, "pass")],
)
def test_the_whole_interval_decides(low, high, outcome):
    rule = lecture("x", (low + high) / 2, ">=", 0.5, low=low, high=high)
    assert rule.outcome == outcome


def test_verdict_is_inconclusive_unless_a_rule_fails():
    passing = lecture("a", 1, ">", 0)
    unsure = lecture("b", 0.5, ">", 0.4, low=0.3, high=0.7)
    failing = lecture("c", 1, "<", 0)
    assert Verdict("c", (passing, unsure)).label == "INCONCLUSIVE"
    assert Verdict("c", (passing, unsure, failing)).label == "NOT REPRODUCED"


def test_only_lecture_rules_decide_and_a_failed_check_means_a_broken_experiment():
    passing = lecture("a", 1, ">", 0)
    beyond_fails = Rule("b", 1, "<", 0, kind="beyond")
    beyond_unsure = Rule("u", 0.5, ">", 0.4, low=0.3, high=0.7, kind="beyond")
    check_fails = Rule("c", 1, "<", 0, kind="check")
    assert Verdict("c", (passing, beyond_fails, beyond_unsure)).label == "REPRODUCED"
    broken = Verdict("c", (passing, check_fails))
    assert broken.label == "NOT REPRODUCED" and "experiment is broken" in broken.reason
    assert broken.to_dict()["reason"] == broken.reason


def test_an_untested_claim_is_inconclusive_unless_a_check_failed():
    failing = lecture("a", 1, "<", 0)
    untested = Verdict("c", (failing,), untested="its premise did not hold")
    assert untested.label == "INCONCLUSIVE" and untested.reason.startswith("not tested")
    broken = Verdict("c", (failing, Rule("k", 1, "<", 0, kind="check")), untested="premise")
    assert broken.label == "NOT REPRODUCED"


def test_a_rule_needs_a_known_kind_and_a_lecture_rule_its_slide():
    with pytest.raises(ValueError, match="kind"):
        Rule("x", 1, ">", 0, kind="opinion")
    with pytest.raises(ValueError, match="slide"):
        Rule("x", 1, ">", 0, kind="lecture")
    with pytest.raises(ValueError, match="lecture rule"):
        Verdict("c", (Rule("x", 1, ">", 0, kind="beyond"),))


def test_t_interval_over_seeds_matches_scipy():
    from scipy import stats

    values = [0.52, 0.55, 0.61, 0.58, 0.49]
    rule = Rule.over_seeds("x", values, ">", 0.5, **LECTURE)
    expected = stats.ttest_1samp(values, 0).confidence_interval(0.95)
    assert rule.measured == pytest.approx(np.mean(values))
    assert (rule.low, rule.high) == pytest.approx((expected.low, expected.high))
    assert rule.seeds == 5
    assert rule.outcome == "inconclusive"  # the mean passes, the interval straddles 0.5


def test_a_nan_seed_fails_loudly_instead_of_being_dropped():
    rule = Rule.over_seeds("x", [0.9, float("nan"), 0.95], ">", 0.5, **LECTURE)
    assert rule.outcome == "fail" and rule.reason == "no measurement"
    assert lecture("y", float("nan"), "<", 1).outcome == "fail"


def test_one_seed_is_never_conclusive():
    assert Rule.over_seeds("x", [0.9], ">", 0.5, **LECTURE).outcome == "inconclusive"
