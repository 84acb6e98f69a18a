"""``coverbase-emulator`` / ``python -m airflow_provider_coverbase.testing``: serve the emulator.

Prints the base URL, the API keys and an ``export AIRFLOW_CONN_COVERBASE_DEFAULT=...`` line to paste
into a shell, then serves until interrupted. A config error is one line naming the file, the line and
what is wrong (exit code 2), not a traceback. No Airflow imports, no client imports.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import shlex
import sys

from airflow_provider_coverbase.testing.clock import EmulatorClock
from airflow_provider_coverbase.testing.config import (
    CONFLICT_SHAPES,
    DIALECTS,
    RETRY_AFTER_PLACEMENTS,
    EmulatorConfig,
    load_config,
)
from airflow_provider_coverbase.testing.server import bind_socket, connection_value, serve_forever, url_for
from airflow_provider_coverbase.testing.state import EmulatorState


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coverbase-emulator",
        description="Local stand-in for the Coverbase Workflows API (loopback HTTP).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8900, help="port (0 picks a free one; default 8900)")
    parser.add_argument("--config", help="YAML or JSON file with workflows/orgs (added to the built-ins)")
    parser.add_argument("--dialect", choices=DIALECTS, default="legacy", help="API contract (default legacy)")
    parser.add_argument(
        "--speed",
        type=float,
        default=None,
        help="emulated seconds per real second (default: config, else 1)",
    )
    parser.add_argument("--log-level", default="warning", help="uvicorn log level (default warning)")
    variants = parser.add_argument_group("answer variants (default: config, else the usual answers)")
    variants.add_argument(
        "--conflict-shape", choices=CONFLICT_SHAPES, help="how a legacy 409 replay carries the run (default detail)"
    )
    variants.add_argument(
        "--retry-after", choices=RETRY_AFTER_PLACEMENTS, help="where a 429 puts retry_after (default both)"
    )
    variants.add_argument(
        "--sparse-get-bodies",
        action="store_true",
        default=None,
        help="GET run bodies without workflow_run_id and workflow_name",
    )
    variants.add_argument(
        "--legacy-v2-endpoints",
        action="store_true",
        default=None,
        help="the legacy dialect also serves V2+ endpoints (list runs); otherwise they are 404",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Serve until interrupted. A bad config or an unusable address is one line on stderr and exit code 2."""
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config) if args.config else EmulatorConfig()
        chosen = {
            "conflict_shape": args.conflict_shape,
            "retry_after": args.retry_after,
            "sparse_get_bodies": args.sparse_get_bodies,
            "legacy_v2_endpoints": args.legacy_v2_endpoints,
        }
        config = dataclasses.replace(config, **{name: value for name, value in chosen.items() if value is not None})
        speed = config.speed if args.speed is None else args.speed
        state = EmulatorState(config, args.dialect, EmulatorClock(speed))
    except ValueError as exc:  # ConfigError, or a negative --speed
        print(f"coverbase-emulator: error: {exc}", file=sys.stderr)
        return 2
    try:
        sock = bind_socket(args.host, args.port)
    except OSError as exc:
        print(f"coverbase-emulator: error: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 2
    base_url = url_for(sock)
    conn = connection_value(base_url, config.orgs[0].api_key)
    lines = [
        f"Coverbase emulator ({args.dialect} dialect) listening on {base_url}",
        f"Base URL: {base_url}",
        f"API key: {config.orgs[0].api_key}",
    ]
    lines += [f"API key ({org.name or org.org_id}): {org.api_key}" for org in config.orgs[1:]]
    lines += [
        f"export AIRFLOW_CONN_COVERBASE_DEFAULT={shlex.quote(conn)}",
        "  (paste it into the shell that runs airflow; Admin > Connections does not list connections from the "
        "environment, only those in Airflow's database: `airflow connections add` puts one there)",
        f"Admin API: {base_url}/_emulator (faults, clock, requests, reset, webhooks: redeliver, signing, "
        "hold, release); workflows: " + ", ".join(sorted(w.name for w in config.workflows)),
    ]
    print("\n".join(lines), flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        serve_forever(state, sock, args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
