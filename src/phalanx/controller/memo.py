"""Remembering what a pure function answered for one frozen object, for as long as that object lives.

A pass asks for the same spec's revision hash and gang resources once per group and more (14709
hashes in the 8 passes of a 300-group bring-up); the spec is a frozen model, so the answer cannot
change while the object exists. Keyed by identity, not by value: hashing a ModelServing would cost
what the memo saves.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from functools import wraps
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def per_object(function: Callable[[T], R]) -> Callable[[T], R]:
    """`function`, remembering its answer for each argument object until that object is gone.
    Only for pure functions of frozen objects; the answer is shared, so callers must not change it."""
    answers: dict[int, tuple[weakref.ref[T], R]] = {}

    @wraps(function)
    def remembered(obj: T) -> R:
        key = id(obj)
        found = answers.get(key)
        if found is not None and found[0]() is obj:
            return found[1]
        answer = function(obj)
        # The entry leaves with its object, before another object can be given the same id.
        answers[key] = (weakref.ref(obj, lambda _ref: answers.pop(key, None)), answer)
        return answer

    return remembered
