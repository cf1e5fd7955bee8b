"""Fusion's rules about which evidence may flag an engagement, on hand-made columns."""

from __future__ import annotations

import numpy as np

from likelens.detect.burst import bought_share
from likelens.fusion import (
    collective_fires,
    corroborate_structures,
    explain_away,
    fit_fusion,
    organic_floor,
    poisson_upper,
)


def _columns(dense: list[float], lockstep: list[float]) -> dict[str, np.ndarray]:
    n = len(dense)
    return {"dense_block": np.array(dense), "lockstep_met": np.array(lockstep),
            "isolated": np.ones(n)}


def test_block_evidence_needs_other_collective_evidence_on_the_account() -> None:
    # Accounts 0 and 1 each have one block engagement; account 0 also met a lockstep partner
    # on another engagement, account 1 shows nothing else (a block's fringe member).
    accounts = np.array([0, 0, 1, 1, 2])
    cols = _columns(dense=[1, 0, 1, 0, 0], lockstep=[0, 1.5, 0, 0, 0])
    out, fires = corroborate_structures(cols, accounts, collective_fires(cols, None))
    assert out["dense_block"].tolist() == [1, 0, 0, 0, 0]
    assert fires["dense_block"].tolist() == [True, False, False, False, False]
    # Other columns pass through untouched, and the input is not changed.
    assert out["lockstep_met"] is cols["lockstep_met"]
    assert cols["dense_block"].tolist() == [1, 0, 1, 0, 0]


def test_account_level_evidence_outside_its_context_does_not_corroborate() -> None:
    # lockstep_group is account-level: it applies only to engagements in ``context``, so an
    # account whose only other evidence sits outside it is not corroborated.
    accounts = np.array([0, 0])
    cols = {"dense_block": np.array([1.0, 0.0]), "lockstep_group": np.array([0.0, 1.0])}
    outside, _ = corroborate_structures(cols, accounts,
                                        collective_fires(cols, np.array([True, False])))
    inside, _ = corroborate_structures(cols, accounts,
                                       collective_fires(cols, np.array([True, True])))
    assert outside["dense_block"].tolist() == [0, 0]
    assert inside["dense_block"].tolist() == [1, 0]


def test_no_block_column_or_no_rows_is_a_no_op() -> None:
    cols = {"lockstep_met": np.array([1.0])}
    assert corroborate_structures(cols, np.array([0]), {})[0] == cols
    empty = {"dense_block": np.zeros(0)}
    out, _ = corroborate_structures(empty, np.zeros(0, dtype=np.int64),
                                    collective_fires(empty, None))
    assert out["dense_block"].size == 0


def test_cautious_pile_share_knows_small_piles_prove_less() -> None:
    ceiling = 0.3
    small = bought_share(np.array([5.0]), np.array([5.0]), ceiling, z=1.645)[0]
    large = bought_share(np.array([50.0]), np.array([50.0]), ceiling, z=1.645)[0]
    point = bought_share(np.array([5.0]), np.array([5.0]), ceiling)[0]
    assert point == 1.0  # every opening converted: the point share says all bought
    assert 0.0 < small < large < point
    # A pile converting no more than the ceiling has no bought share either way.
    assert bought_share(np.array([3.0]), np.array([10.0]), ceiling, z=1.645)[0] == 0.0


def test_organic_floor_for_pile_members_and_account_only_evidence() -> None:
    # Rows: 0 a pile member alone; 1 a pile member with its own converging device;
    # 2 a task-shaped engagement with only its account's infrastructure evidence;
    # 3 the same account inside a feed session; 4, 5 a quiet account (task-shaped, then not).
    accounts = np.array([0, 1, 2, 2, 3, 3])
    task = np.array([True, True, True, False, True, False])
    cols = {"burst_task_surprise": np.array([5.0, 5.0, 0, 0, 0, 0]),
            "burst_excess_low": np.array([0.6, 0.6, 0, 0, 0, 0]),
            "dev_surprise": np.array([0, 4.0, 0, 0, 0, 0]),
            "acct_infra_surprise": np.array([0, 0, 3.0, 3.0, 0, 0])}
    rows, at_least = organic_floor(cols, collective_fires(cols, None), accounts, task)
    floor = np.zeros(len(accounts))
    floor[rows] = at_least
    assert rows.tolist() == sorted(rows.tolist())
    assert floor[0] == 0.4                 # 1 - cautious bought share
    assert floor[1] == 0.0                 # its own device converges: not a pile member alone
    # The quiet account makes one task-shaped engagement per in-session one, so account 2's
    # owner would make one task-shaped engagement: all of its one.
    assert floor[2] == 1.0
    assert floor[3] == 0.0                 # not task-shaped: nothing to floor
    assert floor[4:].tolist() == [0.0, 0.0]


