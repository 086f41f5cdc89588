// Flow control and shutdown: bounded send buffers, policies, drain, flush on close(), churn.
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import type { SendStatus, ServerOptions, Socket, WsServer } from '../lib/index'
import { RawPeer } from '../test-support/index'
import { closed, connect, serverPool, startServer, waitFor } from '../test-support/index'

const server = serverPool()

const CHUNK = Buffer.alloc(64 * 1024, 1)

/** Sends CHUNKs to `socket` every few ms until `stop()` says so or 10 s pass; returns statuses. */
async function pump(socket: Socket, stop: (status: SendStatus) => boolean, maxBuffered: { value: number }): Promise<SendStatus[]> {
  const statuses: SendStatus[] = []
  const deadline = Date.now() + 10_000
  while (Date.now() < deadline) {
    for (let i = 0; i < 8; i++) {
      const status = socket.send(CHUNK)
      statuses.push(status)
      maxBuffered.value = Math.max(maxBuffered.value, socket.bufferedAmount)
      if (stop(status)) return statuses
    }
    await new Promise((r) => setTimeout(r, 2))
  }
  return statuses
}

describe('slow consumers (docs/hardening.md row 27)', () => {
  it('default policy: the buffer stays bounded, then the slow reader is closed with 1008; others are unaffected', async () => {
    const codes = new Map<string, number>()
    const { url, port, server: srv } = await server(
      { onClose: (s, code) => void codes.set(s.clientId, code) },
      { maxBackpressure: 256 * 1024, closeTimeout: 300 },
    )
    const slow = await RawPeer.connect(port, '/ws?clientId=slow')
    slow.socket.pause()
    const fast = await connect(`${url}?clientId=fast`)
    await waitFor(() => srv.getConnections().length === 2)
    const slowSocket = srv.getConnections().find((s) => s.clientId === 'slow')!
    const fastSocket = srv.getConnections().find((s) => s.clientId === 'fast')!

    let fastGot = 0
    fast.on('message', () => fastGot++)
    const maxBuffered = { value: 0 }
    const statuses = await pump(slowSocket, (st) => {
      fastSocket.send('tick')
      return st === 'dropped'
    }, maxBuffered)
    expect(statuses.at(-1)).toBe('dropped')
    expect(statuses).toContain('buffered')
    expect(maxBuffered.value).toBeLessThanOrEqual(256 * 1024 + CHUNK.length)
    await waitFor(() => codes.has('slow'), 5000, 'slow reader closed')
    expect(codes.get('slow')).toBe(1008)
    // Every tick sent to the fast client arrives.
    await waitFor(() => fastGot === statuses.length, 5000, 'fast client deliveries')
    expect(fast.readyState).toBe(WebSocket.OPEN)
    fast.close()
    slow.destroy()
  })

  it("backpressurePolicy 'drop': new messages are dropped, the connection stays, onDrain fires after the reader resumes", async () => {
    let drains = 0
    const { port, server: srv } = await server({ onDrain: () => void drains++ }, { maxBackpressure: 256 * 1024, backpressurePolicy: 'drop' })
    const slow = await RawPeer.connect(port)
    slow.socket.pause()
    await waitFor(() => srv.getConnections().length === 1)
    const socket = srv.getConnections()[0]!
    const maxBuffered = { value: 0 }
    const statuses = await pump(socket, (st) => st === 'dropped', maxBuffered)
    expect(statuses.at(-1)).toBe('dropped')
    expect(maxBuffered.value).toBeLessThanOrEqual(256 * 1024 + CHUNK.length)
    expect(socket.isOpen).toBe(true)
    expect(srv.getStats().droppedMessages).toBeGreaterThan(0)
    const drainsBefore = drains
    slow.socket.resume()
    await waitFor(() => drains > drainsBefore, 5000, 'onDrain')
    await waitFor(() => socket.bufferedAmount === 0, 5000, 'empty buffer')
    expect(socket.send('after drain')).toBe('sent')
    slow.destroy()
  })
})

