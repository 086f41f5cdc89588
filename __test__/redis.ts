// A private redis-server for one test, on a free port.
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import net from 'node:net'

const BIN = [process.env.REDIS_SERVER ?? '', '/usr/bin/redis-server', '/usr/local/bin/redis-server', '/opt/homebrew/bin/redis-server'].find(
  (p) => p !== '' && existsSync(p),
)

export interface RedisServer {
  port: number
  stop(): Promise<void>
}

function accepts(port: number): Promise<boolean> {
  return new Promise((r) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.destroy()
      r(true)
    })
    s.on('error', () => r(false))
  })
}

/** Starts redis-server; undefined where none is installed, except in CI (.ci/run installs it). */
export async function startRedis(): Promise<RedisServer | undefined> {
  if (!BIN || process.env.RNODE_SKIP_REDIS === '1') {
    if (process.env.CI && process.env.RNODE_SKIP_REDIS !== '1') throw new Error('redis-server is missing')
    return undefined
  }
  const port = await new Promise<number>((resolve) => {
    const srv = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (srv.address() as net.AddressInfo).port
      srv.close(() => resolve(p))
    })
  })
  const proc = spawn(BIN, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' })
  const deadline = Date.now() + 5000
  while (!(await accepts(port))) {
    if (Date.now() > deadline) throw new Error('redis-server did not start')
    await new Promise((r) => setTimeout(r, 50))
  }
  return {
    port,
    stop: () =>
      new Promise<void>((r) => {
        if (proc.exitCode !== null) return r()
        proc.once('exit', () => r())
        proc.kill('SIGKILL')
      }),
  }
}
