"""`phalanx router --backend URL ...` with one setting the CLI does not expose: the PD skip threshold.

    python bench/pd/serve_ours.py --port 9000 --min-prefill-tokens 2048 \
        --backend 'http://127.0.0.1:8101?pd-role=prefill' --backend 'http://127.0.0.1:8102?pd-role=decode'

The same code path as the CLI (`run_router` with static endpoints, access log off); only
`RouterConfig.pd.min_prefill_tokens` is set (docs/router.md, "Prefill/decode disaggregation").
"""

from __future__ import annotations

import argparse
import sys

from phalanx.router.main import RouterOptions, RouterStartError, run_router
from phalanx.router.policies.pd import PdConfig
from phalanx.router.server import RouterConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backend", action="append", required=True)
    parser.add_argument("--min-prefill-tokens", type=int, default=PdConfig.min_prefill_tokens)
    args = parser.parse_args()
    config = RouterConfig(access_log=False, pd=PdConfig(min_prefill_tokens=args.min_prefill_tokens))
    try:
        sys.exit(
            run_router(RouterOptions(host="127.0.0.1", port=args.port, backends=tuple(args.backend)), config)
        )
    except RouterStartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
