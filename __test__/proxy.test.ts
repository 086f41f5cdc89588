// Real client addresses behind proxies: trustProxy with X-Forwarded-For / Forwarded, and the
// PROXY protocol (v1 and v2) on the engine's own port.
import net from 'node:net'
import { beforeAll, describe, expect, it } from 'vitest'
import { WsServer, type ServerOptions, type UpgradeRequest } from '../lib/index'
import { rawExchange, serverPool, statusOf, upgradeRequest, waitFor } from '../test-support/index'
import { parseExposition, prometheusPython, sample } from './prometheus'

const start = serverPool()

beforeAll(() => {
  prometheusPython()
}, 180_000)

/** `rnode_ws_connections_dropped_total{reason}`, read with the Prometheus parser. */
const dropped = (server: WsServer, reason: string): number =>
  sample(parseExposition(server.metrics()), 'rnode_ws_connections_dropped', 'rnode_ws_connections_dropped_total', { reason })

/** A server that records what `onUpgrade` and `onConnect` saw as the client address. */
async function recording(options: ServerOptions): Promise<{ port: number; seen: string[]; sockets: string[]; server: WsServer }> {
  const seen: string[] = []
  const sockets: string[] = []
  const { port, server } = await start(
    {
      onUpgrade: (req: UpgradeRequest) => void seen.push(req.remoteAddress),
      onConnect: (s) => void sockets.push(s.remoteAddress),
    },
    options,
  )
  return { port, seen, sockets, server }
}

/** Upgrades over raw TCP with `prefix` (a PROXY header) and extra headers; resolves with the status. */
function upgradeWith(port: number, headers: Record<string, string>, prefix: Buffer | string = ''): Promise<number> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1', () => {
      sock.write(Buffer.concat([Buffer.from(prefix), Buffer.from(upgradeRequest('/ws', headers))]))
    })
    let got = Buffer.alloc(0)
    sock.on('data', (d) => {
      got = Buffer.concat([got, d])
      if (got.includes('\r\n\r\n')) {
        resolve(statusOf(got))
        sock.destroy()
      }
    })
    sock.on('error', reject)
    sock.on('close', () => resolve(statusOf(got)))
  })
}

describe('trustProxy', () => {
  it('default: forwarding headers are ignored, the peer address counts', async () => {
    const { port, seen, sockets } = await recording({})
    expect(await upgradeWith(port, { 'X-Forwarded-For': '203.0.113.7' })).toBe(101)
    await waitFor(() => sockets.length === 1)
    expect(seen).toEqual(['127.0.0.1'])
    expect(sockets).toEqual(['127.0.0.1'])
  })

  it('a trusted peer: the rightmost untrusted X-Forwarded-For hop, for onUpgrade and socket.remoteAddress', async () => {
    const { port, seen, sockets } = await recording({ trustProxy: ['127.0.0.1', '10.0.0.0/8'] })
    expect(await upgradeWith(port, { 'X-Forwarded-For': '203.0.113.7' })).toBe(101)
    // Spoofing: the client prepends an address; the proxies append the real one and their own.
    expect(await upgradeWith(port, { 'X-Forwarded-For': '6.6.6.6, 198.51.100.9, 10.1.2.3' })).toBe(101)
    // The proxy sent the header twice: one list, in order.
    const sock = await rawExchange(
      port,
      upgradeRequest('/ws', { 'X-Forwarded-For': '6.6.6.6' }).replace('\r\n\r\n', '\r\nX-Forwarded-For: 192.0.2.44\r\n\r\n'),
      300,
    )
    expect(statusOf(sock)).toBe(101)
    // Only trusted hops: the leftmost of them.
    expect(await upgradeWith(port, { 'X-Forwarded-For': '10.9.9.9, 10.1.1.1' })).toBe(101)
    // Malformed where a trusted proxy wrote: the peer address.
    expect(await upgradeWith(port, { 'X-Forwarded-For': 'not-an-address' })).toBe(101)
    expect(await upgradeWith(port, { 'X-Forwarded-For': '203.0.113.7, ,10.0.0.1' })).toBe(101)
    // No header at all: the peer.
    expect(await upgradeWith(port, {})).toBe(101)
    await waitFor(() => sockets.length === 7)
    expect(seen).toEqual(['203.0.113.7', '198.51.100.9', '192.0.2.44', '10.9.9.9', '127.0.0.1', '127.0.0.1', '127.0.0.1'])
    expect(sockets).toEqual(seen)
  })

  it('an untrusted peer: its headers are ignored', async () => {
    const { port, seen } = await recording({ trustProxy: ['10.0.0.0/8', '::1'] })
    expect(await upgradeWith(port, { 'X-Forwarded-For': '203.0.113.7' })).toBe(101)
    expect(await upgradeWith(port, { Forwarded: 'for=203.0.113.7' })).toBe(101)
    expect(seen).toEqual(['127.0.0.1', '127.0.0.1'])
  })

  it("proxyHeader 'forwarded': RFC 7239 for= hops; X-Forwarded-For is then not read", async () => {
    const { port, seen } = await recording({ trustProxy: ['127.0.0.0/8'], proxyHeader: 'forwarded' })
    expect(await upgradeWith(port, { Forwarded: 'for=192.0.2.60;proto=https;by=127.0.0.1' })).toBe(101)
    expect(await upgradeWith(port, { Forwarded: 'for=6.6.6.6, for="[2001:db8:cafe::17]:4711"' })).toBe(101)
    // Spoofing through the other header does nothing.
    expect(await upgradeWith(port, { 'X-Forwarded-For': '203.0.113.7' })).toBe(101)
    // unknown / obfuscated / malformed: the peer.
    expect(await upgradeWith(port, { Forwarded: 'for=unknown' })).toBe(101)
    expect(await upgradeWith(port, { Forwarded: 'for=_hidden' })).toBe(101)
    expect(await upgradeWith(port, { Forwarded: 'for="1.2.3.4' })).toBe(101)
    expect(seen).toEqual(['192.0.2.60', '2001:db8:cafe::17', '127.0.0.1', '127.0.0.1', '127.0.0.1', '127.0.0.1'])
  })

  it('maxConnectionsPerIp counts the resolved address', async () => {
    const { port } = await recording({ trustProxy: ['127.0.0.1'], maxConnectionsPerIp: 1 })
    const held: net.Socket[] = []
    const open = (xff: string): Promise<number> =>
      new Promise((resolve) => {
        const sock = net.connect(port, '127.0.0.1', () => sock.write(upgradeRequest('/ws', { 'X-Forwarded-For': xff })))
        held.push(sock)
        sock.once('data', (d) => resolve(statusOf(d)))
        sock.on('error', () => resolve(0))
      })
    expect(await open('203.0.113.1')).toBe(101)
    expect(await open('203.0.113.2')).toBe(101)
    expect(await open('203.0.113.1')).toBe(429)
    for (const s of held) s.destroy()
  })

  it('bad values throw TypeError', () => {
    for (const bad of [['10.1.0.0/8'], ['nope'], ['10.0.0.0/33'], [''], '10.0.0.0/8', [42]]) {
      expect(() => new WsServer({ trustProxy: bad as string[] })).toThrow(TypeError)
    }
    expect(() => new WsServer({ trustProxy: ['127.0.0.1'], proxyHeader: 'x-real-ip' as never })).toThrow(TypeError)
    expect(() => new WsServer({ trustProxy: ['10.0.0.0/8', '::1', 'fd00::/8', '0.0.0.0/0'] })).not.toThrow()
  })
})

