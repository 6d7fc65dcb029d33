"""Human-readable memory sizes: parsing `512M`, `1.5G`, `4GiB` and printing them back.

Decimal and binary suffixes are both read as powers of 1024, as users of
`--max-ram 4G` expect; plain integers are bytes.
"""

from __future__ import annotations

import re

MiB = 1024**2
"""The one mebibyte of the code base: `--max-ram 512M` is 512 * MiB."""
_UNITS = {"": 1, "B": 1, "K": 1024, "M": MiB, "G": 1024**3, "T": 1024**4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)


class SizeError(ValueError):
    """A size string that cannot be read."""


def parse_size(text: str | int) -> int:
    """Bytes in `text`; raises SizeError with an example of what is accepted."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        match = _SIZE.match(str(text))
        if not match:
            raise SizeError(f"cannot read size {text!r}: use bytes or a number with K, M, G or T (e.g. 512M, 1.5G, 4GiB)")
        value = int(float(match.group(1)) * _UNITS[match.group(2).upper()])
    if value <= 0:
        raise SizeError(f"size {text!r} must be larger than zero")
    return value


def format_size(n_bytes: int | float | None) -> str:
    """`1.2G`, `640M`, `12K`: short and unambiguous for tables and messages."""
    if n_bytes is None:
        return "-"
    n = float(n_bytes)
    for unit, factor in (("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if abs(n) >= factor:
            value = n / factor
            return f"{value:.2f}{unit}" if unit == "G" else f"{value:.0f}{unit}"
    return f"{n:.0f}B"
