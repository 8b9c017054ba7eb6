"""Every unit's fields from the pages read this pass, and the windows carried to the next one."""

from __future__ import annotations

from phalanx.autoscale.observe.engine import UNKNOWN, observe_unit, observe_units
from tests.unit.autoscale.observe_pages import vllm_page


def test_each_page_read_gives_its_units_fields_and_its_snapshot_by_endpoint() -> None:
    pages = {
        "chat-0": ("default/chat-0-e", vllm_page(waiting=3, running=2)),
        "chat-1": ("default/chat-1-e", vllm_page(waiting=1)),
    }
    fields, kept = observe_units(pages, {}, now=100.0)
    assert (fields["chat-0"].waiting, fields["chat-0"].running, fields["chat-1"].waiting) == (3, 2, 1)
    assert set(kept) == {"default/chat-0-e", "default/chat-1-e"}
    assert kept["default/chat-0-e"].time == 100.0


def test_the_second_pass_measures_from_the_first_snapshot() -> None:
    first = vllm_page(generation=100)
    second = vllm_page(generation=400)
    _, kept = observe_units({"chat-0": ("e0", first)}, {}, now=100.0)
    fields, _ = observe_units({"chat-0": ("e0", second)}, kept, now=115.0)
    alone, _ = observe_unit(second, kept["e0"], 115.0)
    assert fields["chat-0"] == alone
    assert fields["chat-0"].tokens_per_second == 20.0  # 300 generated tokens over 15 s


def test_a_page_not_read_is_unknown_and_keeps_its_window() -> None:
    _, kept = observe_units({"chat-0": ("e0", vllm_page())}, {}, now=100.0)
    fields, after = observe_units({"chat-0": ("e0", None)}, kept, now=115.0)
    assert fields["chat-0"] == UNKNOWN
    assert fields["chat-0"].waiting is None  # unknown, never 0
    assert after == kept


def test_an_endpoint_no_longer_read_takes_its_window_with_it() -> None:
    _, kept = observe_units({"chat-0": ("e0", vllm_page()), "chat-1": ("e1", vllm_page())}, {}, now=100.0)
    _, after = observe_units({"chat-1": ("e1", vllm_page())}, kept, now=115.0)
    assert set(after) == {"e1"}
