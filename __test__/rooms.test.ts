// Rooms: the native registry, the built-in protocol over raw `ws` clients, broadcast, metadata.
import net from 'node:net'
import { describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import type { Socket, WsServer } from '../lib/index'
import { connect, lastJsonLine, messages, nextMessage, runChild, serverPool, waitFor } from './helpers'

const server = serverPool(1000)

type Frame = Record<string, unknown>
async function request(ws: WebSocket, frame: Frame): Promise<Frame> {
  const reply = nextMessage(ws)
  ws.send(JSON.stringify(frame))
  return JSON.parse((await reply) as string) as Frame
}
async function client(url: string, clientId: string): Promise<WebSocket> {
  return connect(`${url}?clientId=${clientId}`)
}
/** Resolves true if a message arrives within `ms`, false otherwise. */
function anyMessageWithin(ws: WebSocket, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      ws.off('message', on)
      resolve(false)
    }, ms)
    const on = (): void => {
      clearTimeout(t)
      resolve(true)
    }
    ws.once('message', on)
  })
}

describe('built-in protocol', () => {
  it('join, room_message (with from_client_id, not echoed to the sender), leave', async () => {
    const { url, server: srv } = await server()
    const alice = await client(url, 'alice')
    const bob = await client(url, 'bob')
    expect(await request(alice, { type: 'join_room', room_id: 'general', request_id: 'r1' })).toEqual({
      type: 'room_joined',
      room_id: 'general',
      request_id: 'r1',
    })
    expect(await request(bob, { type: 'join_room', room_id: 'general' })).toEqual({ type: 'room_joined', room_id: 'general' })
    expect(srv.getRoom('general')?.connectionsCount).toBe(2)

    const toBob = nextMessage(bob)
    const aliceHears = anyMessageWithin(alice, 200)
    alice.send(JSON.stringify({ type: 'room_message', room_id: 'general', message: 'Hello' }))
    expect(JSON.parse((await toBob) as string)).toEqual({
      type: 'room_message',
      room_id: 'general',
      message: 'Hello',
      from_client_id: 'alice',
    })
    expect(await aliceHears).toBe(false)

    // Structured messages pass through as JSON.
    const structured = nextMessage(alice)
    bob.send(JSON.stringify({ type: 'room_message', room_id: 'general', message: { text: 'hi', n: [1, 2] } }))
    expect(JSON.parse((await structured) as string).message).toEqual({ text: 'hi', n: [1, 2] })

    expect(await request(bob, { type: 'leave_room', room_id: 'general', request_id: 9 })).toEqual({
      type: 'room_left',
      room_id: 'general',
      request_id: 9,
    })
    expect(srv.getRoom('general')?.connectionsCount).toBe(1)
    alice.close()
    bob.close()
  })

  it('ping gets pong with the same timestamp and request_id', async () => {
    const { url } = await server()
    const ws = await connect(url)
    expect(await request(ws, { type: 'ping', timestamp: 1234567, request_id: 'p' })).toEqual({
      type: 'pong',
      timestamp: 1234567,
      request_id: 'p',
    })
    ws.close()
  })

  it('sending to a room you are not in is an error reply', async () => {
    const { url } = await server()
    const ws = await connect(url)
    const reply = await request(ws, { type: 'room_message', room_id: 'elsewhere', message: 'x', request_id: 3 })
    expect(reply.type).toBe('error')
    expect(reply.request_id).toBe(3)
    expect(String(reply.error)).toMatch(/not in room/)
    ws.close()
  })

  it('malformed protocol frames get an error reply and the connection stays up (HARDENING row 30)', async () => {
    const { url } = await server({ onMessage: (s, m) => void s.send(`app:${String(m)}`) })
    const ws = await connect(url)
    const bad: Frame[] = [
      { type: 'join_room' },
      { type: 'join_room', room_id: 42 },
      { type: 'join_room', room_id: '' },
      { type: 'join_room', room_id: 'x'.repeat(1024 * 1024 - 100) },
      { type: 'leave_room', room_id: null },
      { type: 'room_message', room_id: 'a' },
      { type: 'room_message', message: 'no room' },
    ]
    for (const frame of bad) {
      const reply = await request(ws, { ...frame, request_id: 'bad' })
      expect(reply.type).toBe('error')
      expect(reply.request_id).toBe('bad')
      expect(typeof reply.error).toBe('string')
    }
    // Not protocol at all: plain text, broken JSON, unknown types go to onMessage.
    for (const text of ['hello', '{"type": "join_room", broken', '{"type":"chat"}']) {
      const reply = nextMessage(ws)
      ws.send(text)
      expect(await reply).toBe(`app:${text}`)
    }
    expect(ws.readyState).toBe(WebSocket.OPEN)
    ws.close()
  })

  it('protocol traffic never crosses into JS when no hook is registered', async () => {
    const { url, server: srv } = await server({})
    const a = await connect(url)
    const b = await connect(url)
    await waitFor(() => srv.getConnections().length === 2)
    const before = srv.getStats().batching.events
    await request(a, { type: 'join_room', room_id: 'quiet' })
    await request(b, { type: 'join_room', room_id: 'quiet' })
    const got = nextMessage(b)
    a.send(JSON.stringify({ type: 'room_message', room_id: 'quiet', message: 'm' }))
    await got
    await request(a, { type: 'ping', timestamp: 1 })
    a.send('app message without onMessage')
    await request(a, { type: 'leave_room', room_id: 'quiet' })
    expect(srv.getStats().batching.events).toBe(before)
    a.close()
    b.close()
  })

  // A substring of the batch string would keep the whole batch alive in V8; room ids and close
  // reasons are handed over as strings of their own. Each join below shares its batch with
  // 60 KB of text: 300 kept slices would hold about 14 MB.
  it('room ids a hook keeps do not keep their batch of messages alive', async () => {
    const script = `
      const { WsServer } = require('./dist/index.js')
      const WebSocket = require('ws')
      ;(async () => {
        const kept = []
        const server = new WsServer({ host: '127.0.0.1', port: 0 })
        server.websocket('/ws', { onMessage: () => {}, onJoinRoom: (_s, roomId) => void kept.push(roomId) })
        const { port } = await server.listen()
        const ws = new WebSocket('ws://127.0.0.1:' + port + '/ws')
        await new Promise((r) => ws.on('open', r))
        const replies = []
        let wake = null
        ws.on('message', (m) => { replies.push(String(m)); if (wake) wake() })
        const next = () => new Promise((r) => {
          if (replies.length) return r(replies.shift())
          wake = () => { wake = null; r(replies.shift()) }
        })
        const filler = 'x'.repeat(60000)
        gc(); gc()
        const before = process.memoryUsage().heapUsed
        for (let i = 0; i < 300; i++) {
          ws.send(JSON.stringify({ type: 'join_room', room_id: 'a-room-with-a-longer-name-' + i }))
          ws.send(filler)
          await next()
        }
        gc(); gc()
        const grown = process.memoryUsage().heapUsed - before
        console.log(JSON.stringify({ kept: kept.length, distinct: new Set(kept).size, grown }))
        ws.close()
        await server.close({ timeout: 500 })
      })()
    `
    const { code, out } = await runChild(script, 20_000, ['--expose-gc'])
    expect(code).toBe(0)
    const r = lastJsonLine<{ kept: number; distinct: number; grown: number }>(out)
    expect(r.kept).toBe(300)
    expect(r.distinct).toBe(300)
    expect(r.grown).toBeLessThan(4_000_000)
  })
})

