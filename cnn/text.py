"""Numbers written for people: the same wording on every page and in the CLI."""
from __future__ import annotations

import math


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
