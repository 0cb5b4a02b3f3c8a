"""How the report writes a number: one rule for the HTML page, the CSV files and ``isokit probe``.

Compact numbers keep four significant digits and switch to scientific notation outside
``[1e-3, 1e4)``; ``exact=True`` writes the shortest string that reads back to the same float
(``summary.csv``, which is meant for further analysis). Non-finite values are ``nan``, ``inf`` and
``-inf`` everywhere except on the page, where they read ``∞`` and ``−∞``; a missing value is an
empty cell in text and ``–`` on the page.
"""

from __future__ import annotations

import math

__all__ = ["format_number"]


def format_number(value: float | None, *, exact: bool = False, html: bool = False) -> str:
    """``value`` as the report writes it (module docstring).

    Example:
        >>> format_number(0.123456), format_number(123456.0), format_number(float("inf"))
        ('0.1235', '1.235e+05', 'inf')
        >>> format_number(0.1 + 0.2, exact=True)
        '0.30000000000000004'
        >>> format_number(float("-inf"), html=True), format_number(None, html=True)
        ('−∞', '–')
    """
    if value is None:
        return "–" if html else ""
    value = float(value)
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        if html:
            return "∞" if value > 0 else "−∞"
        return "inf" if value > 0 else "-inf"
    if exact:
        return repr(value)
    if value != 0 and (abs(value) >= 1e4 or abs(value) < 1e-3):
        return f"{value:.3e}"
    return f"{value:.4g}"
