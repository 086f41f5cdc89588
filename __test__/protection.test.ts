// Before the upgrade: onUpgrade, origins, connection limits, handshake timeout, subprotocols.
import net from 'node:net'
import { describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { WsServer, type ServerOptions, type Socket } from '../lib/index'
import { connect, nextMessage, rawExchange, serverPool, statusOf, upgradeRequest, waitFor } from './helpers'

const server = serverPool()
/** The HTTP status a `ws` client sees when its upgrade is refused. */
function refusedStatus(url: string, options: WebSocket.ClientOptions = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, options)
    ws.on('open', () => reject(new Error('unexpectedly upgraded')))
    ws.on('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0)
      ws.terminate()
    })
    ws.on('error', () => {})
  })
}

describe('onUpgrade', () => {
  it('authenticates with a token in the query; data and clientId reach the socket', async () => {
    let socket: Socket | undefined
    const seen: Array<{ path: string; query: Record<string, string>; ua: string | undefined; ip: string }> = []
    const { url } = await server({
      onUpgrade: async (req) => {
        seen.push({ path: req.path, query: req.query, ua: req.headers['user-agent'], ip: req.remoteAddress })
        await new Promise((r) => setTimeout(r, 10))
        if (req.query.token !== 'secret') return false
        return { clientId: 'user_42', data: { role: 'admin' } }
      },
      onConnect: (s) => void (socket = s),
    })
    expect(await refusedStatus(`${url}?token=wrong`)).toBe(401)
    const ws = await connect(`${url}?token=secret`, { headers: { 'User-Agent': 'test-agent' } })
    await waitFor(() => socket !== undefined)
    expect(socket!.clientId).toBe('user_42')
    expect(socket!.data).toEqual({ role: 'admin' })
    expect(seen[1]).toEqual({ path: '/ws', query: { token: 'secret' }, ua: 'test-agent', ip: '127.0.0.1' })
    ws.close()
  })

  it('{ status, message } refuses with that status; a throw refuses with 500', async () => {
    const { url } = await server({
      onUpgrade: (req) => {
        if (req.query.mode === 'throw') throw new Error('broken auth')
        if (req.query.mode === 'teapot') return { status: 418, message: 'no' }
        return { status: 403 }
      },
    })
    expect(await refusedStatus(`${url}?mode=teapot`)).toBe(418)
    expect(await refusedStatus(`${url}?mode=deny`)).toBe(403)
    expect(await refusedStatus(`${url}?mode=throw`)).toBe(500)
  })

  it('an invalid clientId from onUpgrade refuses with 500 instead of upgrading', async () => {
    const { url } = await server({ onUpgrade: () => ({ clientId: 'bad id with spaces' }) })
    expect(await refusedStatus(url)).toBe(500)
  })
})

describe('origins and connection limits', () => {
  it('allowedOrigins: others get 403 before the upgrade (HARDENING row 6)', async () => {
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

describe('subprotocols', () => {
  it('a list: the first client offer the server speaks wins', async () => {
    let socket: Socket | undefined
    const { url } = await server({ onConnect: (s) => void (socket = s) }, { protocols: ['chat.v2', 'chat.v1'] })
    const ws = await connect(url, {}).then((w) => w)
    expect(ws.protocol).toBe('')
    ws.close()
    const ws2 = new WebSocket(url, ['chat.v1', 'chat.v2'])
    await new Promise((r) => ws2.once('open', r))
    expect(ws2.protocol).toBe('chat.v1')
    await waitFor(() => socket?.protocol === 'chat.v1')
    ws2.close()
  })

  it('a selector function decides', async () => {
    const { url } = await server({}, { protocols: (offered) => (offered.includes('b') ? 'b' : false) })
    const ws = new WebSocket(url, ['a', 'b'])
    await new Promise((r) => ws.once('open', r))
    expect(ws.protocol).toBe('b')
    ws.close()
  })

  it('pathological Sec-WebSocket-Protocol headers parse in linear time (row 9)', async () => {
    const { port } = await server({}, { protocols: ['chat'] })
    for (const value of [' '.repeat(7000), ','.repeat(7000), '__proto__, constructor', '"unclosed, quote', 'chat' + ', x'.repeat(2000)]) {
      const started = Date.now()
      const status = statusOf(await rawExchange(port, upgradeRequest('/ws', { 'Sec-WebSocket-Protocol': value }), 300))
      expect([101, 400, 431]).toContain(status)
      expect(Date.now() - started).toBeLessThan(1000)
    }
  })
})

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

  it.each([
    ['maxPayload', 0],
    ['maxPayload', -5],
    ['maxBackpressure', 1.5],
    ['idleTimeout', 0],
    ['pingInterval', 'fast'],
    ['handshakeTimeout', 2 ** 33],
    ['closeTimeout', null],
    ['maxConnections', 0],
    ['maxConnectionsPerIp', -1],
    ['maxInboundQueue', 0],
    ['allowedOrigins', 'https://x'],
    ['protocols', [1]],
    ['autoCreateRooms', 'yes'],
  ])('bad value %s = %j throws TypeError or RangeError', (name, value) => {
    expect(() => new WsServer({ [name]: value } as ServerOptions)).toThrow(/must be/)
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
