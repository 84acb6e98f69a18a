/** The "Coverbase" page: every Coverbase run Airflow started, watched or heard of by webhook. */
import { Badge, Box, Button, chakra, Flex, Heading, Link, Table, Text } from "@chakra-ui/react";
import { useEffect, useState } from "react";

import { appUrl, fetchRuns, type RunsAnswer, type RunsQuery } from "./api";
import { ago, duration, short, statusPalette, when } from "./format";

export const PAGE_SIZE = 25;

const Select = chakra("select");
const Input = chakra("input");

const FilterSelect = ({
  label,
  value,
  choices,
  onChange,
}: {
  label: string;
  value: string | undefined;
  choices: string[];
  onChange: (value: string | undefined) => void;
}) => (
  <chakra.label display="flex" flexDirection="column" fontSize="sm" gap={1}>
    {label}
    <Select
      aria-label={label}
      borderWidth="1px"
      rounded="md"
      px={2}
      py={1}
      bg="bg"
      value={value ?? ""}
      onChange={(event) => onChange(event.target.value || undefined)}
    >
      <option value="">all</option>
      {choices.map((choice) => (
        <option key={choice} value={choice}>
          {choice}
        </option>
      ))}
    </Select>
  </chakra.label>
);

export const RunsPage = () => {
  const [query, setQuery] = useState<RunsQuery>({ limit: PAGE_SIZE, offset: 0, stale_hours: 24 });
  const [answer, setAnswer] = useState<RunsAnswer | undefined>();
  const [error, setError] = useState<string | undefined>();

  useEffect(() => {
    let current = true;
    fetchRuns(query)
      .then((result) => current && (setAnswer(result), setError(undefined)))
      .catch((exc: Error) => current && setError(exc.message));
    return () => {
      current = false;
    };
  }, [query]);

  const change = (update: Partial<RunsQuery>) => setQuery((old) => ({ ...old, ...update, offset: 0 }));
  const offset = query.offset ?? 0;
  const facets = answer?.facets ?? { status: [], workflow: [], dag_id: [], conn_id: [] };

  return (
    <Box p={4}>
      <Heading size="lg" mb={3}>
        Coverbase runs
      </Heading>
      <Flex gap={4} wrap="wrap" align="end" mb={4}>
        <FilterSelect label="Status" value={query.status} choices={facets.status} onChange={(v) => change({ status: v })} />
        <FilterSelect label="Workflow" value={query.workflow} choices={facets.workflow} onChange={(v) => change({ workflow: v })} />
        <FilterSelect label="DAG" value={query.dag_id} choices={facets.dag_id} onChange={(v) => change({ dag_id: v })} />
        <FilterSelect label="Connection" value={query.conn_id} choices={facets.conn_id} onChange={(v) => change({ conn_id: v })} />
        <chakra.label display="flex" flexDirection="column" fontSize="sm" gap={1}>
          No progress for more than (hours)
          <Input
            aria-label="No progress for more than (hours)"
            type="number"
            min={1}
            w="8rem"
            borderWidth="1px"
            rounded="md"
            px={2}
            py={1}
            bg="bg"
            value={query.stale_hours ?? 24}
            onChange={(event) => {
              const hours = Number(event.target.value);
              if (hours > 0) change({ stale_hours: hours });
            }}
          />
        </chakra.label>
        <chakra.label display="flex" gap={2} fontSize="sm" alignItems="center">
          <input
            type="checkbox"
            aria-label="Only runs without progress"
            checked={query.stale_only ?? false}
            onChange={(event) => change({ stale_only: event.target.checked || undefined })}
          />
          Only runs without progress
        </chakra.label>
      </Flex>

      {error !== undefined ? <Text color="fg.error">Could not load the runs: {error}</Text> : null}
      {answer === undefined ? (
        <Text color="fg.muted">Loading…</Text>
      ) : answer.total === 0 ? (
        <Text>No Coverbase runs match.</Text>
      ) : (
        <>
          <Box overflowX="auto">
            <Table.Root size="sm" data-testid="runs">
              <Table.Header>
                <Table.Row>
                  {["DAG", "Task", "Map", "Try", "Workflow", "Run id (in Coverbase)", "Status", "Started (UTC)", "Age", "Last checkpoint", "Last progress"].map(
                    (title) => (
                      <Table.ColumnHeader key={title}>{title}</Table.ColumnHeader>
                    ),
                  )}
                </Table.Row>
              </Table.Header>
              <Table.Body>
                {answer.runs.map((run) => (
                  <Table.Row key={`${run.source}:${run.dag_id}:${run.dag_run_id}:${run.task_id}:${run.map_index}:${run.workflow_run_id}`}>
                    <Table.Cell>{run.dag_id ?? <Text color="fg.muted">webhook only</Text>}</Table.Cell>
                    <Table.Cell>
                      {run.ti_path ? (
                        <Link href={appUrl(run.ti_path)} colorPalette="blue" title="Open the task instance">
                          {run.task_id}
                        </Link>
                      ) : (
                        "–"
                      )}
                    </Table.Cell>
                    <Table.Cell>{run.map_index >= 0 ? run.map_index : "–"}</Table.Cell>
                    <Table.Cell>{run.try_number ?? "–"}</Table.Cell>
                    <Table.Cell>{run.workflow ?? "–"}</Table.Cell>
                    <Table.Cell>
                      {run.coverbase_url ? (
                        <Link href={run.coverbase_url} target="_blank" rel="noreferrer" colorPalette="blue">
                          <code>{run.workflow_run_id}</code>
                        </Link>
                      ) : (
                        <code>{run.workflow_run_id}</code>
                      )}
                    </Table.Cell>
                    <Table.Cell>
                      <Badge colorPalette={statusPalette(run.status)}>{run.status}</Badge>
                      {run.stale ? (
                        <Badge colorPalette="orange" ml={1} title={`no progress for more than ${answer.stale_hours} h`}>
                          no progress
                        </Badge>
                      ) : null}
                    </Table.Cell>
                    <Table.Cell whiteSpace="nowrap" title={when(run.started_at)}>
                      {short(run.started_at)}
                    </Table.Cell>
                    <Table.Cell>{duration(run.age_seconds)}</Table.Cell>
                    <Table.Cell>{run.last_checkpoint ?? "–"}</Table.Cell>
                    <Table.Cell>{ago(run.last_progress_at, answer.now)}</Table.Cell>
                  </Table.Row>
                ))}
              </Table.Body>
            </Table.Root>
          </Box>
          <Flex gap={3} align="center" mt={3}>
            <Button
              size="sm"
              variant="outline"
              disabled={offset === 0}
              onClick={() => setQuery((old) => ({ ...old, offset: Math.max(0, offset - PAGE_SIZE) }))}
            >
              Previous
            </Button>
            <Text data-testid="range">
              {offset + 1}–{Math.min(offset + PAGE_SIZE, answer.total)} of {answer.total}
            </Text>
            <Button
              size="sm"
              variant="outline"
              disabled={offset + PAGE_SIZE >= answer.total}
              onClick={() => setQuery((old) => ({ ...old, offset: offset + PAGE_SIZE }))}
            >
              Next
            </Button>
          </Flex>
        </>
      )}
    </Box>
  );
};
