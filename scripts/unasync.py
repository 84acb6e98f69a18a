"""Generate ``client/_async.py`` from ``client/_sync.py`` (the httpcore "unasync" approach).

The two clients are thin drivers over one core; generating one from the other keeps them identical
except for ``await``. ``python scripts/unasync.py`` rewrites the file; ``--check`` fails if it is stale
(``make test`` runs the check).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "airflow_provider_coverbase" / "client"
SOURCE, TARGET = ROOT / "_sync.py", ROOT / "_async.py"

# Ordered (pattern, replacement) pairs applied line by line.
SUBS: list[tuple[str, str]] = [
    (
        r'^"""The synchronous client',
        "# Generated from _sync.py by scripts/unasync.py: edit _sync.py, then run the script.\n"
        '"""The asynchronous client',
    ),
    (r"^import time$", "import asyncio\nimport time"),
    (r"from collections\.abc import Callable,", "from collections.abc import Awaitable, Callable,"),
    (r'__all__ = \["CoverbaseClient"\]', '__all__ = ["AsyncCoverbaseClient"]'),
    (r"^class CoverbaseClient:", "class AsyncCoverbaseClient:"),
    (r'"""Synchronous client', '"""Asynchronous client'),
    (r"with CoverbaseClient\(", "async with AsyncCoverbaseClient("),
    (r"run = client\.", "run = await client."),
    (r"httpx\.BaseTransport", "httpx.AsyncBaseTransport"),
    (r"Callable\[\[float\], None\] = time\.sleep", "Callable[[float], Awaitable[None]] = asyncio.sleep"),
    (
        r"^from airflow_provider_coverbase\.client\._http import read_whole, sync_transport$",
        "from airflow_provider_coverbase.client._transport import AiohttpTransport",
    ),
    (r"sync_transport\(config\.base_url, ", "AiohttpTransport("),
    (r'f"CoverbaseClient\(', 'f"AsyncCoverbaseClient('),
    (r"def close\(self\)", "async def aclose(self)"),
    (r"self\._transport\.close\(\)", "await self._transport.aclose()"),
    (r"def __enter__\(self\)", "async def __aenter__(self)"),
    (r"def __exit__\(", "async def __aexit__("),
    (r"self\.close\(\)", "await self.aclose()"),
    (r"def _execute\(self", "async def _execute(self"),
    (r"= self\._send\(", "= await self._send("),
    (r"def _send\(self", "async def _send(self"),
    (r"self\._transport\.handle_request\(", "await self._transport.handle_async_request("),
    (r"^(\s+)response\.close\(\)$", r"\1await response.aclose()"),
    (
        r"^(\s+)return read_whole\(response\)$",
        r"\1await response.aread()  # the transport capped the body\n\1return response",
    ),
    (r"``httpx\.Client\.send``", "``httpx.AsyncClient.send``"),
    (r"``Client\.send``", "``AsyncClient.send``"),
    (r"def _wait_for_budget\(self", "async def _wait_for_budget(self"),
    (r"def _known_workflow_names\(self", "async def _known_workflow_names(self"),
    (r"self\._known_workflow_names\(", "await self._known_workflow_names("),
    (r"self\._wait_for_budget\(", "await self._wait_for_budget("),
    (r"^(\s+)self\._sleep\(", r"\1await self._sleep("),
    (r"return self\._execute\(", "return await self._execute("),
    (
        r"^    def (run_workflow|run_workflow_definition|get_workflow_run|list_workflow_runs|check_auth|send)\(",
        r"    async def \1(",
    ),
]


def unasync(text: str) -> str:
    lines = []
    for line in text.splitlines(keepends=True):
        for pattern, replacement in SUBS:
            line = re.sub(pattern, replacement, line)
        lines.append(line)
    return "".join(lines)


def main() -> int:
    expected = unasync(SOURCE.read_text())
    if "--check" in sys.argv[1:]:
        if TARGET.read_text() != expected:
            print(f"{TARGET} is stale: run `python scripts/unasync.py`", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(expected)
    return 0


if __name__ == "__main__":
    sys.exit(main())
