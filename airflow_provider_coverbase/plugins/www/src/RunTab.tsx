/** The "Coverbase" tab of a task instance: the run this task started, reattached to or watched. */
import { Badge, Box, Flex, Heading, Link, Stack, Table, Text } from "@chakra-ui/react";
import { useCallback, useEffect, useState } from "react";

import { fetchTaskInstance, TERMINAL, type TaskInstanceAnswer } from "./api";
import { ago, duration, statusPalette, when } from "./format";

/** Seconds between refreshes while the run is not finished (only while the tab is visible). */
export const REFRESH_SECONDS = 10;

const SOURCE_LABEL = {
  coverbase: "time from Coverbase",
  webhook: "time from a webhook",
  first_seen: "first seen by a poll",
} as const;

const ORIGIN_LABEL = {
  created: "this try created the run",
  reattached: "this try reattached to a run an earlier try started",
  watched: "watched (started elsewhere)",
  webhook: "known from webhooks",
} as const;

type Props = {
  dagId: string;
  runId: string;
  taskId: string;
  mapIndex?: string | number;
  /** Seconds between refreshes (tests make it short). */
  refreshSeconds?: number;
};

const Fact = ({ label, children }: { label: string; children: React.ReactNode }) => (
  <Flex gap={3} py={0.5}>
    <Text color="fg.muted" minW="11rem">
      {label}
    </Text>
    <Box wordBreak="break-all">{children}</Box>
  </Flex>
);