describe('registry', () => {
  it('createRoom / getRoom / getAllRooms / deleteRoom; members of a deleted room get room_left', async () => {
    const leaves: string[] = []
    const { url, server: srv } = await server({ onLeaveRoom: (_s, room) => void leaves.push(room) })
    const id = srv.createRoom('General chat', { id: 'general', description: 'all', maxConnections: 50, metadata: { topic: 'x' } })
    expect(id).toBe('general')
    const generated = srv.createRoom('Other')
    expect(generated).toMatch(/^[0-9a-f-]{36}$/)
    expect(() => srv.createRoom('dup', { id: 'general' })).toThrow(expect.objectContaining({ code: 'ERR_ROOM_EXISTS' }))
    const info = srv.getRoom('general')!
    expect(info).toMatchObject({ id: 'general', name: 'General chat', description: 'all', maxConnections: 50, connectionsCount: 0, metadata: { topic: 'x' } })
    expect(info.createdAt).toBeInstanceOf(Date)
    expect(Math.abs(info.createdAt.getTime() - Date.now())).toBeLessThan(10_000)
    expect(srv.getAllRooms().map((r) => r.id).sort()).toEqual(['general', generated].sort())
    expect(srv.getRoom('missing')).toBeUndefined()

    const ws = await connect(url)
    await request(ws, { type: 'join_room', room_id: 'general' })
    const left = nextMessage(ws)
    expect(srv.deleteRoom('general')).toBe(true)
    expect(JSON.parse((await left) as string)).toEqual({ type: 'room_left', room_id: 'general' })
    expect(srv.getRoom('general')).toBeUndefined()
    expect(srv.deleteRoom('general')).toBe(false)
    await waitFor(() => leaves.length === 1)
    expect(leaves).toEqual(['general'])
    ws.close()
  })

  it('auto-created rooms vanish with their last member; created rooms stay', async () => {
    const { url, server: srv } = await server()
    srv.createRoom('Kept', { id: 'kept' })
    const ws = await connect(url)
    await request(ws, { type: 'join_room', room_id: 'kept' })
    await request(ws, { type: 'join_room', room_id: 'temp' })
    expect(srv.getRoom('temp')?.connectionsCount).toBe(1)
    await request(ws, { type: 'leave_room', room_id: 'temp' })
    await request(ws, { type: 'leave_room', room_id: 'kept' })
    expect(srv.getRoom('temp')).toBeUndefined()
    expect(srv.getRoom('kept')?.connectionsCount).toBe(0)
    ws.close()
  })

  it('autoCreateRooms: false answers not_found', async () => {
    const { url } = await server({}, { autoCreateRooms: false })
    const ws = await connect(url)
    expect(await request(ws, { type: 'join_room', room_id: 'nowhere' })).toEqual({
      type: 'room_join_error',
      room_id: 'nowhere',
      error: 'not_found',
    })
    ws.close()
  })

  it('maxConnections is enforced with full', async () => {
    const { url, server: srv } = await server()
    srv.createRoom('Small', { id: 'small', maxConnections: 2 })
    const clients = await Promise.all([connect(url), connect(url), connect(url)])
    expect((await request(clients[0]!, { type: 'join_room', room_id: 'small' })).type).toBe('room_joined')
    expect((await request(clients[1]!, { type: 'join_room', room_id: 'small' })).type).toBe('room_joined')
    expect(await request(clients[2]!, { type: 'join_room', room_id: 'small', request_id: 1 })).toEqual({
      type: 'room_join_error',
      room_id: 'small',
      error: 'full',
      request_id: 1,
    })
    expect(srv.getRoom('small')?.connectionsCount).toBe(2)
    clients.forEach((c) => c.close())
  })

  it('onJoinRoom can veto by returning false, throwing or resolving false', async () => {
    const errors: unknown[] = []
    const veto = new Error('not you')
    const { url } = await server({
      onJoinRoom: async (_s, room) => {
        if (room === 'no') return false
        if (room === 'throw') throw veto
        if (room === 'later') {
          await new Promise((r) => setTimeout(r, 20))
          return false
        }
        return true
      },
      onError: (_s, e) => void errors.push(e),
    })
    const ws = await connect(url)
    for (const room of ['no', 'throw', 'later']) {
      expect(await request(ws, { type: 'join_room', room_id: room })).toEqual({ type: 'room_join_error', room_id: room, error: 'denied' })
    }
    expect(await request(ws, { type: 'join_room', room_id: 'yes' })).toEqual({ type: 'room_joined', room_id: 'yes' })
    expect(errors).toEqual([expect.objectContaining({ code: 'ERR_HANDLER_FAILED', cause: veto })])
    expect(ws.readyState).toBe(WebSocket.OPEN)
    ws.close()
  })

  it('socket API: joinRoom, rooms, sendToRoom, leaveRoom() leaves all, metadata visible in every handler', async () => {
    const seenMeta: unknown[] = []
    let member: Socket | undefined
    const { url, server: srv } = await server({
      onConnect: (s) => {
        s.setMetadata('role', 'admin')
        s.setMetadata('prefs', { theme: 'dark', n: 3 })
        if (s.clientId === 'member') member = s
      },
      onMessage: (s) => void seenMeta.push(s.getMetadata('prefs')),
      onClose: (s) => void seenMeta.push(s.getMetadata('role')),
    })
    const memberWs = await client(url, 'member')
    const other = await client(url, 'other')
    await waitFor(() => member !== undefined && srv.getConnections().length === 2)
    const otherSocket = srv.getConnections().find((s) => s.clientId === 'other')!

    const told = messages(memberWs, 2)
    expect(member!.joinRoom('a')).toBe(true)
    expect(member!.joinRoom('b')).toBe(true)
    expect((await told).map((m) => JSON.parse(m as string).type)).toEqual(['room_joined', 'room_joined'])
    expect(member!.rooms.sort()).toEqual(['a', 'b'])
    expect(otherSocket.joinRoom('a')).toBe(true)
    await nextMessage(other)

    const got = nextMessage(other)
    expect(member!.sendToRoom('a', 'from the server side')).toBe(1)
    expect(JSON.parse((await got) as string)).toEqual({ type: 'room_message', room_id: 'a', message: 'from the server side', from_client_id: 'member' })
    expect(() => otherSocket.sendToRoom('b', 'x')).toThrow(expect.objectContaining({ code: 'ERR_NOT_IN_ROOM' }))

    expect(srv.getConnections('a').map((s) => s.clientId).sort()).toEqual(['member', 'other'])
    const lefts = messages(memberWs, 2)
    expect(member!.leaveRoom()).toBe(true)
    expect((await lefts).map((m) => JSON.parse(m as string).type)).toEqual(['room_left', 'room_left'])
    expect(member!.rooms).toEqual([])
    expect(member!.getMetadata('role')).toBe('admin')
    memberWs.send('tick')
    await waitFor(() => seenMeta.length === 1)
    memberWs.close()
    await waitFor(() => seenMeta.length === 2)
    expect(seenMeta).toEqual([{ theme: 'dark', n: 3 }, 'admin'])
    expect(() => member!.joinRoom('' as string)).toThrow(TypeError)
    expect(() => member!.joinRoom('' as string)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ROOM_ID' }))
    expect(() => member!.joinRoom(5 as unknown as string)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ROOM_ID' }))
    other.close()
  })
})

describe('broadcast', () => {
  it('to a room of 1,000 members: exactly once each, never at non-members, except honoured', async () => {
    const { url, server: srv } = await server()
    const members = await Promise.all(Array.from({ length: 1000 }, () => connect(url)))
    const outsiders = await Promise.all(Array.from({ length: 20 }, () => connect(url)))
    await Promise.all(members.map((ws) => request(ws, { type: 'join_room', room_id: 'big' })))
    expect(srv.getRoom('big')?.connectionsCount).toBe(1000)
    await waitFor(() => srv.getConnections().length === 1020)

    const counts = new Map<WebSocket, number>()
    for (const ws of [...members, ...outsiders]) {
      counts.set(ws, 0)
      ws.on('message', (m) => {
        if (String(m) === 'to the room') counts.set(ws, counts.get(ws)! + 1)
      })
    }
    const skipped = srv.getConnections('big')[0]!
    const delivered = srv.broadcast('to the room', { room: 'big', except: skipped.id })
    expect(delivered).toBe(999)
    await waitFor(() => [...counts.values()].reduce((a, b) => a + b, 0) === 999, 15_000, '999 deliveries')
    await new Promise((r) => setTimeout(r, 100))
    const totals = [...counts.values()]
    expect(totals.reduce((a, b) => a + b, 0)).toBe(999)
    expect(Math.max(...totals)).toBe(1)
    for (const ws of outsiders) expect(counts.get(ws)).toBe(0)
    ;[...members, ...outsiders].forEach((ws) => ws.close())
  }, 60_000)

  it('binary broadcast arrives byte-exact; broadcast without room reaches everyone; filter selects', async () => {
    const { url, server: srv } = await server()
    const clients = await Promise.all([client(url, 'c0'), client(url, 'c1'), client(url, 'c2')])
    await waitFor(() => srv.getConnections().length === 3)
    const payload = Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 13) & 0xff))
    const got = Promise.all(clients.map((ws) => nextMessage(ws)))
    expect(srv.broadcast(payload)).toBe(3)
    for (const m of await got) expect(Buffer.isBuffer(m) && m.equals(payload)).toBe(true)

    const onlyC1 = nextMessage(clients[1]!)
    const others = Promise.all([anyMessageWithin(clients[0]!, 200), anyMessageWithin(clients[2]!, 200)])
    expect(srv.broadcast('filtered', { filter: (s) => s.clientId === 'c1' })).toBe(1)
    expect(await onlyC1).toBe('filtered')
    expect(await others).toEqual([false, false])
    expect(() => srv.broadcast(5 as unknown as string)).toThrow(TypeError)
    expect(() => srv.broadcast(5 as unknown as string)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG' }))
    clients.forEach((ws) => ws.close())
  })
})

