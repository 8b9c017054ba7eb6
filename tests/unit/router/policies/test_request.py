from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from phalanx.router.policies import MAX_PREFIX_CHARS, PolicyConfig, prompt_text, routing_request


def chat(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": list(messages), **extra}


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


# --- completions -------------------------------------------------------------------------


def test_string_prompt_is_the_text() -> None:
    assert prompt_text({"prompt": "Once upon a time"}) == "Once upon a time"


def test_a_batch_of_prompts_is_joined_in_order() -> None:
    text = prompt_text({"prompt": ["first", "second"]})
    assert text.startswith("first")
    assert text.endswith("second")
    assert text != prompt_text({"prompt": ["second", "first"]})
    assert text != prompt_text({"prompt": "firstsecond"})


def test_token_ids_render_as_marked_decimal_text() -> None:
    text = prompt_text({"prompt": [101, 2023, 7]})
    assert "101 2023 7" in text
    assert text != prompt_text({"prompt": "101 2023 7"})
    assert text == prompt_text({"prompt": [101, 2023, 7]})


def test_longer_token_prompt_extends_the_shorter_one() -> None:
    assert prompt_text({"prompt": [5, 6, 7, 8]}).startswith(prompt_text({"prompt": [5, 6, 7]}))


def test_a_batch_of_token_lists() -> None:
    text = prompt_text({"prompt": [[1, 2], [3]]})
    assert "1 2" in text
    assert text.endswith("3")
    assert text != prompt_text({"prompt": [[1], [2, 3]]})


@pytest.mark.parametrize("payload", [{}, {"input": "embed me"}, {"prompt": None}, {"prompt": 42}])
def test_no_prompt_is_empty_text(payload: dict[str, Any]) -> None:
    assert prompt_text(payload) == ""


# --- chat ----------------------------------------------------------------------------------


def test_roles_and_contents_are_rendered() -> None:
    text = prompt_text(chat({"role": "system", "content": "Be brief."}, user("Hi")))
    assert "system" in text
    assert "Be brief." in text
    assert text.index("Be brief.") < text.index("Hi")


def test_same_words_under_another_role_differ() -> None:
    assert prompt_text(chat(user("Hi"))) != prompt_text(chat({"role": "assistant", "content": "Hi"}))


def test_a_conversation_renders_as_an_extension_of_its_earlier_turns() -> None:
    turns = [user("Hello"), {"role": "assistant", "content": "Hi!"}, user("What is 2+2?")]
    for k in range(1, len(turns)):
        assert prompt_text(chat(*turns)).startswith(prompt_text(chat(*turns[:k])))


def test_text_parts_read_like_a_plain_string() -> None:
    parts = [{"type": "text", "text": "Describe "}, {"type": "text", "text": "this."}]
    assert prompt_text(chat(user(parts))) == prompt_text(chat(user("Describe this.")))


def test_images_become_a_mark_not_their_bytes() -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 5000}}
    text = prompt_text(chat(user([{"type": "text", "text": "What is this?"}, image])))
    assert "What is this?" in text
    assert "image_url" in text
    assert "AAAA" not in text
    assert len(text) < 100


def test_different_images_usually_differ_and_the_same_image_never_does() -> None:
    def with_url(url: str) -> str:
        return prompt_text(chat(user([{"type": "image_url", "image_url": {"url": url}}])))

    assert with_url("https://x/a.png") == with_url("https://x/a.png")
    assert with_url("https://x/a.png") != with_url("https://x/long-name.png")


def test_tools_come_first_and_change_the_text() -> None:
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
    with_tools = prompt_text(chat(user("Hi"), tools=[tool]))
    assert with_tools.index("get_weather") < with_tools.index("Hi")
    assert with_tools != prompt_text(chat(user("Hi")))


def test_tool_calls_and_results_are_part_of_the_conversation() -> None:
    call = {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "function": {"name": "f"}}]}
    result = {"role": "tool", "tool_call_id": "c1", "content": "42"}
    text = prompt_text(chat(user("Go"), call, result))
    assert '"name":"f"' in text
    assert "c1" in text
    assert text.endswith(prompt_text(chat(result)))


def test_message_names_count() -> None:
    assert prompt_text(chat({"role": "user", "name": "ann", "content": "Hi"})) != prompt_text(
        chat(user("Hi"))
    )


