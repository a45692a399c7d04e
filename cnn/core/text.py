"""Numbers written for people: the same wording on every page and in the CLI."""
from __future__ import annotations

import math
import re


def probability_text(p: float, decimals: int = 1) -> str:
    """A model's probability as a percentage. The ends read '> 99.9%' and '< 0.1%', never a rounded
    100.0% or 0.0%: a softmax output is never exactly 1 or 0, and '100%' claims a certainty it does not have."""
    p = float(p)
    if not math.isfinite(p):
        return "–"
    step = 10.0 ** -decimals  # the smallest difference the format shows, in percent
    if p * 100 >= 100 - step / 2:
        return f"> {100 - step:.{decimals}f}%"
    if p * 100 < step / 2:
        return f"< {step:.{decimals}f}%"
    return f"{p * 100:.{decimals}f}%"


def accuracy_text(share: float | None, decimals: int = 2) -> str:
    """A measured share (accuracy, recall) as a percentage; '–' when there is none."""
    if share is None or not math.isfinite(float(share)):
        return "–"
    return f"{float(share):.{decimals}%}"


def date_text(iso: str) -> str:
    """An ISO 8601 timestamp (as metrics.json keeps it) as '23 Nov 2026, 04:51 UTC'; the text itself if it
    cannot be read."""
    from datetime import datetime, timezone

    try:
        moment = datetime.fromisoformat(str(iso))
    except ValueError:
        return str(iso) or "–"
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.strftime("%-d %b %Y, %H:%M") + (" UTC" if moment.tzinfo is not None else "")


def megabytes(size: float, limit: float | None = None) -> str:
    """A byte count in MB for messages, with as many decimals as it takes (up to 3) to tell it from `limit`:
    '200.4 MB' next to a limit of 200 MB, never '200 MB; the limit is 200 MB'."""
    value = size / 1e6
    decimals = 0 if value >= 10 else 1
    if limit is not None:
        while decimals < 3 and f"{value:,.{decimals}f}" == f"{limit / 1e6:,.{decimals}f}":
            decimals += 1
        if f"{value:,.{decimals}f}" == f"{limit / 1e6:,.{decimals}f}" and size != limit:
            return f"{int(size):,} bytes"
    return f"{value:,.{decimals}f} MB"


def limit_text(size: float, limit: float) -> str:
    """'unpacks to 200.4 MB; the limit is 200 MB'-style pair: '200.4 MB; the limit is 200 MB'."""
    return f"{megabytes(size, limit)}; the limit is {limit / 1e6:,g} MB"


def safe_label(name, limit: int = 100, fallback: str = "upload", strict: bool = False) -> str:
    """A client-supplied (file) name made safe to show and store as text — never used as a path: its last path
    component without control characters, at most `limit` characters (cut with "…"), or `fallback` when
    nothing is left. `strict` (a dataset's label): only letters, digits, space . _ -, no ".zip", cut short."""
    text = re.sub(r"[\x00-\x1f\x7f]", "", str(name)).replace("\\", "/").rsplit("/", 1)[-1].strip()
    if not strict:
        return (text[: limit - 1] + "…" if len(text) > limit else text) or fallback
    text = re.sub(r"\.zip$", "", text, flags=re.IGNORECASE)
    text = re.sub(r"[^\w .-]+", "-", text, flags=re.ASCII).strip(" .-_")
    return text[:limit].strip(" .-_") or fallback


_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+!|<>~$:])")


def markdown_text(text) -> str:
    """Text from outside (a class name, a file name) made literal inside Streamlit markdown: each character that
    could start emphasis, a link, a heading, a colour or an icon (`:red[...]`, `:material/x:`) is escaped."""
    return _MARKDOWN.sub(r"\\\1", str(text))


def plot_text(text) -> str:
    """Text from outside (a class name) made literal in a Plotly label: Plotly reads a few HTML tags (<b>, <br>,
    <a href>) in titles, ticks and legends, and turns the entities back into the characters it shows."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
