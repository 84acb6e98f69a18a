"""A workflow-name typo against Coverbase itself: the run list names the workflows that ran lately.

Coverbase has no endpoint that lists workflows; the current API's run list (``GET
/v1/workflows/runs``) names those with recent runs, and that is where the close match comes from
off loopback. Both clients, against the stateful fake.
"""

from __future__ import annotations

import pytest

from airflow_provider_coverbase.exceptions import NotFoundError
from tests.client.conftest import Api
from tests.fake_api import FakeCoverbaseAPI


async def test_the_close_match_comes_from_the_run_list(api: Api, fake: FakeCoverbaseAPI) -> None:
    await api("run_workflow", "quarterly-privacy-sweep", {"quarter": "2026-Q4"})
    started = len(fake.requests)

    with pytest.raises(NotFoundError) as caught:
        await api("run_workflow", "quartely-privacy-sweep", {})

    message = str(caught.value)
    assert "Did you mean 'quarterly-privacy-sweep'?" in message
    assert "Workflow names are on the Coverbase dashboard" in message
    # The hint follows the API's own words, before where it answered (the request id comes last).
    assert message.index("not found. Did you mean") < message.index("[HTTP 404 workflow_not_found, POST /v1/")
    # The POST, then one GET of the run list (no /_emulator off loopback); nothing retried.
    asked = [(r.method, r.url.path) for r in fake.requests[started:]]
    assert asked == [("POST", "/v1/workflows/quartely-privacy-sweep/run"), ("GET", "/v1/workflows/runs")]
    assert fake.requests[-1].url.params["limit"] == "500"


async def test_without_a_readable_list_the_hint_says_where_names_are(api: Api, fake: FakeCoverbaseAPI) -> None:
    with pytest.raises(NotFoundError) as caught:
        await api("run_workflow", "no-such-workflow", {})  # no runs yet: the list names nothing

    message = str(caught.value)
    assert "Did you mean" not in message
    assert "Workflow names are on the Coverbase dashboard" in message
    assert api.sleeps == []
