import { act, screen, waitFor } from "@testing-library/react";
import { describe, expect, it, vi } from "vitest";

import type { RunRecord, TaskInstanceAnswer } from "./api";
import { RunTab } from "./RunTab";
import { fakeApi, renderWithChakra } from "./test-utils";

const NOW = 1_790_000_000;

const run = (over: Partial<RunRecord> = {}): RunRecord => ({
  workflow_run_id: "cbwfr_1",
  workflow_name: "quarterly-privacy-sweep",
  conn_id: "coverbase_default",
  url: "https://dash.example/runs/cbwfr_1",
  origin: "reattached",
  try_number: 2,
  idempotency_key: "airflow:sweep:run:abc",
  status: "running",
  started_at: NOW - 3600,
  checkpoints: [
    { name: "vendors_selected", at: NOW - 3000, source: "first_seen" },
    { name: "questionnaires_dispatched", at: NOW - 600, source: "webhook" },
  ],
  last_poll_at: NOW - 20,
  next_poll_at: NOW + 40,
  ...over,
});

const answer = (r: RunRecord | null, deliveries: TaskInstanceAnswer["deliveries"] = []): TaskInstanceAnswer => ({
  run: r,
  task_instance: { state: "deferred", try_number: 2 },
  deliveries,
  now: NOW,
});

const tab = () => renderWithChakra(<RunTab dagId="sweep" runId="manual__1" taskId="run_sweep" mapIndex="2" />);

describe("RunTab", () => {
  it("says in one line when the task instance has no Coverbase run", async () => {
    fakeApi(answer(null));
    tab();
    expect(await screen.findByText("This task instance has no Coverbase run.")).toBeTruthy();
  });

  it("asks for this task instance, map index included", async () => {
    const urls = fakeApi(answer(null));
    tab();
    await screen.findByText("This task instance has no Coverbase run.");
    const url = new URL(urls[0]);
    expect(url.pathname).toBe("/coverbase-ui/api/task-instance");
    expect(Object.fromEntries(url.searchParams)).toEqual({
      dag_id: "sweep",
      dag_run_id: "manual__1",
      task_id: "run_sweep",
      map_index: "2",
    });
  });

  it("shows a failed run's reason first, in full, and where it stopped", async () => {
    const reason = "Questionnaire template not found for vendor tier 3 ".repeat(6).trim();
    fakeApi(answer(run({ status: "failed", failure_reason: reason, failed_step: "questionnaires_dispatched" })));
    tab();
    const box = await screen.findByTestId("reason");
    expect(box.textContent).toContain(reason);
    expect(box.textContent).toContain("after checkpoint 'questionnaires_dispatched', at step 'questionnaires_dispatched'");
    // The reason comes before the checkpoints and the facts.
    const timeline = screen.getByTestId("timeline");
    expect(box.compareDocumentPosition(timeline) & Node.DOCUMENT_POSITION_FOLLOWING).toBeTruthy();
  });

  it("lists checkpoints with their times and where each time comes from", async () => {
    fakeApi(answer(run()));
    tab();
    const timeline = await screen.findByTestId("timeline");
    expect(timeline.textContent).toContain("vendors_selected");
    expect(timeline.textContent).toContain("(first seen by a poll)");
    expect(timeline.textContent).toContain("(time from a webhook)");
    expect(screen.getByText("this try reattached to a run an earlier try started")).toBeTruthy();
    expect(screen.getByText("airflow:sweep:run:abc")).toBeTruthy();
  });

  it("says when the output was cut", async () => {
    fakeApi(answer(run({ status: "completed", output: "{\"big\": ", output_truncated: true })));
    tab();
    const output = await screen.findByTestId("output");
    expect(output.textContent).toContain("cut: over 20,000 characters");
  });

  it("refreshes while the run goes on, stops when the tab is hidden and when the run ends", async () => {
    let finished = false;
    const later = run({ checkpoints: [...run().checkpoints, { name: "responses_aggregated", at: NOW, source: "first_seen" }] });
    const urls = fakeApi(answer(run()));
    vi.stubGlobal("fetch", async (url: string) => {
      urls.push(url);
      const body = finished ? answer({ ...later, status: "completed" }) : answer(urls.length === 1 ? run() : later);
      return new Response(JSON.stringify(body), { status: 200 });
    });
    const pause = (ms: number) => act(() => new Promise((done) => setTimeout(done, ms)));
    const setVisibility = (state: "hidden" | "visible") =>
      act(() => {
        Object.defineProperty(document, "visibilityState", { configurable: true, value: state });
        document.dispatchEvent(new Event("visibilitychange"));
      });
    await setVisibility("visible");
    renderWithChakra(<RunTab dagId="d" runId="r" taskId="t" refreshSeconds={0.05} />);
    // A new checkpoint arrives without a reload.
    expect(await screen.findByText("responses_aggregated")).toBeTruthy();
    await setVisibility("hidden");
    const whileHidden = urls.length;
    expect(screen.getByText("refresh paused while hidden")).toBeTruthy();
    await pause(300);
    expect(urls).toHaveLength(whileHidden); // no refresh while hidden
    finished = true;
    await setVisibility("visible");
    await waitFor(() => expect(screen.getByTestId("status").textContent).toBe("completed"));
    const atEnd = urls.length;
    await pause(300);
    expect(urls).toHaveLength(atEnd); // finished: no more refreshes
  });
});
