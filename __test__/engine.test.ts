// The engine's core behaviour: echo, socket identity, close codes, several servers, errors.
import { afterEach, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { WsServer, type Socket } from '../lib/index'
import { encodeFrame, RawPeer } from './frames'
import { closed, connect, messages, nextMessage, startServer, waitFor, type Started } from './helpers'

const running: Started[] = []
afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.server.close({ timeout: 1000 })))
})
async function echoServer(extra: Parameters<typeof startServer>[0] = {}): Promise<Started> {
  const s = await startServer({ onMessage: (socket, msg) => void socket.send(msg), ...extra })
  running.push(s)
  return s
}

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
    running.push(s)
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
  it('exposes id, clientId, path, query, headers and remoteAddress', async () => {
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

describe('close', () => {
  it('client close code and reason reach onClose', async () => {
    const seen: Array<[number, string]> = []
    const { url } = await echoServer({ onClose: (_s, code, reason) => void seen.push([code, reason]) })
    const ws = await connect(url)
    ws.close(4321, 'client says bye')
    await waitFor(() => seen.length === 1)
    expect(seen[0]).toEqual([4321, 'client says bye'])
  })

  it('server close code and reason reach the client, after queued messages', async () => {
    const { url } = await echoServer({
      onConnect: (s) => {
        s.send('first')
        s.send('second')
        s.close(4000, 'server says bye')
        expect(s.send('after close')).toBe('dropped')
      },
    })
    const ws = new WebSocket(url)
    const got = messages(ws, 2)
    const c = closed(ws)
    expect(await got).toEqual(['first', 'second'])
    expect(await c).toEqual({ code: 4000, reason: 'server says bye' })
  })

  it('a dropped TCP connection reports 1006', async () => {
    const seen: number[] = []
    const { url } = await echoServer({ onClose: (_s, code) => void seen.push(code) })
    const ws = await connect(url)
    ws.terminate()
    await waitFor(() => seen.length === 1)
    expect(seen[0]).toBe(1006)
  })

  // A short read clears the socket's readiness (no extra recv per wake-up): the next bytes must
  // still wake the reader, and a FIN right behind data must still end the connection.
  it('a frame trickling in over several reads is delivered; a FIN right behind a frame still closes', async () => {
    const seen: number[] = []
    const got: string[] = []
    const { port } = await echoServer({
      onMessage: (socket, msg) => {
        got.push(String(msg))
        socket.send(msg)
      },
      onClose: (_s, code) => void seen.push(code),
    })
    const peer = await RawPeer.connect(port)
    const frame = encodeFrame({ opcode: 0x1, payload: Buffer.from('trickled in') })
    for (const piece of [frame.subarray(0, 1), frame.subarray(1, 5), frame.subarray(5)]) {
      peer.send(piece)
      await new Promise((r) => setTimeout(r, 30))
    }
    expect((await peer.nextFrame())?.payload.toString()).toBe('trickled in')
    // Data and FIN in one go: the message is still handled, and the half-closed peer is let go.
    peer.socket.end(encodeFrame({ opcode: 0x1, payload: Buffer.from('last words') }))
    await peer.waitEnd()
    await waitFor(() => seen.length === 1)
    expect(got).toEqual(['trickled in', 'last words'])
    expect(seen[0]).toBe(1006)
  })

  it('rejects invalid close codes and long reasons (RangeError), bad types (TypeError), each with its code', async () => {
    let socket: Socket | undefined
    const { url } = await echoServer({ onConnect: (s) => void (socket = s) })
    const ws = await connect(url)
    await waitFor(() => socket !== undefined)
    for (const code of [0, 999, 1004, 1005, 1006, 1015, 2000, 2999, 5000, 1000.5]) {
      expect(() => socket!.close(code)).toThrow(RangeError)
      expect(() => socket!.close(code)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_CLOSE_CODE' }))
    }
    expect(() => socket!.close(1000, 'x'.repeat(124))).toThrow(RangeError)
    expect(() => socket!.close(1000, 'é'.repeat(62))).toThrow(expect.objectContaining({ code: 'ERR_INVALID_CLOSE_REASON' })) // 124 bytes
    expect(() => socket!.close('1000' as unknown as number)).toThrow(TypeError)
    expect(() => socket!.close('1000' as unknown as number)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_CLOSE_CODE' }))
    expect(() => socket!.send(42 as unknown as string)).toThrow(TypeError)
    expect(() => socket!.send({} as unknown as string)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG' }))
    // Nothing was sent by the failed calls: the connection is still usable.
    const reply = nextMessage(ws)
    ws.send('still here')
    expect(await reply).toBe('still here')
    socket!.close(1000, 'é'.repeat(61)) // 122 bytes: fine
    expect((await closed(ws)).code).toBe(1000)
  })
})

describe('handler errors', () => {
  it('a throwing handler closes only that connection with 1011 and reaches onError as ERR_HANDLER_FAILED', async () => {
    const errors: unknown[] = []
    const thrown = new Error('handler exploded')
    const { url } = await echoServer({
      onMessage: (socket, msg) => {
        if (msg === 'boom') throw thrown
        socket.send(msg)
      },
      onError: (_s, err) => void errors.push(err),
    })
    const victim = await connect(url)
    const bystander = await connect(url)
    const c = closed(victim)
    victim.send('boom')
    expect((await c).code).toBe(1011)
    expect(errors).toHaveLength(1)
    expect(errors[0]).toMatchObject({ code: 'ERR_HANDLER_FAILED', cause: thrown })
    const reply = nextMessage(bystander)
    bystander.send('still fine')
    expect(await reply).toBe('still fine')
    bystander.close()
  })

  it('a rejected promise counts as a throw', async () => {
    const errors: unknown[] = []
    const { url } = await echoServer({
      onMessage: async () => {
        await new Promise((r) => setTimeout(r, 5))
        throw 'async failure'
      },
      onError: (_s, err) => void errors.push(err),
    })
    const ws = await connect(url)
    const c = closed(ws)
    ws.send('x')
    expect((await c).code).toBe(1011)
    expect(errors).toEqual([expect.objectContaining({ code: 'ERR_HANDLER_FAILED', cause: 'async failure' })])
  })
})

describe('servers', () => {
  it('listen() on port 0 reports the bound port; two servers live in one process', async () => {
    const a = await startServer({ onMessage: (s) => void s.send('from a') })
    const b = await startServer({ onMessage: (s) => void s.send('from b') })
    running.push(a, b)
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
    running.push({ server, port, url: '' })
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
    running.push({ server: a, port, url: '' }, { server: b, port, url: '' })
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
    running.push(a)
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
    expect(() => s.websocket('chat', {})).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG' }))
    expect(() => s.websocket('/chat', { onMessage: 'nope' as unknown as () => void })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG' }))
  })
})
