// Attach mode: upgrades from an http server the application owns, through the fast path
// (descriptor adoption) and the forced slow path (loopback pump), with the own-port checks.
import http from 'node:http'
import net from 'node:net'
import type { Duplex } from 'node:stream'
import { afterEach, describe, expect, it } from 'vitest'
import WebSocket, { WebSocketServer } from 'ws'
import { WsServer, type ServerOptions, type Socket, type WebSocketHandlers } from '../lib/index'
import { closePayload, encodeFrame, RawPeer } from '../test-support/index'
import { closed, connect, messages, nextMessage, rawExchange, startServer, statusOf, upgradeRequest, waitFor } from '../test-support/index'

interface Attached {
  http: http.Server
  server: WsServer
  port: number
  url: string
}

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  await Promise.all(cleanups.splice(0).map((c) => c()))
})

function listenHttp(httpServer: http.Server): Promise<number> {
  return new Promise((resolve) => httpServer.listen(0, '127.0.0.1', () => resolve((httpServer.address() as net.AddressInfo).port)))
}

function closeHttp(httpServer: http.Server): Promise<void> {
  httpServer.closeAllConnections()
  return new Promise((resolve) => httpServer.close(() => resolve()))
}

/** An http server answering 'http ok', with a WsServer attached through `{ server }`. */
async function attached(handlers: WebSocketHandlers, options: ServerOptions = {}, path = '/ws'): Promise<Attached> {
  const httpServer = http.createServer((_req, res) => res.end('http ok'))
  const server = new WsServer({ server: httpServer, ...options })
  server.websocket(path, handlers)
  const port = await listenHttp(httpServer)
  cleanups.push(async () => {
    await server.close({ timeout: 500 })
    await closeHttp(httpServer)
  })
  return { http: httpServer, server, port, url: `ws://127.0.0.1:${port}${path}` }
}

function echo(extra: WebSocketHandlers = {}): WebSocketHandlers {
  return { onMessage: (s, m) => void s.send(m), ...extra }
}

/**
 * An http server whose upgrade listener runs `onUpgrade` with a noServer WsServer that has
 * `handlers` (an echo by default) on /ws.
 */
async function manual(
  onUpgrade: (server: WsServer, req: http.IncomingMessage, socket: Duplex, head: Buffer) => void,
  options: ServerOptions = {},
  handlers: WebSocketHandlers = echo(),
): Promise<{ server: WsServer; port: number }> {
  const httpServer = http.createServer()
  const server = new WsServer({ noServer: true, ...options })
  server.websocket('/ws', handlers)
  httpServer.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => onUpgrade(server, req, socket, head))
  const port = await listenHttp(httpServer)
  cleanups.push(async () => {
    await server.close({ timeout: 500 })
    await closeHttp(httpServer)
  })
  return { server, port }
}

function request(ws: WebSocket, msg: object): Promise<unknown> {
  ws.send(JSON.stringify(msg))
  return nextMessage(ws).then((m) => JSON.parse(String(m)) as unknown)
}

const PATHS = [
  { name: 'fast path (descriptor adopted)', adopt: true },
  { name: 'slow path (adopt: false, loopback pump)', adopt: false },
] as const

