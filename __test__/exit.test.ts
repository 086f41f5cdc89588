// The addon never keeps the process alive after close(): a child process must exit by itself.
import { describe, expect, it } from 'vitest'
import { echoChildScript, lastJsonLine, runChild } from '../test-support/index'

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
