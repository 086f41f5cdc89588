// History and session recovery across a cluster: room history in Redis (numbered by Redis,
// the same on every node), sessions in Redis, clients coming back on another node, after the
// node they were on was SIGKILLed, while Redis is away, and with bad tokens and offsets.
// Nodes are separate processes sharing a private redis-server; clients are raw protocol peers.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ClusterNode, Peer, Redis, SKIP_REDIS, sleep, startProxy, waitFor, waitForAsync, withSession, type Frame } from '../test-support/index'

const ROOMS = ['s0', 's1', 's2', 's3', 's4']
const ENV = { HISTORY: '1000,60000', RECOVERY: '30000' }

/** A peer on a node's /ws (optionally through a proxy port) with a clientId. */
function open(port: number, clientId: string, token?: string): Promise<Peer> {
  const url = `ws://127.0.0.1:${port}/ws`
  return Peer.open(token ? withSession(url, token, `&clientId=${clientId}`) : `${url}?clientId=${clientId}`)
}

async function joined(peer: Peer, room: string): Promise<Frame> {
  peer.send({ type: 'join_room', room_id: room })
  return peer.frame((f) => f.type === 'room_joined' && f.room_id === room, 10_000)
}

describe.skipIf(SKIP_REDIS)('recovery across a cluster', () => {
  let redis: Redis
  let nodes: ClusterNode[] = []
  const extra: ClusterNode[] = []
  const prefix = `cr${process.pid}`

  beforeAll(async () => {
    redis = await Redis.start()
    nodes = await Promise.all([0, 1, 2].map(() => ClusterNode.start(redis.url, prefix, ENV)))
  }, 30_000)
  afterAll(async () => {
    for (const n of [...nodes, ...extra]) n.kill()
    await redis.stop()
  })

  it('200 clients in 5 rooms on 3 nodes, half dropped at the TCP level, 1,000 messages, back on another node: each once, in order', async () => {
    const proxies = await Promise.all(nodes.map((n) => startProxy(n.port)))
    const peers: Array<{ peer: Peer; room: string; node: number; dropped: boolean; id: string }> = []
    for (let i = 0; i < 200; i++) {
      const node = i % 3
      const dropped = i % 2 === 0
      const id = `p${i}`
      const peer = await open(dropped ? proxies[node]!.port : nodes[node]!.port, id)
      peers.push({ peer, room: ROOMS[i % 5]!, node, dropped, id })
    }
    const joins = await Promise.all(peers.map((p) => joined(p.peer, p.room)))
    for (const j of joins) expect(typeof j.epoch).toBe('string')
    // Every node says the same epoch for a room: the history is Redis's.
    for (const room of ROOMS) {
      const epochs = new Set(joins.filter((_, i) => peers[i]!.room === room).map((j) => j.epoch))
      expect(epochs.size).toBe(1)
    }

    let sent = 0
    const publish = async (n: number): Promise<void> => {
      // From every node in turn, a batch at a time.
      for (let k = 0; k < n; k += 50) {
        const items = Array.from({ length: 50 }, () => ({ message: `m${sent}`, room: ROOMS[sent++ % 5]! }))
        await nodes[(k / 50) % 3]!.call('many', { items })
      }
    }
    await publish(250)
    await sleep(200)
    for (const p of proxies) p.freeze()
    await publish(250)
    for (const p of proxies) p.thaw()
    await waitFor(() => peers.every((p) => !p.dropped || p.peer.closedAt > 0), 10_000)

    const publishing = publish(500)
    const resumed = await Promise.all(
      peers.filter((p) => p.dropped).map(async (p) => {
        const other = nodes[(p.node + 1) % 3]!
        const again = await open(other.port, p.id, p.peer.token)
        const session = await again.frame((f) => f.type === 'session')
        expect(session.recovered).toBe(true)
        again.send({ type: 'recover', rooms: { [p.room]: p.peer.position(p.room) } })
        return { ...p, again }
      }),
    )
    await publishing
    expect(sent).toBe(1000)
    await waitFor(
      () =>
        peers.every((p) => p.dropped || p.peer.roomMessages(p.room).length === 200) &&
        resumed.every((r) => r.peer.roomMessages(r.room).length + r.again.roomMessages(r.room).length >= 200),
      30_000,
      'every message everywhere',
    )
    await sleep(300)
    // The order Redis gave, as a member that stayed saw it.
    const order = new Map<string, unknown[]>()
    for (const p of peers.filter((x) => !x.dropped)) {
      const got = p.peer.roomMessages(p.room)
      expect(got.map((f) => f.offset)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1))
      const seen = order.get(p.room)
      if (seen) expect(got.map((f) => f.message)).toEqual(seen)
      else order.set(p.room, got.map((f) => f.message))
    }
    for (const r of resumed) {
      expect((await r.again.frame((f) => f.type === 'recovered')).rooms).toEqual({ [r.room]: true })
      const got = [...r.peer.roomMessages(r.room), ...r.again.roomMessages(r.room)]
      expect(got.map((f) => f.offset)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1))
      expect(got.map((f) => f.message)).toEqual(order.get(r.room))
    }
    // The session came along: same socket id, its data and metadata, on the other node.
    const r0 = resumed[0]!
    const s = await nodes[(r0.node + 1) % 3]!.call<{ recovered: boolean; data: { firstPort: number }; name: string; rooms: string[] }>('socket', { clientId: r0.id })
    expect(s.recovered).toBe(true)
    expect(s.data.firstPort).toBe(nodes[r0.node]!.port)
    expect(s.name).toBe(`N-${r0.id}`)
    expect(s.rooms).toEqual([r0.room])
    for (const p of peers) p.peer.ws.close()
    for (const r of resumed) r.again.ws.close()
    for (const p of proxies) p.close()
  }, 90_000)

  it('after SIGKILL of their node, clients recover on the others with every message once', async () => {
    const doomed = await ClusterNode.start(redis.url, prefix, ENV)
    extra.push(doomed)
    const peers = await Promise.all(Array.from({ length: 30 }, (_, i) => open(doomed.port, `k${i}`)))
    await Promise.all(peers.map((p, i) => joined(p, `k${i % 3}`)))
    await nodes[0]!.call('setData', { clientId: 'nobody', data: 1 })
    // A data change after onConnect goes to Redis too.
    expect(await doomed.call('setData', { clientId: 'k0', data: { changed: true } })).toBe(true)
    const items = (from: number, n: number) => Array.from({ length: n }, (_, i) => ({ message: `x${from + i}`, room: `k${(from + i) % 3}` }))
    await nodes[1]!.call('many', { items: items(0, 60) })
    await waitFor(() => peers.every((p, i) => p.roomMessages(`k${i % 3}`).length === 20), 10_000)
    await sleep(300)
    doomed.kill()
    await waitFor(() => peers.every((p) => p.closedAt > 0), 10_000)
    await nodes[1]!.call('many', { items: items(60, 60) })
    const again = await Promise.all(
      peers.map(async (p, i) => {
        const a = await open(nodes[i % 3]!.port, `k${i}`, p.token)
        expect((await a.frame((f) => f.type === 'session')).recovered).toBe(true)
        a.send({ type: 'recover', rooms: { [`k${i % 3}`]: p.position(`k${i % 3}`) } })
        return a
      }),
    )
    for (const [i, a] of again.entries()) {
      const room = `k${i % 3}`
      expect((await a.frame((f) => f.type === 'recovered')).rooms).toEqual({ [room]: true })
      await waitFor(() => peers[i]!.roomMessages(room).length + a.roomMessages(room).length >= 40, 10_000)
      const got = [...peers[i]!.roomMessages(room), ...a.roomMessages(room)]
      expect(got.map((f) => f.offset)).toEqual(Array.from({ length: 40 }, (_, k) => k + 1))
      expect(got.map((f) => f.message)).toEqual(items(0, 120).filter((m) => m.room === room).map((m) => m.message))
    }
    const k0 = await nodes[0]!.call<{ data: unknown }>('socket', { clientId: 'k0' })
    expect(k0.data).toEqual({ changed: true })
    for (const a of again) a.ws.close()
  }, 60_000)

  it("a forged token, or one of another client, gets a fresh session; the owner's still works", async () => {
    const owner = await open(nodes[0]!.port, 'owner')
    await joined(owner, 'private')
    owner.ws.terminate()
    await sleep(200)
    const forged = await open(nodes[1]!.port, 'thief', 'ab'.repeat(32))
    expect((await forged.frame((f) => f.type === 'session')).recovered).toBe(false)
    const thief = await open(nodes[1]!.port, 'thief', owner.token)
    expect((await thief.frame((f) => f.type === 'session')).recovered).toBe(false)
    thief.send({ type: 'recover', rooms: { private: { epoch: 'x', offset: 0 } } })
    expect((await thief.frame((f) => f.type === 'error')).error).toMatch(/no session rooms/)
    const back = await open(nodes[2]!.port, 'owner', owner.token)
    expect((await back.frame((f) => f.type === 'session')).recovered).toBe(true)
    // An offset from the future is a protocol error; the connection stays and can recover.
    const at = owner.position('private')
    back.send({ type: 'recover', rooms: { private: { epoch: at.epoch, offset: at.offset + 5 } } })
    expect((await back.frame((f) => f.type === 'error')).error).toMatch(/ahead of the room's history/)
    back.send({ type: 'recover', rooms: { private: at } })
    expect((await back.frame((f) => f.type === 'recovered')).rooms).toEqual({ private: true })
    // Used once: the same token again is a fresh session.
    const twice = await open(nodes[1]!.port, 'owner', owner.token)
    expect((await twice.frame((f) => f.type === 'session')).recovered).toBe(false)
    for (const p of [forged, thief, back, twice]) p.ws.close()
  })

  it('history limits in Redis: size, bytes and TTL; every node reads the same', async () => {
    const bySize = await ClusterNode.start(redis.url, `${prefix}s`, { HISTORY: '3,60000' })
    const byBytes = await ClusterNode.start(redis.url, `${prefix}b`, { HISTORY: '100,60000,400' })
    const byTtl = await ClusterNode.start(redis.url, `${prefix}t`, { HISTORY: '100,300' })
    const reader = await ClusterNode.start(redis.url, `${prefix}s`, { HISTORY: '3,60000' })
    extra.push(bySize, byBytes, byTtl, reader)
    type Page = { epoch: string; offset: number; messages: Array<{ offset: number; message: string }> }
    const publish = (n: ClusterNode, count: number, text = (i: number) => `h${i}`) =>
      n.call('many', { items: Array.from({ length: count }, (_, i) => ({ message: text(i), room: 'h' })) })
    await publish(bySize, 5)
    await waitForAsync(async () => (await bySize.call<Page>('history', { room: 'h' })).offset === 5, 5000)
    const sized = await reader.call<Page>('history', { room: 'h' })
    expect(sized.messages.map((m) => m.offset)).toEqual([3, 4, 5])
    expect(sized.messages.map((m) => m.message)).toEqual(['h2', 'h3', 'h4'])
    expect((await reader.call<Page>('history', { room: 'h', since: 3 })).messages.map((m) => m.offset)).toEqual([4, 5])

    // Each frame is about 130 bytes: 400 bytes hold three.
    await publish(byBytes, 10, (i) => `${'b'.repeat(60)}${i}`)
    await waitForAsync(async () => (await byBytes.call<Page>('history', { room: 'h' })).offset === 10, 5000)
    const bytes = await byBytes.call<Page>('history', { room: 'h' })
    expect(bytes.messages.length).toBeGreaterThan(0)
    expect(bytes.messages.length).toBeLessThan(4)
    expect(bytes.messages.at(-1)!.offset).toBe(10)

    await publish(byTtl, 3)
    await waitForAsync(async () => (await byTtl.call<Page>('history', { room: 'h' })).offset === 3, 5000)
    await sleep(450)
    const expired = await byTtl.call<Page>('history', { room: 'h' })
    expect(expired.messages).toEqual([])
    expect(await redis.cli('XLEN', `${prefix}t:history:h`)).toMatch(/^[0-3]\n?$/)
    await publish(byTtl, 1)
    await waitForAsync(async () => (await byTtl.call<Page>('history', { room: 'h' })).offset === 4, 5000)
    expect((await redis.cli('XLEN', `${prefix}t:history:h`)).trim()).toBe('1')
  }, 30_000)
})

