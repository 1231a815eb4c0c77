"""When one ``multiple`` ack may settle a batch: only if nothing unsettled lies below it."""

from __future__ import annotations

from features.feed_order_events.acks import SettledTags


def test_a_first_batch_from_tag_one_is_acked_through_its_last() -> None:
    assert SettledTags().multiple_through([1, 2, 3]) == 3


def test_a_delivery_below_the_batch_still_in_hand_forbids_the_multiple_ack() -> None:
    settled = SettledTags()
    settled.add([1])
    assert settled.multiple_through([3, 4]) is None  # 2 is still being handled (or held)


def test_a_rejected_delivery_below_counts_as_settled() -> None:
    settled = SettledTags()
    settled.add([1, 3])  # 3 was dead-lettered on its own
    assert settled.through == 1
    assert settled.multiple_through([2, 4]) == 4
    settled.add([2, 4])
    assert settled.through == 4


def test_a_batch_with_a_tag_already_settled_is_acked_one_by_one() -> None:
    settled = SettledTags()
    settled.add([1, 2])
    assert settled.multiple_through([2, 3]) is None
    assert settled.multiple_through([3, 3]) is None


def test_an_empty_batch_has_nothing_to_ack() -> None:
    assert SettledTags().multiple_through([]) is None
