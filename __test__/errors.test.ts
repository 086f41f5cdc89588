// Error codes: every code the public API can be made to raise, provoked with real servers,
// sockets and redis-servers; and docs/errors.md, lib/errors.ts and native/error.rs list the
// same codes.
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import net from 'node:net'
import { join } from 'node:path'
import { afterEach, describe, expect, it, vi } from 'vitest'
import type WebSocket from 'ws'
import { WsServer, type ErrorCode, type ServerOptions, type Socket, type WebSocketHandlers } from '../lib/index'
import { native } from '../lib/binding'
import { connect, nextMessage, rawExchange, serverPool, statusOf, upgradeRequest, waitFor } from '../test-support/index'

const server = serverPool()
const root = join(__dirname, '..')
const REDIS = [process.env.REDIS_SERVER ?? '', '/usr/bin/redis-server', '/usr/local/bin/redis-server'].find(
  (p) => p !== '' && existsSync(p),
)
const SKIP_REDIS = process.env.RNODE_SKIP_REDIS === '1' || REDIS === undefined

const idle: WsServer[] = []
afterEach(async () => {
  await Promise.all(idle.splice(0).map((s) => s.close({ timeout: 200 })))
})
/** A server that is made and maybe never listens; closed after the test. */
function unstarted(options: ServerOptions = {}): WsServer {
  const s = new WsServer({ host: '127.0.0.1', port: 0, ...options })
  s.websocket('/ws', {})
  idle.push(s)
  return s
}

/** `{ code }` for matching what a call threw or a promise rejected with. */
const withCode = (code: ErrorCode): unknown => expect.objectContaining({ code })

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo
      srv.close(() => resolve(port))
    })
  })
}

/** A socket of a fresh server and the `ws` client it belongs to. */
async function oneSocket(handlers: WebSocketHandlers = {}): Promise<{ socket: Socket; ws: WebSocket }> {
  let socket: Socket | undefined
  const { url } = await server({ ...handlers, onConnect: (s) => void (socket = s) })
  const ws = await connect(url)
  await waitFor(() => socket !== undefined)
  return { socket: socket!, ws }
}

describe('options and arguments', () => {
  it('ERR_INVALID_OPTION: the facade refuses a bad option with a TypeError or RangeError', () => {
    expect(() => new WsServer({ idleTimeout: 1.5 })).toThrow(TypeError)
    expect(() => new WsServer({ idleTimeout: 1.5 })).toThrow(withCode('ERR_INVALID_OPTION'))
    expect(() => new WsServer({ port: 65536 })).toThrow(RangeError)
    expect(() => new WsServer({ port: 65536 })).toThrow(withCode('ERR_INVALID_OPTION'))
    expect(() => unstarted().close({ timeout: -1 })).toThrow(withCode('ERR_INVALID_OPTION'))
  })

  it('ERR_INVALID_OPTION from the engine itself: a Redis URL its client cannot parse', () => {
    // Passes the facade's redis:// check; the engine's own check refuses it in the constructor.
    expect(() => new WsServer({ cluster: { redis: 'redis://[::1' } })).toThrow(withCode('ERR_INVALID_OPTION'))
    // The engine's guard as such, below the facade: a port past 65535 is not silently clamped.
    expect(() => new native.NativeServer({ port: 70000 })).toThrow(withCode('ERR_INVALID_OPTION'))
    expect(() => new native.NativeServer({ backpressurePolicy: 'explode' })).toThrow(withCode('ERR_INVALID_OPTION'))
  })

  it('ERR_INVALID_ARG: wrong argument types', async () => {
    const s = unstarted()
    expect(() => s.websocket('no-slash')).toThrow(withCode('ERR_INVALID_ARG'))
    expect(() => s.broadcast(42 as unknown as string)).toThrow(withCode('ERR_INVALID_ARG'))
    const { socket, ws } = await oneSocket()
    expect(() => socket.send(42 as unknown as string)).toThrow(TypeError)
    expect(() => socket.send(42 as unknown as string)).toThrow(withCode('ERR_INVALID_ARG'))
    expect(() => socket.setMetadata(7 as unknown as string, 1)).toThrow(withCode('ERR_INVALID_ARG'))
    ws.close()
  })

  it('ERR_INVALID_ROOM_ID: empty, too long or not a string', () => {
    const s = unstarted()
    expect(() => s.getConnections('')).toThrow(withCode('ERR_INVALID_ROOM_ID'))
    expect(() => s.createRoom('x', { id: 'r'.repeat(257) })).toThrow(withCode('ERR_INVALID_ROOM_ID'))
    expect(() => s.deleteRoom(5 as unknown as string)).toThrow(withCode('ERR_INVALID_ROOM_ID'))
  })

  it('ERR_INVALID_CLOSE_CODE and ERR_INVALID_CLOSE_REASON; the socket stays usable', async () => {
    const { socket, ws } = await oneSocket({ onMessage: (s, m) => void s.send(m) })
    expect(() => socket.close(1005)).toThrow(RangeError)
    expect(() => socket.close(1005)).toThrow(withCode('ERR_INVALID_CLOSE_CODE'))
    expect(() => socket.close(1000, 'x'.repeat(124))).toThrow(withCode('ERR_INVALID_CLOSE_REASON'))
    const reply = nextMessage(ws)
    ws.send('still open')
    expect(await reply).toBe('still open')
    ws.close()
  })

  it('ERR_ROOM_EXISTS: createRoom with a taken id', () => {
    const s = unstarted()
    s.createRoom('first', { id: 'lobby' })
    expect(() => s.createRoom('second', { id: 'lobby' })).toThrow(withCode('ERR_ROOM_EXISTS'))
  })
})

