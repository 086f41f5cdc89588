// The `backlog` option (docs/limits.md): the length of the listening socket's accept queue, read
// back from the kernel (`ss` shows a listener's backlog as its Send-Q).
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { type ServerOptions, WsServer } from '../lib/index'
import { connect, serverPool } from '../test-support/index'

const server = serverPool()

/** The kernel's cap on any backlog (Linux). */
const SOMAXCONN_FILE = '/proc/sys/net/core/somaxconn'
const somaxconn = existsSync(SOMAXCONN_FILE) ? Number(readFileSync(SOMAXCONN_FILE, 'utf8')) : undefined

function hasSs(): boolean {
  try {
    execFileSync('ss', ['-V'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

/** The backlog the kernel holds for the listener on 127.0.0.1:`port`. */
function kernelBacklog(port: number): number {
  const out = execFileSync('ss', ['-ltnH', `sport = :${port}`], { encoding: 'utf8' })
  const line = out.split('\n').find((l) => l.includes(`127.0.0.1:${port}`))
  if (line === undefined) throw new Error(`no listener on ${port} in:\n${out}`)
  return Number(line.trim().split(/\s+/)[2])
}

const onLinux = process.platform === 'linux' && somaxconn !== undefined && hasSs()

describe('backlog', () => {
  it('defaults to 4096, which the kernel caps at net.core.somaxconn', async () => {
    const { server: srv, port, url } = await server()
    expect(srv.limits.backlog).toBe(4096)
    if (onLinux) expect(kernelBacklog(port)).toBe(Math.min(4096, somaxconn!))
    ;(await connect(url)).close()
  })

  it('a custom value is what the listening socket gets', async () => {
    const { server: srv, port, url } = await server({}, { backlog: 16 })
    expect(srv.limits.backlog).toBe(16)
    if (onLinux) expect(kernelBacklog(port)).toBe(16)
    ;(await connect(url)).close()
  })

  it.each([
    [0, RangeError],
    [-1, RangeError],
    [65_536, RangeError],
    [1.5, TypeError],
    ['128', TypeError],
    [null, TypeError],
  ])('backlog = %j throws ERR_INVALID_OPTION, nothing bound', (value, errorClass) => {
    const make = () => new WsServer({ backlog: value } as unknown as ServerOptions)
    expect(make).toThrow(errorClass)
    expect(make).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION' }))
  })

  it('does not apply in attach mode', () => {
    expect(() => new WsServer({ noServer: true, backlog: 64 })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION' }))
  })
})
