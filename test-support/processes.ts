// Child Node processes: scripts that must run alone (process exit, scheduler policy, handles).
import { spawn } from 'node:child_process'
import { join } from 'node:path'

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
