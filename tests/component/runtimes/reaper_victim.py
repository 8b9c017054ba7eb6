"""Starts a LocalRuntime with one long-running pod, prints the pod's process group, then waits forever.

The reaper test SIGKILLs this process and checks the pod's processes go too.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from phalanx.runtimes.local.runtime import LocalRuntime


async def main(state_dir: Path, mark: str) -> None:
    runtime = LocalRuntime(state_dir, gpus=0)
    await runtime.start()
    # The shell's child `sleep` is a grandchild: only the reaper (not PDEATHSIG) can kill it.
    await runtime.create(
        {
            "kind": "Pod",
            "metadata": {"name": "victim"},
            "spec": {
                "containers": [
                    {
                        "name": "main",
                        "command": ["sh", "-c", "sleep 300 & wait"],
                        "env": [{"name": "PHALANX_LOCAL_RUNTIME_TEST", "value": mark}],
                    }
                ]
            },
        }
    )
    while True:
        pods = await runtime.list_objects("Pod", "default", {})
        statuses = pods[0].get("status", {}).get("containerStatuses") or []
        if statuses and "running" in statuses[0]["state"]:
            print(statuses[0]["containerID"].removeprefix("local://"), runtime.reaper_pid, flush=True)
            break
        await runtime.wait_for_change(0.1)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2]))
