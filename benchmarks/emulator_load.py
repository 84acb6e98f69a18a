"""Load test for the Coverbase emulator: 2,000 live runs polled concurrently.

Starts ``coverbase-emulator`` in its own process (so this load generator does not compete for its
GIL), creates ``--runs`` runs of the never-finishing ``stalled-forever`` workflow, then polls them
all with ``httpx.AsyncClient`` for ``--seconds`` and prints GET/s, p50/p99 latency and errors.

    .venv/bin/python benchmarks/emulator_load.py [--runs 2000] [--seconds 10] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import time

import httpx

from airflow_provider_coverbase.testing.process import start_emulator_process


async def create_runs(client: httpx.AsyncClient, count: int, concurrency: int) -> list[str]:
    semaphore = asyncio.Semaphore(concurrency)

    async def one() -> str:
        async with semaphore:
            response = await client.post("/v1/workflows/stalled-forever/run", json={"input": {}})
            response.raise_for_status()
            return str(response.json()["workflow_run_id"])

    return list(await asyncio.gather(*(one() for _ in range(count))))


def cpu_seconds(pid: int) -> float:
    """User+system CPU time of a process (Linux ``/proc``; 0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


async def poll(
    clients: list[httpx.AsyncClient], run_ids: list[str], seconds: float, concurrency: int, server_pid: int
) -> None:
    latencies: list[float] = []
    errors = 0
    statuses: set[str] = set()
    ids = itertools.cycle(run_ids)
    stop_at = time.monotonic() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while time.monotonic() < stop_at:
            run_id = next(ids)
            started = time.perf_counter()
            try:
                response = await client.get(f"/v1/workflows/runs/{run_id}")
                if response.status_code != 200:
                    errors += 1
                else:
                    statuses.add(response.json()["status"])
            except httpx.HTTPError:
                errors += 1
            latencies.append(time.perf_counter() - started)

    began, cpu_before = time.monotonic(), cpu_seconds(server_pid)
    await asyncio.gather(*(worker(clients[i % len(clients)]) for i in range(concurrency)))
    elapsed, server_cpu = time.monotonic() - began, cpu_seconds(server_pid) - cpu_before
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    print(f"live runs polled: {len(run_ids)} (statuses seen: {sorted(statuses)})")
    print(f"GET /v1/workflows/runs/{{id}}: {len(latencies)} requests in {elapsed:.1f} s")
    print(f"throughput: {len(latencies) / elapsed:.0f} requests/s")
    print(f"latency: p50 {p50:.1f} ms, p99 {p99:.1f} ms (client concurrency {concurrency})")
    print(f"errors: {errors}")
    if server_cpu:
        print(
            f"emulator CPU: {server_cpu:.1f} s for {elapsed:.1f} s wall "
            f"({server_cpu / elapsed:.0%} of one core; ~{len(latencies) / server_cpu:.0f} requests per CPU-second)"
        )


async def main_async(args: argparse.Namespace) -> None:
    with start_emulator_process(["--dialect", args.dialect]) as emulator:
        emulator.wait_until_serving()
        process, base_url, api_key = emulator.process, emulator.base_url, emulator.api_key
        # httpcore's pool gets slow with many connections, so shard them over several clients.
        per_client = 8
        shards = max(1, args.concurrency // per_client)
        limits = httpx.Limits(max_connections=per_client, max_keepalive_connections=per_client)
        headers = {"Authorization": f"Bearer {api_key}"}
        clients = [
            httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits, timeout=30) for _ in range(shards)
        ]
        try:
            began = time.monotonic()
            run_ids = await create_runs(clients[0], args.runs, per_client)
            print(f"created {len(run_ids)} runs in {time.monotonic() - began:.1f} s")
            await poll(clients, run_ids, args.seconds, args.concurrency, process.pid)
        finally:
            for client in clients:
                await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--dialect", choices=["legacy", "current"], default="legacy")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