describe.each(PATHS)('{ server } on the $name', ({ adopt }) => {
  it('echoes text and binary; socket info comes from the request', async () => {
    let seen: Socket | undefined
    const a = await attached(echo({ onConnect: (s) => void (seen = s) }), { adopt })
    const ws = await connect(`${a.url}?room=lobby&clientId=alice`, { headers: { 'x-app': 'demo' } })
    ws.send('hello')
    expect(await nextMessage(ws)).toBe('hello')
    ws.send(Buffer.from([1, 2, 3, 255]))
    expect(await nextMessage(ws)).toEqual(Buffer.from([1, 2, 3, 255]))
    const big = Buffer.alloc(300_000, 7)
    ws.send(big)
    expect(await nextMessage(ws)).toEqual(big)
    expect(seen?.clientId).toBe('alice')
    expect(seen?.query.room).toBe('lobby')
    expect(seen?.headers['x-app']).toBe('demo')
    // The client's own address and port, as the engine saw them (the real peer on both paths).
    expect(seen?.remoteAddress).toMatch(/127\.0\.0\.1$/)
    expect(a.server.getConnections()).toHaveLength(1)
    ws.close()
  })

  it('plain HTTP requests on the same port still reach the app', async () => {
    const a = await attached(echo(), { adopt })
    const ws = await connect(a.url)
    const body = await new Promise<string>((resolve, reject) => {
      http.get(`http://127.0.0.1:${a.port}/page`, (res) => {
        let text = ''
        res.on('data', (d) => (text += d))
        res.on('end', () => resolve(text))
      }).on('error', reject)
    })
    expect(body).toBe('http ok')
    ws.send('still here')
    expect(await nextMessage(ws)).toBe('still here')
    ws.close()
  })

  it('rooms and broadcast reach attached clients', async () => {
    const a = await attached(echo(), { adopt })
    const alice = await connect(`${a.url}?clientId=alice`)
    const bob = await connect(`${a.url}?clientId=bob`)
    expect(await request(alice, { type: 'join_room', room_id: 'r' })).toEqual({ type: 'room_joined', room_id: 'r' })
    expect(await request(bob, { type: 'join_room', room_id: 'r' })).toEqual({ type: 'room_joined', room_id: 'r' })
    const got = Promise.all([nextMessage(alice), nextMessage(bob)])
    expect(a.server.broadcast('to the room', { room: 'r' })).toBe(2)
    expect(await got).toEqual(['to the room', 'to the room'])
    const all = Promise.all([nextMessage(alice), nextMessage(bob)])
    expect(a.server.broadcast(Buffer.from('everyone'))).toBe(2)
    expect((await all).map(String)).toEqual(['everyone', 'everyone'])
    alice.close()
    bob.close()
  })

  it('close codes and reasons pass both ways', async () => {
    const codes: Array<[number, string]> = []
    const a = await attached(
      echo({
        onMessage: (s, m) => {
          if (m === 'close me') s.close(4002, 'server says bye')
        },
        onClose: (_s, code, reason) => void codes.push([code, reason]),
      }),
      { adopt },
    )
    const first = await connect(a.url)
    const firstClosed = closed(first)
    first.close(4001, 'client says bye')
    expect((await firstClosed).code).toBe(4001)
    await waitFor(() => codes.length === 1)
    expect(codes[0]).toEqual([4001, 'client says bye'])
    const second = await connect(a.url)
    const secondClosed = closed(second)
    second.send('close me')
    expect(await secondClosed).toEqual({ code: 4002, reason: 'server says bye' })
    await waitFor(() => codes.length === 2)
    expect(codes[1]).toEqual([4002, 'server says bye'])
  })

  it('a dropped client (RST) reports 1006', async () => {
    const codes: number[] = []
    const a = await attached(echo({ onClose: (_s, code) => void codes.push(code) }), { adopt })
    const peer = await RawPeer.connect(a.port)
    await waitFor(() => a.server.getConnections().length === 1)
    peer.socket.resetAndDestroy()
    await waitFor(() => codes.length === 1, 5000, 'onClose')
    expect(codes).toEqual([1006])
  })

  it('backpressure: a reader that stops gets buffered sends, then onDrain once it reads again', async () => {
    let drains = 0
    const a = await attached({ onDrain: () => void drains++ }, { adopt, maxBackpressure: 256 * 1024, backpressurePolicy: 'drop' })
    const peer = await RawPeer.connect(a.port)
    peer.socket.pause()
    await waitFor(() => a.server.getConnections().length === 1)
    const socket = a.server.getConnections()[0]!
    const chunk = Buffer.alloc(64 * 1024, 3)
    const statuses: string[] = []
    const deadline = Date.now() + 10_000
    while (statuses.at(-1) !== 'dropped' && Date.now() < deadline) {
      statuses.push(socket.send(chunk))
      if (statuses.length % 8 === 0) await new Promise((r) => setTimeout(r, 2))
    }
    expect(statuses).toContain('buffered')
    expect(statuses.at(-1)).toBe('dropped')
    expect(socket.bufferedAmount).toBeLessThanOrEqual(256 * 1024 + chunk.length)
    peer.socket.resume()
    await waitFor(() => drains > 0, 5000, 'onDrain')
    await waitFor(() => socket.bufferedAmount === 0, 5000, 'empty buffer')
    expect(socket.send('after drain')).toBe('sent')
    peer.destroy()
  })

  it('bytes sent right behind the request (in head, and after the upgrade event) arrive in order', async () => {
    // Hands over late: the second frame is then in the socket's read buffer, not in `head`.
    const { port } = await manual((server, req, socket, head) => {
      setTimeout(() => server.handleUpgrade(req, socket, head), 150)
    }, { adopt })
    const raw = net.connect(port, '127.0.0.1')
    let received = Buffer.alloc(0)
    raw.on('data', (d) => (received = Buffer.concat([received, d])))
    await new Promise((r) => raw.once('connect', r))
    raw.write(Buffer.concat([Buffer.from(upgradeRequest('/ws')), encodeFrame({ opcode: 1, payload: 'one' })]))
    await new Promise((r) => setTimeout(r, 50))
    raw.write(encodeFrame({ opcode: 1, payload: 'two' }))
    await waitFor(() => received.includes('two'), 5000, 'both echoes')
    const text = received.toString('latin1')
    expect(text.startsWith('HTTP/1.1 101')).toBe(true)
    expect(text.indexOf('one')).toBeLessThan(text.indexOf('two'))
    raw.destroy()
  })

  it('Node closes its handle without a FIN: the client sees no end after the 101', async () => {
    const a = await attached(echo(), { adopt })
    const peer = await RawPeer.connect(a.port)
    await new Promise((r) => setTimeout(r, 300))
    expect(peer.ended).toBe(false)
    peer.send({ opcode: 1, payload: 'alive' })
    expect((await peer.nextFrame())?.payload.toString()).toBe('alive')
    peer.send({ opcode: 8, payload: closePayload(1000) })
    expect((await peer.nextFrame())?.opcode).toBe(8)
    peer.destroy()
  })

  it(adopt ? "hands the descriptor over: Node's socket is gone at once" : "keeps Node's socket and pumps it", async () => {
    const destroyedAfter: boolean[] = []
    const { port } = await manual((server, req, socket, head) => {
      server.handleUpgrade(req, socket, head)
      destroyedAfter.push(socket.destroyed)
    }, { adopt })
    const ws = await connect(`ws://127.0.0.1:${port}/ws`)
    ws.send('which path')
    expect(await nextMessage(ws)).toBe('which path')
    expect(destroyedAfter).toEqual([adopt])
    ws.close()
  })

  it('hardening: bad requests get the same HTTP statuses as on an own port', async () => {
    const options: ServerOptions = { allowedOrigins: ['https://good.example'] }
    const handlers: WebSocketHandlers = {
      onUpgrade: (req) => (req.headers.authorization === 'Bearer ok' ? undefined : { status: 401, message: 'no token' }),
    }
    const a = await attached(handlers, { adopt, ...options })
    const own = await startServer(handlers, { host: '127.0.0.1', port: 0, ...options })
    cleanups.push(() => own.server.close({ timeout: 500 }))
    const good = { Origin: 'https://good.example', Authorization: 'Bearer ok' }
    const cases: Array<[string, string, number]> = [
      ['bad key', upgradeRequest('/ws', { ...good, 'Sec-WebSocket-Key': 'short' }), 400],
      ['bad version', upgradeRequest('/ws', { ...good, 'Sec-WebSocket-Version': '8' }), 426],
      ['missing version', upgradeRequest('/ws', { ...good, 'Sec-WebSocket-Version': null }), 426],
      ['non-GET', upgradeRequest('/ws', good, 'POST /ws HTTP/1.1'), 405],
      ['origin not allowed', upgradeRequest('/ws', { ...good, Origin: 'https://evil.example' }), 403],
      ['onUpgrade refuses', upgradeRequest('/ws', { ...good, Authorization: 'Bearer bad' }), 401],
      ['unknown path', upgradeRequest('/nope', good), 404],
      // Under Node's own 16 KiB limit, over the engine's 8 KiB: the engine's answer.
      ['head too large', upgradeRequest('/ws', { ...good, 'X-Big': 'a'.repeat(10_000) }), 431],
      ['accepted', upgradeRequest('/ws', good), 101],
    ]
    for (const [what, req, status] of cases) {
      const ownStatus = statusOf(await rawExchange(own.port, req, 1000))
      const attachedStatus = statusOf(await rawExchange(a.port, req, 1000))
      expect({ what, status: attachedStatus }).toEqual({ what, status: ownStatus })
      expect({ what, status: attachedStatus }).toEqual({ what, status })
    }
    const versionAnswer = (await rawExchange(a.port, upgradeRequest('/ws', { ...good, 'Sec-WebSocket-Version': '8' }), 1000)).toString()
    expect(versionAnswer.toLowerCase()).toContain('sec-websocket-version: 13')
  })

  it('maxConnectionsPerIp counts attached connections (429 past it)', async () => {
    const a = await attached(echo(), { adopt, maxConnectionsPerIp: 1 })
    const first = await connect(a.url)
    const refused = statusOf(await rawExchange(a.port, upgradeRequest('/ws'), 1000))
    expect(refused).toBe(429)
    first.close()
  })

  it('close() closes attached connections with 1001, detaches, and leaves the http server serving', async () => {
    const a = await attached(echo(), { adopt })
    const ws = await connect(a.url)
    const gone = closed(ws)
    expect(a.http.listenerCount('upgrade')).toBe(1)
    await a.server.close({ timeout: 1000 })
    expect((await gone).code).toBe(1001)
    expect(a.http.listenerCount('upgrade')).toBe(0)
    // With no upgrade listener left, Node itself drops upgrade requests; plain HTTP still works.
    const res = await rawExchange(a.port, 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 2000)
    expect(statusOf(res)).toBe(200)
  })
})

