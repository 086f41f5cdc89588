// Scale-out test plumbing: private redis-server processes, and cluster nodes in child processes.
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import net from 'node:net'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { closedPort } from './servers'

export const REDIS = [
  process.env.REDIS_SERVER ?? '',
  '/usr/bin/redis-server',
  '/usr/local/bin/redis-server',
  '/opt/homebrew/bin/redis-server',
].find((p) => p !== '' && existsSync(p))
const REDIS_CLI = REDIS?.replace(/redis-server$/, 'redis-cli')
// RNODE_SKIP_REDIS=1 skips the suites where redis-server cannot be had (the Windows CI jobs).
// Outside CI a missing redis-server skips them; in CI it fails them (.ci/run installs it).
export const SKIP_REDIS = process.env.RNODE_SKIP_REDIS === '1' || (!REDIS && !process.env.CI)
const root = join(__dirname, '..')

/** Resolves once something accepts TCP connections on the port (fails after `timeoutMs`). */
export async function waitForPort(port: number, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const up = await new Promise<boolean>((r) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy()
        r(true)
      })
      s.on('error', () => r(false))
    })
    if (up) return
    if (Date.now() > deadline) throw new Error(`nothing listens on ${port}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** A private redis-server on a free port. */
export class Redis {
  proc: ChildProcess | undefined
  constructor(
    readonly port: number,
    readonly extraArgs: string[] = [],
  ) {}
  static async start(extraArgs: string[] = []): Promise<Redis> {
    const r = new Redis(await closedPort(), extraArgs)
    await r.start()
    return r
  }
  get url(): string {
    return `redis://127.0.0.1:${this.port}`
  }
  async start(): Promise<void> {
    if (!REDIS) throw new Error('redis-server is missing')
    this.proc = spawn(REDIS, ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...this.extraArgs], {
      stdio: 'ignore',
    })
    await waitForPort(this.port).catch(() => {
      throw new Error('redis-server did not start')
    })
  }
  async stop(): Promise<void> {
    const p = this.proc
    if (!p || p.exitCode !== null) return
    await new Promise((r) => {
      p.once('exit', r)
      p.kill('SIGKILL')
    })
  }
  /** Runs one command through redis-cli; resolves with its raw output. */
  cli(...args: string[]): Promise<string> {
    return new Promise((resolve, reject) => {
      if (!REDIS_CLI) return reject(new Error('redis-cli is missing'))
      execFile(REDIS_CLI, ['-p', String(this.port), ...args], (err, stdout) => (err ? reject(err) : resolve(stdout)))
    })
  }
  /** One numeric field of `INFO`. */
  async info(field: string): Promise<number> {
    const m = new RegExp(`^${field}:(\\d+)`, 'm').exec(await this.cli('INFO'))
    return m ? Number(m[1]) : NaN
  }
}

/**
 * Starts a private redis-server; undefined where none is installed (or RNODE_SKIP_REDIS=1),
 * except in CI, where a missing one fails the test (.ci/run installs it).
 */
export async function startRedis(extraArgs: string[] = []): Promise<Redis | undefined> {
  if (SKIP_REDIS) return undefined
  if (!REDIS) throw new Error('redis-server is missing')
  return Redis.start(extraArgs)
}

/** A TCP proxy to `port` that holds every chunk, both ways, `delayMs` before passing it on. */
export async function slowLink(port: number, delayMs: number): Promise<{ port: number; close(): void }> {
  const sockets = new Set<net.Socket>()
  const pass = (from: net.Socket, to: net.Socket): void => {
    from.on('data', (chunk) => setTimeout(() => to.write(chunk), delayMs))
    from.on('close', () => setTimeout(() => to.destroy(), delayMs))
    from.on('error', () => to.destroy())
  }
  const server = net.createServer((client) => {
    const upstream = net.connect(port, '127.0.0.1')
    for (const s of [client, upstream]) sockets.add(s)
    pass(client, upstream)
    pass(upstream, client)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => {
      server.close()
      for (const s of sockets) s.destroy()
    },
  }
}

/** One cluster node (`fixtures/cluster-node.mjs`) in its own process, driven over stdin. */
export class ClusterNode {
  proc!: ChildProcess
  port = 0
  #next = 1
  #pending = new Map<number, (v: { result?: unknown; error?: string }) => void>()
  listenError: string | undefined
  static async start(redisUrl: string, prefix: string, env: Record<string, string> = {}): Promise<ClusterNode> {
    const node = new ClusterNode()
    node.proc = spawn(process.execPath, [join(root, '__test__', 'fixtures', 'cluster-node.mjs')], {
      cwd: root,
      env: { ...process.env, REDIS_URL: redisUrl, PREFIX: prefix, ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    node.proc.stderr!.on('data', () => {})
    const lines = createInterface({ input: node.proc.stdout! })
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('cluster node did not start')), 10_000)
      lines.on('line', (line) => {
        if (line.startsWith('port=')) {
          node.port = Number(line.slice(5))
          clearTimeout(timer)
          resolve()
        } else if (line.startsWith('listen-error=')) {
          node.listenError = line.slice(13)
          clearTimeout(timer)
          resolve()
        } else if (line.startsWith('{')) {
          const msg = JSON.parse(line) as { id: number; result?: unknown; error?: string }
          node.#pending.get(msg.id)?.(msg)
          node.#pending.delete(msg.id)
        }
      })
    })
    return node
  }
  async call<T>(cmd: string, args: Record<string, unknown> = {}): Promise<T> {
    const id = this.#next++
    const reply = await new Promise<{ result?: unknown; error?: string }>((resolve) => {
      this.#pending.set(id, resolve)
      this.proc.stdin!.write(JSON.stringify({ id, cmd, ...args }) + '\n')
    })
    if (reply.error) throw new Error(reply.error)
    return reply.result as T
  }
  url(clientId: string): string {
    return `ws://127.0.0.1:${this.port}/ws?clientId=${clientId}`
  }
  kill(): void {
    this.proc.kill('SIGKILL')
  }
}
