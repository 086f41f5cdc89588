// Large all-ASCII batches reach JS as external strings: V8 reads the engine's buffer in place and
// gives it back when it collects the string, and the engine reuses it for later batches. Messages
// a handler keeps must survive that reuse. Runs in a child with --expose-gc, so collections (and
// so buffer reuse) happen many times during the run.
import { describe, expect, it } from 'vitest'
import { runChild } from './helpers'

describe('batch text in engine buffers', () => {
  it('kept messages stay intact while collected batches give their buffers to new ones', async () => {
    const script = `
      const { WsServer } = require('./dist/index.js')
      const WebSocket = require('ws')
      const N = 2400, SIZE = 12 * 1024
      // Message i: its number, then a letter that depends on i, so a reused buffer shows.
      const body = (i) => (i + ':').padEnd(SIZE, String.fromCharCode(97 + (i % 26)))
      ;(async () => {
        const baseline = process.memoryUsage().external
        let maxExternal = 0
        const kept = []
        let received = 0
        const server = new WsServer({ host: '127.0.0.1', port: 0 })
        server.websocket('/ws', {
          onMessage: (socket, message) => {
            received++
            // Keep every other message; the rest are garbage once the handler returns.
            if (received % 2 === 0) kept.push(message)
            if (received % 150 === 0) {
              maxExternal = Math.max(maxExternal, process.memoryUsage().external - baseline)
              global.gc()
            }
            socket.send('ack ' + message.slice(0, message.indexOf(':')))
          },
        })
        const { port } = await server.listen()
        const ws = new WebSocket('ws://127.0.0.1:' + port + '/ws')
        await new Promise((r) => ws.on('open', r))
        let acks = 0, badAcks = 0
        const done = new Promise((r) => ws.on('message', (m) => {
          if (String(m) !== 'ack ' + acks) badAcks++
          if (++acks === N) r()
        }))
        // In bursts, so that batches hold many messages (and several connections' worth of bytes).
        for (let i = 0; i < N; i++) {
          ws.send(body(i))
          if (i % 40 === 39) await new Promise((r) => setImmediate(r))
        }
        await done
        for (let round = 0; round < 3; round++) global.gc()
        let bad = 0
        kept.forEach((m, k) => { if (m !== body(2 * k + 1)) bad++ })
        console.log(JSON.stringify({ received, kept: kept.length, bad, badAcks, maxExternal }))
        ws.close()
        await server.close()
      })()
    `
    const { code, out } = await runChild(script, 60_000, ['--expose-gc'])
    expect(code, out).toBe(0)
    const r = JSON.parse(out.trim().split('\n').at(-1)!) as { received: number; kept: number; bad: number; badAcks: number; maxExternal: number }
    expect(r.received).toBe(2400)
    expect(r.kept).toBe(1200)
    expect(r.bad).toBe(0)
    expect(r.badAcks).toBe(0)
    if (process.platform !== 'win32') {
      // The kept texts (14 MiB) are external: V8 was told of at least several MiB of them.
      expect(r.maxExternal).toBeGreaterThan(4 * 1024 * 1024)
    }
  }, 70_000)
})
