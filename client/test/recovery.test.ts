// Session recovery by the client on its own: it keeps the server's token and the last offset
// per room, presents them on reconnect, drops duplicates by offset, and says per room whether
// the missed messages came (`recovered`) or not (`recoveryFailed`). Connections are dropped at
// the TCP level through a proxy the test controls.
import { afterEach, describe, expect, it } from 'vitest'
import { WebSocketServer } from 'ws'
import type { RNodeWebSocketClient } from '../src/index'
import type { ServerOptions } from '../../lib/index'
import { startProxy, startServer, waitFor, type Proxy, type Started } from '../../test-support/index'
import { makeClient, nextEvent } from './harness'

const clients: RNodeWebSocketClient[] = []
const closers: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of clients.splice(0)) c.disconnect()
  for (const close of closers.splice(0)) await close()
})

const RECOVERY: ServerOptions = { recovery: { maxDisconnection: 60_000 } }

async function recoveryServer(history = { size: 1000, ttl: 60_000 }, options: ServerOptions = RECOVERY): Promise<Started> {
  const s = await startServer({}, options)
  s.server.createRoom('R', { id: 'r', history })
  closers.push(() => s.server.close({ timeout: 500 }))
  return s
}

async function proxyTo(s: Started): Promise<Proxy> {
  const p = await startProxy(s.port)
  closers.unshift(() => p.close())
  return p
}

function client(url: string, id?: string): RNodeWebSocketClient {
  const c = makeClient(url, id, { pingInterval: 0 })
  clients.push(c)
  return c
}

/** Room messages a client receives, in order. */
function received(c: RNodeWebSocketClient, room = 'r'): string[] {
  const got: string[] = []
  c.on('roomMessage', (id, message) => void (id === room && got.push(message)))
  return got
}

describe('recovery', () => {
  it('after a TCP drop: every missed message once, in order; the offline queue still goes out', async () => {
    const s = await recoveryServer()
    const proxy = await proxyTo(s)
    const c = client(proxy.url, 'phone')
    const other = client(s.url, 'desk')
    const got = received(c)
    const otherGot = received(other)
    await c.connect()
    await other.connect()
    await c.joinRoom('r')
    await other.joinRoom('r')
    for (let i = 0; i < 5; i++) s.server.broadcast(`m${i}`, { room: 'r' })
    await waitFor(() => got.length === 5)

    proxy.freeze()
    for (let i = 5; i < 10; i++) s.server.broadcast(`m${i}`, { room: 'r' })
    const failed: string[] = []
    c.on('recoveryFailed', (room) => void failed.push(room))
    const recovered = nextEvent(c, 'recovered', 8000)
    const down = nextEvent(c, 'disconnected')
    proxy.thaw()
    await down
    void c.sendToRoom('r', 'sent while offline')
    for (let i = 10; i < 15; i++) s.server.broadcast(`m${i}`, { room: 'r' })
    expect(await recovered).toEqual([['r']])
    await waitFor(() => got.length === 15 && otherGot.includes('sent while offline'))
    s.server.broadcast('m15', { room: 'r' })
    await waitFor(() => got.length === 16)
    expect(got).toEqual(Array.from({ length: 16 }, (_, i) => `m${i}`))
    expect(failed).toEqual([])
    expect(c.getRoom('r')!.isJoinedToRoom()).toBe(true)
  })

  it('recoveryFailed when the history no longer holds the gap; the room is joined again', async () => {
    const s = await recoveryServer({ size: 2, ttl: 60_000 })
    const proxy = await proxyTo(s)
    const c = client(proxy.url)
    const got = received(c)
    await c.connect()
    await c.joinRoom('r')
    proxy.freeze()
    for (let i = 0; i < 5; i++) s.server.broadcast(`m${i}`, { room: 'r' })
    const failed = nextEvent(c, 'recoveryFailed', 8000)
    proxy.thaw()
    expect(await failed).toEqual(['r'])
    await waitFor(() => c.getStatus() === 'connected' && c.getRoom('r')!.isJoinedToRoom())
    s.server.broadcast('after', { room: 'r' })
    await waitFor(() => got.includes('after'))
    expect(got).toEqual(['after'])
  })

  it('a server restart loses one-node sessions: recoveryFailed, then the rooms are joined again', async () => {
    const s = await recoveryServer()
    const c = client(s.url)
    await c.connect()
    await c.joinRoom('r')
    s.server.broadcast('before', { room: 'r' })
    await waitFor(() => c.getRoom('r')!.getMessageHistory().length === 1)
    const failed = nextEvent(c, 'recoveryFailed', 8000)
    await s.server.close()
    const again = await startServer({}, { ...RECOVERY, port: s.port })
    closers.push(() => again.server.close({ timeout: 500 }))
    again.server.createRoom('R', { id: 'r', history: { size: 10, ttl: 60_000 } })
    expect(await failed).toEqual(['r'])
    await waitFor(() => c.getStatus() === 'connected' && c.getRoom('r')!.isJoinedToRoom(), 8000)
  })

  it('drops a message whose offset it has seen', async () => {
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' })
    closers.push(() => new Promise((r) => wss.close(() => r())))
    wss.on('connection', (ws) => {
      ws.on('message', (data) => {
        const f = JSON.parse(data.toString()) as { type: string; request_id?: string }
        if (f.type !== 'join_room') return
        ws.send(JSON.stringify({ type: 'room_joined', room_id: 'r', epoch: 'e', offset: 0, request_id: f.request_id }))
        for (const o of [1, 2, 2, 1, 3]) ws.send(JSON.stringify({ type: 'room_message', room_id: 'r', message: `m${o}`, offset: o }))
      })
    })
    await new Promise((r) => wss.once('listening', r))
    const { port } = wss.address() as { port: number }
    const c = client(`ws://127.0.0.1:${port}/ws`)
    const got = received(c)
    await c.connect()
    await c.joinRoom('r')
    await waitFor(() => got.length === 3)
    expect(got).toEqual(['m1', 'm2', 'm3'])
  })
})

