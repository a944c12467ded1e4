"""The counter-gap arithmetic (hub/gaps.py) without a store: ranges split and close as numbers
arrive in any order, and a hypothesis state machine posts random batches (numbers out of order,
repeated) the way a backend does: after each batch the holes are exactly the numbers missing below
the high mark, every gap's count matches its holes, and once every number arrived nothing is open."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from hub.gaps import Gap, GapBook, Hole, missing_below, split

# ---------------------------------------------------------------------------- ranges


def test_split_shrinks_at_an_end_splits_inside_and_removes_a_single_number():
    hole = Hole(5, 10, 5)
    assert split(hole, 5) == (Hole(6, 10, 5),)
    assert split(hole, 10) == (Hole(5, 9, 5),)
    assert split(hole, 7) == (Hole(5, 6, 5), Hole(8, 10, 5))
    assert split(Hole(7, 7, 5), 7) == ()
    for outside in (4, 11):
        with pytest.raises(ValueError):
            split(hole, outside)


def test_missing_below_lists_the_ranges_not_received():
    assert missing_below(0, []) == []
    assert missing_below(10, [1, 2, 5, 9]) == [(3, 4), (6, 8), (10, 10)]
    assert missing_below(3, [1, 2, 3, 7]) == []


def test_in_order_numbers_open_nothing_and_only_raise_the_high_mark():
    book = GapBook({"D1": 3})
    for n in (4, 5, 6):
        book.arrive("D1", n, "H1", "t1")
    changes = book.changes()
    assert changes.highs == {"D1": 6}
    assert (changes.opened, changes.updated, changes.holes_removed, changes.holes_added) == ([], [], [], [])


def test_a_jump_opens_one_gap_and_a_late_number_splits_it():
    book = GapBook({})
    book.arrive("D1", 1, "H1", "t1")
    book.arrive("D1", 6, "H1", "t1")  # 2..5 missing
    book.arrive("D1", 4, "H1", "t1")  # arrives late, in the same batch
    changes = book.changes()
    assert changes.highs == {"D1": 6}
    assert changes.opened == [Gap("D1", 2, 5, "H1", 3, "t1")]
    assert changes.holes_added == [("D1", Hole(2, 3, 2)), ("D1", Hole(5, 5, 2))]
    # the next batch loads the stored hole holding 5 and its gap
    gap = changes.opened[0]
    later = GapBook({"D1": 6}, {"D1": [Hole(5, 5, 2)]}, [gap])
    later.arrive("D1", 5, "H2", "t2")
    changes = later.changes()
    assert changes.highs == {}
    assert changes.updated == [Gap("D1", 2, 5, "H1", 2, "t1")]  # hall and opened_at stay
    assert (changes.holes_removed, changes.holes_added) == ([("D1", 5)], [])


def test_the_last_missing_number_closes_the_gap():
    gap = Gap("D1", 2, 3, "H1", 1, "t1")
    book = GapBook({"D1": 9}, {"D1": [Hole(3, 3, 2)]}, [gap])
    book.arrive("D1", 3, "H1", "t5")
    assert book.changes().updated == [Gap("D1", 2, 3, "H1", 0, "t1", "t5")]


def test_a_jump_of_a_billion_is_one_range():
    book = GapBook({"D1": 1})
    book.arrive("D1", 10**9 + 2, "H1", "t1")
    book.arrive("D1", 500_000_000, "H1", "t1")
    changes = book.changes()
    assert changes.opened == [Gap("D1", 2, 10**9 + 1, "H1", 10**9 - 1, "t1")]
    assert changes.holes_added == [("D1", Hole(2, 499_999_999, 2)),
                                   ("D1", Hole(500_000_001, 10**9 + 1, 2))]


def test_a_received_number_and_a_repeat_change_nothing():
    book = GapBook({"D1": 5})
    book.arrive("D1", 3, "H1", "t1")  # at or below high and in no hole: already received
    book.arrive("D1", 7, "H1", "t1")
    book.arrive("D1", 7, "H1", "t1")
    changes = book.changes()
    assert changes.highs == {"D1": 7}
    assert changes.opened == [Gap("D1", 6, 6, "H1", 1, "t1")]
    assert not GapBook({"D1": 5}).changes()


def test_inconsistent_input_is_refused():
    with pytest.raises(ValueError):
        GapBook({}, {"D1": [Hole(2, 3, 2)]})  # holes of a device with no high
    with pytest.raises(ValueError):
        GapBook({"D1": 5}, {"D1": [Hole(2, 3, 2)]})  # a hole without its gap
    with pytest.raises(ValueError):
        GapBook({}).arrive("D1", 0, "H1", "t1")


# ---------------------------------------------------------------------------- state machine

N = 30  # numbers 1..N per device: enough for several gaps, holes and splits
DEVICES = ("D1", "D2")
HALLS = ("H1", "H2")
arrivals = st.tuples(st.sampled_from(DEVICES), st.integers(1, N), st.sampled_from(HALLS))


class Arrivals(RuleBasedStateMachine):
    """Stored state as a backend keeps it (highs, holes by first, gaps by first), changed only
    through `GapBook.changes()`, against a model of which numbers arrived and when each missing one
    was first seen missing."""

    def __init__(self) -> None:
        super().__init__()
        self.highs: dict[str, int] = {}
        self.holes: dict[str, dict[int, Hole]] = {d: {} for d in DEVICES}
        self.gaps: dict[tuple[str, int], Gap] = {}
        self.received: dict[str, set[int]] = {d: set() for d in DEVICES}
        self.seen_missing: dict[str, dict[int, tuple[str, str]]] = {d: {} for d in DEVICES}  # n -> (at, hall)
        self.batches = 0

    def post(self, batch: list[tuple[str, int, str]]) -> None:
        """Load what a backend loads for `batch`, arrive every number, write the changes."""
        self.batches += 1
        at = f"t{self.batches:04d}"
        touched = {device for device, _, _ in batch}
        highs = {d: self.highs[d] for d in touched if d in self.highs}
        holes: dict[str, list[Hole]] = {}
        for device, n, _ in batch:
            if n <= highs.get(device, 0):
                holes.setdefault(device, [])
                holes[device] += [h for h in self.holes[device].values()
                                  if h.first <= n <= h.last and h not in holes[device]]
        gaps = [self.gaps[(d, h.gap)] for d, hs in holes.items() for h in hs]
        book = GapBook(highs, holes, set(gaps))
        for device, n, hall in batch:  # repeats included: a backend passes only accepted ones
            book.arrive(device, n, hall, at)
            if n not in self.received[device]:
                for m in range(max(self.received[device], default=0) + 1, n):
                    self.seen_missing[device][m] = (at, hall)
                self.received[device].add(n)
        changes = book.changes()
        for device, high in changes.highs.items():
            assert high > self.highs.get(device, 0)
            self.highs[device] = high
        for gap in changes.opened:
            assert (gap.device, gap.first) not in self.gaps
            self.gaps[(gap.device, gap.first)] = gap
        for gap in changes.updated:
            assert (gap.device, gap.first) in self.gaps
            self.gaps[(gap.device, gap.first)] = gap
        for device, first in changes.holes_removed:
            del self.holes[device][first]
        for device, hole in changes.holes_added:
            assert hole.first not in self.holes[device]
            self.holes[device][hole.first] = hole

    @rule(batch=st.lists(arrivals, min_size=1, max_size=8))
    def post_a_batch(self, batch: list[tuple[str, int, str]]) -> None:
        self.post(batch)

    @precondition(lambda self: any(len(r) < N for r in self.received.values()))
    @rule(device=st.sampled_from(DEVICES), data=st.data(), size=st.integers(1, 12))
    def the_rest_arrives(self, device: str, data: st.DataObject, size: int) -> None:
        rest = [n for n in range(1, N + 1) if n not in self.received[device]]
        order = data.draw(st.permutations(rest), label="order")
        for start in range(0, len(order), size):
            self.post([(device, n, "H1") for n in order[start:start + size]])
        assert self.highs[device] == N
        assert self.holes[device] == {}
        assert all(not g.open and g.missing == 0 for (d, _), g in self.gaps.items() if d == device)

    @invariant()
    def holes_are_exactly_the_missing_numbers_below_the_high_mark(self) -> None:
        for device in DEVICES:
            high = self.highs.get(device, 0)
            assert high == max(self.received[device], default=0)
            assert sorted((h.first, h.last) for h in self.holes[device].values()) == \
                missing_below(high, self.received[device])

    @invariant()
    def gaps_keep_what_was_missing_and_count_their_holes(self) -> None:
        for device in DEVICES:
            gaps = sorted((g for (d, _), g in self.gaps.items() if d == device), key=lambda g: g.first)
            numbers = [n for g in gaps for n in range(g.first, g.last + 1)]
            assert len(numbers) == len(set(numbers))  # never overlapping
            assert set(numbers) == set(self.seen_missing[device])  # nothing ever missing is lost
            for gap in gaps:
                assert {self.seen_missing[device][n] for n in range(gap.first, gap.last + 1)} == \
                    {(gap.opened_at, gap.hall)}
                own = [h for h in self.holes[device].values() if h.gap == gap.first]
                assert all(gap.first <= h.first <= h.last <= gap.last for h in own)
                assert gap.missing == sum(h.size for h in own)
                assert gap.missing == sum(1 for n in range(gap.first, gap.last + 1)
                                          if n not in self.received[device])
                assert gap.open == (gap.missing > 0)


Arrivals.TestCase.settings = settings(max_examples=300, stateful_step_count=25, deadline=None,
                                      suppress_health_check=[HealthCheck.too_slow])
test_arrivals = pytest.mark.slow(Arrivals.TestCase)
