// rateLimit: per-connection token buckets in the engine, before anything reaches JS. A raw
// client floods; another client on the same server is not affected.
import { describe, expect, it } from 'vitest'
import { WsServer, type Socket } from '../lib/index'
import { connect, messages, nextMessage, serverPool, waitFor } from '../test-support/index'
import { encodeFrame, RawPeer } from '../test-support/index'

const start = serverPool()
const FLOOD = 200

/** Writes `n` masked text frames in one TCP write. */
function flood(peer: RawPeer, n: number, payload = 'x'): void {
  peer.send(Buffer.concat(Array.from({ length: n }, () => encodeFrame({ opcode: 0x1, payload }))))
}

/** Counts the messages `onMessage` saw per socket id. */
function counting(): { seen: Map<string, number>; onMessage: (s: Socket, m: string | Buffer) => void } {
  const seen = new Map<string, number>()
  return { seen, onMessage: (s, m) => {
    seen.set(s.id, (seen.get(s.id) ?? 0) + 1)
    if (m === 'echo') s.send('echo')
  } }
}

describe('rateLimit', () => {
  it('default: no limit, a flood reaches JS whole', async () => {
    const { seen, onMessage } = counting()
    const { server, port } = await start({ onMessage })
    expect(server.limits.rateLimit).toBeUndefined()
    const peer = await RawPeer.connect(port)
    flood(peer, FLOOD)
    await waitFor(() => [...seen.values()].reduce((a, b) => a + b, 0) === FLOOD)
    expect(server.getStats().rateLimited).toBe(0)
    peer.socket.destroy()
  })

  it("policy 'drop': the flooder's excess never reaches JS and is counted; another client is unaffected", async () => {
    const { seen, onMessage } = counting()
    const { server, port, url } = await start({ onMessage }, { rateLimit: { messages: 10, interval: 60_000, policy: 'drop' } })
    expect(server.limits.rateLimit).toEqual({ messages: 10, bytes: 0, interval: 60_000, policy: 'drop' })
    const peer = await RawPeer.connect(port)
    flood(peer, FLOOD)
    await waitFor(() => server.getStats().rateLimited === FLOOD - 10, 5000, 'drops counted')
    const other = await connect(url)
    const echoes = messages(other, 5)
    for (let i = 0; i < 5; i++) other.send('echo')
    expect(await echoes).toEqual(['echo', 'echo', 'echo', 'echo', 'echo'])
    const counts = [...seen.values()].sort((a, b) => a - b)
    expect(counts).toEqual([5, 10])
    // The flooder stays connected: a built-in protocol ping is a message too, so it is dropped.
    peer.send({ opcode: 0x1, payload: JSON.stringify({ type: 'ping' }) })
    await waitFor(() => server.getStats().rateLimited === FLOOD - 10 + 1)
    expect(peer.ended).toBe(false)
    peer.socket.destroy()
    other.close()
  })

  it("policy 'close' (the default policy): closes the flooder with 1008 after its allowance", async () => {
    const { seen, onMessage } = counting()
    const { server, port, url } = await start({ onMessage }, { rateLimit: { messages: 10, interval: 60_000 } })
    expect(server.limits.rateLimit?.policy).toBe('close')
    const other = await connect(url)
    const peer = await RawPeer.connect(port)
    flood(peer, FLOOD)
    const frame = await peer.nextFrame()
    expect(frame?.opcode).toBe(0x8)
    expect(frame!.payload.readUInt16BE(0)).toBe(1008)
    await waitFor(() => [...seen.values()].reduce((a, b) => a + b, 0) === 10)
    const echo = nextMessage(other)
    other.send('echo')
    expect(await echo).toBe('echo')
    expect(server.getStats().rateLimited).toBeGreaterThan(0)
    peer.socket.destroy()
    other.close()
  })

  it('pings and bytes count: a ping flood and an oversized message are over the limit', async () => {
    const { seen, onMessage } = counting()
    const { server, port } = await start({ onMessage }, { rateLimit: { messages: 5, bytes: 100, interval: 60_000, policy: 'drop' } })
    const peer = await RawPeer.connect(port)
    peer.send(Buffer.concat(Array.from({ length: 20 }, () => encodeFrame({ opcode: 0x9, payload: 'p' }))))
    await waitFor(() => server.getStats().rateLimited === 15)
    let pongs = 0
    // Every pong the engine sent, until the line goes quiet.
    for (;;) {
      const f = await peer.nextFrame(300).catch(() => null)
      if (!f) break
      if (f.opcode === 0xa) pongs++
    }
    expect(pongs).toBe(5)
    expect(seen.size).toBe(0)
    peer.socket.destroy()
    // Bytes: 101 bytes in one message is over a 100-byte allowance.
    const p2 = await RawPeer.connect(port)
    p2.send({ opcode: 0x1, payload: 'y'.repeat(101) })
    p2.send({ opcode: 0x1, payload: 'y'.repeat(100) })
    await waitFor(() => [...seen.values()].reduce((a, b) => a + b, 0) === 1)
    await waitFor(() => server.getStats().rateLimited === 16)
    p2.socket.destroy()
  })

  it('the allowance refills over the interval', async () => {
    const { seen, onMessage } = counting()
    const { port } = await start({ onMessage }, { rateLimit: { messages: 5, interval: 200, policy: 'drop' } })
    const peer = await RawPeer.connect(port)
    flood(peer, 20)
    await waitFor(() => [...seen.values()][0] === 5)
    await new Promise((r) => setTimeout(r, 250))
    flood(peer, 20)
    await waitFor(() => [...seen.values()][0] === 10)
    peer.socket.destroy()
  })

  it('per path: websocket(path, handlers, { rateLimit }) replaces the server limit', async () => {
    const { seen, onMessage } = counting()
    const server = new WsServer({ host: '127.0.0.1', port: 0, rateLimit: { messages: 3, interval: 60_000, policy: 'drop' } })
    server.websocket('/strict', { onMessage })
    server.websocket('/loose', { onMessage }, { rateLimit: { messages: 50, interval: 60_000, policy: 'drop' } })
    const { port } = await server.listen()
    try {
      const strict = await RawPeer.connect(port, '/strict')
      const loose = await RawPeer.connect(port, '/loose')
      flood(strict, 100)
      flood(loose, 100)
      await waitFor(() => server.getStats().rateLimited === 97 + 50)
      await waitFor(() => [...seen.values()].reduce((a, b) => a + b, 0) === 53)
      expect([...seen.values()].sort((a, b) => a - b)).toEqual([3, 50])
      strict.socket.destroy()
      loose.socket.destroy()
    } finally {
      await server.close({ timeout: 500 })
    }
  })

  it('bad values throw', () => {
    expect(() => new WsServer({ rateLimit: 5 as never })).toThrow(TypeError)
    expect(() => new WsServer({ rateLimit: {} })).toThrow(RangeError)
    expect(() => new WsServer({ rateLimit: { messages: 0 } })).toThrow(RangeError)
    expect(() => new WsServer({ rateLimit: { messages: -1 } })).toThrow(RangeError)
    expect(() => new WsServer({ rateLimit: { messages: 1.5 } })).toThrow(TypeError)
    expect(() => new WsServer({ rateLimit: { messages: 1, interval: 0 } })).toThrow(RangeError)
    expect(() => new WsServer({ rateLimit: { messages: 1, policy: 'kick' as never } })).toThrow(TypeError)
    const server = new WsServer()
    expect(() => server.websocket('/x', {}, { rateLimit: { bytes: 'lots' as never } })).toThrow(TypeError)
    expect(() => server.websocket('/x', {}, null as never)).toThrow(TypeError)
  })
})
