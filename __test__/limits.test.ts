// Every option and limit (docs/limits.md): its default, a custom value, a bad value, and what
// happens at the limit.
import net from 'node:net'
import { describe, expect, it } from 'vitest'
import { type ServerOptions, WsServer } from '../lib/index'
import { closedPort, connect, nextMessage, rawExchange, refusedStatus, serverPool, statusOf, upgradeRequest, waitFor } from '../test-support/index'

const server = serverPool()

describe('limits', () => {
  it('defaults are the documented ones', async () => {
    const { server: srv } = await server()
    expect(srv.limits).toEqual({
      maxPayload: 1024 * 1024,
      maxBackpressure: 1024 * 1024,
      backpressurePolicy: 'close',
      idleTimeout: 120_000,
      pingInterval: 30_000,
      handshakeTimeout: 10_000,
      closeTimeout: 5_000,
      maxHeaderBytes: 8 * 1024,
      maxHeaders: 100,
      maxConnections: undefined,
      maxConnectionsPerIp: undefined,
      maxInboundQueue: 64 * 1024 * 1024,
      backlog: 4096,
      proxyHeaderTimeout: 3000,
      rateLimit: undefined,
    })
  })

  it('custom values are taken', async () => {
    const custom = {
      maxPayload: 1000,
      maxBackpressure: 2000,
      backpressurePolicy: 'drop',
      idleTimeout: 3000,
      pingInterval: 4000,
      handshakeTimeout: 5000,
      closeTimeout: 6000,
      maxConnections: 7,
      maxConnectionsPerIp: 8,
      maxInboundQueue: 9000,
    } as const
    const { server: srv } = await server({}, custom)
    expect(srv.limits).toMatchObject(custom)
  })

  it('maxPayload custom value applies to text as well (1009)', async () => {
    const { url } = await server({ onMessage: (s, m) => void s.send(m) }, { maxPayload: 100 })
    const ws = await connect(url)
    const ok = nextMessage(ws)
    ws.send('x'.repeat(100))
    expect(await ok).toBe('x'.repeat(100))
    const code = new Promise<number>((r) => ws.once('close', (c) => r(c)))
    ws.send('x'.repeat(101))
    expect(await code).toBe(1009)
  })
})

describe('origins and connection limits', () => {
  it('allowedOrigins: others get 403 before the upgrade (docs/hardening.md row 6)', async () => {
    const { url } = await server({}, { allowedOrigins: ['https://app.example'] })
    expect(await refusedStatus(url, { origin: 'https://evil.example' })).toBe(403)
    expect(await refusedStatus(url)).toBe(403)
    const ws = await connect(url, { origin: 'https://APP.example' })
    ws.close()
  })

  it('maxConnections: the next connection gets 503; a slot frees when one closes (row 11)', async () => {
    const { url, server: srv } = await server({}, { maxConnections: 2 })
    const a = await connect(url)
    const b = await connect(url)
    expect(await refusedStatus(url)).toBe(503)
    a.close()
    await waitFor(() => srv.getConnections().length === 1)
    const c = await connect(url)
    b.close()
    c.close()
  })

  it('maxConnectionsPerIp: the next connection from the same address gets 429 (row 11)', async () => {
    const { url } = await server({}, { maxConnectionsPerIp: 1 })
    const a = await connect(url)
    expect(await refusedStatus(url)).toBe(429)
    a.close()
  })

  it('handshakeTimeout: a slowloris handshake is dropped (row 8)', async () => {
    const { port } = await server({}, { handshakeTimeout: 300 })
    const started = Date.now()
    const ended = await new Promise<number>((resolve) => {
      const sock = net.connect(port, '127.0.0.1')
      const req = upgradeRequest('/ws')
      let i = 0
      const drip = setInterval(() => {
        if (i < req.length - 4 && !sock.destroyed) sock.write(req[i++]!)
      }, 50)
      sock.on('close', () => {
        clearInterval(drip)
        resolve(Date.now() - started)
      })
      sock.on('error', () => {})
    })
    expect(ended).toBeGreaterThanOrEqual(250)
    expect(ended).toBeLessThan(2000)
  })

  it('a connection that opens TCP and sends nothing is dropped after handshakeTimeout', async () => {
    const { port } = await server({}, { handshakeTimeout: 200 })
    const res = await rawExchange(port, Buffer.alloc(0), 3000)
    expect(res.length).toBe(0)
  })
})

