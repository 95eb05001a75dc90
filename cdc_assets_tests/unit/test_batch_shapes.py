"""``dropped_since``: an older shape's column missing from the source now, dropped or renamed."""

import pytest

from cdc_assets.target.batch import dropped_since

pytestmark = pytest.mark.unit

A, B, C, D = "a", "b", "c", "d"


def test_still_there() -> None:
    assert dropped_since([A, B], B, [(1, A, True), (2, B, True)]) is False


def test_dropped_last_column() -> None:
    assert dropped_since([A, B], B, [(1, A, True), (2, "........pg.dropped.2", False)]) is True


def test_two_dropped_between_live_neighbours() -> None:
    slots = [(1, A, True), (2, "x2", False), (3, "x3", False), (4, D, True)]
    assert dropped_since([A, B, C, D], B, slots) is True
    assert dropped_since([A, B, C, D], C, slots) is True


def test_renamed_in_the_middle_is_not_a_drop() -> None:
    slots = [(1, A, True), (2, "b2", True), (3, D, True)]
    assert dropped_since([A, B, D], B, slots) is None


def test_last_column_then_a_new_one_cannot_be_told_from_a_rename() -> None:
    dropped_then_added = [(1, A, True), (2, "x", False), (3, C, True)]
    renamed = [(1, A, True), (2, C, True)]
    assert dropped_since([A, B], B, dropped_then_added) is None
    assert dropped_since([A, B], B, renamed) is None


def test_added_after_a_middle_drop_is_outside_the_gap() -> None:
    slots = [(1, A, True), (2, "x", False), (3, C, True), (4, D, True)]
    assert dropped_since([A, B, C], B, slots) is True
