"""Byte units: printing byte counts for people, and reading the memory sizes people and catalogs write.

Every size in the planner is an `int` of bytes; only this module turns them into text or back.

Memory strings follow one convention, the same as the GPU catalog's (see `catalog/gpus.py`): a GPU marketed
as "80 GB" has 80 GiB, so the suffixes "G", "GB", "Gi" and "GiB" all mean GiB (and likewise K, M, T). KAITO's
SKU catalog writes the same numbers as "80Gi". A bare number is a count of bytes.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from phalanx.planner.types import GiB

KiB = 1024
MiB = 1024**2
TiB = 1024**4

_UNITS = {"": 1, "B": 1, "K": KiB, "M": MiB, "G": GiB, "T": TiB}
_MEMORY = re.compile(r"^\s*(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>[KMGT]?)(?:I?B|I)?\s*$", re.IGNORECASE)


def format_bytes(n: int) -> str:
    """`n` bytes in the largest binary unit that keeps the number at least 1, with one decimal: "12.3 GiB"."""
    size = abs(n)
    sign = "-" if n < 0 else ""
    for unit, scale in (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if size >= scale:
            return f"{sign}{size / scale:.1f} {unit}"
    return f"{sign}{size} B"


def format_gib(n: int) -> str:
    """`n` bytes in GiB with one decimal, whatever the size: per-GPU figures stay comparable side by side."""
    return f"{n / GiB:.1f} GiB"


def parse_memory(text: str) -> int:
    """Bytes in a memory string such as "80Gi", "80GB", "94G", "81920Mi" or "85899345920".

    Raises ValueError naming the text when it is not a positive size in one of those forms.
    """
    match = _MEMORY.match(text)
    if match is None:
        raise ValueError(
            f"cannot read GPU memory {text!r}: write a number with a unit, e.g. '80Gi', '80GB' or '94G'"
        )
    unit = match["unit"].upper()
    if unit == "" and text.strip().upper().endswith("I"):
        raise ValueError(f"cannot read GPU memory {text!r}: 'i' needs a unit before it, e.g. '80Gi'")
    try:
        number = Decimal(match["number"])
    except InvalidOperation as exc:  # pragma: no cover - the pattern only admits decimal numbers
        raise ValueError(f"cannot read GPU memory {text!r}") from exc
    if unit == "" and number != number.to_integral_value():
        raise ValueError(f"cannot read GPU memory {text!r}: a bare number is bytes and must be whole")
    size = int(number * _UNITS[unit])
    if size <= 0:
        raise ValueError(f"GPU memory {text!r} must be more than zero")
    return size
