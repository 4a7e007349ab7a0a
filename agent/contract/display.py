"""How aggregate counts are shown to people: small counts are shown as a bound, not exactly.

``sync.display_threshold`` (default 11) is the smallest count shown as a number; a count below it
is shown as ``<11``, so a screen never tells how many people (one, two) were somewhere at a time.
Every place that shows aggregate counts (the staff console, ``retail-agent demo``) goes through
``display_count``.
"""

from __future__ import annotations


def display_count(count: int, threshold: int) -> str:
    """``count`` as text, or ``<threshold`` when it is below ``threshold`` (>= 1)."""
    if isinstance(threshold, bool) or threshold < 1:
        raise ValueError(f"display threshold must be an integer >= 1, got {threshold!r}")
    if isinstance(count, bool) or count < 0:
        raise ValueError(f"a count must be an integer >= 0, got {count!r}")
    return str(count) if count >= threshold else f"<{threshold}"
