"""The shared emulator fixtures hand each test a fresh emulator: nothing one test sets reaches the next.

Run as a user's test session would be: a test file of two tests, in a pytest of its own.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.plugin.test_lazy_plugin import fresh_env

USER_TESTS = """
import httpx

from airflow_provider_coverbase.testing.pytest_plugin import FIXTURE_SPEED


def test_one_freezes_the_clock_and_fails_the_next_request(coverbase_emulator):
    coverbase_emulator.set_speed(0)
    coverbase_emulator.fail_next(3)


def test_two_gets_the_fixture_speed_and_no_fault(coverbase_emulator):
    assert coverbase_emulator.state.clock.speed == FIXTURE_SPEED
    auth = {"Authorization": f"Bearer {coverbase_emulator.api_key}"}
    assert httpx.get(f"{coverbase_emulator.base_url}/v1/utils/authtest", headers=auth).status_code == 200
"""


def test_a_frozen_clock_does_not_carry_over_to_the_next_test(tmp_path: Path) -> None:
    (tmp_path / "test_user.py").write_text(USER_TESTS)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_user.py"],
        cwd=tmp_path,
        env=fresh_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "2 passed" in result.stdout
