// Shared plumbing for the client tests: real @rnode/ws servers on 127.0.0.1 port 0, the client
// under test driven through `ws`, and a TCP proxy that can stall a connection.
import net from 'node:net'
import WebSocket from 'ws'
import { WsServer, type ServerOptions, type WebSocketHandlers } from '../../lib/index'
import type { Started } from '../../__test__/helpers'
import { RNodeWebSocketClient, type ClientEvents, type ClientOptions } from '../src/index'

export type { Started }

/** Starts a server with `/ws` on `port` (0: a free one). Retries briefly while the port is still held. */
export async function startServer(
  handlers: WebSocketHandlers = {},
  options: ServerOptions = {},
  port = 0,
): Promise<Started> {
  for (let i = 0; ; i++) {
    const server = new WsServer({ host: '127.0.0.1', port, ...options })
    server.websocket('/ws', handlers)
    try {
      const bound = await server.listen()
      return { server, port: bound.port, url: `ws://127.0.0.1:${bound.port}/ws` }
    } catch (err) {
      await server.close()
      if (i >= 20) throw err
      await sleep(50)
    }
  }
}

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

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

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

/** Waits until `check()` is true, polling; fails after `timeoutMs`. */
export async function waitFor(check: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(5)
  }
}

/** A free TCP port on 127.0.0.1 with nothing listening on it (connections are refused). */
export async function closedPort(): Promise<number> {
  const srv = net.createServer()
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  const { port } = srv.address() as net.AddressInfo
  await new Promise<void>((r) => srv.close(() => r()))
  return port
}

/** A TCP proxy to `target`; `freeze()` stops forwarding on open connections (a dead network). */
export interface Proxy {
  port: number
  url: string
  connections: number
  freeze(): void
  /** Destroys frozen connections; new ones forward again. */
  thaw(): void
  close(): Promise<void>
}

export async function startProxy(targetPort: number, path = '/ws'): Promise<Proxy> {
  const pairs = new Set<{ a: net.Socket; b: net.Socket }>()
  let frozen = false
  const srv = net.createServer((a) => {
    proxy.connections++
    const b = net.connect(targetPort, '127.0.0.1')
    const pair = { a, b }
    pairs.add(pair)
    a.on('data', (d) => frozen || b.write(d))
    b.on('data', (d) => frozen || a.write(d))
    const end = (): void => {
      pairs.delete(pair)
      a.destroy()
      b.destroy()
    }
    a.on('close', end).on('error', end)
    b.on('close', end).on('error', end)
  })
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  const { port } = srv.address() as net.AddressInfo
  const proxy: Proxy = {
    port,
    url: `ws://127.0.0.1:${port}${path}`,
    connections: 0,
    freeze: () => void (frozen = true),
    thaw: () => {
      for (const p of pairs) {
        p.a.destroy()
        p.b.destroy()
      }
      pairs.clear()
      frozen = false
    },
    close: async () => {
      proxy.thaw()
      await new Promise<void>((r) => srv.close(() => r()))
    },
  }
  return proxy
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
