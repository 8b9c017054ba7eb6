"""Continuous-batching scheduler, driven by explicit time: deterministic and free of I/O.

One engine step is `schedule(now)` (admit and pick the work of the step, which fixes how long
it takes) followed by `complete_step(plan, end)` (every sequence whose tokens are all computed
emits one token). Like vLLM V1, running sequences are served before waiting ones, prompts are
prefilled in chunks within `max_num_batched_tokens`, and when KV blocks run out the newest
running sequence is preempted and later recomputed from the prefix cache and scratch.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum

from phalanx.sim.blocks import BlockManager
from phalanx.sim.leases import lease_owner
from phalanx.sim.textgen import StopMatcher, TokenSource


@dataclass(frozen=True)
class LatencyModel:
    prefill_overhead: float = 0.030
    prefill_time_per_token: float = 0.00025
    inter_token_latency: float = 0.012
    itl_batch_factor: float = 0.004

    def step_duration(self, prefill_tokens: int, num_decodes: int) -> float:
        """Prefill work (a fixed launch cost plus a per-token cost) and decode work add up: a
        prompt prefilled next to running sequences stretches their inter-token latency, as in
        vLLM's mixed batches. Decode cost grows linearly with the number of decoding sequences."""
        duration = 0.0
        if prefill_tokens:
            duration += self.prefill_overhead + prefill_tokens * self.prefill_time_per_token
        if num_decodes:
            duration += self.inter_token_latency * (1.0 + self.itl_batch_factor * (num_decodes - 1))
        return duration


