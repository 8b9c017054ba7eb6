"""The simulator ignores stop signals once its run is over, so a late one cannot reach a closed loop."""

from __future__ import annotations

import asyncio
import signal

from phalanx.sim.config import SimConfig
from phalanx.sim.main import _on_signals, _run_then_ignore_signals


def test_a_stop_signal_after_the_run_finds_no_handler_of_the_closing_loop() -> None:
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    seen: list[object] = []

    async def runner(config: SimConfig) -> int:
        _on_signals(asyncio.Event())
        seen.append(signal.getsignal(signal.SIGTERM))
        return 7

    try:
        assert asyncio.run(_run_then_ignore_signals(runner, None)) == 7  # type: ignore[arg-type]
        assert seen and seen[0] not in (signal.SIG_IGN, signal.SIG_DFL)  # the loop's handler while running
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        assert signal.set_wakeup_fd(-1) == -1  # no wakeup pipe left to write to
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
