"""``make ui-check``: the provider in Airflow's real UI, driven in headless Chromium.

Starts the Coverbase emulator (in this process, its clock frozen so the run waits until we let it go)
and ``airflow standalone`` (a temporary AIRFLOW_HOME, free ports, parallelism 4), then, in Debian's
Chromium driven by Playwright:

1. fills the connection form (Admin > Connections > Add): ``coverbase_default``, Coverbase, the
   emulator's URL and key, the dashboard URL; the saved connection holds only what was typed (no
   stored defaults);
2. presses the connection list's Test button: "Test Connection Successful" with the API's answer;
3. triggers the quarterly sweep DAG from its page;
4. while the task is deferred, opens the task instance's Details tab and checks the "Extra Links"
   button "Coverbase workflow run" points at the run's dashboard page;
5. opens the task instance's "Coverbase" tab (at 1280x800) and lets the run go: the checkpoints
   arrive on the tab without a reload;
6. opens the "Coverbase" page: the run is listed, with a link back to the task instance; the page
   again in dark mode;
7. checks the checkpoint lines in the task's log;
8. a failing task and a fan-out over three vendor tiers: the failed run's reason is visible without
   scrolling at 1280x800, the page lists the three tier runs;
9. a run started in Coverbase itself (on the emulator, not by Airflow) and heard of only through the
   webhook receiver: the page lists it as "webhook only";
10. a second user, ``restricted`` (a viewer whom the auth manager denies the fan-out DAG), sees the
    sweep's run and the webhook-only run but none of the fan-out's runs, in the rows, the count and
    the DAG filter. ``airflow standalone`` forces the simple auth manager (no per-DAG permissions), so
    this user logs in to a second ``airflow api-server`` on the same database whose auth manager is
    the simple one plus that denial.

The tab and page screenshots are also copied to ``docs/images/ui/`` for the docs.

Screenshots go to ``.demo/ui-check/``. Exits 0 when every check passed, 1 when one failed, 2 when
something it needs is missing. Not part of CI (it takes about a minute and needs a browser).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx

from airflow_provider_coverbase.defaults import DEFAULT_DASHBOARD_RUN_PATH

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
OUT = REPO / ".demo" / "ui-check"
DAG_ID = "coverbase_quarterly_vendor_sweep"
TASK_ID = "run_quarterly_privacy_sweep"
CONN_ID = "coverbase_default"
EXTRA_DAG_ID = "coverbase_ui_check_fan_out"
#: A failing run and a fan-out over three vendor tiers (one mapped task instance each). Polls every
#: 5 s: a deferral that resumes within about a second can lose a race in Airflow's scheduler (the
#: executor's "success" of the deferring process arrives after the task is queued again, and the
#: scheduler marks it failed; seen here with Airflow 3.3.2 and 1 s polls).
EXTRA_DAG = f'''
from airflow.sdk import DAG

from airflow_provider_coverbase.operators.coverbase import CoverbaseRunWorkflowOperator

with DAG("{EXTRA_DAG_ID}", schedule=None, catchup=False):
    CoverbaseRunWorkflowOperator(
        task_id="fails", workflow_name="always-fails", input={{}}, deferrable=True, poll_interval=5, retries=0
    )
    CoverbaseRunWorkflowOperator.partial(
        task_id="tier_sweep", workflow_name="quarterly-privacy-sweep", deferrable=True, poll_interval=5, retries=0
    ).expand(input=[{{"quarter": "2026-Q4", "vendor_filter": {{"tier": tier}}}} for tier in (1, 2, 3)])
'''
#: The webhook signing secret the check gives the connection (and the emulator's subscription).
WEBHOOK_SECRET = "whsec_ui_check_0123456789abcdef"  # noqa: S105 (a test secret)
#: Step 10's user: a viewer whom this auth manager denies the fan-out DAG (like a role without it).
RESTRICTED_USER = "restricted"
AUTH_MANAGER_MODULE = f'''
from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager


class UICheckAuthManager(SimpleAuthManager):
    """The simple auth manager, except that {RESTRICTED_USER!r} may not read {EXTRA_DAG_ID!r}."""

    def is_authorized_dag(self, *, method, user, access_entity=None, details=None):
        if user.get_name() == {RESTRICTED_USER!r} and details is not None and details.id == {EXTRA_DAG_ID!r}:
            return False
        return super().is_authorized_dag(method=method, user=user, access_entity=access_entity, details=details)
'''
CHECKPOINTS = ("vendors_selected", "questionnaires_dispatched", "responses_aggregated", "report_delivered")


class Checks:
    """Named checks: each prints PASS/FAIL at once; the exit code says whether all passed."""

    def __init__(self) -> None:
        self.failed: list[str] = []
        self.passed = 0

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        print(f"[{'PASS' if ok else 'FAIL'}] {name}{f': {detail}' if detail else ''}", flush=True)
        if ok:
            self.passed += 1
        else:
            self.failed.append(name)
        return ok


def ensure_chromium() -> str:
    """The path of Debian's ``chromium``, installed with apt-get when missing (as root)."""
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("chromium is not installed: installing Debian's package (apt-get install -y chromium) ...", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True)
        found = shutil.which("chromium")
    if not found:
        raise SystemExit(
            "ui-check needs Chromium from your distribution: run `sudo apt-get install -y chromium` "
            "(Playwright's own browser download is not used)."
        )
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Airflow:
    """``airflow standalone`` on a temporary home; REST helpers for what the UI does not show."""

    def __init__(self, home: Path, port: int) -> None:
        self.home = home
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.env: dict[str, str] = {}
        #: A second API server on the same database, with the auth manager that restricts a user.
        self.restricted_server: subprocess.Popen[bytes] | None = None
        self.restricted_url = ""
        self.client: httpx.Client | None = None

    def start(self, timeout: float = 180) -> None:
        dags = self.home / "dags"
        dags.mkdir(parents=True)
        shutil.copy(REPO / "example_dags" / f"{DAG_ID}.py", dags)
        (dags / f"{EXTRA_DAG_ID}.py").write_text(EXTRA_DAG)
        (self.home / "simple_auth_manager_passwords.json.generated").write_text(
            json.dumps({"admin": "admin", RESTRICTED_USER: RESTRICTED_USER})
        )
        (self.home / "coverbase_ui_check_auth.py").write_text(AUTH_MANAGER_MODULE)
        from importlib.metadata import entry_points

        if not any(ep.name == "coverbase_ui" for ep in entry_points(group="airflow.plugins")):
            # Not installed from this checkout (its entry point is missing): load the UI plugin from
            # the plugins folder instead, as an installed wheel's entry point would.
            plugins = self.home / "plugins"
            plugins.mkdir(exist_ok=True)
            (plugins / "coverbase_ui.py").write_text(
                "from airflow_provider_coverbase.plugins.ui import CoverbaseUIPlugin  # noqa: F401\n"
            )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__"))}
        env |= {
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # standalone spawns `airflow ...`
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"admin:admin,{RESTRICTED_USER}:viewer",
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            # Only the run triggered in the UI: no scheduled quarterly run next to it.
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
            "COVERBASE_POLL_INTERVAL": "1",
        }
        self.env = env
        log = (self.home / "standalone.log").open("wb")
        self.process = subprocess.Popen(
            [str(BIN / "airflow"), "standalone"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"airflow standalone exited; see {self.home / 'standalone.log'}")
            try:
                health = httpx.get(f"{self.base_url}/api/v2/monitor/health", timeout=2).json()
                if all(
                    health.get(part, {}).get("status") == "healthy"
                    for part in ("metadatabase", "scheduler", "triggerer", "dag_processor")
                ):
                    break
            except (httpx.TransportError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"Airflow was not healthy after {timeout:.0f} s; see {self.home}/standalone.log")
            time.sleep(1)
        token = httpx.post(f"{self.base_url}/auth/token", json={"username": "admin", "password": "admin"}, timeout=60)
        token.raise_for_status()
        self.client = httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {token.json()['access_token']}"}, timeout=60
        )
        self.wait_for(lambda: self.get(f"/api/v2/dags/{DAG_ID}") is not None, 120, f"the DAG {DAG_ID} was not parsed")

    def start_restricted_api_server(self, timeout: float = 180) -> str:
        """Start ``airflow api-server`` with :data:`AUTH_MANAGER_MODULE`; return its base URL.

        ``airflow standalone`` forces the simple auth manager, which has no per-DAG permissions, so the
        user denied a DAG logs in to this second API server (same database and plugins).
        """
        port = free_port()
        env = self.env | {
            "AIRFLOW__CORE__AUTH_MANAGER": "coverbase_ui_check_auth.UICheckAuthManager",
            "AIRFLOW__API__PORT": str(port),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(self.home), os.environ.get("PYTHONPATH")])),
        }
        log = (self.home / "restricted-api-server.log").open("wb")
        self.restricted_server = subprocess.Popen(
            [str(BIN / "airflow"), "api-server", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.restricted_url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            if self.restricted_server is not None and self.restricted_server.poll() is not None:
                raise RuntimeError(f"the second api-server exited; see {self.home / 'restricted-api-server.log'}")
            try:
                return httpx.get(f"{self.restricted_url}/api/v2/monitor/health", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        self.wait_for(healthy, timeout, "the second api-server did not answer")
        return self.restricted_url

    def stop(self, timeout: float = 60) -> None:
        """Stop the second API server, then standalone and every process it started."""
        if self.restricted_server is not None:
            _stop_group(self.restricted_server, timeout)
        if self.process is not None:
            _stop_group(self.process, timeout)

    def get(self, path: str, **params: Any) -> Any:
        assert self.client is not None
        response = self.client.get(path, params=params)
        return response.json() if response.status_code == 200 else None

    @staticmethod
    def wait_for(condition: Callable[[], Any], timeout: float, message: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(0.5)
        raise TimeoutError(message)

    def task_instance(self, run_id: str) -> dict[str, Any]:
        return dict(self.get(f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{TASK_ID}") or {})


def _stop_group(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM to ``process`` and its process group (its children), SIGKILL to what is left after ``timeout``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        process.poll()
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.5)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@contextmanager
def running_airflow() -> Iterator[Airflow]:
    home = Path(tempfile.mkdtemp(prefix="coverbase-ui-check-"))
    airflow = Airflow(home, free_port())
    try:
        airflow.start()
        yield airflow
    finally:
        airflow.stop()
        if os.environ.get("UI_CHECK_KEEP_HOME"):
            print(f"Airflow home kept: {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


def run_checks(chromium: str, checks: Checks) -> None:
    from playwright.sync_api import sync_playwright

    from airflow_provider_coverbase.testing import CoverbaseEmulator

    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*"):
        old.unlink()
    with CoverbaseEmulator(speed=0) as emulator, running_airflow() as airflow, sync_playwright() as pw:
        print(f"Airflow on {airflow.base_url}, emulator on {emulator.base_url}", flush=True)
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.set_default_timeout(30_000)

        def shot(name: str) -> None:
            page.screenshot(path=str(OUT / f"{name}.png"), full_page=True)

        try:
            _drive(page, shot, airflow, emulator, checks)
        except Exception:
            shot("99-failure")
            (OUT / "99-failure.html").write_text(page.content())
            raise
        finally:
            browser.close()


def _log_in(page: Any, base_url: str, user: str) -> None:
    """Log in on the simple auth manager's form (each user's password is their name here)."""
    page.goto(base_url)
    page.get_by_label(re.compile("username", re.I)).fill(user)
    page.get_by_label(re.compile("password", re.I)).fill(user)
    page.get_by_role("button", name=re.compile("sign in|log in|login", re.I)).click()
    page.wait_for_url(re.compile(r"^(?!.*login).*$"))


def _drive(page: Any, shot: Callable[[str], None], airflow: Airflow, emulator: Any, checks: Checks) -> None:
    """Steps 1-5 of the module docstring, in the browser."""
    from playwright.sync_api import expect

    # ---- log in (simple auth manager) --------------------------------------------------
    _log_in(page, airflow.base_url, "admin")

    # ---- 1. the connection form ---------------------------------------------------------
    page.goto(f"{airflow.base_url}/connections")
    page.get_by_role("button", name=re.compile("add connection", re.I)).click()
    page.get_by_label(re.compile("connection id", re.I)).fill(CONN_ID)
    page.get_by_role("combobox").first.click()
    page.get_by_role("option", name="Coverbase").click()
    page.get_by_label("Base URL").fill(emulator.base_url)
    page.get_by_label("API key").fill(emulator.api_key)
    page.get_by_role("button", name="Extra Fields", exact=True).click()  # an accordion: opens, closes the rest
    # The extra fields' labels are not tied to their inputs (Airflow 3.3.2), hence the input names.
    timeout_field = page.locator("[name=element_timeout]")
    checks.check("extra fields start empty (no pre-filled default)", timeout_field.input_value() == "")
    page.locator("[name=element_dashboard_url]").fill(f"{emulator.base_url}/_emulator")
    form_text = page.get_by_role("dialog").inner_text()
    checks.check(
        "the form names the client's defaults",
        all(f"Empty: {v}." in form_text for v in ("30", "10", "3", "0.5", DEFAULT_DASHBOARD_RUN_PATH)),
    )
    shot("01-connection-form")
    page.get_by_role("button", name=re.compile("^save$", re.I)).click()
    stored = airflow.wait_for(lambda: airflow.get(f"/api/v2/connections/{CONN_ID}"), 30, "connection not saved")
    extra = json.loads(stored.get("extra") or "{}")
    # Empty fields are saved as null, which the hook reads as "the client's default".
    checks.check(
        "saving the form stores only what was typed",
        {k for k, v in extra.items() if v is not None} == {"dashboard_url"},
        f"extra={json.dumps(extra)}",
    )

    # ---- 2. Test in the connection list ---------------------------------------------------
    page.goto(f"{airflow.base_url}/connections")
    row = page.get_by_role("row").filter(has_text=CONN_ID)
    with page.expect_response(lambda r: r.url.endswith("/api/v2/connections/test")) as answer:
        row.get_by_role("button", name=re.compile("test", re.I)).click()
    response = answer.value
    posted = json.loads(response.request.post_data or "{}")
    checks.check("the UI posts port 0 (Number(null))", posted.get("port") == 0, f"port={posted.get('port')!r}")
    body = response.json()
    checks.check(
        "Test reaches CoverbaseHook.test_connection",
        response.status == 200 and body.get("status") is True and "Auth successful" in body.get("message", ""),
        f"HTTP {response.status} {json.dumps(body)}",
    )
    toast = page.get_by_text("Test Connection Successful")
    expect(toast).to_be_visible()
    checks.check("the UI shows 'Test Connection Successful'", toast.is_visible())
    shot("02-connection-test")

    # ---- 3. trigger the quarterly sweep --------------------------------------------------
    page.goto(f"{airflow.base_url}/dags/{DAG_ID}")
    page.get_by_role("button", name="Trigger Dag").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text("Single Run").first).to_be_visible()
    shot("03-trigger-dialog")
    dialog.get_by_role("button", name="Trigger", exact=True).click()
    runs = airflow.wait_for(
        lambda: (airflow.get(f"/api/v2/dags/{DAG_ID}/dagRuns") or {}).get("dag_runs"), 30, "no DAG run"
    )
    run_id = runs[0]["dag_run_id"]
    checks.check("a run was triggered from the UI", runs[0]["run_type"] == "manual", run_id)

    # ---- 4. the extra link while the task is deferred -----------------------------------
    airflow.wait_for(lambda: airflow.task_instance(run_id).get("state") == "deferred", 180, "the task did not defer")
    started = list(emulator.state.runs)  # the emulator's run ids, oldest first
    checks.check("one Coverbase run was started", len(started) == 1, ", ".join(started))
    workflow_run_id = started[-1] if started else ""
    ti_url = f"{airflow.base_url}/dags/{DAG_ID}/runs/{run_id}/tasks/{TASK_ID}"
    page.goto(ti_url)
    page.get_by_role("link", name="Details", exact=True).click()  # the task instance's Details tab
    expect(page.get_by_text("Extra Links")).to_be_visible()
    link = page.get_by_role("link", name="Coverbase workflow run")
    expect(link).to_be_visible()
    href = link.get_attribute("href") or ""
    state_now = airflow.task_instance(run_id).get("state")
    expected_prefix = f"{emulator.base_url}/_emulator/workflows/runs/"
    checks.check(
        "Details > Extra Links has 'Coverbase workflow run' while deferred",
        state_now == "deferred" and href.startswith(expected_prefix),
        f"state={state_now} href={href}",
    )
    checks.check("the link points at this run", bool(workflow_run_id) and href.endswith(workflow_run_id), href)
    shot("04-extra-link-deferred")

    # ---- 5. the Coverbase tab: checkpoints arrive without a reload ------------------------
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"{ti_url}/plugin/coverbase_run")
    expect(page.get_by_text("Coverbase run", exact=True)).to_be_visible()
    checks.check(
        "the Coverbase tab shows this task's run, its idempotency key and that this try created it",
        page.get_by_text(workflow_run_id, exact=True).count() > 0
        and page.get_by_text("this try created the run").count() > 0
        and page.get_by_text(re.compile(r"^quarterly-privacy-sweep-\d{4}-Q\d$")).count() > 0,  # the DAG's own key
    )
    shot("05-coverbase-tab-deferred")
    emulator.set_speed(1.0)
    try:
        expect(page.get_by_text(CHECKPOINTS[-1], exact=True)).to_be_visible(timeout=90_000)
        arrived = True
    except AssertionError:
        arrived = False
    checks.check("the tab shows checkpoints arriving without a reload", arrived)
    shot("06-coverbase-tab-checkpoints")
    _to_docs("coverbase-tab.png", page)

    # ---- 6. the Coverbase page -------------------------------------------------------------
    page.goto(f"{airflow.base_url}/plugin/coverbase")
    expect(page.get_by_text("Coverbase runs", exact=True)).to_be_visible()
    expect(page.get_by_text(workflow_run_id, exact=True)).to_be_visible()
    task_link = page.get_by_role("link", name=TASK_ID, exact=True).first
    checks.check(
        "the Coverbase page lists the run with a link to its task instance",
        unquote(task_link.get_attribute("href") or "").endswith(f"/dags/{DAG_ID}/runs/{run_id}/tasks/{TASK_ID}"),
        task_link.get_attribute("href") or "",
    )
    shot("07-coverbase-page")
    _to_docs("coverbase-page.png", page)
    page.emulate_media(color_scheme="dark")
    page.reload()
    expect(page.get_by_text(workflow_run_id, exact=True)).to_be_visible()
    shot("08-coverbase-page-dark")
    _to_docs("coverbase-page-dark.png", page)
    page.emulate_media(color_scheme="light")

    # ---- 7. let the run finish; the checkpoints in the log -------------------------------
    emulator.set_speed(1.0)
    final = airflow.wait_for(
        lambda: airflow.task_instance(run_id).get("state") in ("success", "failed") and airflow.task_instance(run_id),
        120,
        "the task did not finish",
    )
    checks.check("the task succeeded", final["state"] == "success", final["state"])
    page.goto(f"{ti_url}?try_number={final['try_number']}")  # the Logs tab
    expect(page.get_by_text(f"Checkpoint reached: {CHECKPOINTS[-1]}").first).to_be_visible()
    shot("09-task-log")
    missing = [c for c in CHECKPOINTS if page.get_by_text(f"Checkpoint reached: {c}").count() == 0]
    checks.check(
        "the log shows every checkpoint ('Checkpoint reached: ...')",
        not missing,
        f"missing {missing}" if missing else ", ".join(CHECKPOINTS),
    )
    _failed_run_and_fan_out(page, shot, airflow, checks)
    webhook_run_id = _webhook_only_run(page, shot, airflow, emulator, checks)
    _restricted_user(page, shot, airflow, checks, run_id=workflow_run_id, webhook_run_id=webhook_run_id)


def _failed_run_and_fan_out(page: Any, shot: Callable[[str], None], airflow: Airflow, checks: Checks) -> None:
    """A failed run's reason at 1280x800 without scrolling; the page lists the three tier runs."""
    from playwright.sync_api import expect

    assert airflow.client is not None
    airflow.wait_for(lambda: airflow.get(f"/api/v2/dags/{EXTRA_DAG_ID}"), 120, f"{EXTRA_DAG_ID} was not parsed")
    posted = airflow.client.post(f"/api/v2/dags/{EXTRA_DAG_ID}/dagRuns", json={"logical_date": None})
    posted.raise_for_status()
    run_id = posted.json()["dag_run_id"]

    def finished() -> Any:
        listing = airflow.get(f"/api/v2/dags/{EXTRA_DAG_ID}/dagRuns/{run_id}/taskInstances") or {}
        tis = listing.get("task_instances") or []
        done = len(tis) == 4 and all(ti["state"] in ("success", "failed") for ti in tis)
        return tis if done else None

    tis = airflow.wait_for(finished, 240, "the fan-out DAG did not finish")
    states = sorted((ti["task_id"], ti["map_index"], ti["state"]) for ti in tis)
    checks.check(
        "the failing task failed and the three tier runs completed",
        [s[2] for s in states] == ["failed", "success", "success", "success"],
        str(states),
    )
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"{airflow.base_url}/dags/{EXTRA_DAG_ID}/runs/{run_id}/tasks/fails/plugin/coverbase_run")
    reason = page.get_by_test_id("reason")
    expect(reason).to_be_visible()
    box = reason.bounding_box() or {"y": 10_000, "height": 0}
    text = reason.inner_text()
    checks.check(
        "a failed run's reason is visible without scrolling at 1280x800",
        box["y"] + box["height"] <= 800 and "Questionnaire template not found" in text,
        f"bottom at {box['y'] + box['height']:.0f} px: {text!r}",
    )
    shot("10-coverbase-tab-failed")
    _to_docs("coverbase-tab-failed.png", page)
    page.goto(f"{airflow.base_url}/plugin/coverbase")
    expect(page.get_by_text("Coverbase runs", exact=True)).to_be_visible()
    page.get_by_label("DAG", exact=True).select_option(EXTRA_DAG_ID)
    expect(page.get_by_test_id("range")).to_have_text("1\u20134 of 4")
    rows = page.get_by_test_id("runs").locator("tbody tr")
    tiers = rows.filter(has_text="tier_sweep")
    checks.check("the page lists the three runs of the tier fan-out", tiers.count() == 3, f"{tiers.count()} rows")
    shot("11-coverbase-page-fan-out")
    _to_docs("coverbase-page-fan-out.png", page)


def _webhook_only_run(page: Any, shot: Callable[[str], None], airflow: Airflow, emulator: Any, checks: Checks) -> str:
    """A run started in Coverbase, not by Airflow, reaches the page through the webhook receiver."""
    from playwright.sync_api import expect

    assert airflow.client is not None
    stored = airflow.get(f"/api/v2/connections/{CONN_ID}")
    extra = json.loads(stored.get("extra") or "{}") | {"webhook_secret": WEBHOOK_SECRET}
    airflow.client.patch(
        f"/api/v2/connections/{CONN_ID}",
        params={"update_mask": "extra"},
        json={"connection_id": CONN_ID, "conn_type": "coverbase", "extra": json.dumps(extra)},
    ).raise_for_status()
    # Deliveries are stamped in emulated time and the receiver checks them against the wall clock:
    # bring the emulator's clock (frozen for a while above) back to now.
    lag = time.time() - emulator.now()
    if lag > 0:
        emulator.advance(lag)
    emulator.set_speed(1.0)
    with httpx.Client(
        base_url=emulator.base_url, headers={"Authorization": f"Bearer {emulator.api_key}"}, timeout=10
    ) as api:
        api.post(
            "/v1/webhooks",
            json={
                "url": f"{airflow.base_url}/coverbase/webhooks/{CONN_ID}",
                "events": ["workflow.completed"],
                "secret": WEBHOOK_SECRET,
            },
        ).raise_for_status()
        started = api.post("/v1/workflows/adhoc-campaign/run", json={"input": {}})
        started.raise_for_status()
    run_id = str(started.json()["workflow_run_id"])
    delivered = airflow.wait_for(
        lambda: [d for d in emulator.webhook_deliveries if d["payload"].get("workflow_run_id") == run_id],
        60,
        "the emulator did not deliver the run's completion",
    )
    checks.check(
        "the receiver accepted the signed delivery of a run Airflow did not start",
        delivered[0]["response_status"] == 200,
        f"answered {delivered[0]['response_status']}",
    )
    page.goto(f"{airflow.base_url}/plugin/coverbase")
    expect(page.get_by_text("Coverbase runs", exact=True)).to_be_visible()
    row = page.get_by_test_id("runs").locator("tbody tr").filter(has_text=run_id)
    expect(row).to_have_count(1)
    checks.check(
        "the page lists a run known only from webhooks",
        "webhook only" in row.inner_text() and "adhoc-campaign" in row.inner_text(),
        row.inner_text().replace("\n", " | "),
    )
    shot("12-coverbase-page-webhook-only")
    _to_docs("coverbase-page-webhook-only.png", page)
    return run_id


def _restricted_user(
    page: Any, shot: Callable[[str], None], airflow: Airflow, checks: Checks, *, run_id: str, webhook_run_id: str
) -> None:
    """A user denied the fan-out DAG sees none of its runs: not in the rows, the count or the filter."""
    from playwright.sync_api import expect

    base_url = airflow.start_restricted_api_server()
    context = page.context.browser.new_context(viewport={"width": 1280, "height": 800})
    other = context.new_page()
    other.set_default_timeout(30_000)
    try:
        _log_in(other, base_url, RESTRICTED_USER)
        other.goto(f"{base_url}/plugin/coverbase")
        expect(other.get_by_text("Coverbase runs", exact=True)).to_be_visible()
        expect(other.get_by_text(run_id, exact=True)).to_be_visible()
        expect(other.get_by_text(webhook_run_id, exact=True)).to_be_visible()
        dag_options = other.get_by_label("DAG", exact=True).locator("option").all_inner_texts()
        body = other.get_by_test_id("runs").inner_text()
        checks.check(
            "a user denied a DAG sees none of its runs (rows, count, DAG filter), and the runs they may see",
            EXTRA_DAG_ID not in body
            and EXTRA_DAG_ID not in dag_options
            and other.get_by_test_id("range").inner_text() == "1\u20132 of 2",
            f"range={other.get_by_test_id('range').inner_text()!r} dag options={dag_options}",
        )
        other.screenshot(path=str(OUT / "13-coverbase-page-restricted-user.png"), full_page=True)
        _to_docs("coverbase-page-restricted-user.png", other)
    finally:
        context.close()


def _to_docs(name: str, page: Any) -> None:
    """Keep a screenshot for the docs (the viewport, as a user sees it)."""
    folder = REPO / "docs" / "images" / "ui"
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / name))


def main() -> int:
    chromium = ensure_chromium()
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        print("ui-check needs Playwright: run `make ui-check` (or pip install '.[ui-check]')", file=sys.stderr)
        return 2
    checks = Checks()
    try:
        run_checks(chromium, checks)
    except Exception as exc:
        traceback.print_exc()
        checks.check("ui-check ran to the end", False, f"{type(exc).__name__}: {exc}")
    print(f"\n{checks.passed} passed, {len(checks.failed)} failed; screenshots in {OUT}")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
