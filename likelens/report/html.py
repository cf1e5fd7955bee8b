"""report.html: one self-contained page (plotly.js inlined, no CDN) a reviewer opens offline.

Plots: likes over time with bought likes overlaid for the most affected videos; watch before the
like, flagged against not flagged; raw against authentic likes per video; then the groups found
with their evidence, and the run's thresholds and timings.
"""

from __future__ import annotations

import html
import json

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from likelens.scan import ScanResult

BUCKET_MS = 10 * 60_000


def _likes_over_time(result: ScanResult, top: int = 4) -> go.Figure:
    videos = result.videos.sort_by([("flagged_likes", "descending")]).slice(0, top)
    ids = [v for v in videos["video_id"].to_pylist() if v is not None]
    fig = make_subplots(rows=max(1, len(ids)), cols=1, shared_xaxes=False,
                        subplot_titles=[f"video {v}" for v in ids] or ["no likes"])
    e = result.engagements
    actions = e["action"].to_numpy(zero_copy_only=False)
    vid = np.asarray(e["video_id"].to_pylist(), dtype=object)
    ts = e["ts"].to_numpy()
    flagged = e["flagged"].to_numpy(zero_copy_only=False)
    for row, v in enumerate(ids, start=1):
        sel = (actions == "like") & (vid == v)
        if not sel.any():
            continue
        b = (ts[sel] // BUCKET_MS) * BUCKET_MS
        edges = np.arange(b.min(), b.max() + 2 * BUCKET_MS, BUCKET_MS)
        for name, mask, color in (("authentic", ~flagged[sel], "#2b8a3e"),
                                  ("flagged", flagged[sel], "#c92a2a")):
            counts, _ = np.histogram(b[mask], bins=edges)
            x = (edges[:-1]).astype("datetime64[ms]")
            fig.add_trace(go.Bar(x=x, y=counts, name=name, marker_color=color,
                                 showlegend=row == 1), row=row, col=1)
    fig.update_layout(barmode="stack", height=260 * max(1, len(ids)),
                      title="Likes per 10 minutes on the most affected videos (UTC)")
    return fig


def _watch_hist(result: ScanResult) -> go.Figure:
    fig = go.Figure()
    feats = result.features
    if feats is not None:
        e = feats.engagements
        likes = e["action"].to_numpy(zero_copy_only=False) == "like"
        watch = e["watch_frac"].to_numpy(zero_copy_only=False).astype(float)
        flagged = result.engagements["flagged"].to_numpy(zero_copy_only=False)
        for name, mask, color in (("not flagged", likes & ~flagged, "#2b8a3e"),
                                  ("flagged", likes & flagged, "#c92a2a")):
            w = np.clip(watch[mask], 0, 1.5)
            w = w[~np.isnan(w)]
            fig.add_trace(go.Histogram(x=w, name=name, histnorm="probability",
                                       xbins={"start": 0, "end": 1.5, "size": 0.025},
                                       marker_color=color, opacity=0.6))
    fig.update_layout(barmode="overlay", title="Watch before the like (share of the video)",
                      xaxis_title="watch / duration", yaxis_title="share of likes", height=380)
    return fig


def _raw_vs_authentic(result: ScanResult) -> go.Figure:
    v = result.videos
    likes = v["likes"].to_numpy()
    # a log axis cannot show zero: an all-bought video sits on the floor of 0.5
    auth = np.maximum(v["authentic_likes"].to_numpy(zero_copy_only=False), 0.5)
    flagged = v["flagged_likes"].to_numpy()
    ids = [str(x) for x in v["video_id"].to_pylist()]
    fig = go.Figure(go.Scattergl(
        x=likes, y=auth, mode="markers", text=ids,
        marker={"color": np.where(flagged > 0, "#c92a2a", "#2b8a3e"), "size": 5, "opacity": 0.6},
        hovertemplate="video %{text}<br>likes %{x}<br>authentic %{y:.1f}<extra></extra>"))
    top = float(max(likes.max(initial=1), 1))
    fig.add_trace(go.Scatter(x=[0, top], y=[0, top], mode="lines", name="all real",
                             line={"dash": "dot", "color": "#868e96"}))
    fig.update_layout(title="Raw against authentic likes per video", xaxis_title="likes",
                      yaxis_title="authentic likes", height=420, showlegend=False,
                      xaxis_type="log", yaxis_type="log")
    return fig


def _groups_table(result: ScanResult, limit: int = 50) -> str:
    g = result.groups
    if g.num_rows == 0:
        return "<p>No coordinated groups found.</p>"
    rows = []
    for r in g.sort_by([("strength", "descending")]).slice(0, limit).to_pylist():
        rows.append(
            f"<tr><td>{r['group_id']}</td><td>{html.escape(r['kind'])}</td>"
            f"<td>{len(r['accounts'])}</td><td>{len(r['videos'])}</td>"
            f"<td>{html.escape(r['evidence'])}</td></tr>")
    return ("<table><thead><tr><th>group</th><th>kind</th><th>accounts</th><th>videos</th>"
            "<th>evidence</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def render(result: ScanResult) -> str:
    """The whole report as one HTML string."""
    figs = [_likes_over_time(result), _watch_hist(result), _raw_vs_authentic(result)]
    parts = [pio.to_html(f, full_html=False, include_plotlyjs=(i == 0),
                         config={"displaylogo": False}) for i, f in enumerate(figs)]
    s = result.summary
    c = s["counts"]
    head = (f"<p><b>{c['flagged_likes']}</b> of <b>{c['likes']}</b> likes flagged as bought; "
            f"{c['flagged_engagements']} of {c['engagements']} engagements; "
            f"{c['groups']} coordinated groups. Threshold "
            f"{s['thresholds']['score_threshold']:.3f} for a target organic false-positive "
            f"rate of {s['thresholds']['target_fpr']:.4%} (label-free estimate: at most "
            f"{s['thresholds']['estimated_organic_fpr']:.4%} at 95 %).</p>")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>LikeLens report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #212529; }}
table {{ border-collapse: collapse; width: 100%; font-size: 0.9em; }}
th, td {{ border-bottom: 1px solid #dee2e6; padding: 4px 8px; text-align: left; }}
pre {{ background: #f8f9fa; padding: 1em; overflow-x: auto; }}
</style></head><body>
<h1>LikeLens report</h1>
{head}
<h2>Likes over time</h2>{parts[0]}
<h2>Watch before the like</h2>{parts[1]}
<h2>Raw against authentic</h2>{parts[2]}
<h2>Coordinated groups</h2>{_groups_table(result)}
<h2>Run</h2><pre>{html.escape(json.dumps(s, indent=2, sort_keys=True, default=str))}</pre>
</body></html>
"""