describe('listen', () => {
  it('ERR_ADDR_IN_USE: the port is taken (rejected by the engine, code set by napi)', async () => {
    const taken = await server()
    const b = unstarted({ port: taken.port })
    const err: unknown = await b.listen().catch((e: unknown) => e)
    expect(err).toBeInstanceOf(Error)
    expect(err).toMatchObject({ code: 'ERR_ADDR_IN_USE' })
  })

  it('ERR_ADDR_NOT_AVAILABLE: the host is not an address of this machine', async () => {
    // 192.0.2.1 is TEST-NET-1 (RFC 5737): never assigned to a local interface.
    const s = unstarted({ host: '192.0.2.1' })
    await expect(s.listen()).rejects.toMatchObject({ code: 'ERR_ADDR_NOT_AVAILABLE' })
  })

  it('ERR_LISTEN_FAILED: any other bind failure, here a host name that does not resolve', async () => {
    // `.invalid` never resolves (RFC 6761).
    const s = unstarted({ host: 'no-such-host.invalid' })
    await expect(s.listen()).rejects.toMatchObject({ code: 'ERR_LISTEN_FAILED' })
  })

  it('ERR_ALREADY_LISTENING: a second listen(), refused by the facade and by the engine', async () => {
    const { server: s } = await server()
    await expect(s.listen()).rejects.toMatchObject({ code: 'ERR_ALREADY_LISTENING' })
    const raw = new native.NativeServer({ host: '127.0.0.1', port: 0 })
    try {
      await raw.listen(() => {})
      expect(() => raw.listen(() => {})).toThrow(withCode('ERR_ALREADY_LISTENING'))
    } finally {
      await raw.shutdown(100)
      raw.dispose()
    }
  })

  it('ERR_SERVER_CLOSED: listen() after close()', async () => {
    const s = unstarted()
    await s.close()
    await expect(s.listen()).rejects.toMatchObject({ code: 'ERR_SERVER_CLOSED' })
  })
})

describe('cluster', () => {
  it('ERR_NO_CLUSTER: a cluster-scoped query on a server without the cluster option', async () => {
    const { server: s } = await server()
    await expect(s.getStats({ scope: 'cluster' })).rejects.toMatchObject({ code: 'ERR_NO_CLUSTER' })
    await expect(s.getRoom('r', { scope: 'cluster' })).rejects.toMatchObject({ code: 'ERR_NO_CLUSTER' })
  })

  it('ERR_NOT_LISTENING: a cluster-scoped query before listen()', async () => {
    const s = unstarted({ cluster: { redis: `redis://127.0.0.1:${await freePort()}` } })
    await expect(s.getStats({ scope: 'cluster' })).rejects.toMatchObject({ code: 'ERR_NOT_LISTENING' })
  })

  it('ERR_REDIS_UNREACHABLE: nothing listens at the Redis URL', async () => {
    const s = unstarted({ cluster: { redis: `redis://127.0.0.1:${await freePort()}` } })
    await expect(s.listen()).rejects.toMatchObject({ code: 'ERR_REDIS_UNREACHABLE' })
  })

  it.skipIf(SKIP_REDIS)('ERR_REDIS_REFUSED: Redis answers, with an authentication error', async () => {
    const port = await freePort()
    const redis: ChildProcess = spawn(REDIS!, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--requirepass', 'sesame'], {
      stdio: 'ignore',
    })
    try {
      const up = (): Promise<boolean> =>
        new Promise((r) => {
          const sock = net.connect(port, '127.0.0.1', () => r(sock.destroy() !== undefined))
          sock.on('error', () => r(false))
        })
      let listening = false
      for (let i = 0; i < 100 && !listening; i++) {
        listening = await up()
        if (!listening) await new Promise((r) => setTimeout(r, 50))
      }
      expect(listening).toBe(true)
      const s = unstarted({ cluster: { redis: `redis://127.0.0.1:${port}` } })
      await expect(s.listen()).rejects.toMatchObject({ code: 'ERR_REDIS_REFUSED' })
      // With the password the same Redis is fine: the code was about the refusal, not the address.
      const ok = unstarted({ cluster: { redis: `redis://:sesame@127.0.0.1:${port}` } })
      await expect(ok.listen()).resolves.toMatchObject({ port: expect.any(Number) })
      await ok.close({ timeout: 200 })
    } finally {
      redis.kill('SIGKILL')
    }
  })
})

