// The send buffer: bounded per connection (maxBackpressure), backpressurePolicy, onDrain, and
// slow room members under batched broadcasts.
import { describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import type { SendStatus, ServerOptions, Socket, WsServer } from '../lib/index'
import { connect, RawPeer, serverPool, sleep, waitFor } from '../test-support/index'

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
    await sleep(2)
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
