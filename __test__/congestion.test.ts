// Reading while JS is behind: the engine stops decoding when `maxInboundQueue` is reached and
// resumes once JS has caught up. A frame header left undecoded at that moment is still the
// peer's to choose: it must be checked against `maxPayload` before anything is reserved for it,
// or a header announcing 2^62 bytes aborts the process (allocation failure) or panics the
// connection's task (which then never unregisters).
import { describe, expect, it } from 'vitest'
import { lastJsonLine, runChild } from '../test-support/index'

// In a child: the abort this guards against would take the test runner with it. The stop and
// JS catching up must meet within nanoseconds for the unchecked header to be read, so this
// end-to-end run pins the outcome (1009, every connection unregistered, the process alive);
// the interleaving itself is pinned by the reader's unit tests.
const script = (connections: number, parallel: number) => `
  const net = require('node:net')
  const crypto = require('node:crypto')
  const { WsServer } = require('./dist/index.js')
  const frame = (opcode, payload, announce) => {
    const len = BigInt(announce ?? payload.length)
    const key = crypto.randomBytes(4)
    let head
    if (len < 126n) head = Buffer.from([0x80 | opcode, 0x80 | Number(len)])
    else if (len < 65536n) { head = Buffer.from([0x80 | opcode, 0x80 | 126, 0, 0]); head.writeUInt16BE(Number(len), 2) }
    else { head = Buffer.alloc(10); head[0] = 0x80 | opcode; head[1] = 0x80 | 127; head.writeBigUInt64BE(len, 2) }
    const body = Buffer.from(payload)
    for (let i = 0; i < body.length; i++) body[i] ^= key[i & 3]
    return Buffer.concat([head, key, body])
  }
  const small = frame(2, Buffer.alloc(200, 7))
  // Small frames to fill the queue, then a header announcing 2^62 bytes (no payload follows).
  const attack = Buffer.concat([...Array(40).fill(small), frame(2, Buffer.alloc(0), 1n << 62n)])
  const closes = {}
  ;(async () => {
    const server = new WsServer({ host: '127.0.0.1', port: 0, maxInboundQueue: 2048 })
    server.websocket('/ws', {
      // A slow handler: the queue stays at its limit while frames keep coming.
      onMessage: () => {},
      onClose: (_s, code) => { closes[code] = (closes[code] ?? 0) + 1 },
    })
    const { port } = await server.listen()
    const peer = () => new Promise((resolve) => {
      const sock = net.connect(port, '127.0.0.1', () => sock.write(
        'GET /ws HTTP/1.1\\r\\nHost: x\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\n' +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\nSec-WebSocket-Version: 13\\r\\n\\r\\n'))
      let upgraded = false
      let got = Buffer.alloc(0)
      sock.on('data', (d) => {
        got = Buffer.concat([got, d])
        if (!upgraded && got.includes('\\r\\n\\r\\n')) {
          upgraded = true
          got = got.subarray(got.indexOf('\\r\\n\\r\\n') + 4)
          sock.write(attack)
        }
        // The server's close frame: answer by going away (its close handshake is then over).
        if (upgraded && got.includes(0x88)) sock.end()
      })
      sock.on('error', () => {})
      sock.on('close', () => {
        // 0x88, length, code.
        const at = got.indexOf(0x88)
        resolve(at >= 0 && got.length >= at + 4 ? got.readUInt16BE(at + 2) : 0)
      })
      setTimeout(() => sock.destroy(), 8000)
    })
    const seen = {}
    let next = 0
    await Promise.all(Array.from({ length: ${parallel} }, async () => {
      while (next++ < ${connections}) {
        const code = await peer()
        seen[code] = (seen[code] ?? 0) + 1
      }
    }))
    const deadline = Date.now() + 3000
    while (server.getStats().totalConnections > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
    const left = server.getStats().totalConnections
    await server.close()
    console.log(JSON.stringify({ seen, closes, left }))
  })()
`

describe('reading while JS is behind (maxInboundQueue)', () => {
  it('a header announcing 2^62 bytes behind a congested queue closes with 1009, never aborts or leaks', async () => {
    const connections = 100
    const { code, out } = await runChild(script(connections, 20), 30_000)
    expect(code, out.slice(-2000)).toBe(0)
    const r = lastJsonLine<{ seen: Record<string, number>; closes: Record<string, number>; left: number }>(out)
    // Every peer got a 1009 close frame, every connection reported its close, none is left.
    expect(r.seen).toEqual({ 1009: connections })
    expect(r.closes).toEqual({ 1009: connections })
    expect(r.left).toBe(0)
  }, 40_000)
})
