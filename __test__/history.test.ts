// Room history: offsets within an epoch on every message published to a room that keeps
// history, `server.history()`, the count, byte and age limits, and the options' bad values.
import { describe, expect, it } from 'vitest'
import type WebSocket from 'ws'
import { WsServer, type Socket } from '../lib/index'
import { anyMessageWithin, connect, connectAs, messages, nextMessage, request, serverPool, sleep, waitFor } from '../test-support/index'

const server = serverPool(1000)

type Frame = Record<string, unknown>
const parse = (m: string | Buffer): Frame => JSON.parse(m.toString()) as Frame

async function join(ws: WebSocket, room: string): Promise<Frame> {
  return request(ws, { type: 'join_room', room_id: room })
}

function codeOf(fn: () => unknown): unknown {
  try {
    fn()
  } catch (err) {
    return (err as { code?: unknown }).code
  }
  return 'no throw'
}

describe('history off', () => {
  it('is off by default: no epoch on join, no offset on messages, history() is undefined', async () => {
    const { url, server: srv } = await server()
    srv.createRoom('plain', { id: 'plain' })
    const a = await connect(url)
    const b = await connect(url)
    expect(await join(a, 'plain')).toEqual({ type: 'room_joined', room_id: 'plain' })
    await join(b, 'plain')
    const got = nextMessage(b)
    a.send(JSON.stringify({ type: 'room_message', room_id: 'plain', message: 'hi' }))
    const frame = parse(await got)
    expect(frame).toMatchObject({ type: 'room_message', message: 'hi' })
    expect(frame).not.toHaveProperty('offset')
    const raw = nextMessage(b)
    srv.broadcast('raw text', { room: 'plain' })
    expect(await raw).toBe('raw text')
    expect(srv.history('plain')).toBeUndefined()
    expect(srv.history('missing')).toBeUndefined()
    a.close()
    b.close()
  })
})

describe('offsets', () => {
  it('client room_message, sendToRoom and broadcast each get the next offset; history() returns them', async () => {
    let alice: Socket | undefined
    const { url, server: srv } = await server({ onConnect: (s) => void (s.clientId === 'alice' && (alice = s)) })
    srv.createRoom('Chat', { id: 'chat', history: { size: 100, ttl: 60_000 } })
    const a = await connectAs(url, 'alice')
    const b = await connectAs(url, 'bob')
    const joined = await join(a, 'chat')
    expect(joined).toMatchObject({ type: 'room_joined', room_id: 'chat', offset: 0 })
    expect(joined.epoch).toMatch(/^[0-9a-f]{16}$/)
    expect(await join(b, 'chat')).toMatchObject({ epoch: joined.epoch, offset: 0 })
    await waitFor(() => alice !== undefined)

    const got = messages(b, 3)
    a.send(JSON.stringify({ type: 'room_message', room_id: 'chat', message: { text: 'one' } }))
    await waitFor(() => srv.history('chat')?.offset === 1)
    alice!.sendToRoom('chat', 'two')
    srv.broadcast('three', { room: 'chat' })
    const frames = (await got).map(parse)
    expect(frames).toEqual([
      { type: 'room_message', room_id: 'chat', message: { text: 'one' }, from_client_id: 'alice', offset: 1 },
      { type: 'room_message', room_id: 'chat', message: 'two', from_client_id: 'alice', offset: 2 },
      { type: 'room_message', room_id: 'chat', message: 'three', offset: 3 },
    ])

    const h = srv.history('chat')!
    expect(h.epoch).toBe(joined.epoch)
    expect(h.offset).toBe(3)
    expect(h.messages.map((m) => [m.offset, m.message, m.fromClientId])).toEqual([
      [1, { text: 'one' }, 'alice'],
      [2, 'two', 'alice'],
      [3, 'three', undefined],
    ])
    expect(Math.abs(h.messages[0]!.timestamp.getTime() - Date.now())).toBeLessThan(10_000)
    expect(srv.history('chat', { since: 1 })!.messages.map((m) => m.offset)).toEqual([2, 3])
    expect(srv.history('chat', { since: 0, limit: 2 })!.messages.map((m) => m.offset)).toEqual([1, 2])
    expect(srv.history('chat', { since: 3 })!.messages).toEqual([])

    // A later joiner learns where the room stands.
    const c = await connect(url)
    expect(await join(c, 'chat')).toMatchObject({ epoch: joined.epoch, offset: 3 })
    for (const ws of [a, b, c]) ws.close()
  })

  it('direct sends and binary broadcasts are not stored', async () => {
    let sock: Socket | undefined
    const { url, server: srv } = await server({ onConnect: (s) => void (sock = s) })
    srv.createRoom('Chat', { id: 'chat', history: { size: 10, ttl: 60_000 } })
    const a = await connect(url)
    await join(a, 'chat')
    await waitFor(() => sock !== undefined)
    const direct = nextMessage(a)
    sock!.send('just for you')
    expect(await direct).toBe('just for you')
    const bin = nextMessage(a)
    srv.broadcast(Buffer.from([1, 2, 3]), { room: 'chat' })
    expect(Buffer.isBuffer(await bin)).toBe(true)
    expect(srv.history('chat')).toMatchObject({ offset: 0, messages: [] })
    a.close()
  })

  it('the server-wide default applies to auto-created rooms; a room of its own overrides it', async () => {
    const { url, server: srv } = await server({}, { history: { size: 2, ttl: 60_000 } })
    srv.createRoom('Own', { id: 'own', history: { size: 5, ttl: 60_000 } })
    const a = await connect(url)
    expect((await join(a, 'auto')).epoch).toMatch(/^[0-9a-f]{16}$/)
    await join(a, 'own')
    for (let i = 0; i < 6; i++) {
      srv.broadcast(`m${i}`, { room: 'auto' })
      srv.broadcast(`m${i}`, { room: 'own' })
    }
    expect(srv.history('auto')!.messages.map((m) => m.offset)).toEqual([5, 6])
    expect(srv.history('own')!.messages.map((m) => m.offset)).toEqual([2, 3, 4, 5, 6])
    // An auto-created room with history stays while its history may be asked for.
    a.close()
    await waitFor(() => srv.getConnections().length === 0)
    expect(srv.history('auto')!.offset).toBe(6)
  })

  it('a room deleted and created again starts a new epoch', async () => {
    const { server: srv } = await server()
    srv.createRoom('R', { id: 'r', history: { size: 5, ttl: 60_000 } })
    srv.broadcast('x', { room: 'r' })
    const first = srv.history('r')!
    srv.deleteRoom('r')
    srv.createRoom('R', { id: 'r', history: { size: 5, ttl: 60_000 } })
    const second = srv.history('r')!
    expect(second.epoch).not.toBe(first.epoch)
    expect(second.offset).toBe(0)
  })
})

