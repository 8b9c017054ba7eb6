"""From metric pages to the core's `Signals`: pure functions, text in and data out.

`engine` reads an entry pod's `/metrics` page (vLLM, SGLang, `phalanx sim`) into a unit's fields,
using the previous `EngineSnapshot` for what needs a window (rates, p95 from histogram deltas);
`router` reads the router's page; `assemble` puts them together with what the runtime knows
(ready, draining, pending) into `Signals`. The shell scrapes, keeps the snapshots and calls these.
"""