// Each option's bad values, with the error class the constructor throws (a non-integer or wrong
// type: TypeError; an integer out of range: RangeError). Nothing is constructed.
describe('bad option values', () => {
  it.each<[string, unknown, ErrorConstructor]>([
    ['port', -1, RangeError],
    ['port', 65536, RangeError],
    ['port', '80', TypeError],
    ['port', 1.5, TypeError],
    ['host', '', TypeError],
    ['host', 5, TypeError],
    ['maxPayload', 0, RangeError],
    ['maxPayload', -5, RangeError],
    ['maxPayload', 2 ** 32, RangeError],
    ['maxBackpressure', 1.5, TypeError],
    ['maxBackpressure', 0, RangeError],
    ['backpressurePolicy', 'explode', TypeError],
    ['idleTimeout', 0, RangeError],
    ['pingInterval', 'fast', TypeError],
    ['handshakeTimeout', 2 ** 33, RangeError],
    ['closeTimeout', null, TypeError],
    ['maxInboundQueue', 0, RangeError],
    ['maxConnections', 0, RangeError],
    ['maxConnectionsPerIp', -1, RangeError],
    ['allowedOrigins', 'https://x', TypeError],
    ['allowedOrigins', [''], TypeError],
    ['protocols', [1], TypeError],
    ['protocols', 'chat', TypeError],
    ['autoCreateRooms', 'yes', TypeError],
    ['reusePort', 1, TypeError],
    ['backlog', 0, RangeError],
    ['metricsPath', 'metrics', TypeError],
    ['healthPath', 5, TypeError],
    ['trustProxy', ['not-an-address'], TypeError],
    ['proxyHeader', 'x-real-ip', TypeError],
    ['proxyProtocol', 'yes', TypeError],
    ['rateLimit', 5, TypeError],
    ['rateLimit', {}, RangeError],
    ['rateLimit', { messages: 5, policy: 'explode' }, TypeError],
    ['cluster', 5, TypeError],
    ['cluster', {}, TypeError],
    ['cluster', { redis: 'http://127.0.0.1:6379' }, TypeError],
    ['cluster', { redis: 'redis://127.0.0.1:6379', prefix: 'has space' }, TypeError],
    ['cluster', { redis: 'redis://127.0.0.1:6379', prefix: 'x'.repeat(65) }, TypeError],
  ])('%s = %j', (name, value, errorClass) => {
    expect(() => new WsServer({ [name]: value } as ServerOptions)).toThrow(errorClass)
    expect(() => new WsServer({ [name]: value } as ServerOptions)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION' }))
  })

  it('a port number out of range or not an options object throws', () => {
    expect(() => new WsServer(70_000)).toThrow(RangeError)
    expect(() => new WsServer(null as unknown as number)).toThrow(TypeError)
    expect(() => new WsServer('3000' as unknown as number)).toThrow(TypeError)
  })

  it('server.close({ timeout }) takes an integer from 0, and throws before closing anything', async () => {
    const { server: srv, url } = await server()
    expect(() => srv.close({ timeout: -1 })).toThrow(RangeError)
    expect(() => srv.close({ timeout: 'soon' as unknown as number })).toThrow(TypeError)
    ;(await connect(url)).close()
  })
})

// Defaults of the options that are not in `server.limits`, by their effect.
describe('option defaults', () => {
  it('port: 0 picks a free port; a given port is used', async () => {
    const a = new WsServer({ host: '127.0.0.1' })
    a.websocket('/ws', {})
    server.adopt(a)
    const { port, host } = await a.listen()
    expect([port > 0, host]).toEqual([true, '127.0.0.1'])
    ;(await connect(`ws://127.0.0.1:${port}/ws`)).close()
    const wanted = await closedPort()
    const b = new WsServer({ host: '127.0.0.1', port: wanted })
    b.websocket('/ws', {})
    server.adopt(b)
    expect((await b.listen()).port).toBe(wanted)
  })

  it("host: '0.0.0.0' unless given, and loopback clients reach it", async () => {
    const a = new WsServer()
    a.websocket('/ws', {})
    server.adopt(a)
    const bound = await a.listen()
    expect(bound.host).toBe('0.0.0.0')
    ;(await connect(`ws://127.0.0.1:${bound.port}/ws`)).close()
  })

  it('allowedOrigins: any Origin is accepted when not set', async () => {
    const { url } = await server()
    ;(await connect(url, { origin: 'https://anywhere.example' })).close()
  })

  it('protocols: none chosen when not set, even if the client offers some', async () => {
    const { port } = await server()
    const res = (await rawExchange(port, upgradeRequest('/ws', { 'Sec-WebSocket-Protocol': 'chat.v1' }), 500)).toString('latin1')
    expect(statusOf(Buffer.from(res, 'latin1'))).toBe(101)
    expect(res.toLowerCase()).not.toContain('sec-websocket-protocol')
  })

  it('maxPayload: 1 MiB unless given; one byte more closes with 1009', async () => {
    const { url } = await server({ onMessage: (s, m) => void s.send(m) })
    const ws = await connect(url)
    const ok = nextMessage(ws)
    ws.send(Buffer.alloc(1024 * 1024))
    expect(((await ok) as Buffer).length).toBe(1024 * 1024)
    const code = new Promise<number>((r) => ws.once('close', (c) => r(c)))
    ws.send(Buffer.alloc(1024 * 1024 + 1))
    expect(await code).toBe(1009)
  })

  it('cluster: a single node unless given; cluster-wide stats are refused', async () => {
    const { server: srv } = await server()
    await expect(srv.getStats({ scope: 'cluster' })).rejects.toBeInstanceOf(Error)
  })
})