describe('noServer + handleUpgrade', () => {
  it('the app routes by path to two WsServers; cb runs before onConnect with the socket and request', async () => {
    const httpServer = http.createServer()
    const order: string[] = []
    const chat = new WsServer({ noServer: true })
    chat.websocket('/chat', { onConnect: () => void order.push('chat onConnect'), onMessage: (s, m) => void s.send(`chat:${String(m)}`) })
    const live = new WsServer({ noServer: true })
    live.websocket('/live', { onMessage: (s, m) => void s.send(`live:${String(m)}`) })
    httpServer.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
      if (chat.shouldHandle(req)) {
        chat.handleUpgrade(req, socket, head, (s, r) => order.push(`cb ${s.path} ${r.url ?? ''}`))
      } else if (live.shouldHandle(req)) live.handleUpgrade(req, socket, head)
      else socket.destroy()
    })
    const port = await listenHttp(httpServer)
    cleanups.push(async () => {
      await Promise.all([chat.close({ timeout: 500 }), live.close({ timeout: 500 })])
      await closeHttp(httpServer)
    })
    const a = await connect(`ws://127.0.0.1:${port}/chat?x=1`)
    const b = await connect(`ws://127.0.0.1:${port}/live`)
    const replies = Promise.all([nextMessage(a), nextMessage(b)])
    a.send('hi')
    b.send('hi')
    expect(await replies).toEqual(['chat:hi', 'live:hi'])
    expect(order).toEqual(['cb /chat /chat?x=1', 'chat onConnect'])
    expect(chat.shouldHandle({ url: '/live' } as http.IncomingMessage)).toBe(false)
    expect(live.shouldHandle({ url: '/live?q=1' } as http.IncomingMessage)).toBe(true)
    await expect(connect(`ws://127.0.0.1:${port}/other`)).rejects.toThrow()
    a.close()
    b.close()
  })

  it('a cb that throws closes that connection with 1011 and goes to onError; onConnect does not run', async () => {
    const seen: unknown[] = []
    const thrown = new Error('cb failed')
    const handlers: WebSocketHandlers = {
      onConnect: () => void seen.push('onConnect'),
      onError: (_s, err) => void seen.push(err),
    }
    const { server, port } = await manual((s, req, socket, head) => {
      s.handleUpgrade(req, socket, head, () => {
        throw thrown
      })
    }, {}, handlers)
    const ws = await connect(`ws://127.0.0.1:${port}/ws`)
    expect((await closed(ws)).code).toBe(1011)
    expect(seen).toEqual([expect.objectContaining({ code: 'ERR_HANDLER_FAILED', cause: thrown })])
    expect(server.shouldHandle({ url: '/ws' } as http.IncomingMessage)).toBe(true)
    await server.close()
    expect(server.shouldHandle({ url: '/ws' } as http.IncomingMessage)).toBe(false)
  })

  it('a refused upgrade never calls cb', async () => {
    let called = 0
    const { port } = await manual((server, req, socket, head) => server.handleUpgrade(req, socket, head, () => void called++), {}, {
      onUpgrade: () => false,
    })
    expect(statusOf(await rawExchange(port, upgradeRequest('/ws'), 1000))).toBe(401)
    expect(statusOf(await rawExchange(port, upgradeRequest('/elsewhere'), 1000))).toBe(404)
    await new Promise((r) => setTimeout(r, 100))
    expect(called).toBe(0)
  })
})

