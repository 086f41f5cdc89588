// Every option and limit (docs/limits.md): its default, a custom value, a bad value, and what
// happens at the limit.
import net from 'node:net'
import { describe, expect, it } from 'vitest'
import { type ServerOptions, WsServer } from '../lib/index'
import { connect, nextMessage, rawExchange, refusedStatus, serverPool, upgradeRequest, waitFor } from '../test-support/index'

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
  ])('bad value %s = %j throws ERR_INVALID_OPTION', (name, value) => {
    expect(() => new WsServer({ [name]: value } as ServerOptions)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION' }))
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
