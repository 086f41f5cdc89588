// healthPath: 200 while serving, 503 while close() drains, and Redis reachability in cluster mode.
import { describe, expect, it } from 'vitest'
import { WsServer } from '../lib/index'
import { RawPeer, startRedis } from '../test-support/index'
import { rawExchange, serverPool, statusOf, upgradeRequest } from '../test-support/index'

const start = serverPool()

interface Health {
  status: string
  connections: number
  redis?: string
}

async function health(port: number, path = '/healthz'): Promise<{ status: number; body: Health }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`)
  return { status: res.status, body: (await res.json()) as Health }
}

describe('healthPath', () => {
  it('default: no endpoint (404)', async () => {
    const { port } = await start()
    expect(statusOf(await rawExchange(port, 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'))).toBe(404)
  })

  it('answers 200 with JSON while listening', async () => {
    const { port } = await start({}, { healthPath: '/healthz' })
    const peer = await RawPeer.connect(port)
    const res = await fetch(`http://127.0.0.1:${port}/healthz`)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toBe('application/json')
    expect(await res.json()).toEqual({ status: 'ok', connections: 1 })
    expect(statusOf(await rawExchange(port, 'DELETE /healthz HTTP/1.1\r\nHost: x\r\n\r\n'))).toBe(405)
    peer.socket.destroy()
  })

  it('answers 503 once close() has begun, while connections drain; then the port closes', async () => {
    const server = new WsServer({ host: '127.0.0.1', port: 0, healthPath: '/healthz' })
    server.websocket('/ws', {})
    const { port } = await server.listen()
    // A client that never answers the close frame keeps the drain going until the timeout.
    const stubborn = await RawPeer.connect(port)
    stubborn.socket.pause()
    expect((await health(port)).status).toBe(200)
    const closing = server.close({ timeout: 1500 })
    const during = await health(port)
    expect(during.status).toBe(503)
    expect(during.body.status).toBe('draining')
    // New upgrades during the drain are refused with 503 too.
    expect(statusOf(await rawExchange(port, upgradeRequest('/ws'), 1000))).toBe(503)
    await closing
    await expect(fetch(`http://127.0.0.1:${port}/healthz`)).rejects.toThrow()
    stubborn.socket.destroy()
  })

  it('without an endpoint, close() stops accepting at once (the port refuses)', async () => {
    const server = new WsServer({ host: '127.0.0.1', port: 0 })
    server.websocket('/ws', {})
    const { port } = await server.listen()
    const stubborn = await RawPeer.connect(port)
    stubborn.socket.pause()
    const closing = server.close({ timeout: 1000 })
    await new Promise((r) => setTimeout(r, 100))
    await expect(rawExchange(port, upgradeRequest('/ws'), 500)).rejects.toThrow()
    await closing
    stubborn.socket.destroy()
  })

  it('cluster mode: reports whether Redis is reachable', async () => {
    const redis = await startRedis()
    if (!redis) return
    const { port } = await start({}, { healthPath: '/healthz', cluster: { redis: `redis://127.0.0.1:${redis.port}` } })
    let h = await health(port)
    for (let i = 0; i < 100 && h.body.redis !== 'up'; i++) {
      await new Promise((r) => setTimeout(r, 50))
      h = await health(port)
    }
    expect(h).toEqual({ status: 200, body: { status: 'ok', connections: 0, redis: 'up' } })
    await redis.stop()
    for (let i = 0; i < 100 && h.body.redis !== 'down'; i++) {
      await new Promise((r) => setTimeout(r, 50))
      h = await health(port)
    }
    // Local rooms keep working without Redis, so the node stays in rotation (200).
    expect(h).toEqual({ status: 200, body: { status: 'ok', connections: 0, redis: 'down' } })
  }, 20_000)

  it('bad values throw TypeError', () => {
    for (const bad of ['healthz', '', 7, '/h?x']) expect(() => new WsServer({ healthPath: bad as string })).toThrow(TypeError)
  })
})
