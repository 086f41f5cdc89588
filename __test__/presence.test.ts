// Presence: who is in a room (client ids and public metadata), on one server and across a
// cluster, and presence events.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { WsServer } from '../lib/index'
import { ClusterNode, collect, connect, type ProtocolFrame as Frame, Redis, request, serverPool, SKIP_REDIS, waitFor } from '../test-support/index'

const start = serverPool()
const byClient = (a: { clientId: string }, b: { clientId: string }): number => a.clientId.localeCompare(b.clientId)

describe('presence on one server', () => {
  const handlers = {
    onConnect: (socket: { clientId: string; setMetadata(k: string, v: string): void }) => {
      socket.setMetadata('name', `N-${socket.clientId}`)
      socket.setMetadata('secret', 'hidden')
    },
  }

  it('lists members with their public fields only; stats count connections and client ids', async () => {
    const { server, url } = await start(handlers, { presence: { fields: ['name', 'missing'] } })
    const clients = await Promise.all(['ann', 'bob', 'ann'].map((id) => connect(`${url}?clientId=${id}`)))
    for (const ws of clients) expect((await request(ws, { type: 'join_room', room_id: 'lobby' })).type).toBe('room_joined')
    expect(server.presence('lobby').sort(byClient)).toEqual([
      { clientId: 'ann', fields: { name: 'N-ann' } },
      { clientId: 'ann', fields: { name: 'N-ann' } },
      { clientId: 'bob', fields: { name: 'N-bob' } },
    ])
    expect(server.presenceStats('lobby')).toEqual({ connections: 3, clients: 2 })
    expect(server.presence('nowhere')).toEqual([])
    // Without a cluster, the cluster scope rejects.
    await expect(server.presence('lobby', { scope: 'cluster' })).rejects.toThrow()
    for (const ws of clients) ws.close()
  })

  it('without the option, entries carry the client id and no fields', async () => {
    const { server, url } = await start(handlers)
    const ws = await connect(`${url}?clientId=solo`)
    await request(ws, { type: 'join_room', room_id: 'r' })
    expect(server.presence('r')).toEqual([{ clientId: 'solo', fields: {} }])
    ws.close()
  })

  it('checks the option', () => {
    expect(() => new WsServer({ presence: 'name' as unknown as { fields: string[] } })).toThrow(TypeError)
    expect(() => new WsServer({ presence: { fields: [1 as unknown as string] } })).toThrow(TypeError)
    expect(() => new WsServer({ presence: { fields: [] } })).not.toThrow()
  })

  it('a member can ask who is in its room; a non-member is refused', async () => {
    const { url } = await start(handlers, { presence: { fields: ['name'] } })
    const a = await connect(`${url}?clientId=a`)
    const b = await connect(`${url}?clientId=b`)
    await request(a, { type: 'join_room', room_id: 'q' })
    const reply = await request(a, { type: 'presence', room_id: 'q', request_id: 9 })
    expect(reply).toEqual({ type: 'presence', room_id: 'q', request_id: 9, members: [{ client_id: 'a', fields: { name: 'N-a' } }] })
    expect((await request(b, { type: 'presence', room_id: 'q' })).type).toBe('error')
    a.close()
    b.close()
  })

  it('presence events: the other members get presence_join and presence_leave (also on disconnect); other rooms stay quiet', async () => {
    const { server, url } = await start(handlers, { presence: { fields: ['name'] } })
    server.createRoom('with events', { id: 'ev', presenceEvents: true })
    server.createRoom('without', { id: 'quiet' })
    expect(() => server.createRoom('bad', { presenceEvents: 'yes' as unknown as boolean })).toThrow(TypeError)
    const a = await connect(`${url}?clientId=a`)
    await request(a, { type: 'join_room', room_id: 'ev' })
    await request(a, { type: 'join_room', room_id: 'quiet' })
    const got = collect(a)
    const b = await connect(`${url}?clientId=b`)
    // Its onConnect (which sets the name) has run before it joins.
    await waitFor(() => server.getConnections().some((s) => s.clientId === 'b'))
    const bGot = collect(b)
    await request(b, { type: 'join_room', room_id: 'ev' })
    await request(b, { type: 'join_room', room_id: 'quiet' })
    await request(b, { type: 'leave_room', room_id: 'ev' })
    await request(b, { type: 'join_room', room_id: 'ev' })
    b.close()
    await waitFor(() => got.length === 4, 5000, 'presence events')
    await new Promise((r) => setTimeout(r, 100))
    expect(got.map((m) => JSON.parse(String(m)) as Frame)).toEqual([
      { type: 'presence_join', room_id: 'ev', client_id: 'b', fields: { name: 'N-b' } },
      { type: 'presence_leave', room_id: 'ev', client_id: 'b', fields: { name: 'N-b' } },
      { type: 'presence_join', room_id: 'ev', client_id: 'b', fields: { name: 'N-b' } },
      { type: 'presence_leave', room_id: 'ev', client_id: 'b', fields: { name: 'N-b' } },
    ])
    // The joiner is not told about itself.
    expect(bGot.filter((m) => String(m).includes('presence_'))).toEqual([])
    a.close()
  })
})

