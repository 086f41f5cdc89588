// Rooms: the native registry, the socket's room API, membership kept consistent under churn.
import net from 'node:net'
import { describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import type { Socket } from '../lib/index'
import { connect, connectAs, messages, nextMessage, request, serverPool, sleep, waitFor } from '../test-support/index'

const server = serverPool(1000)

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
          await sleep(20)
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
    const memberWs = await connectAs(url, 'member')
    const other = await connectAs(url, 'other')
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
    const clients = await Promise.all(Array.from({ length: 200 }, (_, i) => connectAs(url, `c${i}`)))
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
          await sleep(1)
        }
        if (i % 2 === 0) ws.terminate()
      }),
    )
    clearInterval(churn)
    await waitFor(() => srv.getConnections().length === 100, 10_000, 'disconnects processed')
    // Let in-flight protocol frames settle.
    await sleep(300)
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
