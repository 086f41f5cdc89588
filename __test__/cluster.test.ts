// Scale-out: three server processes sharing a private redis-server; rooms behave as one.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { closedPort as freePort, ClusterNode, collect, connect, Redis, request, SKIP_REDIS, waitFor } from '../test-support/index'

describe.skipIf(SKIP_REDIS)('cluster through Redis', () => {
  let redis: Redis
  let nodes: ClusterNode[] = []
  const prefix = `t${process.pid}`

  beforeAll(async () => {
    redis = await Redis.start()
    nodes = await Promise.all([0, 1, 2].map(() => ClusterNode.start(redis.url, prefix)))
  }, 30_000)
  afterAll(async () => {
    for (const n of nodes) n.kill()
    await redis.stop()
  })

  it('room messages and broadcasts reach members on every node exactly once, in order, binary byte-exact', async () => {
    const clients = await Promise.all(nodes.map((n, i) => connect(n.url(`c${i}`))))
    for (const ws of clients) expect((await request(ws, { type: 'join_room', room_id: 'shared' })).type).toBe('room_joined')
    const outsider = await connect(nodes[1]!.url('outsider'))
    const got = clients.map(collect)
    const outsiderGot = collect(outsider)

    // A client's room_message from node 0 reaches the members on nodes 1 and 2, not itself; sent
    // in a burst, so node 0 publishes them in pipelines and the order must survive that.
    for (let i = 0; i < 500; i++) clients[0]!.send(JSON.stringify({ type: 'room_message', room_id: 'shared', message: i }))
    await waitFor(() => got[1]!.length === 500 && got[2]!.length === 500, 10_000, 'cross-node room messages')
    for (const g of [got[1]!, got[2]!]) {
      expect(g.map((m) => JSON.parse(m as string).message)).toEqual(Array.from({ length: 500 }, (_, i) => i))
      expect(JSON.parse(g[0] as string).from_client_id).toBe('c0')
    }
    // A server-side broadcast from node 2, binary.
    const payload = Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 7) & 0xff))
    expect(await nodes[2]!.call('broadcast', { message: payload.toString('base64'), binary: true, room: 'shared' })).toBe(1)
    await waitFor(() => got[0]!.length === 1 && got[1]!.length === 501 && got[2]!.length === 501, 5000, 'binary broadcast')
    for (const m of [got[0]![0], got[1]![500], got[2]![500]]) expect(Buffer.isBuffer(m) && m.equals(payload)).toBe(true)
    // Exactly once: nothing more arrives, and the outsider on node 1 got nothing.
    await new Promise((r) => setTimeout(r, 300))
    expect(got.map((g) => g.length)).toEqual([1, 501, 501])
    expect(outsiderGot).toEqual([])
    for (const ws of [...clients, outsider]) ws.close()
  })

  it('except works across nodes, also for sockets on another node; no room: every node', async () => {
    const a = await connect(nodes[0]!.url('a'))
    const b = await connect(nodes[1]!.url('b'))
    const c = await connect(nodes[2]!.url('c'))
    const got = [a, b, c].map(collect)
    const aId = await nodes[0]!.call<string>('socketId', { clientId: 'a' })
    const bId = await nodes[1]!.call<string>('socketId', { clientId: 'b' })
    // Node 0 skips its own a, and b, which lives on node 1.
    expect(await nodes[0]!.call('broadcast', { message: 'not a, not b', except: [aId, bId] })).toBe(0)
    // Node 2 skips b on node 1 only.
    await nodes[2]!.call('broadcast', { message: 'not b', except: [bId] })
    await waitFor(() => got[0]!.length === 1 && got[2]!.length === 2, 5000, 'deliveries')
    await new Promise((r) => setTimeout(r, 300))
    expect(got[0]).toEqual(['not b'])
    expect(got[1]).toEqual([])
    // Two publishers: no order between them is promised.
    expect([...got[2]!].sort()).toEqual(['not a, not b', 'not b'])
    for (const ws of [a, b, c]) ws.close()
  })

  it('cluster-wide counts', async () => {
    const clients = [
      await connect(nodes[0]!.url('x0')),
      await connect(nodes[0]!.url('x1')),
      await connect(nodes[1]!.url('x2')),
      await connect(nodes[2]!.url('x3')),
    ]
    for (const ws of clients.slice(0, 3)) await request(ws, { type: 'join_room', room_id: 'counted' })
    // Every node reports each second.
    type Stats = { nodes: number; totalConnections: number; connectionsByRoom: Record<string, number> }
    let stats: Stats = { nodes: 0, totalConnections: 0, connectionsByRoom: {} }
    const deadline = Date.now() + 5000
    while (Date.now() < deadline) {
      stats = await nodes[2]!.call<Stats>('stats')
      if (stats.totalConnections === 4 && stats.connectionsByRoom.counted === 3) break
      await new Promise((r) => setTimeout(r, 200))
    }
    expect(stats).toMatchObject({ nodes: 3, totalConnections: 4, connectionsByRoom: { counted: 3 } })
    const room = await nodes[2]!.call<{ connectionsCount: number }>('room', { room: 'counted' })
    expect(room.connectionsCount).toBe(3)
    const local = await nodes[2]!.call<{ totalConnections: number }>('localStats')
    expect(local.totalConnections).toBe(1)
    for (const ws of clients) ws.close()
  })

  it('Redis going away: local delivery never stops; cross-node delivery resumes after a restart', async () => {
    const a1 = await connect(nodes[0]!.url('a1'))
    const a2 = await connect(nodes[0]!.url('a2'))
    const b1 = await connect(nodes[1]!.url('b1'))
    for (const ws of [a1, a2, b1]) await request(ws, { type: 'join_room', room_id: 'resilient' })
    const gotA2 = collect(a2)
    const gotB1 = collect(b1)

    await redis.stop()
    for (let i = 0; i < 5; i++) a1.send(JSON.stringify({ type: 'room_message', room_id: 'resilient', message: `down${i}` }))
    await waitFor(() => gotA2.length === 5, 3000, 'local delivery while Redis is down')

    await redis.start()
    // Messages sent after the restart reach the other node once the subscriber is back.
    const deadline = Date.now() + 15_000
    let n = 0
    while (!gotB1.some((m) => typeof m === 'string' && m.includes('"up'))) {
      if (Date.now() > deadline) throw new Error('cross-node delivery did not resume')
      a1.send(JSON.stringify({ type: 'room_message', room_id: 'resilient', message: `up${n++}` }))
      await new Promise((r) => setTimeout(r, 200))
    }
    expect(gotA2.length).toBeGreaterThanOrEqual(5 + 1)
    for (const ws of [a1, a2, b1]) ws.close()
  }, 30_000)

  it('listen() rejects with ERR_REDIS_UNREACHABLE when Redis is unreachable', async () => {
    const node = await ClusterNode.start(`redis://127.0.0.1:${await freePort()}`, prefix)
    expect(node.listenError).toBe('ERR_REDIS_UNREACHABLE')
  })
})