/** A PROXY v2 header: PROXY command (or LOCAL), TCP over IPv4 or IPv6. */
function proxyV2(src: string, srcPort: number, local = false): Buffer {
  const sig = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a])
  const v6 = net.isIPv6(src)
  const addr = Buffer.alloc(v6 ? 36 : 12)
  if (v6) {
    const full = expandV6(src)
    full.copy(addr, 0)
    expandV6('::1').copy(addr, 16)
    addr.writeUInt16BE(srcPort, 32)
    addr.writeUInt16BE(443, 34)
  } else {
    src.split('.').forEach((o, i) => addr.writeUInt8(Number(o), i))
    ;[127, 0, 0, 1].forEach((o, i) => addr.writeUInt8(o, 4 + i))
    addr.writeUInt16BE(srcPort, 8)
    addr.writeUInt16BE(443, 10)
  }
  const head = Buffer.from([local ? 0x20 : 0x21, v6 ? 0x21 : 0x11, 0, 0])
  head.writeUInt16BE(addr.length, 2)
  return Buffer.concat([sig, head, addr])
}

function expandV6(ip: string): Buffer {
  const [l, r] = ip.split('::') as [string, string | undefined]
  const left = l ? l.split(':') : []
  const right = r !== undefined && r !== '' ? r.split(':') : []
  const groups = [...left, ...Array(8 - left.length - right.length).fill('0'), ...right]
  const out = Buffer.alloc(16)
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2))
  return out
}

/** Sends `chunks` with `gapMs` between them; resolves with what came back before the close. */
function exchange(port: number, chunks: Array<Buffer | string>, gapMs = 0, timeoutMs = 3000): Promise<{ data: Buffer; ms: number }> {
  return new Promise((resolve) => {
    const t0 = Date.now()
    let data = Buffer.alloc(0)
    const sock = net.connect(port, '127.0.0.1', async () => {
      for (const c of chunks) {
        if (sock.destroyed) return
        sock.write(c)
        if (gapMs) await new Promise((r) => setTimeout(r, gapMs))
      }
    })
    const timer = setTimeout(() => sock.destroy(), timeoutMs)
    sock.on('data', (d) => {
      data = Buffer.concat([data, d])
      if (data.includes('\r\n\r\n')) sock.end()
    })
    sock.on('error', () => {})
    sock.on('close', () => {
      clearTimeout(timer)
      resolve({ data, ms: Date.now() - t0 })
    })
  })
}

