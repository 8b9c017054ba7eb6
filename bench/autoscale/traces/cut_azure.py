"""Cut the stored slice from the Azure LLM inference trace 2023 (conversation service).

    cd bench/autoscale/traces
    python cut_azure.py AzureLLMInferenceTrace_conv.csv > azure_conv_20min.csv

Keeps the requests that arrived from 20 to 40 minutes after the trace's first request (its busiest
stretch: the rate climbs from about 5.8 to 8.5 requests/s and falls back), as seconds from the
slice's start (millisecond precision) with their token counts unchanged.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

START, END = 20 * 60.0, 40 * 60.0


def seconds(timestamp: str) -> float:
    """Seconds since midnight of `YYYY-MM-DD HH:MM:SS.fffffff` (the trace spans one hour of one day)."""
    hours, minutes, secs = timestamp.split(" ")[1].split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(secs)


def main(path: str) -> None:
    with Path(path).open(newline="") as source:
        rows = list(csv.reader(source))[1:]
    first = seconds(rows[0][0])
    print("seconds,context_tokens,generated_tokens")
    for timestamp, context, generated in rows:
        offset = seconds(timestamp) - first
        if START <= offset < END:
            print(f"{offset - START:.3f},{int(context)},{int(generated)}")


if __name__ == "__main__":
    main(sys.argv[1])