def test_poisson_upper_matches_garwood_limits_and_grows_like_a_count() -> None:
    # Garwood's exact one-sided 95 % upper limits for 0, 1, 5 and 50 observed events.
    exact = {0: 2.996, 1: 4.744, 5: 10.513, 50: 63.287}
    for count, limit in exact.items():
        assert abs(poisson_upper(count) - limit) / limit < 0.01
    means = np.linspace(0, 500, 101)
    bounds = np.array([poisson_upper(m) for m in means])
    assert np.all(np.diff(bounds) > 0) and np.all(bounds > means)
    # large counts: about 1.645 sqrt(m) above the mean, not a multiple of it
    assert poisson_upper(10_000) < 10_000 + 2.0 * np.sqrt(10_000)


def test_lockstep_evidence_needs_evidence_outside_lockstep_on_the_account() -> None:
    # Account 0 met lockstep partners and its infrastructure converges on another engagement;
    # account 1 only met partners (heavy likers on the hour's hot videos); account 2 met
    # partners and sits in a dense block: each structure corroborates the other.
    accounts = np.array([0, 0, 1, 1, 2, 2])
    cols = {"lockstep_met": np.array([1.5, 0, 1.1, 0.7, 1.0, 0]),
            "ip_surprise": np.array([0, 4.0, 0, 0, 0, 0]),
            "dense_block": np.array([0, 0, 0, 0, 0, 1.0])}
    out, fires = corroborate_structures(cols, accounts, collective_fires(cols, None))
    assert out["lockstep_met"].tolist() == [1.5, 0, 0, 0, 1.0, 0]
    assert fires["lockstep_met"].tolist() == [True, False, False, False, True, False]
    assert out["dense_block"].tolist() == [0, 0, 0, 0, 0, 1.0]
    assert cols["lockstep_met"].tolist() == [1.5, 0, 1.1, 0.7, 1.0, 0]


def test_the_pile_null_decides_pile_only_members_in_its_top_bin() -> None:
    # A log where bots on converging devices are most of the bought engagement, and two piles
    # of in-session likes whose members look organic in every individual column: one that
    # its organic explanation leaves at most one member in twenty of (excess 0.97), one it
    # leaves a sixth of (0.85). A pile member that also has its own device evidence is the
    # mixture's to weigh.
    rng = np.random.default_rng(7)
    n_org, n_bot, n_top, n_mid = 20_000, 2_000, 300, 300
    n = n_org + n_bot + n_top + n_mid
    watch = np.concatenate([rng.uniform(0.2, 1.0, n_org), rng.uniform(0.0, 0.04, n_bot),
                            rng.uniform(0.2, 0.6, n_top + n_mid)])
    dev = np.zeros(n)
    dev[n_org:n_org + n_bot] = 12.0
    dev[-1] = 12.0  # the last pile member's device converges too
    pile = np.zeros(n)
    pile[n_org + n_bot:] = 20.0
    excess = np.zeros(n)
    excess[n_org + n_bot:n_org + n_bot + n_top] = 0.97
    excess[n_org + n_bot + n_top:] = 0.85
    cols = {"watch_frac": watch, "dev_surprise": dev, "burst_session_surprise": pile,
            "burst_excess": excess}
    # One bought component, seeded by the bots: it learns their profile (hardly any watch),
    # which the piles' members do not share (what a component that grew over the others
    # does to them).
    starts = {"infra": (dev > 0).astype(float)}
    _, fusion = fit_fusion(cols, starts, np.array(["like"] * n), target_fpr=0.01)
    top = slice(n_org + n_bot, n_org + n_bot + n_top)
    mid = slice(n_org + n_bot + n_top, n - 1)
    assert np.all(fusion.probability[top] == 0.95)
    assert np.all(fusion.probability[mid] <= 0.8)  # capped, and below: the mixture's say
    reasons = fusion.reasons.to_pylist()
    assert fusion.flagged[top].all()
    assert all(r[0] == "video_burst" for r in reasons[top])
    assert fusion.probability[-1] != 0.95  # not the null's: its device is evidence too
    assert not fusion.flagged[:n_org].any()


def test_a_block_is_account_evidence_for_the_owner_floor() -> None:
    # Account 0 sits in a dense block; one task-shaped engagement of it hits a block target,
    # the other is made inside a feed session. Account 1 is quiet (one of each). The owner of
    # a rented account opens hot videos alone on their own phone, and a farm's block holds
    # hot videos too: the block engagement is floored like account infrastructure evidence.
    accounts = np.array([0, 0, 1, 1])
    task = np.array([True, False, True, False])
    cols = {"dense_block": np.array([1.0, 0, 0, 0]),
            "burst_task_surprise": np.zeros(4)}
    rows, at_least = organic_floor(cols, collective_fires(cols, None), accounts, task)
    assert rows.tolist() == [0]
    assert at_least.tolist() == [1.0]


def test_a_lockstep_group_alone_does_not_open_the_gate() -> None:
    # A crew's likes where its accounts met each other (lockstep_met) and, from the same
    # accounts, likes where nobody of the crew was near (a crowd worker's own pushes, opened
    # alone): the group is evidence about the account, not about those likes.
    rng = np.random.default_rng(3)
    n_org, n_met, n_alone = 10_000, 500, 200
    n = n_org + n_met + n_alone
    watch = np.concatenate([rng.uniform(0.2, 1.0, n_org), rng.uniform(0.0, 0.1, n_met + n_alone)])
    group = np.zeros(n)
    group[n_org:] = 1.0
    met = np.zeros(n)
    met[n_org:n_org + n_met] = 1.5
    cols = {"watch_frac": watch, "lockstep_met": met, "lockstep_group": group}
    _, fusion = fit_fusion(cols, {"lockstep": group}, np.array(["like"] * n), target_fpr=0.01)
    assert fusion.flagged[n_org:n_org + n_met].all()
    assert not fusion.flagged[n_org + n_met:].any()
    assert np.all(fusion.probability[n_org + n_met:] == 0.0)


