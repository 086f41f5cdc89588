// Rooms through the built-in protocol against the real engine: join, room messages with
// fromClientId, history, leave, join errors, timeouts, and rejoin + queued room messages after
// the server restarts on the same port.
import { afterEach, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import type { ServerOptions, WebSocketHandlers } from '../../lib/index'
import { createWebSocketClient, type RNodeWebSocketClient, type WebSocketEvent } from '../src/index'
import { sleep, startServer, waitFor, type Started } from '../../test-support/index'
import { makeClient, nextEvent } from './harness'

const clients: RNodeWebSocketClient[] = []
const servers: Started[] = []
afterEach(async () => {
  for (const c of clients.splice(0)) c.disconnect()
  for (const s of servers.splice(0)) await s.server.close()
})

async function server(handlers: WebSocketHandlers = {}, options: ServerOptions = {}, port = 0): Promise<Started> {
  const s = await startServer(handlers, { ...options, port })
  servers.push(s)
  return s
}
async function connected(s: Started, id: string, options = {}): Promise<RNodeWebSocketClient> {
  const c = makeClient(s.url, id, options)
  clients.push(c)
  await c.connect()
  return c
}

describe('join and room messages', () => {
  it('joinRoom resolves with a joined Room and the server counts the member', async () => {
    const s = await server()
    const c = await connected(s, 'alice')
    const joined = nextEvent(c, 'roomJoined')
    const room = await c.joinRoom('general')
    expect(await joined).toEqual(['general'])
    expect(room.id).toBe('general')
    expect(room.isJoinedToRoom()).toBe(true)
    expect(c.getRoom('general')).toBe(room)
    expect(c.getAllRooms().map((r) => r.getId())).toEqual(['general'])
    // The engine answered the join; the server's JS side may not have handled the connect yet.
    await waitFor(() => s.server.getConnections('general').length > 0)
    expect(s.server.getConnections('general').map((x) => x.clientId)).toEqual(['alice'])
    expect(await c.joinRoom('general')).toBe(room) // already joined: same object, no second request
  })

  it('room messages reach the other members with fromClientId, not the sender', async () => {
    const s = await server()
    const a = await connected(s, 'alice')
    const b = await connected(s, 'bob')
    await a.joinRoom('general')
    const roomB = await b.joinRoom('general')
    const outsider = await connected(s, 'carol')
    let carolGot = 0
    outsider.on('roomMessage', () => carolGot++)
    let aliceGot = 0
    a.on('roomMessage', () => aliceGot++)

    const got = nextEvent(b, 'roomMessage')
    await a.sendToRoom('general', 'Hello')
    expect(await got).toEqual(['general', 'Hello', 'alice'])

    const got2 = nextEvent(b, 'roomMessage')
    await a.getRoom('general')!.send({ text: 'as json' })
    expect((await got2)[1]).toBe('{"text":"as json"}')

    const got3 = nextEvent(b, 'roomMessage')
    await a.send('via send(message, roomId)', 'general')
    expect((await got3)[1]).toBe('via send(message, roomId)')

    expect(roomB.getMessageHistory().map((m) => [m.message, m.fromClientId])).toEqual([
      ['Hello', 'alice'],
      ['{"text":"as json"}', 'alice'],
      ['via send(message, roomId)', 'alice'],
    ])
    expect(a.getRoom('general')!.getMessageHistory().map((m) => m.fromClientId)).toEqual(['alice', 'alice', 'alice'])
    await sleep(50)
    expect(carolGot).toBe(0)
    expect(aliceGot).toBe(0)
  })

  it('the callback style gets room messages as WebSocketEvents with roomId and fromClientId', async () => {
    const s = await server()
    const events: WebSocketEvent[] = []
    const joined: string[] = []
    const b = createWebSocketClient({
      url: s.url,
      clientId: 'bob',
      WebSocket,
      onJoinRoom: (id) => joined.push(id),
      onMessage: (e) => events.push(e),
    })
    clients.push(b)
    await b.connect()
    await b.joinRoom('general')
    expect(joined).toEqual(['general'])
    const a = await connected(s, 'alice')
    await a.joinRoom('general')
    await a.send('Hello, everyone!', 'general')
    await waitFor(() => events.length === 1, 3000, 'onMessage')
    expect(events[0]).toMatchObject({ type: 'room_message', data: 'Hello, everyone!', roomId: 'general', fromClientId: 'alice' })
  })

  it('history is bounded by setMaxHistorySize', async () => {
    const s = await server()
    const a = await connected(s, 'alice')
    const room = await a.joinRoom('r1')
    room.setMaxHistorySize(2)
    for (const m of ['1', '2', '3']) await room.send(m)
    expect(room.getMessageHistory().map((m) => m.message)).toEqual(['2', '3'])
    room.clearMessageHistory()
    expect(room.getMessageHistory()).toEqual([])
    expect(() => room.setMaxHistorySize(-1)).toThrow(RangeError)
    expect(() => room.setMaxHistorySize(-1)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG' }))
  })

  it('leaveRoom resolves on room_left and the member is gone on the server', async () => {
    const s = await server()
    const a = await connected(s, 'alice')
    const room = await a.joinRoom('general')
    await a.joinRoom('other')
    const left = nextEvent(a, 'roomLeft')
    await a.leaveRoom('general')
    expect(await left).toEqual(['general'])
    expect(room.isJoinedToRoom()).toBe(false)
    expect(a.getRoom('general')).toBeUndefined()
    expect(s.server.getConnections('general')).toEqual([])
    await expect(a.sendToRoom('general', 'x')).rejects.toMatchObject({ code: 'ERR_NOT_JOINED' })
    await a.leaveRoom() // every room
    expect(a.getAllRooms()).toEqual([])
    expect(s.server.getConnections('other')).toEqual([])
  })
})

describe('join errors', () => {
  it('full: rejects with ERR_ROOM_JOIN_FAILED/full and emits roomJoinError', async () => {
    const s = await server()
    s.server.createRoom('Small', { id: 'small', maxConnections: 1 })
    const a = await connected(s, 'alice')
    await a.joinRoom('small')
    const b = await connected(s, 'bob')
    const event = nextEvent(b, 'roomJoinError')
    await expect(b.joinRoom('small')).rejects.toMatchObject({ code: 'ERR_ROOM_JOIN_FAILED', reason: 'full', roomId: 'small' })
    const [id, err] = await event
    expect([id, err.reason]).toEqual(['small', 'full'])
    expect(b.getRoom('small')).toBeUndefined()
  })

  it('denied by onJoinRoom returning false', async () => {
    const s = await server({ onJoinRoom: (_socket, roomId) => roomId !== 'secret' })
    const a = await connected(s, 'alice')
    await expect(a.joinRoom('secret')).rejects.toMatchObject({ code: 'ERR_ROOM_JOIN_FAILED', reason: 'denied' })
    const room = await a.joinRoom('public')
    expect([room.id, room.isJoinedToRoom()]).toEqual(['public', true])
    expect(s.server.getRoom('public')?.connectionsCount).toBe(1)
  })

  it('not_found when the server does not create rooms on join', async () => {
    const s = await server({}, { autoCreateRooms: false })
    const a = await connected(s, 'alice')
    await expect(a.joinRoom('nowhere')).rejects.toMatchObject({ code: 'ERR_ROOM_JOIN_FAILED', reason: 'not_found' })
  })

  it('an invalid room id (over 256 bytes) is refused by the server', async () => {
    const s = await server()
    const a = await connected(s, 'alice')
    const err = await a.joinRoom('x'.repeat(300)).catch((e: unknown) => e)
    expect(err).toMatchObject({ code: 'ERR_ROOM_JOIN_FAILED' })
    expect(a.getAllRooms()).toEqual([])
    expect(a.getStatus()).toBe('connected')
  })

  it('no answer within requestTimeout rejects with ERR_TIMEOUT', async () => {
    const s = await server({ onJoinRoom: () => new Promise<boolean>(() => undefined) })
    const a = await connected(s, 'alice', { requestTimeout: 200 })
    const t0 = Date.now()
    await expect(a.joinRoom('slow')).rejects.toMatchObject({ code: 'ERR_TIMEOUT' })
    expect(Date.now() - t0).toBeGreaterThanOrEqual(180)
    expect(a.getRoom('slow')).toBeUndefined()
  })
})

describe('after a server restart', () => {
  it('rejoins its rooms and delivers room messages queued while offline', async () => {
    let releaseAlice: () => void = () => undefined
    const bobIn = new Promise<void>((r) => (releaseAlice = r))
    const s1 = await server()
    const a = await connected(s1, 'alice')
    await a.joinRoom('general')
    await a.joinRoom('news')

    const down = nextEvent(a, 'disconnected')
    await s1.server.close()
    servers.splice(servers.indexOf(s1), 1)
    await down
    expect(a.getRoom('general')!.isJoinedToRoom()).toBe(false)
    await a.sendToRoom('general', 'sent while offline')
    await a.send('direct while offline')
    expect(a.getQueuedMessageCount()).toBe(2)

    // On the new server, alice's rejoin waits until bob is in the room, so he must get the message.
    const direct: string[] = []
    const s2 = await server(
      {
        onJoinRoom: async (socket) => {
          if (socket.clientId === 'alice') await bobIn
          return true
        },
        onMessage: (_socket, m) => void direct.push(String(m)),
      },
      {},
      s1.port,
    )
    const b = await connected(s2, 'bob')
    const got = nextEvent(b, 'roomMessage', 8000)
    await b.joinRoom('general')
    releaseAlice()
    expect(await got).toEqual(['general', 'sent while offline', 'alice'])
    await waitFor(() => a.getStatus() === 'connected', 5000, 'alice connected')
    expect(a.getRoom('general')!.isJoinedToRoom()).toBe(true)
    expect(a.getRoom('news')!.isJoinedToRoom()).toBe(true)
    expect(s2.server.getConnections('news').map((x) => x.clientId)).toEqual(['alice'])
    await waitFor(() => direct.length === 1, 3000, 'direct queued message')
    expect(direct).toEqual(['direct while offline'])
    expect(a.getQueuedMessageCount()).toBe(0)
  })
})
