// The client against a real @rnode/ws server: connect, identity, text/JSON/binary both ways,
// status and events, disconnect.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { Socket } from '../../lib/index'
import { RNodeWebSocketClient, createWebSocketClient, type WebSocketEvent } from '../src/index'
import WebSocket from 'ws'
import { sleep, startServer, waitFor, type Started } from '../../test-support/index'
import { makeClient, nextEvent } from './harness'

let s: Started
const received: Array<{ clientId: string; message: string | Buffer }> = []
const sockets = new Map<string, Socket>()
const closes: Array<{ clientId: string; code: number }> = []

beforeAll(async () => {
  s = await startServer({
    onConnect: (socket) => void sockets.set(socket.clientId, socket),
    onMessage: (socket, message) => {
      received.push({ clientId: socket.clientId, message })
      if (message === 'echo me') socket.send('echo: echo me')
      if (Buffer.isBuffer(message) && message[0] === 0xff) socket.send(Buffer.from([1, 2, 3, 0, 255]))
    },
    onClose: (socket, code) => void closes.push({ clientId: socket.clientId, code }),
  })
})
afterAll(async () => {
  await s.server.close()
})

const clients: RNodeWebSocketClient[] = []
afterEach(() => {
  for (const c of clients.splice(0)) c.disconnect()
})
function client(id?: string, options = {}): RNodeWebSocketClient {
  const c = makeClient(s.url, id, options)
  clients.push(c)
  return c
}

describe('connect', () => {
  it('connects, reports status changes and sends its clientId as the query parameter', async () => {
    const c = client('user_123')
    const statuses: string[] = []
    c.on('statusChange', (st) => statuses.push(st))
    expect(c.getStatus()).toBe('disconnected')
    const connected = nextEvent(c, 'connected')
    await c.connect()
    await connected
    expect(c.getStatus()).toBe('connected')
    expect(statuses).toEqual(['connecting', 'connected'])
    expect(c.getClientId()).toBe('user_123')
    await waitFor(() => sockets.has('user_123'), 2000, 'server-side socket')
    expect(sockets.get('user_123')!.query.clientId).toBe('user_123')
  })

  it('generates a clientId the server accepts when none is given', async () => {
    const c = client()
    expect(c.getClientId()).toMatch(/^client_[a-z0-9_]+$/)
    await c.connect()
    await waitFor(() => sockets.has(c.getClientId()), 2000, 'server saw the generated id')
  })

  it('connect() while connected resolves at once; a second client gets its own id', async () => {
    const a = client('dup_a')
    const b = client('dup_b')
    await Promise.all([a.connect(), b.connect()])
    await a.connect()
    expect(a.getStatus()).toBe('connected')
    await waitFor(() => sockets.has('dup_a') && sockets.has('dup_b'))
  })

  it('without a WebSocket implementation (Node 20 has no global one) the constructor says what to pass', () => {
    const g = globalThis as { WebSocket?: unknown }
    const saved = g.WebSocket
    delete g.WebSocket
    try {
      expect(() => new RNodeWebSocketClient(s.url)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_OPTION' }))
    } finally {
      if (saved !== undefined) g.WebSocket = saved
    }
  })
})

describe('messages', () => {
  it('sends text, objects as JSON and bytes as binary frames, in order', async () => {
    const c = client('sender_1')
    await c.connect()
    await c.send('plain text')
    await c.send({ kind: 'obj', n: 1 })
    await c.send(new Uint8Array([0, 1, 2, 250]))
    await c.send(new Uint8Array([9, 8, 7]).buffer)
    await waitFor(() => received.filter((r) => r.clientId === 'sender_1').length === 4, 3000, 'four messages')
    const got = received.filter((r) => r.clientId === 'sender_1').map((r) => r.message)
    expect(got[0]).toBe('plain text')
    expect(JSON.parse(got[1] as string)).toEqual({ kind: 'obj', n: 1 })
    expect(Buffer.isBuffer(got[2]) && [...got[2]]).toEqual([0, 1, 2, 250])
    expect(Buffer.isBuffer(got[3]) && [...got[3]]).toEqual([9, 8, 7])
  })

  it("emits the server's text as a string and binary as an ArrayBuffer", async () => {
    const c = client('receiver_1')
    await c.connect()
    const text = nextEvent(c, 'message')
    await c.send('echo me')
    expect((await text)[0]).toBe('echo: echo me')
    const bin = nextEvent(c, 'message')
    await c.send(new Uint8Array([0xff]))
    const [data] = await bin
    expect(data).toBeInstanceOf(ArrayBuffer)
    expect([...new Uint8Array(data as ArrayBuffer)]).toEqual([1, 2, 3, 0, 255])
  })

  it('JSON from the server that is not part of the room protocol is an application message', async () => {
    const c = client('receiver_2')
    await c.connect()
    await waitFor(() => sockets.has('receiver_2'))
    const msg = nextEvent(c, 'message')
    sockets.get('receiver_2')!.send('{"type":"chat","text":"hi"}')
    expect((await msg)[0]).toBe('{"type":"chat","text":"hi"}')
  })
})

describe('createWebSocketClient (callback style)', () => {
  it('calls onConnect and onMessage with a WebSocketEvent', async () => {
    const events: WebSocketEvent[] = []
    let connects = 0
    const c = createWebSocketClient({
      url: s.url,
      clientId: 'cb_user',
      WebSocket,
      onConnect: () => connects++,
      onMessage: (e) => events.push(e),
    })
    clients.push(c)
    await c.connect()
    expect(connects).toBe(1)
    await c.send('echo me')
    await waitFor(() => events.length === 1, 3000, 'onMessage')
    expect(events[0]).toMatchObject({ type: 'message', data: 'echo: echo me' })
    expect(events[0]!.roomId).toBeUndefined()
  })
})

describe('disconnect', () => {
  it('closes with 1000, emits disconnected, and does not reconnect', async () => {
    const c = client('leaver_1')
    await c.connect()
    let reconnecting = 0
    c.on('reconnecting', () => reconnecting++)
    const gone = nextEvent(c, 'disconnected')
    c.disconnect()
    expect(await gone).toEqual([1000, 'client disconnect'])
    expect(c.getStatus()).toBe('disconnected')
    await waitFor(() => closes.some((x) => x.clientId === 'leaver_1'), 3000, 'server onClose')
    expect(closes.find((x) => x.clientId === 'leaver_1')!.code).toBe(1000)
    await sleep(300) // several reconnect delays (50 ms)
    expect(reconnecting).toBe(0)
    expect(c.getStatus()).toBe('disconnected')
  })

  it('disconnect() while connecting rejects connect()', async () => {
    const c = client('leaver_2')
    const p = c.connect()
    c.disconnect()
    await expect(p).rejects.toMatchObject({ code: 'ERR_DISCONNECTED' })
  })
})
