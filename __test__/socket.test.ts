// A connection as JS sees it (`Socket`): messages both ways, identity from the upgrade request.
import { describe, expect, it } from 'vitest'
import type { Socket, WebSocketHandlers } from '../lib/index'
import { closed, connect, echo, messages, nextMessage, serverPool, type Started, startServer, waitFor } from '../test-support/index'

const start = serverPool(1000)
const echoServer = (extra: WebSocketHandlers = {}): Promise<Started> => start({ onMessage: echo, ...extra })

describe('echo', () => {
  it.each([0, 1, 64 * 1024, 1024 * 1024])('binary of %i bytes comes back byte-exact', async (size) => {
    const { url } = await echoServer()
    const ws = await connect(url)
    const payload = Buffer.alloc(size)
    for (let i = 0; i < size; i++) payload[i] = (i * 31 + 7) & 0xff
    const reply = nextMessage(ws, 10_000)
    ws.send(payload)
    const got = await reply
    expect(Buffer.isBuffer(got)).toBe(true)
    expect((got as Buffer).equals(payload)).toBe(true)
    ws.close()
  })

  it.each([0, 1, 64 * 1024, 1024 * 1024])('text of %i bytes comes back as a string', async (size) => {
    const { url } = await echoServer()
    const ws = await connect(url)
    const payload = 'abcdefghij'.repeat(Math.ceil(size / 10)).slice(0, size)
    const reply = nextMessage(ws, 10_000)
    ws.send(payload)
    expect(await reply).toBe(payload)
    ws.close()
  })

  it('non-ASCII text survives both ways, also mixed in one batch', async () => {
    const seen: unknown[] = []
    const { url } = await echoServer({
      onMessage: (socket, msg) => {
        seen.push(msg)
        socket.send(msg)
      },
    })
    const ws = await connect(url)
    const texts = ['héllo wörld', 'Привет, мир', '日本語テキスト', 'emoji 🎉👍🏽 and \u0000 nul', 'plain']
    const got = messages(ws, texts.length + 1)
    for (const t of texts) ws.send(t)
    ws.send(Buffer.from([0xff, 0x00, 0xfe]))
    const replies = await got
    expect(replies.slice(0, texts.length)).toEqual(texts)
    expect(replies[texts.length]).toEqual(Buffer.from([0xff, 0x00, 0xfe]))
    expect(seen.slice(0, texts.length)).toEqual(texts)
    expect(Buffer.isBuffer(seen[texts.length])).toBe(true)
    ws.close()
  })

  it('text around the 126 and 65,536 byte frame-length boundaries is framed right, corked or not', async () => {
    // The header size of a text frame is chosen from the string's UTF-16 length where that
    // decides it, and from its exact UTF-8 length near the boundaries: cover both, with 1-, 2-
    // and 3-byte characters, sent from a timer (written at once) and from onMessage (corked).
    const sizes = [0, 1, 41, 42, 62, 63, 64, 125, 126, 127, 21845, 21846, 32767, 32768, 65535, 65536, 70000]
    const texts = sizes.flatMap((n) => ['a'.repeat(n), 'é'.repeat(n), '€'.repeat(Math.min(n, 30000))])
    const s = await startServer({ onMessage: (socket, msg) => void socket.send(msg) }, { maxPayload: 1 << 20 })
    start.adopt(s.server)
    const { url, server } = s
    const ws = await connect(url)
    const echoed = messages(ws, texts.length)
    for (const t of texts) ws.send(t)
    expect(await echoed).toEqual(texts)
    const pushed = messages(ws, texts.length)
    const socket = server.getConnections()[0]!
    setTimeout(() => {
      for (const t of texts) socket.send(t)
    }, 0)
    expect(await pushed).toEqual(texts)
    ws.close()
  })

  it('1,000 concurrent connections each get their own echo', async () => {
    const { url, server } = await echoServer()
    const clients = await Promise.all(Array.from({ length: 1000 }, () => connect(url)))
    await waitFor(() => server.getConnections().length === 1000, 10_000, '1000 connections')
    const replies = await Promise.all(
      clients.map((ws, i) => {
        const p = nextMessage(ws, 20_000)
        ws.send(`client ${i}`)
        return p
      }),
    )
    replies.forEach((r, i) => expect(r).toBe(`client ${i}`))
    const stats = server.getStats()
    expect(stats.totalConnections).toBe(1000)
    expect(stats.messagesIn).toBeGreaterThanOrEqual(1000)
    // Batching at work: far fewer wake-ups than events.
    expect(stats.batching.events).toBeGreaterThan(stats.batching.wakeups)
    await Promise.all(clients.map((ws) => { const c = closed(ws); ws.close(); return c }))
  }, 60_000)
})

describe('socket identity', () => {
  it('exposes id, clientId, path, query, headers, remoteAddress and remotePort', async () => {
    let socket: Socket | undefined
    const { url, server } = await echoServer({ onConnect: (s) => void (socket = s) })
    const ws = await connect(`${url}?clientId=user_123&token=abc`, { headers: { 'X-Custom': 'yes' } })
    await waitFor(() => socket !== undefined)
    expect(socket!.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
    expect(socket!.clientId).toBe('user_123')
    expect(socket!.path).toBe('/ws')
    expect(socket!.query).toEqual({ clientId: 'user_123', token: 'abc' })
    expect(socket!.headers['x-custom']).toBe('yes')
    expect(socket!.remoteAddress).toBe('127.0.0.1')
    // The request is parsed on first read; the same frozen object after that.
    expect(socket!.headers).toBe(socket!.headers)
    expect(Object.isFrozen(socket!.headers)).toBe(true)
    const local = (ws as unknown as { _socket: { localPort: number } })._socket.localPort
    expect(socket!.remotePort).toBe(local)
    expect(server.getConnection(socket!.id)).toBe(socket)
    expect(server.getConnections()).toEqual([socket])
    ws.close()
    await waitFor(() => server.getConnection(socket!.id) === undefined)
    expect(socket!.isOpen).toBe(false)
  })

  it('generates a clientId when the parameter is missing or invalid', async () => {
    const ids: string[] = []
    const { url } = await echoServer({ onConnect: (s) => void ids.push(s.clientId) })
    const a = await connect(url)
    const b = await connect(`${url}?clientId=${encodeURIComponent('bad id!')}`)
    await waitFor(() => ids.length === 2)
    for (const id of ids) expect(id).toMatch(/^client_[0-9a-f]{8}$/)
    expect(ids[0]).not.toBe(ids[1])
    a.close()
    b.close()
  })
})