def _pile(vouched: int, alone: int, share: float, *, target: int = 0, t0: int = 0
          ) -> dict[str, np.ndarray]:
    """A task pile on one target within a minute: ``vouched`` members that also converge on
    infrastructure, then ``alone`` members with the pile as their only evidence."""
    n = vouched + alone
    return {"burst_task_surprise": np.full(n, 5.0), "burst_excess": np.full(n, share),
            "burst_excess_low": np.full(n, share - 0.1),
            "net_surprise": np.r_[np.full(vouched, 3.0), np.zeros(alone)],
            "target": np.full(n, target), "ts": t0 + np.arange(n) * 1000}


def _explain(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    cols = {c: v for c, v in p.items() if c not in ("target", "ts")}
    return explain_away(cols, collective_fires(cols, None), np.arange(len(p["ts"])), p["target"],
                        p["ts"], 1_800_000)


def test_members_with_evidence_of_their_own_explain_a_pile_away() -> None:
    # 90 bots and 10 people who opened the video alone; the pile's share (0.83) is no more
    # than the bots: the 10 are its organic rest, and their pile share goes.
    out = _explain(_pile(vouched=90, alone=10, share=0.83))
    assert out["burst_excess"][90:].tolist() == [0.0] * 10
    assert out["burst_excess_low"][90:].tolist() == [0.0] * 10
    # The bots keep theirs: they are not explained away, they are what explains.
    assert np.allclose(out["burst_excess"][:90], 0.83)


def test_a_share_covered_in_part_leaves_the_pile_as_it_was() -> None:
    # 30 of 100 vouched for, share 0.95: the other 70 are still needed for the bought share.
    out = _explain(_pile(vouched=30, alone=70, share=0.95))
    assert np.allclose(out["burst_excess"], 0.95)
    assert np.allclose(out["burst_excess_low"], 0.85)


def test_only_members_of_the_same_target_and_half_hour_vouch() -> None:
    # The bots piled on another target, or on the same one hours earlier: nothing explains
    # the ten.
    bots = _pile(vouched=90, alone=0, share=0.83, target=1, t0=3 * 3_600_000)
    late = _pile(vouched=90, alone=0, share=0.83, t0=0)
    people = _pile(vouched=0, alone=10, share=0.83, t0=3 * 3_600_000)
    for other in (bots, late):
        joined = {c: np.r_[other[c], people[c]] for c in people}
        out = _explain(joined)
        assert np.allclose(out["burst_excess"][90:], 0.83)


def test_a_member_whose_account_shows_evidence_elsewhere_is_not_explained_away() -> None:
    # The ten pile-only members are farm accounts whose infrastructure converged on another
    # engagement of theirs (rows 100-109, outside the pile's half hour).
    p = _pile(vouched=90, alone=10, share=0.83)
    cols = {c: v for c, v in p.items() if c not in ("target", "ts")}
    cols = {c: np.r_[v, np.zeros(10)] for c, v in cols.items()}
    cols["net_surprise"][100:] = 3.0
    accounts = np.r_[np.arange(100), np.arange(90, 100)]
    out = explain_away(cols, collective_fires(cols, None), accounts,
                       np.r_[p["target"], np.full(10, 7)], np.r_[p["ts"], np.full(10, 10**9)],
                       1_800_000)
    assert np.allclose(out["burst_excess"][90:100], 0.83)


def test_sure_patterns_are_flagged_whatever_the_target_and_ties_are_counted() -> None:
    from likelens.fusion import SURE, _threshold

    # Per pattern: probability, rows, organic mass if flagged (floors lift the surest: the
    # owners of rented accounts). The top pattern alone uses up the 0.1 % target.
    p = np.array([0.9999, SURE + 0.01, 0.9, 0.7])
    weight = np.array([20_000.0, 500.0, 300.0, 100_000.0])
    organic = np.array([60.0, 5.0, 30.0, 30_000.0])
    threshold, est = _threshold(p, weight, 0.001, organic)
    assert threshold == SURE + 0.01  # not 0.9999: 0.96 is flagged whatever the target
    denominator = float(((1 - p) * weight).sum())
    assert est == (60.0 + 5.0) / denominator
    # Two patterns tied at the threshold are flagged together and both counted.
    p = np.array([0.9, 0.9, 0.6])
    weight = np.array([1000.0, 1000.0, 100_000.0])
    organic = np.array([1.0, 60.0, 40_000.0])
    threshold, est = _threshold(p, weight, 0.001, organic)
    assert threshold == 0.9
    assert est == 61.0 / float(((1 - p) * weight).sum())
