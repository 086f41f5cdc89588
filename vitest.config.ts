import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    // forks, not threads: a tokio_rt addon loaded in a worker thread can crash when it exits.
    pool: 'forks',
    include: ['__test__/**/*.test.ts', 'client/test/**/*.test.ts'],
    // Builds the client bundles (ESM, CJS, UMD, IIFE) once when they are stale.
    globalSetup: ['client/test/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Two cores: keep the number of test files running at once small so timing-sensitive
    // tests (timeouts, heartbeats) do not starve.
    maxWorkers: 2,
    fileParallelism: true,
  },
})