export const RunTab = ({ dagId, runId, taskId, mapIndex, refreshSeconds = REFRESH_SECONDS }: Props) => {
  const index = mapIndex === undefined || mapIndex === "" ? -1 : Number(mapIndex);
  const [answer, setAnswer] = useState<TaskInstanceAnswer | undefined>();
  const [error, setError] = useState<string | undefined>();
  const [visible, setVisible] = useState(document.visibilityState !== "hidden");

  const load = useCallback(async () => {
    try {
      setAnswer(await fetchTaskInstance(dagId, runId, taskId, index));
      setError(undefined);
    } catch (exc) {
      setError(String((exc as Error).message ?? exc));
    }
  }, [dagId, runId, taskId, index]);

  useEffect(() => {
    void load();
  }, [load]);

  useEffect(() => {
    const onChange = () => setVisible(document.visibilityState !== "hidden");
    document.addEventListener("visibilitychange", onChange);
    return () => document.removeEventListener("visibilitychange", onChange);
  }, []);

  const run = answer?.run;
  const going = run !== null && run !== undefined && !TERMINAL.has(run.status);
  useEffect(() => {
    if (!going || !visible) return undefined;
    const timer = setInterval(() => void load(), refreshSeconds * 1000);
    return () => clearInterval(timer);
  }, [going, visible, load, refreshSeconds]);

  if (error !== undefined && answer === undefined) {
    return <Text color="fg.error">Could not load the Coverbase run: {error}</Text>;
  }
  if (answer === undefined) return <Text color="fg.muted">Loading…</Text>;
  if (run === null || run === undefined) {
    return <Text>This task instance has no Coverbase run.</Text>;
  }
  const now = answer.now ?? Date.now() / 1000;
  const ended = run.status === "failed" || run.status === "cancelled";
  const last = run.checkpoints.length ? run.checkpoints[run.checkpoints.length - 1] : undefined;

  return (
    <Stack gap={4} p={2} maxW="100%">
      <Flex align="center" gap={3} wrap="wrap">
        <Heading size="md">Coverbase run</Heading>
        <Badge colorPalette={statusPalette(run.status)} size="lg" data-testid="status">
          {run.api_status ?? run.status}
        </Badge>
        {going ? (
          <Text color="fg.muted" fontSize="sm">
            {visible ? `refreshes every ${refreshSeconds} s` : "refresh paused while hidden"}
          </Text>
        ) : null}
      </Flex>

      {ended ? (
        <Box borderWidth="1px" borderColor="red.solid" bg="red.subtle" p={3} rounded="md" data-testid="reason">
          <Text fontWeight="bold" whiteSpace="pre-wrap" wordBreak="break-word">
            {run.failure_reason ?? (run.status === "failed" ? "Coverbase gave no reason." : "The run was cancelled.")}
          </Text>
          <Text fontSize="sm" mt={1}>
            {last ? `after checkpoint '${last.name}'` : "before reaching any checkpoint"}
            {run.failed_step ? `, at step '${run.failed_step}'` : ""}
          </Text>
        </Box>
      ) : null}
      {run.live_error ? <Text color="fg.warning">{run.live_error}</Text> : null}

      <Box>
        <Heading size="sm" mb={2}>
          Checkpoints
        </Heading>
        {run.checkpoints.length === 0 ? (
          <Text color="fg.muted">No checkpoint reached yet.</Text>
        ) : (
          <Stack as="ol" gap={1} pl={0} data-testid="timeline">
            {run.checkpoints.map((checkpoint, position) => (
              <Flex as="li" key={checkpoint.name} gap={3} align="baseline" listStyleType="none">
                <Box w="0.6rem" h="0.6rem" rounded="full" bg="green.solid" flexShrink={0} />
                <Text minW="2rem" color="fg.muted">
                  {position + 1}.
                </Text>
                <Text fontWeight="medium">{checkpoint.name}</Text>
                <Text>{when(checkpoint.at)}</Text>
                <Text color="fg.muted" fontSize="sm">
                  ({SOURCE_LABEL[checkpoint.source] ?? checkpoint.source})
                </Text>
              </Flex>
            ))}
          </Stack>
        )}
        {run.current_step ? <Fact label="Current step">{run.current_step}</Fact> : null}
      </Box>

      <Box>
        <Fact label="Started">{when(run.started_at)}</Fact>
        <Fact label="Completed">{when(run.completed_at)}</Fact>
        <Fact label="Age">
          {duration((run.completed_at ?? now) - (run.started_at ?? now))}
        </Fact>
        <Fact label="Last poll">{run.last_poll_at ? `${when(run.last_poll_at)} (${ago(run.last_poll_at, now)})` : "–"}</Fact>
        <Fact label="Next poll expected">{run.next_poll_at ? `by ${when(run.next_poll_at)}` : "–"}</Fact>
        <Fact label="Run id">
          <code>{run.workflow_run_id}</code>
        </Fact>
        <Fact label="Workflow">{run.workflow_name ?? "–"}</Fact>
        <Fact label="Idempotency key">
          <code>{run.idempotency_key ?? "–"}</code>
        </Fact>
        <Fact label="This try">{run.origin ? ORIGIN_LABEL[run.origin] : "–"}</Fact>
        <Fact label="Connection">{run.conn_id ?? "–"}</Fact>
        <Fact label="In Coverbase">
          {run.url ? (
            <Link href={run.url} target="_blank" rel="noreferrer" colorPalette="blue">
              {run.url}
            </Link>
          ) : (
            "–"
          )}
        </Fact>
      </Box>

      {run.output !== null && run.output !== undefined ? (
        <Box as="details" data-testid="output">
          <Box as="summary" cursor="pointer" fontWeight="bold">
            Output{run.output_truncated ? " (cut: over 20,000 characters, see Coverbase for all of it)" : ""}
          </Box>
          <Box as="pre" mt={2} p={2} bg="bg.muted" rounded="md" overflowX="auto" fontSize="sm" whiteSpace="pre-wrap">
            {typeof run.output === "string" ? run.output : JSON.stringify(run.output, null, 2)}
          </Box>
        </Box>
      ) : null}

      <Box>
        <Heading size="sm" mb={2}>
          Webhook deliveries
        </Heading>
        {answer.deliveries.length === 0 ? (
          <Text color="fg.muted">None received for this run.</Text>
        ) : (
          <Table.Root size="sm" data-testid="deliveries">
            <Table.Header>
              <Table.Row>
                <Table.ColumnHeader>Received</Table.ColumnHeader>
                <Table.ColumnHeader>Event</Table.ColumnHeader>
                <Table.ColumnHeader>Checkpoint / status</Table.ColumnHeader>
                <Table.ColumnHeader>Event id</Table.ColumnHeader>
              </Table.Row>
            </Table.Header>
            <Table.Body>
              {answer.deliveries.map((delivery) => (
                <Table.Row key={delivery.event_id}>
                  <Table.Cell>{when(delivery.received_at)}</Table.Cell>
                  <Table.Cell>{delivery.event_type}</Table.Cell>
                  <Table.Cell>{delivery.checkpoint ?? delivery.status ?? "–"}</Table.Cell>
                  <Table.Cell>
                    <code>{delivery.event_id}</code>
                  </Table.Cell>
                </Table.Row>
              ))}
            </Table.Body>
          </Table.Root>
        )}
      </Box>
    </Stack>
  );
};
