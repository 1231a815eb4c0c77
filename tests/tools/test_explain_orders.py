"""tools/explain_orders.py's verdict on a plan: what makes it not the intended one."""

from __future__ import annotations

from tools.explain_orders import plan_problems

RANGE = """Limit  (cost=0.42..12.54 rows=51 width=85)
  ->  Index Scan using ix_orders_user_id_created_at on orders  (cost=0.42..15866.12 rows=66788)
        Index Cond: ((user_id = 1) AND (ROW(created_at, id) < ROW('2026-12-04', 'x'::uuid)))"""

SORTED = """Limit  (cost=9000.00..9000.12 rows=51 width=85)
  ->  Sort  (cost=9000.00..9500.00 rows=200000 width=85)
        Sort Key: created_at DESC, id DESC
        ->  Seq Scan on orders  (cost=0.00..5000.00 rows=200000 width=85)
              Filter: (user_id = 1)"""

OTHER_INDEX = """Limit
  ->  Index Scan using orders_pkey on orders
        Filter: (user_id = 1)"""


def test_an_index_range_in_order_is_the_intended_plan() -> None:
    assert plan_problems(RANGE) == []


def test_a_sort_and_a_seq_scan_are_named() -> None:
    assert plan_problems(SORTED) == [
        "not an index scan of ix_orders_user_id_created_at",
        "a Sort",
        "a Seq Scan",
    ]


def test_another_index_is_not_the_intended_one() -> None:
    assert plan_problems(OTHER_INDEX) == ["not an index scan of ix_orders_user_id_created_at"]
