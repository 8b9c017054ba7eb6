"""The kind of an autoscaling decision's reason: a short, fixed label for metrics, read from the
reason's text (the autoscaler's words, which are free text and would make a label without bound).

The kind is what set the count last: a constraint that moved or held the count (placement, the idle
window, rising demand, the role ratio, panic, the rate limits and windows, min/max), else the
signal that asked for it. Text the patterns do not know is `other`, never the text itself.
"""

from __future__ import annotations

# (kind, phrases): the first kind whose phrase the reason contains wins; constraints come first,
# in the reverse of the order the autoscaler applies them.
_PATTERNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("conflict", ("is already scaled by AutoscalingPolicy",)),
    ("placement", ("what the platform can place", "pending past the timeout", "reports room again")),
    ("idle-window", ("the load has not been 0",)),
    ("rising-demand", ("the arrival rate is rising",)),
    ("ratio", (" to keep ", "stays outside")),
    ("panic", ("panic",)),
    ("rate-limit", ("up limit of", "down limit of")),
    ("stabilization", (" window (",)),
    ("bounds", ("raised to the minimum", "capped at the maximum")),
    ("from-zero", ("started at once",)),
    ("no-signal", ("no signal has data", "nothing measures")),
    ("queue", ("while requests wait", "asks for no more")),
    ("latency", ("the objective",)),
    ("capacity", ("tokens/s",)),
    ("signal", ("at target",)),
)

REASON_KINDS = (*(kind for kind, _ in _PATTERNS), "other")


def reason_kind(reason: str) -> str:
    for kind, phrases in _PATTERNS:
        if any(phrase in reason for phrase in phrases):
            return kind
    return "other"
