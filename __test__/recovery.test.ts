// Session recovery on one node: the session token, what a resumed connection gets back (id,
// clientId, data, metadata, rooms), the replay of missed room messages exactly once and in
// order, gaps reported per room, and bad tokens and offsets. Clients are raw `ws` sockets
// speaking the protocol, so the server's own guarantees are tested, without client-side dedupe.
import { describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { WsServer, type ServerOptions, type Socket } from '../lib/index'
import { anyMessageWithin, connect, Peer, request, serverPool, sleep, startProxy, waitFor, withSession, type Frame, type Proxy } from '../test-support/index'

const server = serverPool(1000)
const RECOVERY: ServerOptions = { recovery: { maxDisconnection: 60_000 }, history: { size: 1000, ttl: 60_000 } }


describe('sessions', () => {
  it('off by default: no session frame, and ?session= does nothing', async () => {
    const { url, server: srv } = await server({}, { history: { size: 10, ttl: 1000 } })
    expect(srv.getStats().sessions).toBeUndefined()
    const ws = await connect(`${url}?session=${'a'.repeat(64)}`)
    expect(await anyMessageWithin(ws, 200)).toBe(false)
    ws.close()
  })

  it('each connection gets its own unguessable token', async () => {
    const { url } = await server({}, RECOVERY)
    const peers = await Promise.all([1, 2, 3].map(() => Peer.open(url)))
    const frames = await Promise.all(peers.map((p) => p.frame((f) => f.type === 'session')))
    const tokens = frames.map((f) => String(f.token))
    for (const t of tokens) expect(t).toMatch(/^[0-9a-f]{64}$/)
    expect(new Set(tokens).size).toBe(3)
    expect(frames.every((f) => f.recovered === false)).toBe(true)
    for (const p of peers) p.ws.close()
  })

  it('bad options are refused with a code', async () => {
    const code = (o: ServerOptions): unknown => {
      try {
        new WsServer(o)
      } catch (err) {
        return (err as { code?: unknown }).code
      }
      return 'no throw'
    }
    expect(code({ recovery: 5 as never })).toBe('ERR_INVALID_OPTION')
    expect(code({ recovery: { maxDisconnection: 0 } })).toBe('ERR_INVALID_OPTION')
    expect(code({ recovery: { maxDisconnection: 'x' as never } })).toBe('ERR_INVALID_OPTION')
    expect(code({ recovery: {}, cluster: { redis: 'redis://127.0.0.1:1', sharded: true } })).toBe('ERR_INVALID_OPTION')
  })
})

/** A server with recovery, one room 'r' with history, a proxy in front, and the sockets by id. */
async function setup(
  options: ServerOptions = RECOVERY,
  roomHistory = { size: 1000, ttl: 60_000 },
  onMessage?: (socket: Socket, message: string | Buffer) => void,
) {
  const connects: Socket[] = []
  const started = await server(
    {
      onConnect: (s) => {
        connects.push(s)
        if (!s.recovered) s.data = { n: connects.length }
      },
      onMessage,
    },
    options,
  )
  started.server.createRoom('R', { id: 'r', history: roomHistory })
  const proxy = await startProxy(started.port)
  return { ...started, connects, proxy }
}

/** Drops a peer's TCP connection under it (the proxy's sockets are destroyed) and waits until the server noticed. */
async function drop(proxy: Proxy, peer: Peer, srv: { getConnections(): Socket[] }, openAfter: number): Promise<void> {
  proxy.thaw()
  await waitFor(() => peer.closedAt > 0 && srv.getConnections().length === openAfter)
}

describe('recovery', () => {
  it('restores id, clientId, data, metadata and rooms, replays what was missed in order, then live', async () => {
    const { server: srv, proxy, connects } = await setup()
    const a = await Peer.open(`${proxy.url}?clientId=alice`)
    await a.frame((f) => f.type === 'session')
    a.send({ type: 'join_room', room_id: 'r' })
    await a.frame((f) => f.type === 'room_joined')
    await waitFor(() => connects.length === 1)
    const first = connects[0]!
    first.setMetadata('role', 'admin')
    for (let i = 1; i <= 3; i++) srv.broadcast(`m${i}`, { room: 'r' })
    await waitFor(() => a.roomMessages('r').length === 3)

    proxy.freeze()
    for (let i = 4; i <= 6; i++) srv.broadcast(`m${i}`, { room: 'r' })
    await drop(proxy, a, srv, 0)
    for (let i = 7; i <= 8; i++) srv.broadcast(`m${i}`, { room: 'r' })
    await waitFor(() => srv.getStats().sessions === 1)

    const b = await Peer.open(withSession(proxy.url, a.token))
    const session = await b.frame((f) => f.type === 'session')
    expect(session.recovered).toBe(true)
    expect(session.token).not.toBe(a.token)
    await waitFor(() => connects.length === 2)
    const second = connects[1]!
    expect(second.recovered).toBe(true)
    expect(second.id).toBe(first.id)
    expect(second.clientId).toBe('alice')
    expect(second.data).toEqual({ n: 1 })
    expect(second.getMetadata('role')).toBe('admin')
    expect(second.rooms).toEqual(['r'])
    expect(srv.getConnection(first.id)).toBe(second)
    expect(srv.getStats().sessions).toBe(0)

    b.send({ type: 'recover', rooms: { r: a.position('r') }, request_id: 7 })
    const done = await b.frame((f) => f.type === 'recovered')
    expect(done).toEqual({ type: 'recovered', rooms: { r: true }, request_id: 7 })
    srv.broadcast('m9', { room: 'r' })
    await waitFor(() => b.roomMessages('r').length === 6)
    const joined = b.frames.findIndex((f) => f.type === 'room_joined')
    expect(b.frames[joined]).toMatchObject({ room_id: 'r', recovered: true, offset: 8 })
    expect(b.roomMessages('r').map((f) => [f.offset, f.message])).toEqual([
      [4, 'm4'], [5, 'm5'], [6, 'm6'], [7, 'm7'], [8, 'm8'], [9, 'm9'],
    ])
    // The replay comes right after room_joined, before the summary.
    expect(b.frames.slice(joined + 1, joined + 6).map((f) => f.offset)).toEqual([4, 5, 6, 7, 8])
    b.ws.close()
    await proxy.close()
  })

  it("a replay leaves out the client's own messages", async () => {
    const { server: srv, proxy, url } = await setup()
    const other = await Peer.open(url)
    other.send({ type: 'join_room', room_id: 'r' })
    const a = await Peer.open(proxy.url)
    a.send({ type: 'join_room', room_id: 'r' })
    await a.frame((f) => f.type === 'room_joined')
    await other.frame((f) => f.type === 'room_joined')
    const pos = a.position('r')
    proxy.freeze()
    a.send({ type: 'room_message', room_id: 'r', message: 'mine' }) // never arrives: frozen
    other.send({ type: 'room_message', room_id: 'r', message: 'theirs' })
    await waitFor(() => srv.history('r')!.offset === 1)
    await drop(proxy, a, srv, 1)
    const b = await Peer.open(withSession(proxy.url, a.token))
    await b.frame((f) => f.type === 'session')
    b.send({ type: 'recover', rooms: { r: pos } })
    await b.frame((f) => f.type === 'recovered')
    expect(b.roomMessages('r').map((f) => f.message)).toEqual(['theirs'])
    b.ws.close()
    other.ws.close()
    await proxy.close()
  })

  it('a gap (history trimmed) or another epoch is reported per room, without a replay', async () => {
    const { server: srv, proxy } = await setup(RECOVERY, { size: 2, ttl: 60_000 })
    srv.createRoom('K', { id: 'k', history: { size: 100, ttl: 60_000 } })
    srv.createRoom('E', { id: 'e', history: { size: 100, ttl: 60_000 } })
    const a = await Peer.open(proxy.url)
    for (const room of ['r', 'k', 'e']) a.send({ type: 'join_room', room_id: room })
    await waitFor(() => a.frames.filter((f) => f.type === 'room_joined').length === 3)
    proxy.freeze()
    for (let i = 0; i < 5; i++) for (const room of ['r', 'k', 'e']) srv.broadcast(`x${i}`, { room })
    await drop(proxy, a, srv, 0)
    const b = await Peer.open(withSession(proxy.url, a.token))
    await b.frame((f) => f.type === 'session')
    b.send({ type: 'recover', rooms: { r: a.position('r'), k: a.position('k'), e: { epoch: 'feedfacefeedface', offset: 0 } } })
    const done = await b.frame((f) => f.type === 'recovered')
    expect(done.rooms).toEqual({ r: false, k: true, e: false })
    expect(b.roomMessages('r')).toEqual([])
    expect(b.roomMessages('e')).toEqual([])
    expect(b.roomMessages('k').map((f) => f.offset)).toEqual([1, 2, 3, 4, 5])
    expect(b.frames.find((f) => f.type === 'room_joined' && f.room_id === 'r')).toMatchObject({ recovered: false, offset: 5 })
    // Still a member of every room: new messages arrive.
    srv.broadcast('after', { room: 'r' })
    await b.frame((f) => f.type === 'room_message' && f.message === 'after')
    b.ws.close()
    await proxy.close()
  })

  it('a replay larger than half the send buffer is refused as a gap, not a close', async () => {
    const { server: srv, proxy } = await setup({ ...RECOVERY, maxBackpressure: 4096 })
    const a = await Peer.open(proxy.url)
    a.send({ type: 'join_room', room_id: 'r' })
    await a.frame((f) => f.type === 'room_joined')
    proxy.freeze()
    for (let i = 0; i < 40; i++) srv.broadcast(`${i}`.padStart(100, '.'), { room: 'r' })
    await drop(proxy, a, srv, 0)
    const b = await Peer.open(withSession(proxy.url, a.token))
    await b.frame((f) => f.type === 'session')
    b.send({ type: 'recover', rooms: { r: a.position('r') } })
    expect((await b.frame((f) => f.type === 'recovered')).rooms).toEqual({ r: false })
    expect(b.roomMessages('r')).toEqual([])
    expect(b.ws.readyState).toBe(WebSocket.OPEN)
    b.ws.close()
    await proxy.close()
  })

  it('a live connection whose network died is taken over by its token', async () => {
    const { server: srv, proxy, connects, url } = await setup()
    const a = await Peer.open(proxy.url)
    a.send({ type: 'join_room', room_id: 'r' })
    await a.frame((f) => f.type === 'room_joined')
    proxy.freeze() // the server does not notice
    srv.broadcast('missed', { room: 'r' })
    const b = await Peer.open(withSession(url, a.token))
    expect((await b.frame((f) => f.type === 'session')).recovered).toBe(true)
    await waitFor(() => connects.length === 2)
    expect(connects[1]!.id).toBe(connects[0]!.id)
    expect(connects[0]!.isOpen).toBe(false)
    b.send({ type: 'recover', rooms: { r: a.position('r') } })
    await b.frame((f) => f.type === 'recovered')
    expect(b.roomMessages('r').map((f) => f.message)).toEqual(['missed'])
    b.ws.close()
    await proxy.close()
  })
})

describe('no recovery', () => {
  async function fresh(url: string, token: string, query = ''): Promise<Frame> {
    const p = await Peer.open(withSession(url, token, query))
    const f = await p.frame((x) => x.type === 'session')
    p.ws.close()
    return f
  }

  it('after a clean close by the client, or socket.close() by the app', async () => {
    const { url, connects } = await setup()
    const a = await Peer.open(url)
    await a.frame((f) => f.type === 'session')
    a.ws.close(1000)
    await waitFor(() => a.closedAt > 0)
    expect((await fresh(url, a.token)).recovered).toBe(false)

    const b = await Peer.open(url)
    await b.frame((f) => f.type === 'session')
    await waitFor(() => connects.length === 3)
    connects[2]!.close(4000, 'kicked')
    await waitFor(() => b.closedAt > 0)
    expect((await fresh(url, b.token)).recovered).toBe(false)
  })

  it('forged, malformed and expired tokens get a fresh session; so does a token of another client', async () => {
    const { url, proxy, server: srv, connects } = await setup({ ...RECOVERY, recovery: { maxDisconnection: 300 } })
    expect((await fresh(url, 'f'.repeat(64))).recovered).toBe(false)
    expect((await fresh(url, 'not-a-token')).recovered).toBe(false)
    expect((await fresh(url, 'A'.repeat(65))).recovered).toBe(false)

    const alice = await Peer.open(`${proxy.url}?clientId=alice`)
    alice.send({ type: 'join_room', room_id: 'r' })
    await alice.frame((f) => f.type === 'room_joined')
    await drop(proxy, alice, srv, 0)
    const mallory = await Peer.open(withSession(url, alice.token, '&clientId=mallory'))
    expect((await mallory.frame((f) => f.type === 'session')).recovered).toBe(false)
    await waitFor(() => connects.length === 5)
    const m = connects[4]!
    expect(m.recovered).toBe(false)
    expect(m.rooms).toEqual([])
    expect(m.data).toEqual({ n: 5 })
    mallory.ws.close()
    // The token still belongs to alice, until it expires.
    const back = await Peer.open(withSession(url, alice.token, '&clientId=alice'))
    expect((await back.frame((f) => f.type === 'session')).recovered).toBe(true)
    back.ws.terminate()
    await waitFor(() => srv.getConnections().length === 0)
    const later = (await back.frame((f) => f.type === 'session')).token as string
    await sleep(500)
    expect((await fresh(url, later)).recovered).toBe(false)
    await proxy.close()
  })
})

describe('bad recover requests', () => {
  it('get an error frame and the connection stays up; a correct one still works', async () => {
    const { server: srv, proxy } = await setup()
    const a = await Peer.open(proxy.url)
    a.send({ type: 'join_room', room_id: 'r' })
    await a.frame((f) => f.type === 'room_joined')
    srv.broadcast('one', { room: 'r' })
    await a.frame((f) => f.type === 'room_message')
    proxy.freeze()
    srv.broadcast('two', { room: 'r' })
    await drop(proxy, a, srv, 0)
    const b = await Peer.open(withSession(proxy.url, a.token))
    await b.frame((f) => f.type === 'session')
    const { epoch } = a.position('r')
    const bad: unknown[] = [
      { r: { epoch, offset: 99 } }, // from the future
      { r: { epoch, offset: -1 } },
      { r: { epoch, offset: 'one' } },
      { r: { epoch, offset: 1.5 } },
      { r: { offset: 1 } },
      { other: { epoch, offset: 0 } }, // a room the session never had
      [],
    ]
    for (const [i, rooms] of bad.entries()) {
      const reply = await request(b.ws, { type: 'recover', rooms, request_id: i })
      expect(reply).toMatchObject({ type: 'error', request_id: i })
    }
    expect(await request(b.ws, { type: 'ping', timestamp: 1 })).toMatchObject({ type: 'pong' })
    b.send({ type: 'recover', rooms: { r: { epoch, offset: 1 } } })
    expect((await b.frame((f) => f.type === 'recovered')).rooms).toEqual({ r: true })
    expect(b.roomMessages('r').map((f) => f.message)).toEqual(['two'])
    // Nothing left to recover.
    expect(await request(b.ws, { type: 'recover', rooms: {} })).toMatchObject({ type: 'error' })
    b.ws.close()
    await proxy.close()
  })

  it('without a resumed session', async () => {
    const { url } = await setup()
    const a = await Peer.open(url)
    await a.frame((f) => f.type === 'session')
    expect(await request(a.ws, { type: 'recover', rooms: {} })).toMatchObject({ type: 'error' })
    a.ws.close()
  })
})

describe('at scale', () => {
  it('200 clients in 5 rooms, half dropped at the TCP level, 1,000 messages: each gets every one once, in order', async () => {
    // Messages a publisher socket sends are broadcast from its handler: on the JS thread's cork,
    // through the shared fan-out, racing the recovering joins on the I/O threads.
    const rooms = ['s0', 's1', 's2', 's3', 's4']
    let published = 0
    const { server: srv, port, url } = await setup({ ...RECOVERY, maxBackpressure: 8 * 1024 * 1024 }, undefined, (_s, m) => {
      const i = Number(String(m).slice(1))
      srv.broadcast(String(m), { room: rooms[i % 5]! })
      published++
    })
    for (const id of rooms) srv.createRoom(id, { id, history: { size: 1000, ttl: 60_000 } })
    const dropProxy = await startProxy(port)
    const keepProxy = await startProxy(port)
    const peers: Array<{ peer: Peer; room: string; dropped: boolean }> = []
    for (let i = 0; i < 200; i++) {
      const dropped = i % 2 === 0
      const peer = await Peer.open((dropped ? dropProxy : keepProxy).url)
      const room = rooms[i % 5]!
      peer.send({ type: 'join_room', room_id: room })
      peers.push({ peer, room, dropped })
    }
    await waitFor(() => peers.every((p) => p.peer.frames.some((f) => f.type === 'room_joined')), 20_000)

    let sent = 0
    const publish = async (n: number): Promise<void> => {
      for (let k = 0; k < n; k++, sent++) {
        srv.broadcast(`m${sent}`, { room: rooms[sent % 5]! })
        if (k % 50 === 49) await new Promise((r) => setImmediate(r))
      }
    }
    const publishThroughHandler = async (n: number): Promise<void> => {
      const target = published + n
      for (let k = 0; k < n; k++, sent++) {
        publisher.send(`m${sent}`)
        if (k % 50 === 49) await new Promise((r) => setImmediate(r))
      }
      await waitFor(() => published === target, 10_000)
    }
    await publish(250)
    await sleep(100)
    dropProxy.freeze()
    await publish(250)
    dropProxy.thaw()
    await waitFor(() => srv.getConnections().length === 100, 10_000)

    const publisher = await connect(url)
    // Reconnect while the rest is published.
    const publishing = publishThroughHandler(500)
    const resumed = await Promise.all(
      peers.filter((p) => p.dropped).map(async (p) => {
        const again = await Peer.open(withSession(dropProxy.url, p.peer.token))
        await again.frame((f) => f.type === 'session')
        again.send({ type: 'recover', rooms: { [p.room]: p.peer.position(p.room) } })
        return { old: p.peer, again, room: p.room }
      }),
    )
    await publishing
    expect(sent).toBe(1000)
    const expected = (room: string): string[] => {
      const out: string[] = []
      for (let i = 0; i < 1000; i++) if (rooms[i % 5] === room) out.push(`m${i}`)
      return out
    }
    await waitFor(
      () =>
        peers.every((p) => p.dropped || p.peer.roomMessages(p.room).length === 200) &&
        resumed.every((r) => r.old.roomMessages(r.room).length + r.again.roomMessages(r.room).length >= 200),
      20_000,
    )
    for (const r of resumed) {
      expect((await r.again.frame((f) => f.type === 'recovered')).rooms).toEqual({ [r.room]: true })
      const got = [...r.old.roomMessages(r.room), ...r.again.roomMessages(r.room)]
      expect(got.map((f) => f.message)).toEqual(expected(r.room))
      expect(got.map((f) => f.offset)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1))
    }
    for (const p of peers.filter((x) => !x.dropped)) {
      expect(p.peer.roomMessages(p.room).map((f) => f.message)).toEqual(expected(p.room))
    }
    for (const p of peers) p.peer.ws.terminate()
    for (const r of resumed) r.again.ws.close()
    publisher.close()
    await dropProxy.close()
    await keepProxy.close()
  }, 60_000)
})
