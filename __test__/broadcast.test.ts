// server.broadcast: rooms, everyone, except, filter, binary; and order with other sends corked
// in the same batch.
import { describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import type { Socket, WsServer } from '../lib/index'
import { anyMessageWithin, connect, connectAs, messages, nextMessage, type ProtocolFrame, request, serverPool, sleep, waitFor } from '../test-support/index'

const server = serverPool(1000)

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
    await sleep(100)
    const totals = [...counts.values()]
    expect(totals.reduce((a, b) => a + b, 0)).toBe(999)
    expect(Math.max(...totals)).toBe(1)
    for (const ws of outsiders) expect(counts.get(ws)).toBe(0)
    ;[...members, ...outsiders].forEach((ws) => ws.close())
  }, 60_000)

  it('binary broadcast arrives byte-exact; broadcast without room reaches everyone; filter selects', async () => {
    const { url, server: srv } = await server()
    const clients = await Promise.all([connectAs(url, 'c0'), connectAs(url, 'c1'), connectAs(url, 'c2')])
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
    return text.startsWith('{') ? String((JSON.parse(text) as ProtocolFrame).type) : text
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
    const [a, b, c, d, driver] = await Promise.all(['a', 'b', 'c', 'd', 'driver'].map((id) => connectAs(started.url, id)))
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
    const [sender, both, onlyR2] = await Promise.all([connectAs(url, 's'), connectAs(url, 'both'), connectAs(url, 'r2only')])
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
    const seen = (await toBoth).map((m) => JSON.parse(m as string) as ProtocolFrame)
    expect(seen.map((f) => f.message)).toEqual(Array.from({ length: 40 }, (_, i) => `n${i}`))
    expect(seen.map((f) => f.room_id)).toEqual(Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? 'r1' : 'r2')))
    const seenR2 = (await toR2).map((m) => (JSON.parse(m as string) as ProtocolFrame).message)
    expect(seenR2).toEqual(Array.from({ length: 20 }, (_, i) => `n${2 * i + 1}`))
    expect(await anyMessageWithin(sender, 150)).toBe(false)
    for (const ws of [sender, both, onlyR2]) ws.close()
  })
})