def test_malformed_messages_render_without_raising() -> None:
    text = prompt_text(chat("not a message", {"role": 7, "content": {"odd": True}}, user([1, None])))
    assert "not a message" in text


# --- the whole request ---------------------------------------------------------------------


def test_routing_request_reads_model_salt_and_text() -> None:
    req = routing_request({"model": "llama", "prompt": "Hi", "cache_salt": "tenant-a"}, {})
    assert (req.model, req.prefix_text, req.cache_salt, req.session, req.policy) == (
        "llama",
        "Hi",
        "tenant-a",
        None,
        None,
    )


def test_a_missing_or_odd_model_is_empty() -> None:
    assert routing_request({"prompt": "Hi"}, {}).model == ""
    assert routing_request({"model": 3, "prompt": "Hi"}, {}).model == ""


def test_session_header_wins_over_the_user_field() -> None:
    body = {"model": "m", "prompt": "x", "user": "u-1"}
    assert routing_request(body, {"x-session-id": "s-9"}).session == "s-9"
    assert routing_request(body, {}).session == "u-1"


@pytest.mark.parametrize("user_field", [None, "", 5, ["u"]])
def test_no_usable_session(user_field: Any) -> None:
    assert routing_request({"model": "m", "user": user_field}, {"x-session-id": "  "}).session is None


def test_session_header_name_is_configurable_and_case_insensitive() -> None:
    headers = CIMultiDict({"X-Conversation": "c-1"})
    assert routing_request({"model": "m"}, headers, "x-conversation").session == "c-1"
    assert routing_request({"model": "m"}, {"x-conversation": "c-2"}, "X-Conversation").session == "c-2"
    assert routing_request({"model": "m"}, headers).session is None


def test_policy_override_header_is_normalised() -> None:
    assert routing_request({"model": "m"}, {"x-routing-policy": " Round-Robin "}).policy == "round-robin"
    assert routing_request({"model": "m"}, {"x-routing-policy": ""}).policy is None


def test_default_max_chars_is_what_hashing_reads() -> None:
    assert PolicyConfig().prefix_chars == MAX_PREFIX_CHARS


def test_long_prompts_are_cut_at_max_chars() -> None:
    assert routing_request({"prompt": "x" * 10_000}, {}, max_chars=300).prefix_text == "x" * 300
    assert len(prompt_text({"prompt": list(range(100_000))}, 1000)) == 1000
    long_chat = chat(*[user("y" * 500) for _ in range(100)])
    assert len(prompt_text(long_chat, 2000)) == 2000
    assert prompt_text(long_chat, 2000) == prompt_text(long_chat)[:2000]


def test_cut_token_text_is_a_prefix_of_the_full_one() -> None:
    full = prompt_text({"prompt": list(range(2000))})
    assert full.startswith(prompt_text({"prompt": list(range(2000))}, 777))


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
TEXT = st.text(alphabet="ab \x1e", max_size=12)
PART = st.fixed_dictionaries({"type": st.just("text"), "text": TEXT}) | st.fixed_dictionaries(
    {"type": st.just("image_url"), "image_url": st.fixed_dictionaries({"url": TEXT})}
)
MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "user", "assistant", "tool"])},
    optional={
        "content": st.none() | TEXT | st.lists(PART, max_size=3),
        "name": TEXT,
        "tool_calls": st.lists(st.fixed_dictionaries({"id": TEXT}), max_size=2),
        "tool_call_id": TEXT,
    },
)


@settings(max_examples=30, deadline=None)
@given(
    payload=st.dictionaries(
        st.sampled_from(["model", "prompt", "messages", "tools", "user", "cache_salt"]), JSON, max_size=6
    ),
    limit=st.integers(min_value=0, max_value=200),
)
def test_any_json_body_renders_bounded_and_stable(payload: dict[str, Any], limit: int) -> None:
    first = routing_request(payload, {}, max_chars=limit)
    assert len(first.prefix_text) <= limit
    assert routing_request(payload, {}, max_chars=limit) == first


@settings(max_examples=40, deadline=None)
@given(st.lists(MESSAGE, min_size=1, max_size=5), st.integers(min_value=0, max_value=5))
def test_every_conversation_extends_its_earlier_turns(messages: list[dict[str, Any]], k: int) -> None:
    assert prompt_text(chat(*messages)).startswith(prompt_text(chat(*messages[:k])))