describe('several sends in one batch (one cork)', () => {
  /** A message as a short label: the text itself, or the `type` of a protocol frame. */
  const label = (m: string | Buffer): string => {
    const text = String(m)
    return text.startsWith('{') ? String((JSON.parse(text) as Frame).type) : text
  }

  it('room and server-wide broadcasts, direct sends, joins and leaves in one handler reach each client in order', async () => {
    let srv: WsServer | undefined
    const byId = (id: string): Socket => srv!.getConnections().find((s) => s.clientId === id)!
    const started = await server({
      onMessage: (_s, message) => {
        if (message !== 'go') return
        // All of this runs in one batch: the broadcasts to r1 share one buffer until something
        // else happens on this thread.
        srv!.broadcast('m1', { room: 'r1' })
        srv!.broadcast('m2', { room: 'r2' })
        srv!.broadcast('all1')
        srv!.broadcast('m3', { room: 'r1' })
        byId('b').send('direct')
        srv!.broadcast('m4', { room: 'r1' })
        srv!.broadcast('all2', { except: byId('a').id })
        byId('c').joinRoom('r1')
        byId('d').leaveRoom('r1')
        srv!.broadcast('m5', { room: 'r1' })
        srv!.broadcast('m6', { room: 'r1', except: byId('b').id })
        srv!.broadcast(Buffer.from([1, 2, 3]), { room: 'r1', except: byId('b').id })
      },
    })
    srv = started.server
    const [a, b, c, d, driver] = await Promise.all(['a', 'b', 'c', 'd', 'driver'].map((id) => client(started.url, id)))
    await waitFor(() => srv!.getConnections().length === 5)
    const joined = Promise.all([messages(a!, 2), messages(b!, 1), messages(d!, 1)])
    byId('a').joinRoom('r1')
    byId('a').joinRoom('r2')
    byId('b').joinRoom('r1')
    byId('d').joinRoom('r1')
    await joined

    const got = Promise.all([messages(a!, 8), messages(b!, 7), messages(c!, 6), messages(d!, 6), messages(driver!, 2)])
    driver!.send('go')
    const [toA, toB, toC, toD, toDriver] = await got
    const bin = (m: string | Buffer): boolean => Buffer.isBuffer(m) && m.equals(Buffer.from([1, 2, 3]))
    expect(toA!.slice(0, 7).map(label)).toEqual(['m1', 'm2', 'all1', 'm3', 'm4', 'm5', 'm6'])
    expect(bin(toA![7]!)).toBe(true)
    expect(toB!.map(label)).toEqual(['m1', 'all1', 'm3', 'direct', 'm4', 'all2', 'm5'])
    expect(toC!.slice(0, 5).map(label)).toEqual(['all1', 'all2', 'room_joined', 'm5', 'm6'])
    expect(bin(toC![5]!)).toBe(true)
    expect(toD!.map(label)).toEqual(['m1', 'all1', 'm3', 'm4', 'all2', 'room_left'])
    expect(toDriver!.map(label)).toEqual(['all1', 'all2'])
    // Nothing more arrives: b was excluded from m6, d had left, nobody got a message twice.
    expect(await Promise.all([a!, b!, c!, d!, driver!].map((ws) => anyMessageWithin(ws, 150)))).toEqual([false, false, false, false, false])
    expect(srv.getStats().messagesOut).toBeGreaterThanOrEqual(8 + 7 + 6 + 6 + 2)
    for (const ws of [a, b, c, d, driver]) ws!.close()
  })

  it('room_message frames read in one go, to two rooms, arrive in the order sent', async () => {
    const { url, server: srv } = await server()
    const [sender, both, onlyR2] = await Promise.all([client(url, 's'), client(url, 'both'), client(url, 'r2only')])
    for (const [ws, rooms] of [[sender, ['r1', 'r2']], [both, ['r1', 'r2']], [onlyR2, ['r2']]] as const) {
      for (const room of rooms) await request(ws, { type: 'join_room', room_id: room })
    }
    expect(srv.getRoom('r1')?.connectionsCount).toBe(2)
    const toBoth = messages(both, 40)
    const toR2 = messages(onlyR2, 20)
    // One TCP write carrying all 40 frames: the server reads them in one turn.
    const raw = (sender as unknown as { _socket: import('node:net').Socket })._socket
    raw.cork()
    for (let i = 0; i < 40; i++) {
      sender.send(JSON.stringify({ type: 'room_message', room_id: i % 2 === 0 ? 'r1' : 'r2', message: `n${i}` }))
    }
    raw.uncork()
    const seen = (await toBoth).map((m) => JSON.parse(m as string) as Frame)
    expect(seen.map((f) => f.message)).toEqual(Array.from({ length: 40 }, (_, i) => `n${i}`))
    expect(seen.map((f) => f.room_id)).toEqual(Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? 'r1' : 'r2')))
    const seenR2 = (await toR2).map((m) => (JSON.parse(m as string) as Frame).message)
    expect(seenR2).toEqual(Array.from({ length: 20 }, (_, i) => `n${2 * i + 1}`))
    expect(await anyMessageWithin(sender, 150)).toBe(false)
    for (const ws of [sender, both, onlyR2]) ws.close()
  })
})