describe('sockets and handlers', () => {
  it('ERR_NOT_IN_ROOM: sendToRoom to a room the socket is not in', async () => {
    const { socket, ws } = await oneSocket()
    expect(() => socket.sendToRoom('elsewhere', 'hi')).toThrow(withCode('ERR_NOT_IN_ROOM'))
    ws.close()
  })

  it('ERR_SOCKET_CLOSED: sendToRoom and setMetadata once the socket is closed', async () => {
    const seen: unknown[] = []
    const { ws } = await oneSocket({
      onClose: (s) => {
        for (const call of [() => s.sendToRoom('r', 'x'), () => s.setMetadata('k', 1)]) {
          try {
            call()
            seen.push('no throw')
          } catch (err) {
            seen.push(err)
          }
        }
      },
    })
    ws.close()
    await waitFor(() => seen.length === 2)
    expect(seen).toEqual([withCode('ERR_SOCKET_CLOSED'), withCode('ERR_SOCKET_CLOSED')])
  })

  it('ERR_HANDLER_FAILED: onError gets the handler failure with the thrown value as cause', async () => {
    const boom = new Error('boom')
    const errors: unknown[] = []
    const { ws } = await oneSocket({
      onMessage: () => {
        throw boom
      },
      onError: (_s, err) => void errors.push(err),
    })
    ws.send('x')
    await waitFor(() => errors.length === 1)
    expect(errors[0]).toMatchObject({ code: 'ERR_HANDLER_FAILED', cause: boom })
  })

  it('ERR_INVALID_HANDLER_RESULT: onUpgrade returns what it may not; the client gets 500', async () => {
    const logged: unknown[] = []
    const spy = vi.spyOn(console, 'error').mockImplementation((...args: unknown[]) => void logged.push(...args))
    try {
      const { port } = await server({ onUpgrade: () => 42 as unknown as boolean })
      expect(statusOf(await rawExchange(port, upgradeRequest('/ws')))).toBe(500)
      expect(logged).toContainEqual(withCode('ERR_INVALID_HANDLER_RESULT'))
    } finally {
      spy.mockRestore()
    }
  })
})

describe('the list of codes', () => {
  const codes = (text: string, quote: string): Set<string> =>
    new Set(text.match(new RegExp(`${quote}ERR_[A-Z_]+${quote}`, 'g'))?.map((c) => c.slice(1, -1)))
  const read = (path: string): string => readFileSync(join(root, path), 'utf8')
  const [serverDocs, clientDocs] = read('docs/errors.md').split('\n## Client') as [string, string]
  const facade = codes(read('lib/errors.ts'), "'")

  it('docs/errors.md documents exactly the codes of lib/errors.ts', () => {
    expect(facade.size).toBeGreaterThan(10)
    expect([...codes(serverDocs, '`')].sort()).toEqual([...facade].sort())
  })

  it('every engine code (native/error.rs) is one of them', () => {
    const engine = codes(read('native/error.rs'), '"')
    expect(engine.size).toBeGreaterThan(5)
    for (const code of engine) expect(facade).toContain(code)
  })

  it("the client's section documents exactly the codes of client/src/errors.ts", () => {
    const client = codes(read('client/src/errors.ts'), "'")
    expect(client.size).toBeGreaterThan(8)
    expect([...codes(clientDocs, '`')].sort()).toEqual([...client].sort())
  })
})