describe('at scale', () => {
  it('200 clients in 5 rooms, half dropped, 1,000 messages: each has every message of its room once, in order', async () => {
    const s = await recoveryServer(undefined, { ...RECOVERY, maxBackpressure: 8 * 1024 * 1024 })
    const rooms = ['s0', 's1', 's2', 's3', 's4']
    for (const id of rooms) s.server.createRoom(id, { id, history: { size: 1000, ttl: 60_000 } })
    const dropProxy = await proxyTo(s)
    const all = Array.from({ length: 200 }, (_, i) => {
      const room = rooms[i % 5]!
      const c = client(i % 2 === 0 ? dropProxy.url : s.url)
      return { c, room, got: received(c, room), recovered: [] as string[][] }
    })
    await Promise.all(all.map(async (x) => {
      x.c.on('recovered', (r) => void x.recovered.push(r))
      await x.c.connect()
      await x.c.joinRoom(x.room)
    }))
    let sent = 0
    const publish = async (n: number): Promise<void> => {
      for (let k = 0; k < n; k++, sent++) {
        s.server.broadcast(`m${sent}`, { room: rooms[sent % 5]! })
        if (k % 50 === 49) await new Promise((r) => setImmediate(r))
      }
    }
    await publish(300)
    dropProxy.freeze()
    await publish(300)
    dropProxy.thaw()
    await publish(400)
    await waitFor(() => all.every((x) => x.got.length >= 200), 30_000, 'every message')
    for (const x of all) {
      const expected: string[] = []
      for (let i = 0; i < 1000; i++) if (rooms[i % 5] === x.room) expected.push(`m${i}`)
      expect(x.got).toEqual(expected)
    }
    expect(all.filter((x, i) => i % 2 === 0 && x.recovered.length === 1).length).toBe(100)
  }, 60_000)
})
