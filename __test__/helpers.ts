// Shared test plumbing: real servers on 127.0.0.1 port 0, real `ws` clients, raw TCP.
import { spawn } from 'node:child_process'
import net from 'node:net'
import { join } from 'node:path'
import { afterEach } from 'vitest'
import WebSocket from 'ws'
import { WsServer, type ServerOptions, type WebSocketHandlers } from '../lib/index'

export interface Started {
  server: WsServer
  port: number
  url: string
}

/** Starts a server with one path ('/ws' unless given) on a free port. */
export async function startServer(
  handlers: WebSocketHandlers = {},
  options: ServerOptions = {},
  path = '/ws',
): Promise<Started> {
  const server = new WsServer({ host: '127.0.0.1', port: 0, ...options })
  server.websocket(path, handlers)
  const { port } = await server.listen()
  return { server, port, url: `ws://127.0.0.1:${port}${path}` }
}

/** A server starter for one test file: every server it starts is closed after each test. */
export function serverPool(
  closeTimeout = 500,
): (handlers?: WebSocketHandlers, options?: ServerOptions) => Promise<Started> {
  const running: Started[] = []
  afterEach(async () => {
    await Promise.all(running.splice(0).map((s) => s.server.close({ timeout: closeTimeout })))
  })
  return async (handlers = {}, options = {}) => {
    const s = await startServer(handlers, options)
    running.push(s)
    return s
  }
}

/** Opens a `ws` client and resolves once it is open. */
export function connect(url: string, options: WebSocket.ClientOptions = {}): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, options)
    ws.once('open', () => resolve(ws))
    ws.once('error', reject)
  })
}

/** Resolves with the next message (text as string, binary as Buffer). */
export function nextMessage(ws: WebSocket, timeoutMs = 5000): Promise<string | Buffer> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('timed out waiting for a message')), timeoutMs)
    ws.once('message', (data, isBinary) => {
      clearTimeout(timer)
      resolve(isBinary ? (data as Buffer) : data.toString())
    })
  })
}

/** Collects the next `n` messages. */
export function messages(ws: WebSocket, n: number, timeoutMs = 5000): Promise<Array<string | Buffer>> {
  return new Promise((resolve, reject) => {
    const out: Array<string | Buffer> = []
    const timer = setTimeout(() => reject(new Error(`timed out: got ${out.length} of ${n} messages`)), timeoutMs)
    const onMessage = (data: WebSocket.RawData, isBinary: boolean): void => {
      out.push(isBinary ? (data as Buffer) : data.toString())
      if (out.length === n) {
        clearTimeout(timer)
        ws.off('message', onMessage)
        resolve(out)
      }
    }
    ws.on('message', onMessage)
  })
}

/** Resolves with the close code and reason the client saw. */
export function closed(ws: WebSocket, timeoutMs = 8000): Promise<{ code: number; reason: string }> {
  return new Promise((resolve, reject) => {
    if (ws.readyState === WebSocket.CLOSED) return reject(new Error('already closed'))
    const timer = setTimeout(() => reject(new Error('timed out waiting for close')), timeoutMs)
    ws.once('close', (code, reason) => {
      clearTimeout(timer)
      resolve({ code, reason: reason.toString() })
    })
  })
}

/** Waits until `check()` is true, polling; fails after `timeoutMs`. */
export async function waitFor(check: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 5))
  }
}

/** Sends raw bytes over TCP and resolves with everything received until the peer closes. */
export function rawExchange(port: number, data: string | Buffer, timeoutMs = 5000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    const sock = net.connect(port, '127.0.0.1', () => sock.write(data))
    const timer = setTimeout(() => {
      sock.destroy()
      resolve(Buffer.concat(chunks))
    }, timeoutMs)
    sock.on('data', (c) => chunks.push(c))
    sock.on('error', (e) => {
      clearTimeout(timer)
      if (chunks.length) resolve(Buffer.concat(chunks))
      else reject(e)
    })
    sock.on('close', () => {
      clearTimeout(timer)
      resolve(Buffer.concat(chunks))
    })
  })
}

/** The HTTP status code at the start of a raw response. */
export function statusOf(response: Buffer): number {
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(response.toString('latin1'))
  return m ? Number(m[1]) : 0
}

/** A valid upgrade request for `path` with optional header overrides (null removes a header). */
export function upgradeRequest(path: string, overrides: Record<string, string | null> = {}, requestLine?: string): string {
  const headers: Record<string, string | null> = {
    Host: '127.0.0.1',
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
    'Sec-WebSocket-Version': '13',
    ...overrides,
  }
  const lines = [requestLine ?? `GET ${path} HTTP/1.1`]
  for (const [k, v] of Object.entries(headers)) if (v !== null) lines.push(`${k}: ${v}`)
  return lines.join('\r\n') + '\r\n\r\n'
}

/**
 * Runs `script` in a child Node (cwd: the repository) with `flags`, and this process's
 * environment changed by `env` (an undefined value removes a variable); kills it after `timeoutMs`.
 */
export function runChild(
  script: string,
  timeoutMs: number,
  flags: string[] = [],
  env: Record<string, string | undefined> = {},
): Promise<{ code: number | null; out: string; ms: number }> {
  return new Promise((resolve) => {
    const started = Date.now()
    const childEnv = { ...process.env, ...env }
    for (const [k, v] of Object.entries(env)) if (v === undefined) delete childEnv[k]
    const child = spawn(process.execPath, [...flags, '-e', script], {
      cwd: join(__dirname, '..'),
      env: childEnv,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (out += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('exit', (code) => {
      clearTimeout(timer)
      resolve({ code, out, ms: Date.now() - started })
    })
  })
}

/** The JSON a child script printed on its last line of output. */
export function lastJsonLine<T>(out: string): T {
  return JSON.parse(out.trim().split('\n').at(-1)!) as T
}

/**
 * A child script (for `runChild`) that starts an echo server on /ws, connects a `ws` client,
 * echoes 'ping', then runs `body` with `server`, `ws` and `reply` in scope.
 */
export function echoChildScript(body: string): string {
  return `
    const { WsServer } = require('./dist/index.js')
    const WebSocket = require('ws')
    ;(async () => {
      const server = new WsServer({ host: '127.0.0.1', port: 0 })
      server.websocket('/ws', { onMessage: (s, m) => s.send(m) })
      const { port } = await server.listen()
      const ws = new WebSocket('ws://127.0.0.1:' + port + '/ws')
      await new Promise((r) => ws.on('open', r))
      ws.send('ping')
      const reply = await new Promise((r) => ws.on('message', (m) => r(String(m))))
      ${body}
    })()
  `
}