describe('{ server } routing among upgrade listeners', () => {
  it('two WsServers on one http server each take their own paths', async () => {
    const httpServer = http.createServer()
    const one = new WsServer({ server: httpServer })
    one.websocket('/one', echo())
    const two = new WsServer({ server: httpServer })
    two.websocket('/two', { onMessage: (s, m) => void s.send(`two:${String(m)}`) })
    expect(httpServer.listenerCount('upgrade')).toBe(1)
    const port = await listenHttp(httpServer)
    cleanups.push(async () => {
      await Promise.all([one.close({ timeout: 500 }), two.close({ timeout: 500 })])
      await closeHttp(httpServer)
    })
    const a = await connect(`ws://127.0.0.1:${port}/one`)
    const b = await connect(`ws://127.0.0.1:${port}/two`)
    const replies = Promise.all([nextMessage(a), nextMessage(b)])
    a.send('x')
    b.send('x')
    expect(await replies).toEqual(['x', 'two:x'])
    expect(statusOf(await rawExchange(port, upgradeRequest('/three'), 1000))).toBe(404)
    await one.close({ timeout: 500 })
    expect(httpServer.listenerCount('upgrade')).toBe(1)
    // /one is no longer anyone's: 404; /two still works.
    expect(statusOf(await rawExchange(port, upgradeRequest('/one'), 1000))).toBe(404)
    b.send('y')
    expect(await nextMessage(b)).toBe('two:y')
    await two.close({ timeout: 500 })
    expect(httpServer.listenerCount('upgrade')).toBe(0)
    a.close()
  })

  it('an unknown path is left to another upgrade listener (an HMR socket, say)', async () => {
    const httpServer = http.createServer()
    const server = new WsServer({ server: httpServer })
    server.websocket('/ws', echo())
    const other = new WebSocketServer({ noServer: true })
    httpServer.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
      if (req.url === '/hmr') other.handleUpgrade(req, socket, head, (ws) => ws.send('hmr hello'))
    })
    const port = await listenHttp(httpServer)
    cleanups.push(async () => {
      await server.close({ timeout: 500 })
      other.close()
      await closeHttp(httpServer)
    })
    const hmr = new WebSocket(`ws://127.0.0.1:${port}/hmr`)
    expect(String(await nextMessage(hmr))).toBe('hmr hello')
    const ws = await connect(`ws://127.0.0.1:${port}/ws`)
    ws.send('mine')
    expect(await nextMessage(ws)).toBe('mine')
    hmr.close()
    ws.close()
  })
})