describe('proxyProtocol', () => {
  it('default off: a PROXY line is not HTTP (400)', async () => {
    const { port } = await recording({})
    expect(await upgradeWith(port, {}, 'PROXY TCP4 198.51.100.7 127.0.0.1 5555 443\r\n')).toBe(400)
  })

  it('v1 TCP4 and TCP6, in one write or split byte by byte: the header names the client', async () => {
    const { port, seen } = await recording({ proxyProtocol: true })
    expect(await upgradeWith(port, {}, 'PROXY TCP4 198.51.100.7 127.0.0.1 5555 443\r\n')).toBe(101)
    expect(await upgradeWith(port, {}, 'PROXY TCP6 2001:db8::7 ::1 5555 443\r\n')).toBe(101)
    const header = 'PROXY TCP4 192.0.2.1 127.0.0.1 1 2\r\n'
    const split = await exchange(port, [...header.split(''), upgradeRequest('/ws')], 2)
    expect(statusOf(split.data)).toBe(101)
    expect(await upgradeWith(port, {}, 'PROXY UNKNOWN\r\n')).toBe(101)
    expect(seen).toEqual(['198.51.100.7', '2001:db8::7', '192.0.2.1', '127.0.0.1'])
  })

  it('v2 PROXY over IPv4 and IPv6, v2 LOCAL keeps the peer, header split from the request', async () => {
    const { port, seen } = await recording({ proxyProtocol: true })
    expect(await upgradeWith(port, {}, proxyV2('203.0.113.50', 40000))).toBe(101)
    expect(await upgradeWith(port, {}, proxyV2('2001:db8::50', 40000))).toBe(101)
    expect(await upgradeWith(port, {}, proxyV2('203.0.113.51', 1, true))).toBe(101)
    const h = proxyV2('203.0.113.52', 2)
    const split = await exchange(port, [h.subarray(0, 5), h.subarray(5, 17), h.subarray(17), upgradeRequest('/ws')], 5)
    expect(statusOf(split.data)).toBe(101)
    expect(seen).toEqual(['203.0.113.50', '2001:db8::50', '127.0.0.1', '203.0.113.52'])
  })

  it('the PROXY address is the peer trustProxy looks at', async () => {
    const { port, seen } = await recording({ proxyProtocol: true, trustProxy: ['10.0.0.0/8'] })
    expect(await upgradeWith(port, { 'X-Forwarded-For': '198.51.100.1' }, 'PROXY TCP4 10.0.0.5 127.0.0.1 1 2\r\n')).toBe(101)
    expect(await upgradeWith(port, { 'X-Forwarded-For': '198.51.100.1' }, 'PROXY TCP4 192.0.2.5 127.0.0.1 1 2\r\n')).toBe(101)
    expect(seen).toEqual(['198.51.100.1', '192.0.2.5'])
  })

  it('missing, garbage, truncated or malformed headers: dropped without an answer, and counted', async () => {
    const { port, seen, server } = await recording({ proxyProtocol: true })
    const cases: Array<Array<Buffer | string>> = [
      [upgradeRequest('/ws')],
      [Buffer.from('\x16\x03\x01\x02\x00garbage')],
      ['PROXY TCP4 198.51.100.7 127.0.0.1 5555\r\n', upgradeRequest('/ws')],
      ['PROXY TCP4 198.51.100.7 127.0.0.1 99999 443\r\n', upgradeRequest('/ws')],
      ['PROXY TCP4 ' + '1'.repeat(120) + '\r\n'],
      [proxyV2('203.0.113.50', 1).subarray(0, 20)],
      [Buffer.concat([proxyV2('203.0.113.50', 1).subarray(0, 13), Buffer.from([0x31])])],
    ]
    for (const chunks of cases) {
      const { data } = await exchange(port, chunks, 0, 1500)
      expect(data.length, JSON.stringify(chunks.map(String))).toBe(0)
    }
    // The truncated v2 header waits for the rest: dropped when the peer closes; all counted.
    expect(seen).toEqual([])
    await waitFor(() => dropped(server, 'proxy_protocol_invalid') === cases.length)
    expect(dropped(server, 'proxy_protocol_timeout')).toBe(0)
  })

  it('slow: a header that does not arrive within the time limit is dropped', async () => {
    const { port, server } = await recording({ proxyProtocol: true, handshakeTimeout: 300 })
    expect(server.limits.proxyHeaderTimeout).toBe(3000)
    const slow = await exchange(port, ['PROX', 'Y TC', 'P4 1'], 100, 3000)
    expect(slow.data.length).toBe(0)
    expect(slow.ms).toBeGreaterThanOrEqual(280)
    expect(slow.ms).toBeLessThan(2000)
    await waitFor(() => dropped(server, 'proxy_protocol_timeout') === 1)
  })

  it('bad values throw TypeError', () => {
    expect(() => new WsServer({ proxyProtocol: 'yes' as never })).toThrow(TypeError)
    expect(() => new WsServer({ proxyProtocol: 1 as never })).toThrow(TypeError)
    expect(() => new WsServer({ proxyProtocol: false })).not.toThrow()
  })
})
