// Messages waiting for JS: bounded by maxInboundQueue (connections stop reading, nothing lost),
// not mistaken for idleness, and drained over several event-loop turns.
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { connect, serverPool, waitFor } from '../test-support/index'

const server = serverPool()

describe('inbound queue', () => {
  it('a blocked JS thread: connections stop reading past maxInboundQueue, nothing is lost, order kept', async () => {
    const got: string[] = []
    let blocked = false
    const { url, server: srv } = await server(
      {
        onMessage: (_s, m) => {
          if (!blocked) {
            blocked = true
            // Hold the JS thread for a while, as a slow synchronous handler would.
            Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 500)
          }
          got.push((m as string).slice(0, 8))
        },
      },
      { maxInboundQueue: 64 * 1024 },
    )
    const ws = await connect(url)
    const chunk = 'x'.repeat(10 * 1024)
    for (let i = 0; i < 300; i++) ws.send(`${String(i).padStart(8, '0')}${chunk}`)
    await waitFor(() => got.length === 300, 15_000, '300 messages')
    expect(got).toEqual(Array.from({ length: 300 }, (_, i) => String(i).padStart(8, '0')))
    // 3 MB were sent while JS was blocked; at most the limit plus one message per connection waited.
    expect(srv.getStats().peakQueuedBytes).toBeLessThanOrEqual(64 * 1024 + chunk.length + 8)
    expect(srv.getStats().peakQueuedBytes).toBeGreaterThan(0)
    ws.close()
  })
})

describe('paused reading', () => {
  it('a connection paused for a blocked JS thread is not closed by the idle timeout', async () => {
    let blocked = false
    let got = 0
    const codes: number[] = []
    const { url } = await server(
      {
        onMessage: () => {
          got++
          if (!blocked) {
            blocked = true
            Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1200)
          }
        },
        onClose: (_s, code) => void codes.push(code),
      },
      { maxInboundQueue: 1024, idleTimeout: 400, pingInterval: 100 },
    )
    const ws = await connect(url)
    // Enough to fill the inbound queue while JS is blocked, so the connection stops reading.
    for (let i = 0; i < 100; i++) ws.send('x'.repeat(100))
    await waitFor(() => got === 100, 10_000, 'all messages')
    expect(codes).toEqual([])
    expect(ws.readyState).toBe(WebSocket.OPEN)
    ws.close()
  })
})

describe('fairness', () => {
  it('a large backlog is handled over several event-loop turns, so Node timers still run', async () => {
    const total = 40_000
    let received = 0
    let atTimer = -1
    const { port } = await server({
      onMessage: () => {
        if (received++ === 0) {
          // A timer due at once, then the JS thread blocked while the backlog piles up.
          setTimeout(() => (atTimer = received), 0)
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1500)
        }
      },
    })
    const script = `
      const WebSocket = require('ws')
      const ws = new WebSocket('ws://127.0.0.1:${port}/ws')
      ws.on('open', () => { for (let i = 0; i < ${total}; i++) ws.send('m' + i) })
      setTimeout(() => process.exit(0), 20000)
    `
    const child = spawn(process.execPath, ['-e', script], { cwd: join(__dirname, '..'), stdio: 'ignore' })
    try {
      await waitFor(() => received === total, 20_000, `${total} messages`)
      // The timer ran between two drain turns, well before the whole backlog was handled.
      expect(atTimer).toBeGreaterThan(0)
      expect(atTimer).toBeLessThan(total)
    } finally {
      child.kill()
    }
  }, 30_000)
})