describe('bad input and faults', () => {
  it('options: server must be an http(s) server; attach options do not mix with port options', () => {
    const bad: unknown[] = [{ server: {} }, { server: net.createServer() }, { server: 'http' }, { server: null }]
    for (const options of bad) {
      expect(() => new WsServer(options as ServerOptions)).toThrow(TypeError)
      try {
        new WsServer(options as ServerOptions)
      } catch (err) {
        expect((err as { code?: string }).code).toBe('ERR_INVALID_OPTION')
      }
    }
    const httpServer = http.createServer()
    const clashes: ServerOptions[] = [
      { server: httpServer, port: 3000 },
      { noServer: true, host: '127.0.0.1' },
      { server: httpServer, noServer: true },
      { noServer: 'yes' as unknown as boolean },
      { noServer: true, adopt: 1 as unknown as boolean },
      { port: 0, adopt: false },
    ]
    for (const options of clashes) {
      try {
        new WsServer(options)
        expect.unreachable(`accepted ${JSON.stringify(Object.keys(options))}`)
      } catch (err) {
        expect(err).toBeInstanceOf(TypeError)
        expect((err as { code?: string }).code).toBe('ERR_INVALID_OPTION')
      }
    }
    expect(httpServer.listenerCount('upgrade')).toBe(0)
  })

  it('listen() in attach mode and handleUpgrade() on an own-port server throw with codes', async () => {
    const attachedServer = new WsServer({ noServer: true })
    await expect(attachedServer.listen()).rejects.toMatchObject({ code: 'ERR_ATTACHED' })
    await attachedServer.close()
    const own = new WsServer({ port: 0 })
    const req = new http.IncomingMessage(new net.Socket())
    expect(() => own.handleUpgrade(req, new net.Socket(), Buffer.alloc(0))).toThrow(expect.objectContaining({ code: 'ERR_NOT_ATTACHED' }))
    expect(own.shouldHandle(req)).toBe(false)
    await own.close()
  })

  it('wrong argument types throw TypeError ERR_INVALID_ARG', async () => {
    const server = new WsServer({ noServer: true })
    const socket = new net.Socket()
    const req = new http.IncomingMessage(socket)
    const calls: Array<() => void> = [
      () => server.handleUpgrade({} as http.IncomingMessage, socket, Buffer.alloc(0)),
      () => server.handleUpgrade(req, {} as Duplex, Buffer.alloc(0)),
      () => server.handleUpgrade(req, socket, 'head' as unknown as Buffer),
      () => server.handleUpgrade(req, socket, Buffer.alloc(0), 'cb' as unknown as () => void),
    ]
    for (const call of calls) expect(call).toThrow(expect.objectContaining({ name: 'TypeError', code: 'ERR_INVALID_ARG' }))
    socket.destroy()
    await server.close()
  })

  it('a request the app already answered: ERR_UPGRADE_ANSWERED, the client keeps the app answer', async () => {
    const errors: string[] = []
    const { port } = await manual((server, req, socket, head) => {
      socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n')
      try {
        server.handleUpgrade(req, socket, head)
      } catch (err) {
        errors.push((err as { code: string }).code)
      }
    })
    expect(statusOf(await rawExchange(port, upgradeRequest('/ws'), 1000))).toBe(400)
    expect(errors).toEqual(['ERR_UPGRADE_ANSWERED'])
  })

  it('a destroyed socket is ignored (no throw, no cb); the server goes on', async () => {
    const outcomes: string[] = []
    const { port } = await manual((server, req, socket, head) => {
      if (req.url === '/ws?gone') {
        socket.destroy()
        server.handleUpgrade(req, socket, head, () => void outcomes.push('cb'))
        outcomes.push('returned')
      } else server.handleUpgrade(req, socket, head)
    })
    await rawExchange(port, upgradeRequest('/ws?gone'), 500)
    expect(outcomes).toEqual(['returned'])
    const ws = await connect(`ws://127.0.0.1:${port}/ws`)
    ws.send('ok')
    expect(await nextMessage(ws)).toBe('ok')
    ws.close()
  })

  it('a second handleUpgrade on the same socket throws ERR_UPGRADE_TAKEN; the first goes on', async () => {
    const errors: string[] = []
    const { port } = await manual((server, req, socket, head) => {
      server.handleUpgrade(req, socket, head)
      try {
        server.handleUpgrade(req, socket, head)
      } catch (err) {
        errors.push((err as { code: string }).code)
      }
    })
    const ws = await connect(`ws://127.0.0.1:${port}/ws`)
    ws.send('once')
    expect(await messages(ws, 1)).toEqual(['once'])
    expect(errors).toEqual(['ERR_UPGRADE_TAKEN'])
    ws.close()
  })

  it('after close(), handleUpgrade answers 503', async () => {
    const { server, port } = await manual((s, req, socket, head) => s.handleUpgrade(req, socket, head))
    await server.close()
    expect(statusOf(await rawExchange(port, upgradeRequest('/ws'), 1000))).toBe(503)
  })

  it('a slow-path connection whose Node socket errors closes with 1006 and reports onClose', async () => {
    const codes: number[] = []
    let nodeSocket: Duplex | undefined
    const { port } = await manual((server, req, socket, head) => {
      nodeSocket = socket
      server.handleUpgrade(req, socket, head)
    }, { adopt: false }, echo({ onClose: (_s, code) => void codes.push(code) }))
    const ws = await connect(`ws://127.0.0.1:${port}/ws`)
    ws.on('error', () => {})
    ws.send('x')
    await nextMessage(ws)
    const clientClosed = closed(ws)
    nodeSocket!.destroy(new Error('simulated socket failure'))
    await waitFor(() => codes.length === 1, 5000, 'onClose')
    expect(codes).toEqual([1006])
    expect((await clientClosed).code).toBe(1006)
  })
})

// Windows has named pipes instead of Unix sockets; every connection there is pumped anyway.
describe.skipIf(process.platform === 'win32')('a socket that is not TCP', () => {
  it('an http server on a Unix socket falls back to the pump (adoption refused), same echo', async () => {
    const { mkdtempSync, rmSync } = await import('node:fs')
    const { tmpdir } = await import('node:os')
    const { join } = await import('node:path')
    const dir = mkdtempSync(join(tmpdir(), 'rnode-unix-'))
    const socketPath = join(dir, 'http.sock')
    const httpServer = http.createServer()
    const server = new WsServer({ server: httpServer })
    let address = ''
    server.websocket('/ws', echo({ onConnect: (s) => void (address = s.remoteAddress) }))
    await new Promise<void>((r) => httpServer.listen(socketPath, r))
    cleanups.push(async () => {
      await server.close({ timeout: 500 })
      await closeHttp(httpServer)
      rmSync(dir, { recursive: true, force: true })
    })
    const ws = await connect(`ws+unix://${socketPath}:/ws`)
    ws.send('over a unix socket')
    expect(await nextMessage(ws)).toBe('over a unix socket')
    expect(address).toBe('0.0.0.0')
    ws.close()
  })
})
