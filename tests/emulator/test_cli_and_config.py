"""The coverbase-emulator command, YAML/JSON configuration, and the schema validator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from airflow_provider_coverbase.testing import CoverbaseEmulator, EmulatorConfig, WorkflowDefinition, load_config
from airflow_provider_coverbase.testing.__main__ import main
from airflow_provider_coverbase.testing.config import ConfigError
from airflow_provider_coverbase.testing.input_schema import validate
from airflow_provider_coverbase.testing.process import start_emulator_process

from .conftest import client_for

CONFIG_YAML = """
speed: 50
workflows:
  - name: nightly-reconcile
    id: cbwfdef_00000000000000aa
    input_schema:
      type: object
      required: [day]
      properties:
        day: {type: string}
        level: {type: integer, minimum: 1, maximum: 3}
      additionalProperties: false
    checkpoints:
      - {name: fetched, duration_seconds: 60}
      - {name: compared, duration_seconds: 60}
    final_status: completed
    output: {mismatches: 0}
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "workflows.yaml"
    path.write_text(CONFIG_YAML)
    return path


def test_cli_prints_url_key_and_connection(config_file: Path) -> None:
    with start_emulator_process(["--config", str(config_file)]) as emulator:
        lines = emulator.banner
        base_url = next(line.split(": ", 1)[1].strip() for line in lines if line.startswith("Base URL:"))
        api_key = next(line.split(": ", 1)[1].strip() for line in lines if line.startswith("API key:"))
        conn_line = next(line for line in lines if line.startswith("export AIRFLOW_CONN_COVERBASE_DEFAULT="))
        conn = json.loads(conn_line.split("=", 1)[1].strip().strip("'"))
        # Said where the user pastes it: an environment connection is not listed in Admin > Connections.
        assert lines[lines.index(conn_line) + 1].startswith("  (paste it into the shell that runs airflow; Admin >")
        assert base_url.startswith("http://127.0.0.1:")
        assert api_key.startswith("ak_test_")
        assert conn == {
            "conn_type": "coverbase",
            "host": base_url,
            "password": api_key,
            "extra": {"dashboard_url": f"{base_url}/_emulator"},
        }
        emulator.wait_until_serving(timeout=10)
        response = httpx.post(
            f"{base_url}/v1/workflows/nightly-reconcile/run",
            json={"input": {"day": "2026-05-01"}},
            headers={"Authorization": f"Bearer {api_key}"},
        )
        assert response.status_code == 201
        assert response.json()["workflow_definition_id"] == "cbwfdef_00000000000000aa"


def test_the_printed_connection_line_works_when_pasted_into_a_shell(tmp_path: Path) -> None:
    """The line starts with ``export``, so a child process (``airflow ...``) sees the connection."""
    with start_emulator_process() as emulator:
        lines = emulator.banner
        connection = emulator.connection
    (export,) = [line for line in lines if "AIRFLOW_CONN_COVERBASE_DEFAULT=" in line]
    assert export.startswith("export AIRFLOW_CONN_COVERBASE_DEFAULT=")
    script = f"{export}\n{sys.executable} -c 'import os; print(os.environ[\"AIRFLOW_CONN_COVERBASE_DEFAULT\"])'"
    env = {k: v for k, v in os.environ.items() if k != "AIRFLOW_CONN_COVERBASE_DEFAULT"}
    seen = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True, env=env).stdout
    assert json.loads(seen)["conn_type"] == "coverbase"
    assert json.loads(seen) == json.loads(connection)


def test_a_process_that_cannot_start_is_an_error_not_a_hang(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="exited before it started serving"):
        start_emulator_process(["--config", str(tmp_path / "missing.yaml")], stderr=subprocess.DEVNULL)


#: Configurations the emulator must refuse, with the line and message its one-line error names.
BAD_CONFIGS = [
    pytest.param(case["file"], case["text"], case["line"], case["message"], id=case["id"])
    for case in yaml.safe_load((Path(__file__).parent / "bad_configs.yaml").read_text())
]