describe.skipIf(SKIP_REDIS)('recovery while Redis is away', () => {
  it('local delivery goes on, recovery answers recovered: false, and both resume when Redis is back', async () => {
    const redis = await Redis.start()
    const node = await ClusterNode.start(redis.url, `away${process.pid}`, { ...ENV, RECOVERY: '30000' })
    try {
      const member = await open(node.port, 'm')
      const first = await joined(member, 'a')
      const leaver = await open(node.port, 'l')
      await joined(leaver, 'a')
      await redis.stop()
      await sleep(300)
      leaver.ws.terminate()
      await node.call('many', { items: [{ message: 'while away', room: 'a' }] })
      const away = await member.frame((f) => f.type === 'room_message' && f.message === 'while away')
      expect(away.offset).toBeUndefined()
      const started = Date.now()
      const back = await open(node.port, 'l', leaver.token)
      expect((await back.frame((f) => f.type === 'session', 8000)).recovered).toBe(false)
      expect(Date.now() - started).toBeLessThan(6000)
      back.ws.close()

      await redis.start()
      await waitForAsync(async () => (await node.call<{ cluster?: { connected: boolean } }>('localStats')).cluster?.connected === true, 15_000)
      await node.call('many', { items: [{ message: 'after', room: 'a' }] })
      const after = await member.frame((f) => f.type === 'room_message' && f.message === 'after', 10_000)
      expect(after.offset).toBe(1)
      // A new epoch: offsets of the old one would claim a history that has a hole.
      const late = await open(node.port, 'late')
      expect((await joined(late, 'a')).epoch).not.toBe(first.epoch)
      for (const p of [member, late]) p.ws.close()
    } finally {
      node.kill()
      await redis.stop()
    }
  }, 60_000)
})
