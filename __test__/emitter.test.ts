// @rnode/ws/emitter: a process that is not a server broadcasts into a running cluster.
import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Emitter } from '../lib/emitter'
import { closedPort as freePort, ClusterNode, collect, connect, Redis, request, SKIP_REDIS, waitFor } from '../test-support/index'

describe.skipIf(SKIP_REDIS)('Emitter against a cluster', () => {
  let redis: Redis
  let nodes: ClusterNode[] = []
  const prefix = `em${process.pid}`

  beforeAll(async () => {
    redis = await Redis.start()
    nodes = await Promise.all([0, 1].map(() => ClusterNode.start(redis.url, prefix)))
  }, 30_000)
  afterAll(async () => {
    for (const n of nodes) n.kill()
    await redis.stop()
  })

  it('room messages reach the members on every node once and in order; binary byte-exact; except skips', async () => {
    const clients = await Promise.all([
      connect(nodes[0]!.url('e0')),
      connect(nodes[1]!.url('e1')),
      connect(nodes[1]!.url('e2')),
      connect(nodes[0]!.url('outside')),
    ])
    for (const ws of clients.slice(0, 3)) expect((await request(ws, { type: 'join_room', room_id: 'news' })).type).toBe('room_joined')
    const got = clients.map(collect)
    const emitter = new Emitter({ redis: redis.url, prefix })
    try {
      const sends: Array<Promise<number>> = []
      for (let i = 0; i < 300; i++) sends.push(emitter.broadcast(`n${i}`, { room: 'news' }))
      // Redis handed each to the two nodes subscribed to the room's channel.
      expect(new Set(await Promise.all(sends))).toEqual(new Set([2]))
      await waitFor(() => got.slice(0, 3).every((g) => g.length === 300), 5000, 'emitted room messages')
      for (const g of got.slice(0, 3)) expect(g).toEqual(Array.from({ length: 300 }, (_, i) => `n${i}`))

      const bytes = new Uint8Array(Array.from({ length: 2000 }, (_, i) => (i * 13) & 0xff))
      const e2 = await nodes[1]!.call<string>('socketId', { clientId: 'e2' })
      await emitter.broadcast(bytes, { room: 'news', except: [e2] })
      // No room: every connection on every node, the outsider included.
      await emitter.broadcast('all of you')
      await waitFor(() => got[0]!.length === 302 && got[1]!.length === 302 && got[2]!.length === 301, 5000, 'binary and broadcast')
      for (const g of [got[0]!, got[1]!]) expect(Buffer.isBuffer(g[300]) && (g[300] as Buffer).equals(Buffer.from(bytes))).toBe(true)
      expect(got[2]![300]).toBe('all of you')
      await new Promise((r) => setTimeout(r, 200))
      expect(got[3]).toEqual(['all of you'])
    } finally {
      await emitter.close()
    }
    for (const ws of clients) ws.close()
  })

  it("with channels: 'single' it publishes where single-channel nodes listen", async () => {
    const single = `${prefix}s`
    const node = await ClusterNode.start(redis.url, single, { CHANNELS: 'single' })
    try {
      const ws = await connect(node.url('s0'))
      expect((await request(ws, { type: 'join_room', room_id: 'r' })).type).toBe('room_joined')
      const got = collect(ws)
      const wrong = new Emitter({ redis: redis.url, prefix: single })
      const right = new Emitter({ redis: redis.url, prefix: single, channels: 'single' })
      expect(await wrong.broadcast('lost', { room: 'r' })).toBe(0)
      expect(await right.broadcast('found', { room: 'r' })).toBe(1)
      await waitFor(() => got.length === 1, 5000, 'single-channel emit')
      expect(got).toEqual(['found'])
      await Promise.all([wrong.close(), right.close()])
      ws.close()
    } finally {
      node.kill()
    }
  })

  it('errors have codes: bad options, a closed emitter, Redis away, a Redis error reply', async () => {
    const code = (f: () => unknown): unknown => {
      try {
        f()
      } catch (e) {
        return (e as { code?: string }).code
      }
      return undefined
    }
    expect(code(() => new Emitter({ redis: 'http://x' }))).toBe('ERR_INVALID_OPTION')
    expect(code(() => new Emitter({ redis: redis.url, prefix: 'bad prefix' }))).toBe('ERR_INVALID_OPTION')
    expect(code(() => new Emitter({ redis: redis.url, channels: 'all' as 'room' }))).toBe('ERR_INVALID_OPTION')
    const e = new Emitter({ redis: redis.url })
    await expect(e.broadcast('x', { room: '' })).rejects.toMatchObject({ code: 'ERR_INVALID_ROOM_ID' })
    await expect(e.broadcast('x', { except: ['not-a-uuid'] })).rejects.toMatchObject({ code: 'ERR_INVALID_ARG' })
    expect(await e.broadcast('nobody listens', { room: 'empty' })).toBe(0)
    await e.close()
    await expect(e.broadcast('x')).rejects.toMatchObject({ code: 'ERR_EMITTER_CLOSED' })

    const away = new Emitter({ redis: `redis://127.0.0.1:${await freePort()}` })
    await expect(away.broadcast('x')).rejects.toMatchObject({ code: 'ERR_REDIS_UNREACHABLE' })
    await away.close()

    // A password Redis does not have: AUTH fails with Redis' error reply.
    const denied = new Emitter({ redis: `redis://:secret@127.0.0.1:${redis.port}` })
    await expect(denied.broadcast('x')).rejects.toMatchObject({ code: 'ERR_REDIS_REFUSED' })
    await denied.close()
  })

  it('is importable as @rnode/ws/emitter without loading the engine; @rnode/ws still resolves', () => {
    const script = `
      const { Emitter } = require('@rnode/ws/emitter')
      const loadedEngine = Object.keys(require.cache).some((k) => k.endsWith('.node'))
      const { WsServer } = require('@rnode/ws')
      console.log(JSON.stringify({ emitter: typeof Emitter, loadedEngine, server: typeof WsServer }))`
    const out = execFileSync(process.execPath, ['-e', script], { cwd: join(__dirname, '..'), encoding: 'utf8' })
    expect(JSON.parse(out.trim())).toEqual({ emitter: 'function', loadedEngine: false, server: 'function' })
  })
})
