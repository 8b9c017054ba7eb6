"""A chat request sent from a thread, so that a test can scale a model up while the router holds it."""

from __future__ import annotations

import threading

import openai


class ChatInBackground:
    """`answer()` is the reply's text; any failure of the request is raised there."""

    def __init__(self, base_url: str, model: str, timeout_s: float) -> None:
        self.base_url, self.model, self.timeout_s = base_url, model, timeout_s
        self._answers: list[str | BaseException] = []
        self._thread = threading.Thread(target=self._ask, daemon=True)
        self._thread.start()

    def _ask(self) -> None:
        client = openai.OpenAI(
            base_url=self.base_url, api_key="unused", max_retries=0, timeout=self.timeout_s
        )
        try:
            reply = client.chat.completions.create(
                model=self.model,
                messages=[{"role": "user", "content": "Hello there"}],
                max_tokens=8,
                extra_headers={"x-queue-timeout": str(self.timeout_s)},
            )
            self._answers.append(reply.choices[0].message.content or "")
        except BaseException as exc:  # raised again in the test's thread by `answer`
            self._answers.append(exc)

    def answer(self) -> str:
        self._thread.join(self.timeout_s + 30)
        assert not self._thread.is_alive(), "the request is still waiting"
        (got,) = self._answers
        if isinstance(got, BaseException):
            raise got
        return got