@pytest.mark.parametrize(("name", "text", "line", "message"), BAD_CONFIGS)
def test_a_config_error_is_one_line_naming_file_line_and_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str, line: int, message: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    assert main(["--port", "0", "--config", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith(f"coverbase-emulator: error: {path}:{line}: {message}")


def test_a_missing_config_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nope.yaml"
    assert main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"coverbase-emulator: error: {path}: cannot read the file (")
    assert err.count("\n") == 1


def test_the_command_prints_no_traceback_for_a_config_error(tmp_path: Path) -> None:
    """The real command line (console script), not only ``main()``: one line on stderr, exit code 2."""
    path = tmp_path / "workflows.yaml"
    path.write_text("workflows:\n  - name: nightly\n    checkpoints:\n      - {name: fetched, duration_secs: 60}\n")
    script = Path(sys.executable).with_name("coverbase-emulator")
    result = subprocess.run([str(script), "--port", "0", "--config", str(path)], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"coverbase-emulator: error: {path}:4: unknown key 'duration_secs' in a checkpoint of workflow 'nightly' "
        "(valid: action_type, duration_seconds, name)"
    ]


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("coverbase-emulator")
    assert script.exists()
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True)
    assert "--speed" in result.stdout


def test_yaml_config_in_process(config_file: Path, coverbase_emulator_factory: object) -> None:
    config = load_config(config_file)
    assert config.speed == 50
    names = {w.name for w in config.workflows}
    assert {"nightly-reconcile", "quarterly-privacy-sweep"} <= names
    emu: CoverbaseEmulator = coverbase_emulator_factory(config=config)  # type: ignore[operator]
    emu.set_speed(0)
    with client_for(emu) as client:
        bad = client.post("/v1/workflows/nightly-reconcile/run", json={"input": {"day": "d", "level": 5}})
        assert "5 is greater than the maximum of 3 (at input.level)" in bad.json()["detail"]["message"]
        extra = client.post("/v1/workflows/nightly-reconcile/run", json={"input": {"day": "d", "x": 1}})
        assert "(at input.x)" in extra.json()["detail"]["message"]
        run_id = client.post("/v1/workflows/nightly-reconcile/run", json={"input": {"day": "d"}}).json()[
            "workflow_run_id"
        ]
        emu.advance(120)
        run = client.get(f"/v1/workflows/runs/{run_id}").json()
        assert (run["status"], run["output"]) == ("completed", {"mismatches": 0})


def test_json_list_config(tmp_path: Path) -> None:
    path = tmp_path / "w.json"
    path.write_text(json.dumps([{"name": "only", "checkpoints": ["a", "b"], "never_finishes": True}]))
    config = load_config(path)
    assert any(w.name == "only" and w.never_finishes for w in config.workflows)


