// A server's life: process exit after close(), graceful shutdown, connect/disconnect churn.
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import type { Socket } from '../lib/index'
import { closed, connect, echoChildScript, lastJsonLine, RawPeer, runChild, startServer, waitFor } from '../test-support/index'

describe('process lifetime', () => {
  it('a child that starts a server, echoes, and closes exits on its own within 5 s', async () => {
    const script = echoChildScript(`
      console.log('reply=' + reply)
      await server.close()
      console.log('closed')
    `)
    const { code, out, ms } = await runChild(script, 10_000)
    expect(out).toContain('reply=ping')
    expect(out).toContain('closed')
    expect(code).toBe(0)
    expect(ms).toBeLessThan(5000)
  })

  it('a listening server keeps the process alive until it is closed', async () => {
    const script = `
      const { WsServer } = require('./dist/index.js')
      const server = new WsServer({ host: '127.0.0.1', port: 0 })
      server.websocket('/ws', {})
      server.listen().then(() => {
        setTimeout(() => { console.log('still alive'); server.close() }, 500)
      })
    `
    const { code, out } = await runChild(script, 10_000)
    expect(out).toContain('still alive')
    expect(code).toBe(0)
  })

  it("a server collected without close() frees its engine slot, and never a newer server's", async () => {
    const script = `
      const { native } = require('./dist/binding.js')
      const settle = async () => {
        global.gc()
        await new Promise((r) => setImmediate(r))
        await new Promise((r) => setTimeout(r, 10))
      }
      ;(async () => {
        const first = []
        for (let i = 0; i < 50; i++) first.push(new native.NativeServer({}).handle)
        let reused = -1
        for (let round = 0; round < 50 && reused < 0; round++) {
          await settle()
          const probe = new native.NativeServer({})
          if (probe.handle < 50) reused = probe.handle
          probe.dispose()
        }
        // A disposed server's slot goes to a newer one; collecting the old one must not free it.
        let old = new native.NativeServer({})
        const oldHandle = old.handle
        old.dispose()
        const newer = new native.NativeServer({})
        old = null
        for (let round = 0; round < 5; round++) await settle()
        const next = new native.NativeServer({})
        console.log(JSON.stringify({ first, reused, oldHandle, newer: newer.handle, next: next.handle }))
      })()
    `
    const { code, out } = await runChild(script, 20_000, ['--expose-gc'])
    expect(code).toBe(0)
    const r = lastJsonLine<{ first: number[]; reused: number; oldHandle: number; newer: number; next: number }>(out)
    expect(new Set(r.first).size).toBe(50)
    expect(r.reused).toBeGreaterThanOrEqual(0)
    expect(r.reused).toBeLessThan(50)
    expect(r.newer).toBe(r.oldHandle)
    expect(r.next).not.toBe(r.newer)
  })
})

describe('graceful shutdown', () => {
  it('everything send() accepted before close() reaches a reading client before the 1001', async () => {
    let socket: Socket | undefined
    const s = await startServer({ onConnect: (x) => void (socket = x) })
    const ws = await connect(s.url)
    await waitFor(() => socket !== undefined)
    const got: string[] = []
    ws.on('message', (m) => got.push(String(m)))
    const c = closed(ws)
    for (let i = 0; i < 2000; i++) expect(socket!.send(`m${i}`)).not.toBe('dropped')
    await s.server.close({ timeout: 3000 })
    expect((await c).code).toBe(1001)
    expect(got.length).toBe(2000)
    expect(got[0]).toBe('m0')
    expect(got[1999]).toBe('m1999')
  })

  it('close({ timeout }) drops peers that never answer the close frame', async () => {
    const s = await startServer({}, { closeTimeout: 60_000 })
    const peer = await RawPeer.connect(s.port)
    await waitFor(() => s.server.getConnections().length === 1)
    const started = Date.now()
    await s.server.close({ timeout: 300 })
    expect(Date.now() - started).toBeLessThan(2500)
    await peer.waitEnd(2000)
  })
})

describe('churn', () => {
  it('thousands of connect/disconnect cycles: server memory returns to its baseline', async () => {
    const script = `
      const { WsServer } = require('./dist/index.js')
      const server = new WsServer({ host: '127.0.0.1', port: 0 })
      server.websocket('/ws', { onMessage: (s, m) => s.send(m) })
      server.listen().then(({ port }) => console.log('port=' + port))
      process.stdin.on('data', () => { global.gc && global.gc(); console.log('rss=' + process.memoryUsage().rss) })
    `
    const child = spawn(process.execPath, ['--expose-gc', '-e', script], { cwd: join(__dirname, '..'), stdio: ['pipe', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    try {
      await waitFor(() => /port=\d+/.test(out), 10_000, 'child server')
      const port = Number(/port=(\d+)/.exec(out)![1])
      const rss = async (): Promise<number> => {
        const n = (out.match(/rss=/g) ?? []).length
        child.stdin.write('x')
        await waitFor(() => (out.match(/rss=/g) ?? []).length > n, 5000, 'rss report')
        return Number([...out.matchAll(/rss=(\d+)/g)].at(-1)![1])
      }
      const cycle = async (n: number): Promise<void> => {
        for (let i = 0; i < n; i += 100) {
          await Promise.all(
            Array.from({ length: 100 }, async () => {
              const ws = await connect(`ws://127.0.0.1:${port}/ws`)
              const c = closed(ws)
              ws.close()
              await c
            }),
          )
        }
      }
      await cycle(1000)
      const baseline = await rss()
      await cycle(3000)
      const after = await rss()
      expect(after - baseline).toBeLessThan(16 * 1024 * 1024)
    } finally {
      child.kill()
    }
  }, 60_000)
})
