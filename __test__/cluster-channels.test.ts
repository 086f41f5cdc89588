// Per-room Redis channels: a node receives only the traffic of rooms it has members in, and
// joining (which may subscribe) loses and doubles nothing. Real redis-server and node processes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { Emitter } from '../lib/emitter'
import { WsServer } from '../lib/index'
import { ClusterNode, collect, connect, Redis, request, SKIP_REDIS, slowLink, waitFor } from '../test-support/index'

type Stats = { cluster: { inboundMessages: number; inboundBytes: number; roomChannels: number; connected: boolean } }
type Msg = { p?: number | string; r?: string; i?: number; m?: number; type?: string }

const inbound = async (nodes: ClusterNode[]): Promise<Array<{ messages: number; bytes: number }>> =>
  Promise.all(
    nodes.map(async (n) => {
      const s = (await n.call<Stats>('localStats')).cluster
      return { messages: s.inboundMessages, bytes: s.inboundBytes }
    }),
  )

describe.skipIf(SKIP_REDIS)('per-room channels, four nodes', () => {
  let redis: Redis
  let nodes: ClusterNode[] = []
  const prefix = `rc${process.pid}`

  beforeAll(async () => {
    redis = await Redis.start()
    nodes = await Promise.all([0, 1, 2, 3].map(() => ClusterNode.start(redis.url, prefix)))
  }, 30_000)
  afterAll(async () => {
    for (const n of nodes) n.kill()
    await redis.stop()
  })

  it("every member gets every message once, in each publisher's order; a node receives only its rooms' share", async () => {
    const rooms = Array.from({ length: 8 }, (_, i) => `q${i}`)
    // Node i has members in rooms i and i+4: a quarter of the rooms, no room on two nodes.
    const owner = (room: number): number => room % 4
    const members: Array<{ ws: WebSocket; room: string; got: Array<string | Buffer> }> = []
    for (let r = 0; r < rooms.length; r++) {
      for (let k = 0; k < 3; k++) {
        const ws = await connect(nodes[owner(r)]!.url(`m${r}-${k}`))
        expect((await request(ws, { type: 'join_room', room_id: rooms[r] })).type).toBe('room_joined')
        members.push({ ws, room: rooms[r]!, got: collect(ws) })
      }
    }
    for (const n of nodes) expect((await n.call<Stats>('localStats')).cluster.roomChannels).toBe(2)
    const before = await inbound(nodes)
    const netBefore = await redis.info('total_net_output_bytes')

    const count = 200
    await Promise.all(nodes.map((n, tag) => n.call('burst', { rooms, count, tag })))
    const perMember = nodes.length * count
    await waitFor(() => members.every((m) => m.got.length >= perMember), 15_000, 'every delivery')
    await new Promise((r) => setTimeout(r, 300))

    for (const m of members) {
      expect(m.got.length).toBe(perMember)
      const parsed = m.got.map((g) => JSON.parse(String(g)) as Msg)
      expect(parsed.every((x) => x.r === m.room)).toBe(true)
      for (let tag = 0; tag < nodes.length; tag++) {
        expect(parsed.filter((x) => x.p === tag).map((x) => x.i)).toEqual(Array.from({ length: count }, (_, i) => i))
      }
    }

    // Redis sends node i the messages of its two rooms from all four publishers (its own
    // echoes included), nothing of the six others.
    const after = await inbound(nodes)
    const netAfter = await redis.info('total_net_output_bytes')
    const delta = after.map((a, i) => ({ messages: a.messages - before[i]!.messages, bytes: a.bytes - before[i]!.bytes }))
    const totalBytes = delta.reduce((s, d) => s + d.bytes, 0)
    for (const d of delta) {
      expect(d.messages).toBe(2 * nodes.length * count)
      expect(d.bytes / totalBytes).toBeGreaterThan(0.2)
      expect(d.bytes / totalBytes).toBeLessThan(0.3)
    }
    // Cross-check from Redis' side: what it wrote is those bytes plus RESP framing and the
    // publishers' replies, and not four times them (the single channel's cost).
    const messages = delta.reduce((s, d) => s + d.messages, 0)
    expect(netAfter - netBefore).toBeGreaterThanOrEqual(totalBytes)
    expect(netAfter - netBefore).toBeLessThan(totalBytes + messages * 64 + 64 * 1024)
    // One subscriber per room channel; each node's pub/sub connection holds 3 channels.
    for (const room of rooms) {
      expect(await redis.cli('PUBSUB', 'NUMSUB', `${prefix}:room:${room}`)).toMatch(new RegExp(`^${prefix}:room:${room}\\n1\\n$`))
    }
    const pubsubClients = (await redis.cli('CLIENT', 'LIST', 'TYPE', 'pubsub')).trim().split('\n')
    expect(pubsubClients.map((l) => /\bsub=(\d+)/.exec(l)?.[1])).toEqual(['3', '3', '3', '3'])
    for (const m of members) m.ws.close()
  }, 40_000)

  it('whole-server broadcasts still reach every node on the node-wide channel', async () => {
    const clients = await Promise.all(nodes.map((n, i) => connect(n.url(`all${i}`))))
    const got = clients.map(collect)
    await nodes[3]!.call('broadcast', { message: 'everyone' })
    await waitFor(() => got.every((g) => g.length === 1), 5000, 'broadcast everywhere')
    await new Promise((r) => setTimeout(r, 200))
    expect(got).toEqual([['everyone'], ['everyone'], ['everyone'], ['everyone']])
    for (const ws of clients) ws.close()
  })

  it('the last member leaving unsubscribes after the default linger (3 s), not at once', async () => {
    const ws = await connect(nodes[0]!.url('lingerer'))
    expect((await request(ws, { type: 'join_room', room_id: 'linger-default' })).type).toBe('room_joined')
    // Redis' own count of the room channel's subscribers (the earlier test's rooms linger out
    // meanwhile, so the node's channel total is no measure here).
    const subscribers = async (): Promise<number> =>
      Number((await redis.cli('PUBSUB', 'NUMSUB', `${prefix}:room:linger-default`)).trim().split('\n')[1])
    expect(await subscribers()).toBe(1)
    expect((await request(ws, { type: 'leave_room', room_id: 'linger-default' })).type).toBe('room_left')
    const left = Date.now()
    await new Promise((r) => setTimeout(r, 1500))
    expect(await subscribers()).toBe(1)
    while ((await subscribers()) !== 0 && Date.now() - left < 6000) await new Promise((r) => setTimeout(r, 100))
    expect(await subscribers()).toBe(0)
    expect(Date.now() - left).toBeGreaterThanOrEqual(2900)
    ws.close()
  }, 15_000)
})