@pytest.mark.parametrize(
    "raw",
    [
        {"workflows": [{"name": "x", "final_status": "done"}]},
        {"workflows": [{"name": "x", "bogus": 1}]},
        {"workflows": [{"name": "x", "checkpoints": ["a"], "pause": {"after_checkpoint": "b", "seconds": 1}}]},
        {"orgs": [{"org_id": "a", "api_key": "k"}, {"org_id": "b", "api_key": "k"}]},
        {"workflows": [{"name": "x", "checkpoints": [{"name": "a", "duration_secs": 5}]}]},
        {"workflows": [{"name": "x", "checkpoints": ["a"], "pause": {"after_checkpoint": "a", "sec": 1}}]},
        {"orgs": [{"org_id": "a"}]},
        {"speed": "fast"},
        {"unknown": 1},
    ],
)
def test_bad_configs_are_rejected(raw: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        EmulatorConfig.from_dict(raw)


@pytest.mark.parametrize(
    ("value", "schema", "expected"),
    [
        (
            {"a": [1, "x"]},
            {"properties": {"a": {"items": {"type": "integer"}}}},
            "'x' is not of type 'integer' (at input.a[1])",
        ),
        ("b", {"enum": ["a"]}, "'b' is not one of ['a'] (at input)"),
        ("", {"type": "string", "minLength": 1}, "'' should be non-empty (at input)"),  # jsonschema's words
        (True, {"type": "integer"}, "True is not of type 'integer' (at input)"),
        (0, {"minimum": 1}, "0 is less than the minimum of 1 (at input)"),
        ({"a": None}, {"properties": {"a": {"type": ["string", "null"]}}}, None),
    ],
)
def test_schema_subset(value: object, schema: dict[str, object], expected: str | None) -> None:
    assert validate(value, schema) == expected


MORE_BAD_CONFIGS = [
    pytest.param(
        "workflows:\n  - name: a\n    input_schema: {type: objet}\n",
        2,
        "workflow 'a': input_schema is not a valid JSON Schema: 'objet' is not valid under any of the given schemas",
        id="input-schema-not-a-schema",
    ),
    pytest.param(
        "speed: 5\ninclude_defaults: maybe\n", 2, "include_defaults must be true or false, got 'maybe'", id="not-a-flag"
    ),
    pytest.param(
        "workflows:\n  - name: a\n    checkpoints:\n      - {name: x, duration_seconds: '60'}\n",
        4,
        "a checkpoint of workflow 'a': duration_seconds must be a number, got '60'",
        id="number-as-string-in-a-checkpoint",
    ),
    pytest.param(
        "orgs:\n  - org_id: a\n    api_key: k\n  - {org_id: b}\n",
        4,
        "an org needs api_key",
        id="missing-key",
    ),
    pytest.param(
        "speed: 1\nwebhook_retry_delays: [1, soon]\n",
        2,
        "webhook_retry_delays[1] must be a number, got 'soon'",
        id="list-item",
    ),
    pytest.param(
        "workflows:\n  - name: a\n    never_finishes: yes please\n",
        2,
        "workflow 'a': never_finishes must be true or false, got 'yes please'",
        id="flag-in-a-workflow",
    ),
]


@pytest.mark.parametrize(("text", "line", "message"), MORE_BAD_CONFIGS)
def test_pydantic_and_jsonschema_problems_say_what_and_where(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    path = tmp_path / "workflows.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}:{line}: {message}")
    assert "\n" not in str(caught.value)


def test_a_python_definition_with_a_broken_input_schema_is_refused() -> None:
    with pytest.raises(ConfigError, match="input_schema is not a valid JSON Schema"):
        WorkflowDefinition("x", input_schema={"type": "object", "required": "day"})


def test_admin_api_refuses_a_bad_workflow_with_the_config_message(coverbase_emulator: CoverbaseEmulator) -> None:
    with httpx.Client(base_url=coverbase_emulator.base_url) as admin:
        bad = admin.post("/_emulator/workflows", json={"name": "w", "checkpoints": [{"name": "a", "secs": 1}]})
        good = admin.post("/_emulator/workflows", json={"name": "w", "checkpoints": ["a", "b"]})
    assert bad.status_code == 422
    assert bad.json()["detail"] == (
        "unknown key 'secs' in a checkpoint of workflow 'w' (valid: action_type, duration_seconds, name)"
    )
    assert good.status_code == 201 and coverbase_emulator.state.accounts.workflows["w"].checkpoints[1].name == "b"


def test_input_schema_of_another_draft_is_honoured(coverbase_emulator: CoverbaseEmulator) -> None:
    emu = coverbase_emulator
    schema = {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "properties": {"n": {"maximum": 3, "exclusiveMaximum": True}},
    }
    emu.add_workflow("draft4", [("done", 1)], input_schema=schema)
    with client_for(emu) as client:
        refused = client.post("/v1/workflows/draft4/run", json={"input": {"n": 3}})
        accepted = client.post("/v1/workflows/draft4/run", json={"input": {"n": 2}})
    assert refused.status_code == 400
    assert "3 is greater than or equal to the maximum of 3 (at input.n)" in refused.json()["detail"]["message"]
    assert accepted.status_code == 201
