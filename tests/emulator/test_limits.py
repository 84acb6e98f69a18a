"""Rate limiting: per-org request budget and concurrent-run limit, both answering 429 + Retry-After."""

from __future__ import annotations

from airflow_provider_coverbase.testing import CoverbaseEmulator, EmulatorConfig, OrgConfig

from .conftest import client_for


def test_request_budget(emulator_of_each_dialect: CoverbaseEmulator) -> None:
    emu = emulator_of_each_dialect
    emu.set_speed(0)
    emu.set_limits(requests_per_window=3, window_seconds=60)
    with client_for(emu) as client, client_for(emu, emu.other_api_key) as other:
        for _ in range(3):
            assert client.get("/v1/utils/authtest").status_code == 200
        limited = client.get("/v1/utils/authtest")
        assert limited.status_code == 429
        body = limited.json()
        assert body["detail"]["code"] == "rate_limited"
        assert body["retry_after"] == 60
        assert limited.headers["Retry-After"] == "60"
        assert ("request_id" in body) is (emu.dialect == "current")
        assert other.get("/v1/utils/authtest").status_code == 200  # per org
        emu.advance(45)
        assert client.get("/v1/utils/authtest").headers["Retry-After"] == "15"
        emu.advance(15)
        assert client.get("/v1/utils/authtest").status_code == 200


def test_concurrent_run_limit_counts_only_active_runs(coverbase_emulator: CoverbaseEmulator) -> None:
    # List runs is V2+: the legacy dialect serves it on request.
    coverbase_emulator.set_variants(legacy_v2_endpoints=True)
    emu = coverbase_emulator
    emu.set_speed(0)
    emu.set_limits(max_concurrent_runs=2)
    with client_for(emu) as client:
        for _ in range(2):
            assert client.post("/v1/workflows/adhoc-campaign/run", json={"input": {}}).status_code == 201
        limited = client.post("/v1/workflows/adhoc-campaign/run", json={"input": {}})
        assert limited.status_code == 429
        assert limited.json()["detail"]["code"] == "rate_limited"
        assert limited.json()["retry_after"] == 1  # the oldest run ends in 1 emulated second
        assert limited.headers["Retry-After"] == "1"
        assert client.get("/v1/workflows/runs").status_code == 200  # reads are not limited
        emu.advance(1.5)
        assert client.post("/v1/workflows/adhoc-campaign/run", json={"input": {}}).status_code == 201
    assert emu.run_count() == 3


def test_limits_from_config(coverbase_emulator_factory: object) -> None:
    config = EmulatorConfig(orgs=(OrgConfig("cborg_a", "ak_test_limited_org_key", max_concurrent_runs=1),))
    emu = coverbase_emulator_factory(config=config)  # type: ignore[operator]
    with client_for(emu) as client:
        assert client.post("/v1/workflows/stalled-forever/run", json={"input": {}}).status_code == 201
        limited = client.post("/v1/workflows/stalled-forever/run", json={"input": {}})
        assert limited.status_code == 429
        assert int(limited.headers["Retry-After"]) >= 1


def test_unlimited_by_default(client: object, coverbase_emulator: CoverbaseEmulator) -> None:
    with client_for(coverbase_emulator) as c:
        statuses = {c.get("/v1/utils/authtest").status_code for _ in range(50)}
    assert statuses == {200}
