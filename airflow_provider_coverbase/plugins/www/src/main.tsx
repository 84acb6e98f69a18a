/**
 * The Coverbase plugin for the Airflow UI. Airflow loads this UMD bundle and renders its default
 * export with the route's parameters: with a task instance (the "Coverbase" tab) it shows that
 * task's run, without one (the "Coverbase" nav page) every run. React, the JSX runtime, Chakra and
 * Emotion come from the host's globals; the theme is the host's (globalThis.ChakraUISystem), so
 * the views follow Airflow's light and dark mode.
 */
import { ChakraProvider, defaultSystem } from "@chakra-ui/react";

import { RunsPage } from "./RunsPage";
import { RunTab } from "./RunTab";

type PluginProps = { dagId?: string; runId?: string; taskId?: string; mapIndex?: string };

const CoverbasePlugin = ({ dagId, runId, taskId, mapIndex }: PluginProps) => {
  const system = (globalThis as { ChakraUISystem?: typeof defaultSystem }).ChakraUISystem ?? defaultSystem;
  return (
    <ChakraProvider value={system}>
      {dagId && runId && taskId ? (
        <RunTab dagId={dagId} runId={runId} taskId={taskId} mapIndex={mapIndex} />
      ) : (
        <RunsPage />
      )}
    </ChakraProvider>
  );
};

export default CoverbasePlugin;
