"""A throwaway PostgreSQL cluster for integration tests, from Debian's ``postgresql`` binaries.

``throwaway_postgres()`` runs ``initdb`` in a temporary directory, starts the server on a free
loopback port (its socket in the same directory), creates a database and yields its SQLAlchemy URL
for Airflow (``postgresql+psycopg2://``; Airflow derives the ``asyncpg`` URL of its async engine
from it). On exit the server is stopped and the directory removed. Without the binaries or the
drivers it skips, saying what to install (``.ci/run`` installs both).

PostgreSQL refuses to run as root, so under root (CI) the server runs as the ``postgres`` user that
Debian's package creates.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.util import find_spec
from pathlib import Path

import pytest

from tests.ports import free_port

BINARIES = Path("/usr/lib/postgresql")


def _bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<major>/bin`` that has ``initdb`` and ``pg_ctl``."""
    found = [p.parent for p in BINARIES.glob("*/bin/initdb") if (p.parent / "pg_ctl").exists()]
    found.sort(key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    return found[-1] if found else None


def skip_reason() -> str | None:
    """Why a PostgreSQL run cannot happen here, or ``None`` when it can."""
    if _bindir() is None:
        return f"no PostgreSQL binaries under {BINARIES}/*/bin (Debian: apt-get install postgresql)"
    for module, package in (("psycopg2", "psycopg2-binary"), ("asyncpg", "asyncpg")):
        if find_spec(module) is None:
            return f"the PostgreSQL driver {package} is not installed (it is in the dev extra)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run PostgreSQL as"
    return None


@contextmanager
def throwaway_postgres() -> Iterator[str]:
    """Start a cluster, yield the URL of an empty database ``airflow`` in it, remove it all after."""
    reason = skip_reason()
    if reason is not None:
        pytest.skip(f"PostgreSQL run skipped: {reason}")
    bindir = _bindir()
    assert bindir is not None
    home = Path(tempfile.mkdtemp(prefix="coverbase-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(home, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data = home / "data"
    port = free_port()

    def run(*args: str | Path, timeout: float = 120) -> None:
        done = subprocess.run([*as_user, *map(str, args)], capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{Path(str(args[0])).name} failed ({done.returncode}): {done.stderr or done.stdout}")

    try:
        run(bindir / "initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        # Loopback only; fsync off: the cluster is thrown away, durability does not matter here.
        options = f"-h 127.0.0.1 -p {port} -k {home} -F -c max_connections=200"
        run(bindir / "pg_ctl", "-D", data, "-l", home / "postgres.log", "-w", "-t", "60", "-o", options, "start")
        try:
            run(bindir / "createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "airflow")
            yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/airflow"
        finally:
            run(bindir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(home, ignore_errors=True)