/** A client that joins and leaves one room over and over, filing what it receives per session. */
class Churner {
  readonly sessions: Msg[][] = []
  #joined: (() => void) | undefined
  #left: (() => void) | undefined
  constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      const msg = JSON.parse(String(data)) as Msg
      if (msg.type === 'room_joined') this.#joined?.()
      else if (msg.type === 'room_left') this.#left?.()
      else this.sessions.at(-1)?.push(msg)
    })
  }
  join(room: string): Promise<void> {
    this.sessions.push([])
    return new Promise((resolve) => {
      this.#joined = resolve
      this.ws.send(JSON.stringify({ type: 'join_room', room_id: room }))
    })
  }
  leave(room: string): Promise<void> {
    return new Promise((resolve) => {
      this.#left = resolve
      this.ws.send(JSON.stringify({ type: 'leave_room', room_id: room }))
    })
  }
}

describe.skipIf(SKIP_REDIS)('subscribe and unsubscribe while messages flow', () => {
  let redis: Redis
  let publisher: ClusterNode
  let steadyNode: ClusterNode
  let churnNode: ClusterNode
  const prefix = `rr${process.pid}`

  beforeAll(async () => {
    redis = await Redis.start()
    ;[publisher, steadyNode, churnNode] = await Promise.all([
      ClusterNode.start(redis.url, prefix),
      ClusterNode.start(redis.url, prefix),
      // A short linger, so that leaving really unsubscribes between some rounds.
      ClusterNode.start(redis.url, prefix, { LINGER: '30' }),
    ])
  }, 30_000)
  afterAll(async () => {
    for (const n of [publisher, steadyNode, churnNode]) n.kill()
    await redis.stop()
  })

  it('a member that joined gets what is published after its room_joined exactly once; no gaps or doubles while subscribed', async () => {
    const room = 'churn'
    const steady = await connect(steadyNode.url('steady'))
    expect((await request(steady, { type: 'join_room', room_id: room })).type).toBe('room_joined')
    const steadyGot = collect(steady)
    const churners = await Promise.all([0, 1, 2].map(async (i) => new Churner(await connect(churnNode.url(`ch${i}`)))))

    const total = 4000
    const streaming = publisher.call<number>('stream', { room, count: total, tag: 's', perTick: 2 })
    // Markers go straight to Redis from this process the moment room_joined arrives: the
    // tightest race against the churn node's SUBSCRIBE there is.
    const emitter = new Emitter({ redis: redis.url, prefix })
    await emitter.broadcast('warm-up', { room: 'elsewhere' })
    let markers = 0
    const rounds = async (c: Churner, who: number): Promise<void> => {
      for (let k = 0; k < 12; k++) {
        await c.join(room)
        // Published only once room_joined is here: it must arrive, once.
        const marker = who * 100 + k
        await emitter.broadcast(JSON.stringify({ m: marker }), { room })
        markers++
        await waitFor(() => c.sessions.at(-1)!.some((x) => x.m === marker), 5000, `marker ${marker}`)
        await c.leave(room)
        // Every other round outlasts the linger: the node unsubscribes, and the next join
        // subscribes again; otherwise the next join finds the channel still held.
        if ((k + who) % 2 === 0) await new Promise((r) => setTimeout(r, 60 + who * 7))
      }
    }
    await Promise.all(churners.map((c, who) => rounds(c, who)))
    expect(await streaming).toBe(total)
    await emitter.close()

    for (const c of churners) {
      for (const session of c.sessions) {
        const seq = session.filter((x) => x.p === 's').map((x) => x.i!)
        // Whatever a session got of the stream is one run without gaps or doubles.
        if (seq.length > 0) expect(seq).toEqual(Array.from({ length: seq.length }, (_, j) => seq[0]! + j))
        const ms = session.filter((x) => x.m !== undefined).map((x) => x.m)
        expect(new Set(ms).size).toBe(ms.length)
      }
    }
    // The steady member on another node saw the whole stream and every marker, once, in order.
    await waitFor(() => steadyGot.length === total + markers, 10_000, 'the steady member')
    const parsed = steadyGot.map((g) => JSON.parse(String(g)) as Msg)
    expect(parsed.filter((x) => x.p === 's').map((x) => x.i)).toEqual(Array.from({ length: total }, (_, i) => i))
    expect(parsed.filter((x) => x.m !== undefined)).toHaveLength(markers)
    // All left: the churn node lets the channel go after its 30 ms linger.
    const deadline = Date.now() + 3000
    let held = 1
    while (held !== 0 && Date.now() < deadline) {
      held = (await churnNode.call<Stats>('localStats')).cluster.roomChannels
      await new Promise((r) => setTimeout(r, 50))
    }
    expect(held).toBe(0)
    for (const ws of [steady, ...churners.map((c) => c.ws)]) ws.close()
  }, 60_000)
})

