// The client under test: an RNodeWebSocketClient on `ws` with short delays, its events as
// promises, and the bundles built before tests that load them.
import WebSocket from 'ws'
import { sleep } from '../../test-support/index'
import { RNodeWebSocketClient, type ClientEvents, type ClientOptions } from '../src/index'

/** A client on `ws` with test-friendly (short) delays unless overridden. */
export function makeClient(url: string, clientId?: string, options: ClientOptions = {}): RNodeWebSocketClient {
  return new RNodeWebSocketClient(url, clientId, {
    WebSocket,
    reconnectDelay: 50,
    maxReconnectDelay: 200,
    reconnectJitter: 0,
    requestTimeout: 3000,
    ...options,
  })
}

/** Resolves with the arguments of the next `event`; fails after `timeoutMs`. */
export function nextEvent<E extends keyof ClientEvents>(
  client: RNodeWebSocketClient,
  event: E,
  timeoutMs = 5000,
): Promise<Parameters<ClientEvents[E]>> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.off(event, listener)
      reject(new Error(`timed out waiting for '${String(event)}'`))
    }, timeoutMs)
    const listener = ((...args: Parameters<ClientEvents[E]>) => {
      clearTimeout(timer)
      client.off(event, listener)
      resolve(args)
    }) as ClientEvents[E]
    client.on(event, listener)
  })
}

/**
 * Builds the bundles (tsc + rollup) when src/ is newer than dist/. test/global-setup.ts does the
 * same once per run; this keeps a single test file runnable on its own. A lock directory keeps
 * two test files from building at once.
 */
export async function ensureBuilt(): Promise<void> {
  const { execFileSync } = await import('node:child_process')
  const { mkdirSync, rmdirSync } = await import('node:fs')
  const { join } = await import('node:path')
  const lock = join(__dirname, '..', '.build-lock')
  const deadline = Date.now() + 60_000
  for (;;) {
    try {
      mkdirSync(lock)
      break
    } catch {
      if (Date.now() > deadline) throw new Error(`build lock ${lock} held for over 60 s`)
      await sleep(100)
    }
  }
  try {
    execFileSync(process.execPath, [join(__dirname, '..', 'scripts', 'build.mjs'), '--if-stale'], { stdio: 'pipe' })
  } finally {
    rmdirSync(lock)
  }
}