class Status(Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass
class Sequence:
    """One generated choice of one request."""

    seq_id: str
    request_id: str
    choice: int
    prompt: list[int]
    max_tokens: int
    source: TokenSource
    stop: StopMatcher
    arrival: float
    output: list[int] = field(default_factory=list)
    status: Status = Status.WAITING
    num_computed: int = 0
    cached_tokens: int | None = None  # prefix-cache hit on first admission, reported in usage
    first_scheduled: float | None = None
    last_token_time: float | None = None
    finish_reason: str | None = None
    num_preemptions: int = 0
    # Prefill for a remote decode: keep the KV under a lease when the sequence ends, on the length
    # cap only ("length", vLLM's rule) or however it ends ("any", SGLang's).
    hold_kv: str | None = None
    # Decode of a remotely prefilled prompt: its KV arrived, so the first step only computes the
    # last prompt token (vLLM recomputes it for the logits), as a decode step.
    remote_kv: bool = False

    @property
    def tokens(self) -> list[int]:
        return self.prompt + self.output

    @property
    def num_tokens(self) -> int:
        return len(self.prompt) + len(self.output)


@dataclass(frozen=True)
class TokenOutput:
    seq_id: str
    request_id: str
    choice: int
    token_id: int
    text: str  # text released with this token (may be empty while a stop prefix is held back)
    finish_reason: str | None
    stop_reason: str | None
    first: bool
    interval: float  # since arrival for the first token (TTFT), else since the previous token


@dataclass(frozen=True)
class FinishedStats:
    seq_id: str
    request_id: str
    finish_reason: str
    prompt_tokens: int
    generation_tokens: int
    e2e: float
    queue_time: float
    leased: tuple[str, list[int]] | None = None  # (block owner, block ids) kept for a remote decode


@dataclass
class StepPlan:
    started: float
    work: list[tuple[Sequence, int]]  # each scheduled sequence and the tokens it computes
    prefill_tokens: int
    num_decodes: int
    duration: float
    preempted: list[str]
    admitted: list[str]
    prefix_queries: int
    prefix_hits: int


@dataclass
class StepResult:
    outputs: list[TokenOutput]
    finished: list[FinishedStats]


class Scheduler:
    def __init__(
        self,
        blocks: BlockManager,
        latency: LatencyModel,
        *,
        max_num_seqs: int,
        max_num_batched_tokens: int,
        max_model_len: int,
    ) -> None:
        self.blocks = blocks
        self.latency = latency
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.max_model_len = max_model_len
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self._seqs: dict[str, Sequence] = {}

    @property
    def live_ids(self) -> set[str]:
        return set(self._seqs)

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def add(self, seq: Sequence) -> None:
        if seq.seq_id in self._seqs:
            raise ValueError(f"duplicate sequence id {seq.seq_id}")
        if seq.num_tokens > self.blocks.num_blocks * self.blocks.block_size:
            raise ValueError(f"{seq.seq_id} can never fit in the KV cache")
        self._seqs[seq.seq_id] = seq
        self.waiting.append(seq)

    def abort(self, seq_id: str) -> bool:
        """Drop a sequence (client gone, or the engine failed); True if it was still live."""
        seq = self._seqs.pop(seq_id, None)
        if seq is None:
            return False
        if seq.status is Status.RUNNING:
            self.running.remove(seq)
            self.blocks.free(seq_id)
        elif seq.status is Status.WAITING:
            self.waiting.remove(seq)
        seq.status = Status.FINISHED
        seq.finish_reason = "abort"
        return True

    def schedule(self, now: float) -> StepPlan:
        budget = self.max_num_batched_tokens
        work: list[tuple[Sequence, int]] = []
        preempted: list[str] = []

        # Running sequences first, oldest first; each needs KV room for all its tokens.
        index = 0
        while index < len(self.running) and budget > 0:
            seq = self.running[index]
            while not self.blocks.ensure_capacity(seq.seq_id, seq.tokens):
                victim = self.running[-1]  # recompute the newest, as vLLM V1 does
                self._preempt(victim)
                preempted.append(victim.seq_id)
                if victim is seq:
                    break
            if seq.status is not Status.RUNNING:
                break
            chunk = min(seq.num_tokens - seq.num_computed, budget)
            work.append((seq, chunk))
            budget -= chunk
            index += 1

        admitted: list[str] = []
        queries = hits = 0
        while self.waiting and not preempted and budget > 0 and len(self.running) < self.max_num_seqs:
            seq = self.waiting[0]
            cached = self.blocks.allocate(seq.seq_id, seq.tokens)
            if cached is None:
                break  # FCFS: nobody overtakes the head of the queue
            self.waiting.popleft()
            seq.status = Status.RUNNING
            seq.num_computed = max(cached, len(seq.prompt) - 1) if seq.remote_kv else cached
            if seq.cached_tokens is None:
                seq.cached_tokens = cached
            if seq.first_scheduled is None:
                seq.first_scheduled = now
            queries += seq.num_tokens
            hits += cached
            self.running.append(seq)
            admitted.append(seq.seq_id)
            chunk = min(seq.num_tokens - seq.num_computed, budget)
            work.append((seq, chunk))
            budget -= chunk

        prefill = sum(chunk for seq, chunk in work if not self._is_decode(seq, chunk))
        decodes = sum(1 for seq, chunk in work if self._is_decode(seq, chunk))
        return StepPlan(
            started=now,
            work=work,
            prefill_tokens=prefill,
            num_decodes=decodes,
            duration=self.latency.step_duration(prefill, decodes),
            preempted=preempted,
            admitted=admitted,
            prefix_queries=queries,
            prefix_hits=hits,
        )

    def complete_step(self, plan: StepPlan, now: float) -> StepResult:
        outputs: list[TokenOutput] = []
        finished: list[FinishedStats] = []
        for seq, chunk in plan.work:
            if seq.status is not Status.RUNNING:
                continue  # aborted or preempted while the step ran
            seq.num_computed += chunk
            if seq.num_computed < seq.num_tokens:
                continue  # prefill chunk; the prompt is not done yet
            output = self._emit(seq, now)
            outputs.append(output)
            if output.finish_reason is not None:
                finished.append(self._finish(seq, output.finish_reason, now))
        return StepResult(outputs=outputs, finished=finished)

    # -- internals -----------------------------------------------------------------------------

    @staticmethod
    def _is_decode(seq: Sequence, chunk: int) -> bool:
        return chunk == 1 and (bool(seq.output) or seq.remote_kv) and seq.num_computed == seq.num_tokens - 1

    def _preempt(self, seq: Sequence) -> None:
        self.running.remove(seq)
        self.blocks.free(seq.seq_id)
        seq.status = Status.WAITING
        seq.num_computed = 0
        seq.remote_kv = False  # the KV it pulled is gone: recomputed here, as vLLM does
        seq.num_preemptions += 1
        self.waiting.appendleft(seq)

    def _emit(self, seq: Sequence, now: float) -> TokenOutput:
        token_id, piece = seq.source.next_token()
        seq.output.append(token_id)
        text = seq.stop.feed(piece)
        first = len(seq.output) == 1
        interval = now - (seq.arrival if seq.last_token_time is None else seq.last_token_time)
        seq.last_token_time = now
        finish_reason: str | None = None
        stop_reason: str | None = None
        if seq.stop.matched is not None:
            finish_reason, stop_reason = "stop", seq.stop.matched
        elif len(seq.output) >= seq.max_tokens or seq.num_tokens >= self.max_model_len:
            finish_reason = "length"
            text += seq.stop.flush()
        return TokenOutput(
            seq_id=seq.seq_id,
            request_id=seq.request_id,
            choice=seq.choice,
            token_id=token_id,
            text=text,
            finish_reason=finish_reason,
            stop_reason=stop_reason,
            first=first,
            interval=interval,
        )

    def _finish(self, seq: Sequence, reason: str, now: float) -> FinishedStats:
        self.running.remove(seq)
        leased: tuple[str, list[int]] | None = None
        if seq.hold_kv == "any" or (seq.hold_kv == "length" and reason == "length"):
            owner = lease_owner(seq.request_id)
            leased = (owner, self.blocks.rename(seq.seq_id, owner))
        else:
            self.blocks.free(seq.seq_id)
        del self._seqs[seq.seq_id]
        seq.status = Status.FINISHED
        seq.finish_reason = reason
        scheduled = seq.first_scheduled if seq.first_scheduled is not None else now
        return FinishedStats(
            seq_id=seq.seq_id,
            request_id=seq.request_id,
            finish_reason=reason,
            prompt_tokens=len(seq.prompt),
            generation_tokens=len(seq.output),
            e2e=now - seq.arrival,
            queue_time=scheduled - seq.arrival,
            leased=leased,
        )
