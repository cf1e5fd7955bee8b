"""What each console page shows, gathered from the service's database and loaded model.

Figures are Plotly figure dictionaries: the page embeds them as JSON data (never as script) and
the console's own script draws them with the plotly.js that ships with the plotly package, so
the pages work offline and under a strict Content-Security-Policy.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from likelens.report.embed import script_json
from likelens.schema import REASONS
from likelens.service import tables as T
from likelens.service.groups import Group
from likelens.service.store import ServiceStore

MAX_GROUP_ROWS = 5000
MATRIX_SIDE = 30


def figure_json(fig: dict[str, Any]) -> str:
    """A figure as JSON data for the page (see ``report.embed.script_json``)."""
    return script_json(fig)


def _layout(title: str, **extra: Any) -> dict[str, Any]:
    return {"title": {"text": title}, "margin": {"l": 50, "r": 10, "t": 40, "b": 40},
            "height": 280, "paper_bgcolor": "#ffffff", "plot_bgcolor": "#ffffff", **extra}


def _when(ms: int | None) -> str:
    if ms is None:
        return "–"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def when_any(ts: Any) -> str:
    """A scan's timestamp (a datetime, or ms since the epoch) in words, UTC."""
    if isinstance(ts, datetime):
        return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).astimezone(UTC).strftime(
            "%Y-%m-%d %H:%M:%S")
    return _when(int(ts)) if isinstance(ts, int | float) else "–"


def flagged_over_time(store: ServiceStore) -> dict[str, Any]:
    """Share of engagements flagged per hour of event time."""
    d = T.decisions
    hour = sa.cast(d.c.ts / 3_600_000, sa.BigInteger).label("hour")
    with store.engine.connect() as con:
        rows = con.execute(sa.select(hour, sa.func.count(), sa.func.sum(
            sa.case((d.c.flagged, 1), else_=0))).group_by(hour).order_by(hour)).all()
    x = [_when(int(h) * 3_600_000) for h, _, _ in rows]
    y = [float(f or 0) / n for _, n, f in rows]
    return {"data": [{"type": "scatter", "mode": "lines+markers", "x": x, "y": y,
                      "name": "flagged share", "line": {"color": "#b4233c"}}],
            "layout": _layout("Flagged share per hour", yaxis={"tickformat": ".1%"})}


def flags_by_reason(store: ServiceStore, limit: int = 20_000) -> list[tuple[str, int]]:
    """How often each reason appears among the latest flagged decisions."""
    d = T.decisions
    with store.engine.connect() as con:
        rows = con.execute(sa.select(d.c.reasons).where(d.c.flagged).order_by(
            d.c.ts.desc()).limit(limit)).scalars().all()
    counts: Counter[str] = Counter()
    for r in rows:
        counts.update(json.loads(r))
    return counts.most_common()


def reasons_figure(counts: list[tuple[str, int]]) -> dict[str, Any]:
    names = [k for k, _ in counts][::-1]
    return {"data": [{"type": "bar", "orientation": "h", "x": [v for _, v in counts][::-1],
                      "y": names, "marker": {"color": "#1f5f8b"}}],
            "layout": _layout("Flags per detector reason", margin={"l": 130, "r": 10, "t": 40,
                                                                    "b": 40})}


def totals(store: ServiceStore) -> dict[str, int]:
    d = T.decisions
    with store.engine.connect() as con:
        n, f = con.execute(sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(
            sa.case((d.c.flagged, 1), else_=0)), 0))).one()
    return {"decisions": int(n), "flagged": int(f)}


def group_rows(store: ServiceStore, group: Group) -> list[dict[str, Any]]:
    """The decisions of a group's accounts (at most ``MAX_GROUP_ROWS``, newest first)."""
    d = T.decisions
    out: list[dict[str, Any]] = []
    with store.engine.connect() as con:
        for s in range(0, len(group.accounts), 1000):
            part = group.accounts[s:s + 1000]
            out += [dict(r) for r in con.execute(sa.select(
                d.c.event_id, d.c.ts, d.c.user_id, d.c.action, d.c.video_id, d.c.creator_id,
                d.c.score, d.c.flagged, d.c.reasons, d.c.device, d.c.net).where(
                d.c.user_id.in_(part)).order_by(d.c.ts.desc()).limit(MAX_GROUP_ROWS))
                .mappings()]
    out.sort(key=lambda r: r["ts"], reverse=True)
    for r in out[:MAX_GROUP_ROWS]:
        r["reasons"] = json.loads(r["reasons"])
    return out[:MAX_GROUP_ROWS]