describe.skipIf(SKIP_REDIS)('room_joined waits for the subscription', () => {
  it('over a slow link to Redis, a message published the moment room_joined arrives still reaches the member', async () => {
    const redis = await Redis.start()
    // The node's commands reach Redis 40 ms late (and its replies come back 40 ms late); the
    // emitter's PUBLISH goes straight to Redis. Answering room_joined before the SUBSCRIBE is
    // confirmed would lose every marker below.
    const link = await slowLink(redis.port, 40)
    const prefix = `rw${process.pid}`
    const node = await ClusterNode.start(`redis://127.0.0.1:${link.port}`, prefix, { LINGER: '0' })
    const emitter = new Emitter({ redis: redis.url, prefix })
    try {
      const c = new Churner(await connect(node.url('slow')))
      for (let k = 0; k < 5; k++) {
        await c.join('slow-room')
        await emitter.broadcast(JSON.stringify({ m: k }), { room: 'slow-room' })
        await waitFor(() => c.sessions.at(-1)!.some((x) => x.m === k), 3000, `marker ${k}`)
        await c.leave('slow-room')
        // Unsubscribed (no linger) before the next round, so every join subscribes afresh.
        await new Promise((r) => setTimeout(r, 150))
      }
      expect(c.sessions.map((s) => s.filter((x) => x.m !== undefined).length)).toEqual([1, 1, 1, 1, 1])
      c.ws.close()
    } finally {
      await emitter.close()
      node.kill()
      link.close()
      await redis.stop()
    }
  }, 30_000)
})

describe.skipIf(SKIP_REDIS)("cluster.channels: 'single' and option checks", () => {
  let redis: Redis
  beforeAll(async () => {
    redis = await Redis.start()
  })
  afterAll(async () => {
    await redis.stop()
  })

  it("'single' sends every room message to every node, also one with no members", async () => {
    const prefix = `rs${process.pid}`
    const [a, b, idle] = await Promise.all([0, 1, 2].map(() => ClusterNode.start(redis.url, prefix, { CHANNELS: 'single' })))
    try {
      const member = await connect(b!.url('single-member'))
      expect((await request(member, { type: 'join_room', room_id: 'x' })).type).toBe('room_joined')
      const got = collect(member)
      const before = await inbound([idle!])
      await a!.call('burst', { rooms: ['x'], count: 50, tag: 'a' })
      await waitFor(() => got.length === 50, 5000, 'single-channel delivery')
      await new Promise((r) => setTimeout(r, 200))
      const after = await inbound([idle!])
      // The idle node has no member anywhere and still receives all 50.
      expect(after[0]!.messages - before[0]!.messages).toBe(50)
      expect((await idle!.call<Stats>('localStats')).cluster.roomChannels).toBe(0)
      member.close()
    } finally {
      for (const n of [a, b, idle]) n!.kill()
    }
  })

  it('checks channels and unsubscribeLinger', () => {
    const redisUrl = redis.url
    expect(() => new WsServer({ cluster: { redis: redisUrl, channels: 'many' as 'room' } })).toThrow(TypeError)
    expect(() => new WsServer({ cluster: { redis: redisUrl, unsubscribeLinger: -1 } })).toThrow(RangeError)
    expect(() => new WsServer({ cluster: { redis: redisUrl, unsubscribeLinger: 1.5 } })).toThrow(TypeError)
    expect(() => new WsServer({ cluster: { redis: redisUrl, channels: 'single', unsubscribeLinger: 0 } })).not.toThrow()
  })
})