describe('limits', () => {
  it('size: the newest messages are kept', async () => {
    const { server: srv } = await server()
    srv.createRoom('R', { id: 'r', history: { size: 3, ttl: 60_000 } })
    for (let i = 1; i <= 10; i++) srv.broadcast(`m${i}`, { room: 'r' })
    const h = srv.history('r')!
    expect(h.offset).toBe(10)
    expect(h.messages.map((m) => m.message)).toEqual(['m8', 'm9', 'm10'])
  })

  it('bytes: frames past the byte budget push the oldest out', async () => {
    const { server: srv } = await server()
    // Each stored frame is the whole room_message JSON, about 70 bytes here.
    srv.createRoom('R', { id: 'r', history: { size: 1000, ttl: 60_000, bytes: 300 } })
    for (let i = 1; i <= 20; i++) srv.broadcast(`message ${String(i).padStart(3, '0')}`, { room: 'r' })
    const h = srv.history('r')!
    expect(h.messages.length).toBeGreaterThan(0)
    expect(h.messages.length).toBeLessThan(20)
    const bytes = h.messages.reduce((n, m) => n + JSON.stringify({ type: 'room_message', room_id: 'r', message: m.message, offset: m.offset }).length, 0)
    expect(bytes).toBeLessThanOrEqual(300)
    expect(h.messages.at(-1)!.offset).toBe(20)
  })

  it('ttl: messages older than ttl are gone; offsets go on', async () => {
    const { server: srv } = await server()
    srv.createRoom('R', { id: 'r', history: { size: 100, ttl: 150 } })
    srv.broadcast('old', { room: 'r' })
    expect(srv.history('r')!.messages.length).toBe(1)
    await sleep(300)
    srv.broadcast('new', { room: 'r' })
    const h = srv.history('r')!
    expect(h.messages.map((m) => [m.offset, m.message])).toEqual([[2, 'new']])
  })
})

describe('bad values', () => {
  it('options and arguments are checked, errors carry codes', async () => {
    const { server: srv } = await server()
    expect(codeOf(() => new WsServer({ history: { size: 0, ttl: 10 } }))).toBe('ERR_INVALID_OPTION')
    expect(codeOf(() => new WsServer({ history: { size: 10 } as never }))).toBe('ERR_INVALID_OPTION')
    expect(codeOf(() => new WsServer({ history: 5 as never }))).toBe('ERR_INVALID_OPTION')
    expect(codeOf(() => new WsServer({ history: { size: 2_000_000, ttl: 10 } }))).toBe('ERR_INVALID_OPTION')
    expect(codeOf(() => srv.createRoom('x', { history: { size: 5, ttl: -1 } }))).toBe('ERR_INVALID_OPTION')
    // History in Redis runs Lua over several keys: one Redis, not a Redis Cluster.
    const redis = 'redis://127.0.0.1:1'
    expect(codeOf(() => new WsServer({ cluster: { redis, sharded: true }, history: { size: 5, ttl: 10 } }))).toBe('ERR_INVALID_OPTION')
    const clustered = new WsServer({ cluster: { redis } })
    expect(clustered.createRoom('x', { id: 'x', history: { size: 5, ttl: 10 } })).toBe('x')
    await clustered.close()
    expect(codeOf(() => srv.createRoom('x', { history: { size: 5, ttl: 10, bytes: 1.5 } }))).toBe('ERR_INVALID_OPTION')
    srv.createRoom('R', { id: 'r', history: { size: 5, ttl: 60_000 } })
    expect(codeOf(() => srv.history('r', { since: -1 }))).toBe('ERR_INVALID_ARG')
    expect(codeOf(() => srv.history('r', { since: 'x' as never }))).toBe('ERR_INVALID_ARG')
    expect(codeOf(() => srv.history('r', { limit: 0 }))).toBe('ERR_INVALID_ARG')
    expect(codeOf(() => srv.history('r', { limit: 10_001 }))).toBe('ERR_INVALID_ARG')
    expect(srv.history('r', { since: 99 })!.messages).toEqual([])
  })

  it('a client cannot forge an offset: its room_message fields are not passed through', async () => {
    const { url, server: srv } = await server()
    srv.createRoom('R', { id: 'r', history: { size: 5, ttl: 60_000 } })
    const a = await connect(url)
    const b = await connect(url)
    await join(a, 'r')
    await join(b, 'r')
    const got = nextMessage(b)
    a.send(JSON.stringify({ type: 'room_message', room_id: 'r', message: 'x', offset: 999 }))
    expect(parse(await got).offset).toBe(1)
    expect(await anyMessageWithin(a, 100)).toBe(false)
    a.close()
    b.close()
  })
})
