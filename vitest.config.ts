import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: [
      "lib/**/*.test.ts",
      "agents/**/*.test.ts",
      "scripts/**/*.test.ts",
      "servers/**/*.test.ts",
      "workflows/**/*.test.ts",
      "test/**/*.test.ts",
      "directory/**/*.test.ts",
    ],
    // Integration tests start real server processes; give them room on 2 cores.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: "forks",
    reporters: ["default", "json"],
    outputFile: { json: "test-results/vitest.json" },
  },
});