describe('slow room members under batched broadcasts (one shared buffer per batch)', () => {
  /** A server whose handler answers 'go' with 8 numbered 64 KiB broadcasts to room 'r' in one batch. */
  async function roomServer(options: ServerOptions) {
    const codes = new Map<string, number>()
    let seq = 0
    let maxBuffered = 0
    let srv: WsServer | undefined
    const started = await server(
      {
        onClose: (s, code) => void codes.set(s.clientId, code),
        onMessage: (_s, message) => {
          if (message !== 'go') return
          for (let i = 0; i < 8; i++) {
            const chunk = Buffer.alloc(64 * 1024, 7)
            chunk.writeUInt32BE(seq++, 0)
            srv!.broadcast(chunk, { room: 'r' })
          }
          const slow = srv!.getConnections('r').find((s) => s.clientId === 'slow')
          // The handler's broadcasts are written when it returns: look at the previous batch's.
          maxBuffered = Math.max(maxBuffered, slow?.bufferedAmount ?? 0)
        },
      },
      { maxBackpressure: 256 * 1024, closeTimeout: 300, ...options },
    )
    srv = started.server
    const slow = await RawPeer.connect(started.port, '/ws?clientId=slow')
    slow.socket.pause()
    const fast = await connect(`${started.url}?clientId=fast`)
    await waitFor(() => srv!.getConnections().length === 2)
    for (const s of srv.getConnections()) s.joinRoom('r')
    const fastSeqs: number[] = []
    fast.on('message', (m: Buffer, isBinary: boolean) => {
      if (isBinary) fastSeqs.push(m.readUInt32BE(0))
    })
    /** Asks for batches until `stop()` or 400 batches; resolves with the number of batches. */
    const pumpUntil = async (stop: () => boolean): Promise<number> => {
      let rounds = 0
      const deadline = Date.now() + 15_000
      while (!stop() && rounds < 400 && Date.now() < deadline) {
        fast.send('go')
        rounds++
        await waitFor(() => fastSeqs.length === rounds * 8, 5000, `batch ${rounds} at the reading member`)
      }
      return rounds
    }
    return { srv, slow, fast, codes, fastSeqs, pumpUntil, maxBuffered: () => maxBuffered }
  }

  it('default policy: the paused member is closed with 1008, its queue stays bounded, the reading member gets every message in order', async () => {
    const { srv, slow, fast, codes, fastSeqs, pumpUntil, maxBuffered } = await roomServer({})
    const rounds = await pumpUntil(() => codes.has('slow'))
    await waitFor(() => codes.has('slow'), 5000, 'paused member closed')
    expect(codes.get('slow')).toBe(1008)
    expect(srv.getStats().droppedMessages).toBeGreaterThan(0)
    expect(maxBuffered()).toBeLessThanOrEqual(256 * 1024 + 64 * 1024)
    expect(fastSeqs).toEqual(Array.from({ length: rounds * 8 }, (_, i) => i))
    fast.close()
    slow.destroy()
  }, 30_000)

  it("'drop' policy: the paused member stays, loses whole messages only, and gets the rest in order once it reads", async () => {
    const { srv, slow, fast, codes, fastSeqs, pumpUntil, maxBuffered } = await roomServer({ backpressurePolicy: 'drop' })
    const rounds = await pumpUntil(() => srv.getStats().droppedMessages > 0)
    expect(srv.getStats().droppedMessages).toBeGreaterThan(0)
    expect(codes.has('slow')).toBe(false)
    expect(maxBuffered()).toBeLessThanOrEqual(256 * 1024 + 64 * 1024)
    expect(fastSeqs).toEqual(Array.from({ length: rounds * 8 }, (_, i) => i))
    slow.socket.resume()
    // Every message was either dropped (counted) or arrives whole, in order, exactly once.
    const expected = rounds * 8 - srv.getStats().droppedMessages
    expect(expected).toBeGreaterThan(0)
    const slowSeqs: number[] = []
    while (slowSeqs.length < expected) {
      const frame = await slow.nextFrame(5000)
      if (!frame) break
      if (frame.opcode !== 2) continue
      expect(frame.payload.length).toBe(64 * 1024)
      slowSeqs.push(frame.payload.readUInt32BE(0))
    }
    for (let i = 1; i < slowSeqs.length; i++) expect(slowSeqs[i]!).toBeGreaterThan(slowSeqs[i - 1]!)
    expect(slowSeqs.length).toBe(expected)
    fast.close()
    slow.destroy()
  }, 30_000)
})

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