describe.skipIf(SKIP_REDIS)('presence across three nodes', () => {
  let redis: Redis
  let nodes: ClusterNode[] = []
  const prefix = `pr${process.pid}`

  beforeAll(async () => {
    redis = await Redis.start()
    nodes = await Promise.all([0, 1, 2].map(() => ClusterNode.start(redis.url, prefix, { PRESENCE_FIELDS: 'name' })))
  }, 30_000)
  afterAll(async () => {
    for (const n of nodes) n.kill()
    await redis.stop()
  })

  it("lists every node's members with public fields; a SIGKILLed node's members are gone within seconds", async () => {
    const clients: WebSocket[] = []
    for (const [i, id] of ['p0', 'p1', 'p2', 'p2'].entries()) {
      const ws = await connect(nodes[Math.min(i, 2)]!.url(id))
      expect((await request(ws, { type: 'join_room', room_id: 'lobby' })).type).toBe('room_joined')
      clients.push(ws)
    }
    type Member = { clientId: string; fields: Record<string, unknown> }
    const everyone = [
      { clientId: 'p0', fields: { name: 'N-p0' } },
      { clientId: 'p1', fields: { name: 'N-p1' } },
      { clientId: 'p2', fields: { name: 'N-p2' } },
      { clientId: 'p2', fields: { name: 'N-p2' } },
    ]
    // A field set after the join (onConnect may run after it) reaches the other nodes as soon
    // as it is set; poll briefly for that write.
    for (const n of nodes) {
      let list: Member[] = []
      const until = Date.now() + 2000
      do list = (await n.call<Member[]>('presence', { room: 'lobby' })).sort(byClient)
      while (JSON.stringify(list) !== JSON.stringify(everyone) && Date.now() < until)
      expect(list).toEqual(everyone)
    }
    expect(await nodes[1]!.call('presenceStats', { room: 'lobby' })).toEqual({ connections: 4, clients: 3 })
    // A client asks: the answer is cluster-wide.
    const reply = await request(clients[0]!, { type: 'presence', room_id: 'lobby' })
    expect((reply.members as unknown[]).length).toBe(4)

    // A leave is seen at once on the other nodes.
    expect((await request(clients[1]!, { type: 'leave_room', room_id: 'lobby' })).type).toBe('room_left')
    let seen: Member[] = []
    const deadline1 = Date.now() + 2000
    while (Date.now() < deadline1) {
      seen = await nodes[0]!.call<Member[]>('presence', { room: 'lobby' })
      if (seen.length === 3) break
      await new Promise((r) => setTimeout(r, 50))
    }
    expect(seen.map((m) => m.clientId).sort()).toEqual(['p0', 'p2', 'p2'])

    const killed = Date.now()
    nodes[2]!.kill()
    const deadline = Date.now() + 8000
    while (Date.now() < deadline) {
      seen = await nodes[0]!.call<Member[]>('presence', { room: 'lobby' })
      if (seen.length === 1) break
      await new Promise((r) => setTimeout(r, 200))
    }
    expect(seen).toEqual([{ clientId: 'p0', fields: { name: 'N-p0' } }])
    expect(Date.now() - killed).toBeLessThan(6000)
    for (const ws of clients) ws.close()
  }, 30_000)

  it('presence events reach members on other nodes', async () => {
    const a = await connect(nodes[0]!.url('ea'))
    await request(a, { type: 'join_room', room_id: 'events' })
    const got = collect(a)
    const b = await connect(nodes[1]!.url('eb'))
    // The node's onConnect sets the public field; join once it ran, or the event has no fields.
    for (let i = 0; i < 100 && (await nodes[1]!.call<string | null>('socketId', { clientId: 'eb' })) === null; i++) {
      await new Promise((r) => setTimeout(r, 20))
    }
    await request(b, { type: 'join_room', room_id: 'events' })
    b.close()
    await waitFor(() => got.length === 2, 5000, 'cross-node presence events')
    expect(got.map((m) => JSON.parse(String(m)) as Frame)).toEqual([
      { type: 'presence_join', room_id: 'events', client_id: 'eb', fields: { name: 'N-eb' } },
      { type: 'presence_leave', room_id: 'events', client_id: 'eb', fields: { name: 'N-eb' } },
    ])
    a.close()
  })
})
