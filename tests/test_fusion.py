"""Fusion's rules about which evidence may flag an engagement, on hand-made columns."""

from __future__ import annotations

import numpy as np

from likelens.fusion import corroborate_blocks


def _columns(dense: list[float], lockstep: list[float]) -> dict[str, np.ndarray]:
    n = len(dense)
    return {"dense_block": np.array(dense), "lockstep_met": np.array(lockstep),
            "isolated": np.ones(n)}


def test_block_evidence_needs_other_collective_evidence_on_the_account() -> None:
    # Accounts 0 and 1 each have one block engagement; account 0 also met a lockstep partner
    # on another engagement, account 1 shows nothing else (a block's fringe member).
    accounts = np.array([0, 0, 1, 1, 2])
    cols = _columns(dense=[1, 0, 1, 0, 0], lockstep=[0, 1.5, 0, 0, 0])
    out = corroborate_blocks(cols, accounts, None)
    assert out["dense_block"].tolist() == [1, 0, 0, 0, 0]
    # Other columns pass through untouched, and the input is not changed.
    assert out["lockstep_met"] is cols["lockstep_met"]
    assert cols["dense_block"].tolist() == [1, 0, 1, 0, 0]


def test_account_level_evidence_outside_its_context_does_not_corroborate() -> None:
    # lockstep_group is account-level: it applies only to engagements in ``context``, so an
    # account whose only other evidence sits outside it is not corroborated.
    accounts = np.array([0, 0])
    cols = {"dense_block": np.array([1.0, 0.0]), "lockstep_group": np.array([0.0, 1.0])}
    outside = corroborate_blocks(cols, accounts, np.array([True, False]))
    inside = corroborate_blocks(cols, accounts, np.array([True, True]))
    assert outside["dense_block"].tolist() == [0, 0]
    assert inside["dense_block"].tolist() == [1, 0]


def test_no_block_column_or_no_rows_is_a_no_op() -> None:
    cols = {"lockstep_met": np.array([1.0])}
    assert corroborate_blocks(cols, np.array([0]), None) == cols
    empty = {"dense_block": np.zeros(0)}
    assert corroborate_blocks(empty, np.zeros(0, dtype=np.int64), None)["dense_block"].size == 0
