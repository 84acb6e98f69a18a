import { act, fireEvent, screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";

import type { RunRow, RunsAnswer } from "./api";
import { PAGE_SIZE, RunsPage } from "./RunsPage";
import { fakeApi, renderWithChakra } from "./test-utils";

const NOW = 1_790_000_000;

const row = (n: number, over: Partial<RunRow> = {}): RunRow => ({
  source: "task",
  dag_id: "quarterly",
  dag_run_id: "scheduled__q4",
  task_id: "sweep_tier",
  map_index: n,
  try_number: 1,
  ti_path: `dags/quarterly/runs/scheduled__q4/tasks/sweep_tier/mapped/${n}`,
  conn_id: "coverbase_default",
  workflow: "quarterly-privacy-sweep",
  workflow_run_id: `cbwfr_${n}`,
  status: "running",
  started_at: NOW - 7200,
  age_seconds: 7200,
  last_checkpoint: "vendors_selected",
  last_progress_at: NOW - 3600,
  stale: false,
  coverbase_url: `https://dash.example/runs/cbwfr_${n}`,
  failure_reason: null,
  ...over,
});

const page = (runs: RunRow[], total = runs.length): RunsAnswer => ({
  total,
  offset: 0,
  limit: PAGE_SIZE,
  stale_hours: 24,
  facets: { status: ["completed", "running"], workflow: ["quarterly-privacy-sweep"], dag_id: ["quarterly"], conn_id: ["coverbase_default"] },
  runs,
  now: NOW,
});

describe("RunsPage", () => {
  it("lists runs with links to the task instance (task id) and to Coverbase (run id), and flags runs without progress", async () => {
    fakeApi(
      page([
        row(0),
        row(1, { stale: true, last_progress_at: NOW - 90000 }),
        row(2, { source: "webhook", dag_id: null, task_id: null, ti_path: null, map_index: -1 }),
      ]),
    );
    renderWithChakra(<RunsPage />);
    const table = await screen.findByTestId("runs");
    expect(table.querySelectorAll("tbody tr")).toHaveLength(3);
    expect(screen.getAllByText("no progress")).toHaveLength(1);
    expect(screen.getByText("webhook only")).toBeTruthy();
    const links = Array.from(table.querySelectorAll("a")).map((a) => a.getAttribute("href"));
    expect(links).toContain("http://localhost:3000/dags/quarterly/runs/scheduled__q4/tasks/sweep_tier/mapped/0");
    expect(links).toContain("https://dash.example/runs/cbwfr_0");
    expect(screen.getAllByRole("link", { name: "sweep_tier" })).toHaveLength(2); // the webhook-only run has no task
    expect(screen.getByRole("link", { name: "cbwfr_1" }).getAttribute("href")).toBe("https://dash.example/runs/cbwfr_1");
  });

  it("pages and filters through the API", async () => {
    const urls = fakeApi(page(Array.from({ length: PAGE_SIZE }, (_, n) => row(n)), 60));
    renderWithChakra(<RunsPage />);
    expect((await screen.findByTestId("range")).textContent).toBe(`1–${PAGE_SIZE} of 60`);
    await act(async () => {
      fireEvent.click(screen.getByText("Next"));
    });
    expect(new URL(urls[urls.length - 1]).searchParams.get("offset")).toBe(String(PAGE_SIZE));
    await act(async () => {
      fireEvent.change(screen.getByLabelText("Status"), { target: { value: "running" } });
    });
    const filtered = new URL(urls[urls.length - 1]).searchParams;
    expect(filtered.get("status")).toBe("running");
    expect(filtered.get("offset")).toBe("0"); // a new filter starts at the first page
    await act(async () => {
      fireEvent.click(screen.getByLabelText("Only runs without progress"));
    });
    expect(new URL(urls[urls.length - 1]).searchParams.get("stale_only")).toBe("true");
  });
});
