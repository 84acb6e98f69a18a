import { ChakraProvider, defaultSystem } from "@chakra-ui/react";
import { render } from "@testing-library/react";
import type { ReactElement } from "react";
import { vi } from "vitest";

export const renderWithChakra = (ui: ReactElement) => render(<ChakraProvider value={defaultSystem}>{ui}</ChakraProvider>);

/** A fake of the provider's API: answers each call with the next body, records the URLs asked for. */
export const fakeApi = (...bodies: unknown[]) => {
  const urls: string[] = [];
  const fetchMock = vi.fn(async (url: string | URL | Request) => {
    urls.push(String(url));
    const body = bodies.length > 1 ? bodies.shift() : bodies[0];
    return new Response(JSON.stringify(body), { status: 200, headers: { "Content-Type": "application/json" } });
  });
  vi.stubGlobal("fetch", fetchMock);
  return urls;
};
