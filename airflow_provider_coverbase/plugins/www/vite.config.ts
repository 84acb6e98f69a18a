/// <reference types="vitest/config" />
import { resolve } from "node:path";
import { defineConfig } from "vite";

// A UMD library like Airflow's plugin template: React, the JSX runtime, Chakra and Emotion are the
// host UI's (globals), so the bundle holds only this plugin's code.
export default defineConfig(({ command }) => ({
  oxc: { jsx: { runtime: "automatic" } },
  define: command === "build" ? { "process.env.NODE_ENV": JSON.stringify("production") } : {},
  build: {
    outDir: "dist",
    emptyOutDir: true,
    minify: true,
    lib: { entry: resolve(import.meta.dirname, "src/main.tsx"), formats: ["umd"], name: "AirflowPlugin", fileName: () => "main.umd.cjs" },
    rollupOptions: {
      external: ["react", "react-dom", "react/jsx-runtime", "@chakra-ui/react", "@emotion/react"],
      output: {
        exports: "default",
        globals: {
          react: "React",
          "react-dom": "ReactDOM",
          "react/jsx-runtime": "ReactJSXRuntime",
          "@chakra-ui/react": "ChakraUI",
          "@emotion/react": "EmotionReact",
        },
      },
    },
  },
  test: { environment: "happy-dom", testTimeout: 30000, globals: false, setupFiles: ["./src/testsSetup.ts"] },
}));