def group_page(group: Group, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Timeline, account × target matrix, infrastructure, evidence in words, members."""
    accounts = sorted({r["user_id"] for r in rows}) or group.accounts
    pos = {a: i for i, a in enumerate(accounts)}
    timeline = {"data": [
        {"type": "scatter", "mode": "markers", "name": name,
         "x": [_when(r["ts"]) for r in rows if r["flagged"] == flag],
         "y": [pos[r["user_id"]] for r in rows if r["flagged"] == flag],
         "text": [f"{r['user_id']} {r['action']} {r['video_id']}" for r in rows
                  if r["flagged"] == flag],
         "marker": {"size": 6, "color": color}}
        for name, flag, color in (("flagged", True, "#b4233c"), ("passed", False, "#7a8a99"))],
        "layout": _layout("The group's engagements over time (one row per account)",
                          yaxis={"title": {"text": "account"}, "showticklabels": False})}
    # Account x target matrix of the most active accounts and targets.
    pair = Counter((r["user_id"], r["video_id"] or r["creator_id"] or "-") for r in rows)
    acc_n = Counter(a for a, _ in pair.elements())
    tgt_n = Counter(t for _, t in pair.elements())
    m_accounts = [a for a, _ in acc_n.most_common(MATRIX_SIDE)]
    m_targets = [t for t, _ in tgt_n.most_common(MATRIX_SIDE)]
    matrix = [[pair.get((a, t), 0) for t in m_targets] for a in m_accounts]
    # Devices and ranges, pseudonymised: how many of the group's accounts each carries.
    dev: dict[str, set[str]] = {}
    net: dict[str, set[str]] = {}
    for r in rows:
        if r["device"]:
            dev.setdefault(r["device"], set()).add(r["user_id"])
        if r["net"]:
            net.setdefault(r["net"], set()).add(r["user_id"])
    devices = sorted(((k, len(v)) for k, v in dev.items()), key=lambda x: -x[1])[:20]
    ranges = sorted(((k, len(v)) for k, v in net.items()), key=lambda x: -x[1])[:20]
    reasons = Counter(x for r in rows if r["flagged"] for x in r["reasons"])
    members: dict[str, dict[str, Any]] = {}
    for r in rows:
        m = members.setdefault(r["user_id"], {"user_id": r["user_id"], "engagements": 0,
                                              "flagged": 0, "reasons": Counter()})
        m["engagements"] += 1
        m["flagged"] += int(r["flagged"])
        m["reasons"].update(r["reasons"])
    member_list = sorted(members.values(), key=lambda m: (-m["flagged"], m["user_id"]))
    for m in member_list:
        m["reasons"] = [k for k, _ in m["reasons"].most_common(4)]
    targets = sorted(tgt_n.items(), key=lambda x: -x[1])[:50]
    n_flag = sum(1 for r in rows if r["flagged"])
    return {
        "timeline": timeline, "matrix": matrix, "m_accounts": m_accounts,
        "m_targets": m_targets, "matrix_max": max((max(r) for r in matrix if r), default=1),
        "devices": devices, "ranges": ranges, "members": member_list, "targets": targets,
        "evidence": evidence_words(group, len(accounts), len(tgt_n), len(rows), n_flag,
                                   reasons, devices, ranges),
        "rows": len(rows), "flagged": n_flag,
        "window": (_when(min(r["ts"] for r in rows)), _when(max(r["ts"] for r in rows)))
        if rows else None,
    }


def evidence_words(group: Group, n_accounts: int, n_targets: int, n_rows: int, n_flag: int,
                   reasons: Counter[str], devices: list[tuple[str, int]],
                   ranges: list[tuple[str, int]]) -> list[str]:
    """The case against a group in sentences a reviewer can check against the figures."""
    what = ("engaged the same videos in the same short windows" if group.kind == "lockstep"
            else "form a block of accounts and targets far denser than this log's organic "
                 "traffic")
    out = [f"The model found {len(group.accounts)} accounts that {what} "
           f"(group {group.id})."]
    if n_rows:
        out.append(f"The service decided {n_rows} of their engagements on {n_targets} "
                   f"targets; {n_flag} ({n_flag / n_rows:.0%}) were flagged.")
    else:
        out.append("The service has not decided any engagement of these accounts yet.")
    if devices and devices[0][1] > 1:
        out.append(f"One device carries {devices[0][1]} of the group's accounts.")
    if ranges and ranges[0][1] > 1:
        out.append(f"One address range carries {ranges[0][1]} of the group's accounts.")
    for word, n in reasons.most_common(3):
        out.append(f"{n} flagged engagements: {REASONS.get(word, word)}.")
    return out


def history(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Decision rows for a history table (times in words)."""
    return [dict(r, when=_when(r.get("ts"))) for r in rows]


def search(store: ServiceStore, groups: dict[str, Group], q: str) -> list[tuple[str, str, str]]:
    """(kind, label, link) of everything ``q`` names exactly: an event, account, video,
    creator or group."""
    q = q.strip()
    if not q:
        return []
    d = T.decisions
    out: list[tuple[str, str, str]] = []
    with store.engine.connect() as con:
        if con.execute(sa.select(d.c.event_id).where(d.c.event_id == q)).first():
            out.append(("engagement", q, f"/console/engagements/{q}"))
        for col, kind, path in (("user_id", "account", "accounts"),
                                ("video_id", "video", "videos"),
                                ("creator_id", "creator", "creators")):
            if con.execute(sa.select(d.c.event_id).where(d.c[col] == q).limit(1)).first():
                out.append((kind, q, f"/console/{path}/{q}"))
    if q in groups:
        out.append(("group", q, f"/console/groups/{q}"))
    return out
