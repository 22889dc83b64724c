"""A Lamport diagram of a run's messages: identities across, time down, one arrow per
request and per reply; lost messages end in a red cross halfway.

Messages are recorded by their senders, on the senders' clocks: a request's arrival is
drawn at the middle of its round trip (between its send and its reply), or, with no
reply, a short way down; this is a picture of who talked to whom and in which order, not
a measurement of one-way latency. Time runs down by order of events unless ``seconds``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

_LOST_DRAW_S = 0.002  # how far down a lost message's arrow goes before its cross


_NEEDED = {"call": ("from", "to", "request_id", "time"), "tell": ("from", "to", "request_id", "time"),
           "reply": ("request_id", "time")}  # fmt: skip


def _checked(n: int, m: Any) -> dict[str, Any]:
    """Message ``n`` with what the drawing needs (ValueError naming what it lacks)."""
    if not isinstance(m, dict):
        raise ValueError(f"message {n} is not a JSON object: {m!r:.80}")
    missing = [k for k in _NEEDED.get(str(m.get("kind")), ()) if k not in m]
    if missing or not isinstance(m.get("time", 0), int):
        raise ValueError(f"message {n} lacks {', '.join(missing) or 'an integer time'}: {m!r:.120}")
    return {**m, "attempt": m.get("attempt", 0), "from": str(m.get("from", "")), "to": str(m.get("to", ""))}


def draw(messages: list[dict[str, Any]], out: str | Path, limit: int = 200, *, seconds: bool = False) -> list[Path]:
    """Draw the first ``limit`` requests (and their replies) of ``messages`` into
    ``out``.png and ``out``.svg; returns the two paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    messages = [_checked(n, m) for n, m in enumerate(messages, 1)]
    requests = [m for m in messages if m.get("kind") in ("call", "tell")][:limit]
    keep = {(m["request_id"], m["attempt"]) for m in requests}
    replies = {(m["request_id"], m["attempt"]): m for m in messages if m.get("kind") == "reply"}
    lanes = sorted({m["from"] for m in requests} | {m["to"] for m in requests}, key=lambda n: (n != "client", n))
    x = {name: i for i, name in enumerate(lanes)}
    # Time runs down by order of events (each send and each reply a step), which keeps
    # bursts readable; ``seconds=True`` uses the senders' clocks instead.
    stamps = sorted({m["time"] for m in requests} | {r["time"] for k, r in replies.items() if k in keep})
    t0 = stamps[0] if stamps else 0
    rank = {t: i for i, t in enumerate(stamps)}

    def y(t: int) -> float:
        return (t - t0) / 1e9 if seconds else float(rank[t])

    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(lanes)), 9))
    for i in x.values():
        ax.axvline(i, color="0.85", linewidth=1, zorder=0)
    lowest = 0.0
    for m in requests:
        sent = y(m["time"])
        reply = replies.get((m["request_id"], m["attempt"]))
        back = y(reply["time"]) if reply is not None else None
        arrive = (sent + back) / 2 if back is not None else sent + (_LOST_DRAW_S if seconds else 0.8)
        a, b = x[m["from"]], x[m["to"]]
        lowest = max(lowest, arrive, back or 0.0)
        if m.get("fault") == "lost":  # most of the way to its receiver, then a cross
            end = (a + 0.8 * (b - a), sent + 0.8 * (arrive - sent))
            ax.plot([a, end[0]], [sent, end[1]], color="tab:red", linestyle="--", linewidth=1)
            ax.plot(*end, marker="x", color="tab:red", markersize=8)
            continue
        color = "tab:orange" if m.get("fault") else ("tab:green" if m["kind"] == "tell" else "tab:blue")
        ax.annotate("", xy=(b, arrive), xytext=(a, sent), arrowprops={"arrowstyle": "->", "color": color, "lw": 1})
        ax.text((a + b) / 2, (sent + arrive) / 2, m.get("method", ""), fontsize=6, color=color)
        if reply is not None and (m["request_id"], m["attempt"]) in keep and m["kind"] == "call":
            style = {"arrowstyle": "->", "color": "tab:red" if reply.get("fault") else "0.5", "lw": 0.8}
            ax.annotate("", xy=(a, back), xytext=(b, arrive), arrowprops=style)
    ax.set_xticks(range(len(lanes)), lanes, rotation=30, ha="right", fontsize=8)
    ax.set_xlim(-0.5, len(lanes) - 0.5)
    ax.set_ylim(lowest * 1.02 + (1e-4 if seconds else 1.0), -1e-4 if seconds else -1.0)  # time runs down
    ax.set_ylabel("seconds since the first message (senders' clocks)" if seconds else "order of events")
    ax.set_title(f"{len(requests)} messages: calls blue, tells green, faulted orange, lost red")
    fig.tight_layout()
    base = Path(out)
    paths = [base.with_suffix(".png"), base.with_suffix(".svg")]
    for p in paths:
        fig.savefig(p)
    plt.close(fig)
    return paths
