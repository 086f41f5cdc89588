// WsServer: listen, paths, close(), several servers per process, argument validation.
import { describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { WsServer } from '../lib/index'
import { closed, connect, nextMessage, serverPool, startServer, waitFor } from '../test-support/index'

const start = serverPool(1000)

describe('servers', () => {
  it('listen() on port 0 reports the bound port; two servers live in one process', async () => {
    const a = await startServer({ onMessage: (s) => void s.send('from a') })
    const b = await startServer({ onMessage: (s) => void s.send('from b') })
    start.adopt(a.server, b.server)
    expect(a.port).toBeGreaterThan(0)
    expect(b.port).toBeGreaterThan(0)
    expect(a.port).not.toBe(b.port)
    expect(a.server.port).toBe(a.port)
    const wa = await connect(a.url)
    const wb = await connect(b.url)
    const ra = nextMessage(wa)
    const rb = nextMessage(wb)
    wa.send('x')
    wb.send('x')
    expect(await ra).toBe('from a')
    expect(await rb).toBe('from b')
    wa.close()
    wb.close()
  })

  it('several paths each get their own handlers', async () => {
    const server = new WsServer({ host: '127.0.0.1', port: 0 })
    server.websocket('/a', { onMessage: (s) => void s.send('path a') })
    server.websocket('/b', { onMessage: (s) => void s.send('path b') })
    const { port } = await server.listen()
    start.adopt(server)
    const wa = await connect(`ws://127.0.0.1:${port}/a`)
    const wb = await connect(`ws://127.0.0.1:${port}/b`)
    const ra = nextMessage(wa)
    const rb = nextMessage(wb)
    wa.send('?')
    wb.send('?')
    expect([await ra, await rb]).toEqual(['path a', 'path b'])
    wa.close()
    wb.close()
  })

  it('close() sends 1001 to open sockets and resolves when they are gone', async () => {
    const closes: number[] = []
    const s = await startServer({ onClose: (_s, code) => void closes.push(code) })
    const clients = await Promise.all([connect(s.url), connect(s.url), connect(s.url)])
    await waitFor(() => s.server.getConnections().length === 3)
    const seen = Promise.all(clients.map((ws) => closed(ws)))
    await s.server.close()
    expect((await seen).map((c) => c.code)).toEqual([1001, 1001, 1001])
    expect(closes).toEqual([1001, 1001, 1001])
    expect(s.server.getConnections()).toEqual([])
    // No longer accepting.
    await expect(connect(s.url)).rejects.toThrow()
  })

  it('reusePort: two servers share one port and both serve', async () => {
    const a = new WsServer({ host: '127.0.0.1', port: 0, reusePort: true })
    a.websocket('/ws', { onConnect: (s) => void s.send('a') })
    const { port } = await a.listen()
    const b = new WsServer({ host: '127.0.0.1', port, reusePort: true })
    b.websocket('/ws', { onConnect: (s) => void s.send('b') })
    await b.listen()
    start.adopt(a, b)
    const seen = new Set<string>()
    for (let i = 0; i < 40 && seen.size < 2; i++) {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`)
      seen.add(String(await nextMessage(ws)))
      ws.close()
    }
    expect([...seen].sort()).toEqual(['a', 'b'])
  })

  it('listen() fails clearly when the port is taken', async () => {
    const a = await startServer()
    start.adopt(a.server)
    const b = new WsServer({ host: '127.0.0.1', port: a.port })
    b.websocket('/ws', {})
    await expect(b.listen()).rejects.toMatchObject({ code: 'ERR_ADDR_IN_USE' })
  })
})

describe('API validation', () => {
  it('constructor and websocket() reject bad arguments with TypeError/RangeError and a code', () => {
    expect(() => new WsServer(-1)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION' }))
    expect(() => new WsServer(-1)).toThrow(RangeError)
    expect(() => new WsServer(70000)).toThrow(RangeError)
    expect(() => new WsServer('3000' as unknown as number)).toThrow(TypeError)
    expect(() => new WsServer({ maxPayload: 0 })).toThrow(RangeError)
    expect(() => new WsServer({ idleTimeout: 1.5 })).toThrow(TypeError)
    expect(() => new WsServer({ backpressurePolicy: 'explode' as 'drop' })).toThrow(TypeError)
    const s = new WsServer(0)
    expect(() => s.websocket('chat', {})).toThrow(TypeError)
    expect(() => s.websocket('/chat', { onMessage: 'nope' as unknown as () => void })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG' }))
  })
})