describe('consistency', () => {
  it('abrupt disconnects (destroyed TCP) leave no member behind', async () => {
    const { url, server: srv } = await server()
    const keep = await connect(url)
    await request(keep, { type: 'join_room', room_id: 'r' })
    // Clients that join and then vanish without a close frame (TCP destroyed).
    for (let i = 0; i < 20; i++) {
      const ws = await connect(url)
      await request(ws, { type: 'join_room', room_id: 'r' })
      ;(ws as unknown as { _socket: net.Socket })._socket.destroy()
    }
    await waitFor(() => srv.getRoom('r')?.connectionsCount === 1, 5000, 'room cleanup')
    await waitFor(() => srv.getConnections().length === 1)
    expect(srv.broadcast('still works', { room: 'r' })).toBe(1)
    expect(await nextMessage(keep)).toBe('still works')
    keep.close()
  })

  it('concurrent joins, leaves, broadcasts and disconnects leave registry and stats consistent', async () => {
    const { url, server: srv } = await server()
    const rooms = ['r0', 'r1', 'r2', 'r3']
    const clients = await Promise.all(Array.from({ length: 200 }, (_, i) => client(url, `c${i}`)))
    await waitFor(() => srv.getConnections().length === 200)
    const stop = Date.now() + 1500
    const churn = setInterval(() => {
      for (const r of rooms) srv.broadcast(`b-${r}`, { room: r })
    }, 2)
    await Promise.all(
      clients.map(async (ws, i) => {
        let n = 0
        while (Date.now() < stop && n < 40) {
          const room = rooms[(i + n) % rooms.length]!
          ws.send(JSON.stringify({ type: n % 3 === 2 ? 'leave_room' : 'join_room', room_id: room }))
          ws.send(JSON.stringify({ type: 'room_message', room_id: room, message: n }))
          n++
          await new Promise((r) => setTimeout(r, 1))
        }
        if (i % 2 === 0) ws.terminate()
      }),
    )
    clearInterval(churn)
    await waitFor(() => srv.getConnections().length === 100, 10_000, 'disconnects processed')
    // Let in-flight protocol frames settle.
    await new Promise((r) => setTimeout(r, 300))
    const live = new Set(srv.getConnections().map((s) => s.id))
    const stats = srv.getStats()
    let total = 0
    for (const info of srv.getAllRooms()) {
      const members = srv.getConnections(info.id)
      expect(members.length).toBe(info.connectionsCount)
      for (const m of members) {
        expect(live.has(m.id)).toBe(true)
        expect(m.rooms).toContain(info.id)
      }
      expect(stats.connectionsByRoom[info.id]).toBe(info.connectionsCount)
      total += info.connectionsCount
    }
    const fromSockets = srv.getConnections().reduce((a, s) => a + s.rooms.length, 0)
    expect(fromSockets).toBe(total)
    expect(stats.totalRooms).toBe(srv.getAllRooms().length)
    expect(stats.totalConnections).toBe(100)
    clients.forEach((ws) => ws.close())
  }, 60_000)
})
