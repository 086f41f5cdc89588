// cluster: { sharded: true } against a three-master Redis Cluster the test starts: room channels
// on sharded pub/sub, delivery across nodes, counts and presence, and a shard restarted mid-run.
import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { WsServer } from '../lib/index'
import { closedPort as freePort, ClusterNode, collect, connect, Redis, REDIS, request, SKIP_REDIS, waitFor } from '../test-support/index'

const cli = (port: number, ...args: string[]): Promise<string> =>
  new Promise((resolve, reject) =>
    execFile(REDIS!.replace(/redis-server$/, 'redis-cli'), ['-p', String(port), ...args], (err, out) => (err ? reject(err) : resolve(out))),
  )

/** A free port whose cluster bus port (+10000) is free too. */
async function clusterPort(): Promise<number> {
  for (;;) {
    const p = await freePort()
    if (p > 55_000) continue
    const probe = await new Promise<boolean>((resolve) => {
      const s = net.createServer()
      s.once('error', () => resolve(false))
      s.listen(p + 10_000, '127.0.0.1', () => s.close(() => resolve(true)))
    })
    if (probe) return p
  }
}

describe.skipIf(SKIP_REDIS)('Redis Cluster with sharded pub/sub', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rnode-rc-'))
  const shards: Redis[] = []
  let nodes: ClusterNode[] = []
  const prefix = `sc${process.pid}`

  beforeAll(async () => {
    for (let i = 0; i < 3; i++) {
      const port = await clusterPort()
      const r = new Redis(port, ['--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`, '--cluster-node-timeout', '1000', '--dir', dir])
      await r.start()
      shards.push(r)
    }
    await cli(shards[0]!.port, '--cluster', 'create', ...shards.map((s) => `127.0.0.1:${s.port}`), '--cluster-yes')
    const deadline = Date.now() + 15_000
    for (const s of shards) {
      while (!(await cli(s.port, 'CLUSTER', 'INFO')).includes('cluster_state:ok')) {
        if (Date.now() > deadline) throw new Error('the Redis Cluster did not come up')
        await new Promise((r) => setTimeout(r, 100))
      }
    }
    const urls = shards.map((s) => s.url).join(',')
    nodes = await Promise.all([0, 1, 2].map(() => ClusterNode.start(urls, prefix, { REDIS_URLS: urls, SHARDED: '1', PRESENCE_FIELDS: 'name' })))
    for (const n of nodes) if (n.listenError) throw new Error(n.listenError)
  }, 40_000)
  afterAll(async () => {
    for (const n of nodes) n.kill()
    for (const s of shards) await s.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  const rooms = Array.from({ length: 8 }, (_, i) => `shard-room-${i}`)

  it('room messages reach members on every node once and in order, over channels on several shards', async () => {
    // The rooms' channels hash to slots on more than one shard.
    const slots = await Promise.all(rooms.map((r) => cli(shards[0]!.port, 'CLUSTER', 'KEYSLOT', `${prefix}:room:${r}`)))
    const owners = new Set(slots.map((s) => Math.floor((Number(s) * 3) / 16384)))
    expect(owners.size).toBeGreaterThan(1)

    const members: Array<{ ws: WebSocket; room: string; got: Array<string | Buffer> }> = []
    for (const [i, room] of rooms.entries()) {
      for (const n of [nodes[0]!, nodes[2]!]) {
        const ws = await connect(n.url(`sm${i}`))
        expect((await request(ws, { type: 'join_room', room_id: room })).type).toBe('room_joined')
        members.push({ ws, room, got: collect(ws) })
      }
    }
    await nodes[1]!.call('burst', { rooms, count: 100, tag: 1 })
    await waitFor(() => members.every((m) => m.got.length >= 100), 10_000, 'sharded deliveries')
    await new Promise((r) => setTimeout(r, 200))
    for (const m of members) {
      const parsed = m.got.map((g) => JSON.parse(String(g)) as { r: string; i: number })
      expect(parsed.every((x) => x.r === m.room)).toBe(true)
      expect(parsed.map((x) => x.i)).toEqual(Array.from({ length: 100 }, (_, i) => i))
    }
    // Counts and presence work across the shards too.
    // (Each node reports every second.)
    type Stats = { nodes: number; connectionsByRoom: Record<string, number> }
    let stats: Stats = { nodes: 0, connectionsByRoom: {} }
    const reported = Date.now() + 5000
    while (Date.now() < reported) {
      stats = await nodes[1]!.call<Stats>('stats')
      if (stats.nodes === 3 && stats.connectionsByRoom[rooms[0]!] === 2) break
      await new Promise((r) => setTimeout(r, 200))
    }
    expect(stats.nodes).toBe(3)
    expect(stats.connectionsByRoom[rooms[0]!]).toBe(2)
    let seen: unknown[] = []
    const until = Date.now() + 3000
    while (seen.length !== 2 && Date.now() < until) seen = await nodes[1]!.call<unknown[]>('presence', { room: rooms[3] })
    expect(seen).toHaveLength(2)
    for (const m of members) m.ws.close()
  }, 30_000)

  it('a shard restarted mid-run: delivery resumes', async () => {
    const a = await connect(nodes[0]!.url('ra'))
    const b = await connect(nodes[2]!.url('rb'))
    for (const ws of [a, b]) for (const room of rooms) await request(ws, { type: 'join_room', room_id: room })
    const gotA = collect(a)
    const gotB = collect(b)
    await nodes[1]!.call('burst', { rooms, count: 1, tag: 'before' })
    await waitFor(() => gotA.length === rooms.length && gotB.length === rooms.length, 5000, 'before the restart')

    const shard = shards[1]!
    await shard.stop()
    await new Promise((r) => setTimeout(r, 500))
    await shard.start()
    // Every room gets a message from after the restart, on both nodes (the publisher retries,
    // so a message may arrive twice; exactly-once is not promised across a shard restart).
    const deadline = Date.now() + 25_000
    const after = (got: Array<string | Buffer>): Set<string> =>
      new Set(got.map((g) => JSON.parse(String(g)) as { p: string; r: string }).filter((x) => x.p === 'after').map((x) => x.r))
    while (after(gotA).size < rooms.length || after(gotB).size < rooms.length) {
      if (Date.now() > deadline) throw new Error(`delivery did not resume: ${after(gotA).size}/${after(gotB).size} of ${rooms.length} rooms`)
      await nodes[1]!.call('burst', { rooms, count: 1, tag: 'after' })
      await new Promise((r) => setTimeout(r, 300))
    }
    a.close()
    b.close()
  }, 40_000)

  it('checks the options', () => {
    expect(() => new WsServer({ cluster: { redis: [], sharded: true } })).toThrow(TypeError)
    expect(() => new WsServer({ cluster: { redis: ['redis://a:1', 'http://b'] } })).toThrow(TypeError)
    expect(() => new WsServer({ cluster: { redis: 'redis://a:1', sharded: 'yes' as unknown as boolean } })).toThrow(TypeError)
    expect(() => new WsServer({ cluster: { redis: ['redis://a:1', 'redis://b:2'], sharded: true } })).not.toThrow()
  })
})
