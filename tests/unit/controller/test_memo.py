"""`per_object`: one answer per live object, recomputed for another object, never keeping one alive."""

from __future__ import annotations

import gc
import weakref

from phalanx.controller.memo import per_object


class Spec:
    def __init__(self, value: int) -> None:
        self.value = value


def test_one_answer_per_object_and_a_fresh_one_for_another_object() -> None:
    calls: list[int] = []

    @per_object
    def doubled(spec: Spec) -> int:
        calls.append(spec.value)
        return spec.value * 2

    first, equal = Spec(3), Spec(3)
    assert doubled(first) == 6 and doubled(first) == 6
    assert calls == [3]  # asked twice, computed once
    assert doubled(equal) == 6 and calls == [3, 3]  # equal by value, another object: computed again


def test_an_answer_leaves_with_its_object_and_a_reused_id_is_not_mistaken_for_it() -> None:
    @per_object
    def value_of(spec: Spec) -> int:
        return spec.value

    spec = Spec(1)
    assert value_of(spec) == 1
    gone = weakref.ref(spec)
    del spec
    gc.collect()
    assert gone() is None  # the memo did not keep it alive
    # Many new objects: CPython hands out freed ids again; none may get an old object's answer.
    for value in range(2, 200):
        assert value_of(Spec(value)) == value
