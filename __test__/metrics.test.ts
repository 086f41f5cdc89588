// server.metrics() and metricsPath: the Prometheus exposition, parsed by the official Python
// client, moves as real traffic says it should.
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import { join } from 'node:path'
import express from 'express'
import { beforeAll, describe, expect, it } from 'vitest'
import { Emitter } from '../lib/emitter'
import { WsServer } from '../lib/index'
import { RespConnection } from '../lib/resp'
import {
  closed,
  collect,
  connect,
  HAVE_OPENSSL,
  messages,
  nextMessage,
  rawExchange,
  serverPool,
  slowLink,
  startRedis,
  statusOf,
  suiteCertificates,
  upgradeRequest,
  waitFor,
} from '../test-support/index'
import { parseExposition, prometheusPython, sample, type Family } from './prometheus'

const start = serverPool()

type Families = Record<string, Family>
const counter = (f: Families, name: string, labels: Record<string, string> = {}): number =>
  sample(f, `rnode_ws_${name}`, `rnode_ws_${name}_total`, labels)
const gauge = (f: Families, name: string, labels: Record<string, string> = {}): number =>
  sample(f, `rnode_ws_${name}`, `rnode_ws_${name}`, labels)
const histogramCount = (f: Families, name: string): number => sample(f, `rnode_ws_${name}`, `rnode_ws_${name}_count`)

beforeAll(() => {
  prometheusPython()
}, 180_000)

describe('server.metrics()', () => {
  it('parses, and every family is prefixed, typed and documented; counters end in _total', async () => {
    const { server } = await start()
    const text = server.metrics()
    const families = parseExposition(text)
    const names = Object.keys(families)
    expect(names.length).toBeGreaterThan(15)
    for (const [name, f] of Object.entries(families)) {
      expect(name.startsWith('rnode_ws_'), name).toBe(true)
      expect(['counter', 'gauge', 'histogram'], name).toContain(f.type)
      expect(f.help.length, name).toBeGreaterThan(0)
      if (f.type === 'counter') for (const [s] of f.samples) expect(s.endsWith('_total'), s).toBe(true)
    }
    for (const line of text.split('\n').filter((l) => l.startsWith('# TYPE'))) {
      const [, , name, type] = line.split(' ')
      if (type === 'counter') expect(name!.endsWith('_total'), name).toBe(true)
    }
    // Base units: seconds and bytes only.
    expect(names.filter((n) => /_(ms|milliseconds|kb|kib)$/.test(n))).toEqual([])
    expect(gauge(families, 'process_resident_memory_bytes')).toBeGreaterThan(1024 * 1024)
    // No cluster families on a single node.
    expect(names.some((n) => n.includes('cluster'))).toBe(false)
  })

  it('connections, messages and bytes by frame type, send results and close codes follow real traffic', async () => {
    const { server, url } = await start({ onMessage: (s, m) => void s.send(m) })
    const before = parseExposition(server.metrics())
    const a = await connect(url)
    const b = await connect(url)
    await waitFor(() => server.getStats().totalConnections === 2)
    let f = parseExposition(server.metrics())
    expect(gauge(f, 'connections')).toBe(2)
    expect(counter(f, 'connections_accepted') - counter(before, 'connections_accepted')).toBe(2)

    const replies = messages(a, 4)
    a.send('hello')
    a.send('wörld')
    a.send('!')
    a.send(Buffer.from([1, 2, 3, 4, 5]))
    await replies
    const pong = new Promise((r) => a.once('pong', r))
    a.ping('abc')
    await pong
    f = parseExposition(server.metrics())
    expect(counter(f, 'messages_received', { type: 'text' })).toBe(3)
    expect(counter(f, 'received_bytes', { type: 'text' })).toBe(5 + Buffer.byteLength('wörld') + 1)
    expect(counter(f, 'messages_received', { type: 'binary' })).toBe(1)
    expect(counter(f, 'received_bytes', { type: 'binary' })).toBe(5)
    expect(counter(f, 'messages_received', { type: 'ping' })).toBe(1)
    expect(counter(f, 'received_bytes', { type: 'ping' })).toBe(3)
    expect(counter(f, 'messages_sent', { type: 'pong' })).toBe(1)
    expect(counter(f, 'messages_sent', { type: 'text' })).toBe(3)
    expect(counter(f, 'messages_sent', { type: 'binary' })).toBe(1)
    expect(counter(f, 'sent_bytes', { type: 'binary' })).toBe(5)
    expect(counter(f, 'send_results', { status: 'sent' })).toBe(4)
    // getStats() and the metrics count the same messages.
    const stats = server.getStats()
    expect(stats.messagesIn).toBe(4)
    expect(stats.messagesOut).toBe(4)
    // Every batch that carried events is in the batch-size histogram.
    expect(histogramCount(f, 'js_batch_events')).toBeGreaterThan(0)

    a.close(4001, 'app')
    await closed(a)
    b.close(1000)
    await closed(b)
    await waitFor(() => server.getStats().totalConnections === 0)
    f = parseExposition(server.metrics())
    await waitFor(() => counter(parseExposition(server.metrics()), 'disconnects', { code: '1000' }) === 1)
    f = parseExposition(server.metrics())
    expect(counter(f, 'disconnects', { code: '4001' })).toBe(1)
    expect(counter(f, 'disconnects', { code: '1000' })).toBe(1)
    expect(counter(f, 'messages_received', { type: 'close' })).toBe(2)
    expect(counter(f, 'messages_sent', { type: 'close' })).toBe(2)
    expect(gauge(f, 'connections')).toBe(0)
  })

  it('refused upgrades count under their HTTP status', async () => {
    const { server, port } = await start({}, { allowedOrigins: ['https://ok.example'] })
    expect(statusOf(await rawExchange(port, upgradeRequest('/nope')))).toBe(404)
    expect(statusOf(await rawExchange(port, upgradeRequest('/nope')))).toBe(404)
    expect(statusOf(await rawExchange(port, upgradeRequest('/ws', { Origin: 'https://evil.example' })))).toBe(403)
    expect(statusOf(await rawExchange(port, upgradeRequest('/ws', { 'Sec-WebSocket-Version': '8', Origin: 'https://ok.example' })))).toBe(426)
    expect(statusOf(await rawExchange(port, 'GET /ws HTTP/1.1\r\nHost: x\r\n' + 'X: y\r\n'.repeat(200) + '\r\n'))).toBe(431)
    const f = parseExposition(server.metrics())
    expect(counter(f, 'connections_refused', { status: '404' })).toBe(2)
    expect(counter(f, 'connections_refused', { status: '403' })).toBe(1)
    expect(counter(f, 'connections_refused', { status: '426' })).toBe(1)
    expect(counter(f, 'connections_refused', { status: '431' })).toBe(1)
    expect(counter(f, 'connections_accepted')).toBe(0)
  })

  it('buffered and dropped sends, and drops by the backpressure policy, are counted', async () => {
    const statuses: string[] = []
    let socketReady: (() => void) | undefined
    const ready = new Promise<void>((r) => (socketReady = r))
    const { server, port } = await start(
      {
        onConnect: (s) => {
          const chunk = Buffer.alloc(16 * 1024, 7)
          for (let i = 0; i < 64; i++) statuses.push(s.send(chunk))
          socketReady!()
        },
      },
      { maxBackpressure: 64 * 1024, backpressurePolicy: 'drop' },
    )
    // A raw client that completes the upgrade and then never reads.
    const sock = net.connect(port, '127.0.0.1', () => sock.write(upgradeRequest('/ws')))
    sock.pause()
    await ready
    const f = parseExposition(server.metrics())
    const tally = (s: string): number => statuses.filter((x) => x === s).length
    expect(tally('dropped')).toBeGreaterThan(0)
    expect(counter(f, 'send_results', { status: 'sent' })).toBe(tally('sent'))
    expect(counter(f, 'send_results', { status: 'buffered' })).toBe(tally('buffered'))
    expect(counter(f, 'send_results', { status: 'dropped' })).toBe(tally('dropped'))
    expect(counter(f, 'dropped_messages')).toBe(server.getStats().droppedMessages)
    sock.destroy()
  })

  it('the JS queue gauges show events waiting while a handler blocks the JS thread', async () => {
    let seen: Families | undefined
    let server: WsServer | undefined
    const started = await start({
      onMessage: () => {
        if (seen !== undefined) return
        // Block the JS thread while the client's next messages arrive, then look.
        const until = Date.now() + 300
        while (Date.now() < until);
        seen = parseExposition(server!.metrics())
      },
    })
    server = started.server
    // The client runs in a child process: this one's JS thread is the one being blocked.
    const client = spawn(
      process.execPath,
      [
        '-e',
        `const ws = new (require('ws'))(${JSON.stringify(started.url)});
         ws.on('open', () => { ws.send('first'); setTimeout(() => { for (let i = 0; i < 10; i++) ws.send('next ' + i) }, 50) })
         setTimeout(() => process.exit(0), 5000)`,
      ],
      { cwd: join(__dirname, '..'), stdio: 'ignore' },
    )
    try {
      await waitFor(() => seen !== undefined)
      expect(gauge(seen!, 'js_queue_events')).toBeGreaterThanOrEqual(10)
      expect(gauge(seen!, 'js_queue_bytes')).toBeGreaterThanOrEqual(10 * 'next 0'.length)
    } finally {
      client.kill()
    }
  })

  it('rooms, memberships, broadcast durations and server ping round trips', async () => {
    const { server, url } = await start({}, { pingInterval: 50 })
    const a = await connect(url)
    const b = await connect(url)
    for (const ws of [a, b]) {
      const joined = nextMessage(ws)
      ws.send(JSON.stringify({ type: 'join_room', room_id: 'lobby' }))
      await joined
    }
    const got = Promise.all([nextMessage(a), nextMessage(b)])
    expect(server.broadcast('hi', { room: 'lobby' })).toBe(2)
    await got
    // `ws` answers server pings by itself: the round trip is measured on the pong.
    await waitFor(() => histogramCount(parseExposition(server.metrics()), 'ping_rtt_seconds') >= 2, 5000, 'ping round trips')
    const f = parseExposition(server.metrics())
    expect(gauge(f, 'rooms')).toBe(1)
    expect(gauge(f, 'room_memberships')).toBe(2)
    expect(histogramCount(f, 'broadcast_duration_seconds')).toBe(1)
    expect(counter(f, 'messages_sent', { type: 'ping' })).toBeGreaterThanOrEqual(2)
    expect(counter(f, 'messages_received', { type: 'pong' })).toBeGreaterThanOrEqual(2)
    const buckets = f['rnode_ws_ping_rtt_seconds']!.samples.filter(([n]) => n.endsWith('_bucket'))
    const inf = buckets.find(([, l]) => l['le'] === '+Inf')
    expect(Number(inf![2])).toBe(histogramCount(f, 'ping_rtt_seconds'))
    // No per-room series unless a room opts in.
    expect(f['rnode_ws_room_members']).toBeUndefined()
    a.close()
    b.close()
  })

  it('room members per room only for rooms created with metrics: true', async () => {
    const { server, url } = await start()
    server.createRoom('VIP', { id: 'vip', metrics: true })
    server.createRoom('Quiet', { id: 'quiet' })
    const a = await connect(url)
    for (const room of ['vip', 'quiet']) {
      const joined = nextMessage(a)
      a.send(JSON.stringify({ type: 'join_room', room_id: room }))
      await joined
    }
    const f = parseExposition(server.metrics())
    expect(f['rnode_ws_room_members']!.samples).toEqual([['rnode_ws_room_members', { room: 'vip' }, 1]])
    expect(gauge(f, 'room_memberships')).toBe(2)
    expect(() => server.createRoom('x', { metrics: 'yes' as never })).toThrow(TypeError)
    a.close()
  })
})

describe('metricsPath', () => {
  it('default: no endpoint (404 like any unknown path)', async () => {
    const { port } = await start()
    expect(statusOf(await rawExchange(port, 'GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n'))).toBe(404)
  })

  it('serves the exposition on a plain GET, HEAD without a body, other methods 405', async () => {
    const { server, port } = await start({}, { metricsPath: '/metrics' })
    const res = await fetch(`http://127.0.0.1:${port}/metrics`)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8')
    const families = parseExposition(await res.text())
    expect(families['rnode_ws_connections']!.type).toBe('gauge')
    const head = await rawExchange(port, 'HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n')
    expect(statusOf(head)).toBe(200)
    expect(head.toString().endsWith('\r\n\r\n')).toBe(true)
    expect(statusOf(await rawExchange(port, 'POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n'))).toBe(405)
    // A scrape is neither an accepted nor a refused connection.
    const f = parseExposition(server.metrics())
    expect(counter(f, 'connections_accepted')).toBe(0)
    expect(f['rnode_ws_connections_refused']!.samples.filter(([, l]) => l['status'] === '405')).toEqual([])
  })

  it('bad values throw TypeError', () => {
    for (const bad of ['metrics', '', 42, '/a b', '/m?x=1']) {
      expect(() => new WsServer({ metricsPath: bad as string })).toThrow(TypeError)
    }
    expect(() => new WsServer({ metricsPath: '/x', healthPath: '/x' })).toThrow(TypeError)
  })
})

describe('cluster metrics', () => {
  it('envelopes received from another node; with Redis stopped: disconnected, errors, queued and dropped envelopes', async () => {
    const redis = await startRedis()
    if (!redis) return
    const cluster = { redis: `redis://127.0.0.1:${redis.port}`, prefix: `m${process.pid}` }
    const { server: a } = await start({}, { cluster })
    const { server: b } = await start({}, { cluster })
    for (const s of [a, b]) {
      await waitFor(() => gauge(parseExposition(s.metrics()), 'cluster_connected') === 1, 5000, 'subscriber')
    }
    a.broadcast('to every node')
    await waitFor(() => counter(parseExposition(b.metrics()), 'cluster_received_envelopes') === 1, 5000, 'envelope on b')
    let f = parseExposition(a.metrics())
    expect(counter(f, 'cluster_received_envelopes')).toBe(0)
    expect(counter(f, 'cluster_subscribe_errors')).toBe(0)
    expect(counter(f, 'cluster_publish_errors')).toBe(0)
    expect(counter(f, 'cluster_dropped_envelopes')).toBe(0)

    await redis.stop()
    await waitFor(() => gauge(parseExposition(a.metrics()), 'cluster_connected') === 0, 5000, 'lost subscriber')
    // More broadcasts than the outbound queue holds while Redis is away: the rest are dropped.
    const QUEUE = 16 * 1024
    for (let i = 0; i < QUEUE + 1000; i++) a.broadcast('while redis is down')
    f = parseExposition(a.metrics())
    expect(counter(f, 'cluster_dropped_envelopes')).toBeGreaterThan(0)
    expect(gauge(f, 'cluster_queued_envelopes')).toBeGreaterThan(QUEUE / 2)
    expect(counter(f, 'cluster_dropped_envelopes')).toBe(a.getStats().cluster!.dropped)
    await waitFor(() => counter(parseExposition(a.metrics()), 'cluster_publish_errors') > 0, 8000, 'publish errors')
    expect(counter(parseExposition(a.metrics()), 'cluster_subscribe_errors')).toBeGreaterThan(0)
  }, 30_000)

  it('pub/sub lag: envelopes are timed from their publish on the other node; a slow link shows; version 2 envelopes arrive untimed', async () => {
    const redis = await startRedis()
    if (!redis) return
    // Node b reaches Redis through a link that holds every chunk 150 ms.
    const slow = await slowLink(redis.port, 150)
    try {
      const prefix = `lag${process.pid}`
      const { server: a } = await start({}, { cluster: { redis: redis.url, prefix } })
      const { server: b, url } = await start({}, { cluster: { redis: `redis://127.0.0.1:${slow.port}`, prefix } })
      for (const s of [a, b]) {
        await waitFor(() => gauge(parseExposition(s.metrics()), 'cluster_connected') === 1, 5000, 'subscriber')
      }
      const client = await connect(url)
      const got = collect(client)
      let f = parseExposition(b.metrics())
      expect(f['rnode_ws_cluster_pubsub_lag_seconds']!.type).toBe('histogram')
      expect(histogramCount(f, 'cluster_pubsub_lag_seconds')).toBe(0)
      for (let i = 0; i < 20; i++) a.broadcast(`m${i}`)
      await waitFor(() => got.length === 20, 10_000, 'broadcasts on b')
      f = parseExposition(b.metrics())
      expect(histogramCount(f, 'cluster_pubsub_lag_seconds')).toBe(20)
      // Each waited on the link at least 150 ms after a published it: none under 0.1 s.
      const lag = 'rnode_ws_cluster_pubsub_lag_seconds'
      expect(sample(f, lag, `${lag}_bucket`, { le: '0.1' })).toBe(0)
      expect(sample(f, lag, `${lag}_sum`) / 20).toBeGreaterThanOrEqual(0.15)
      expect(sample(f, lag, `${lag}_bucket`, { le: '+Inf' })).toBe(20)
      // The publishing node received nothing from others: nothing timed there.
      expect(histogramCount(parseExposition(a.metrics()), 'cluster_pubsub_lag_seconds')).toBe(0)

      // The emitter's envelopes are timed too; a version 2 envelope (an older node) is delivered
      // and counted, without a time to take the lag from.
      const emitter = new Emitter({ redis: redis.url, prefix })
      await emitter.broadcast('from the emitter')
      await emitter.close()
      const v2 = Buffer.concat([Buffer.from([2]), randomBytes(16), Buffer.from([0, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('from v2')])
      const resp = new RespConnection(redis.url)
      await resp.ready
      await resp.command(['PUBLISH', `${prefix}:broadcast`, v2])
      await resp.close()
      await waitFor(() => got.length === 22, 10_000, 'emitter and v2 envelopes on b')
      expect(got.slice(20)).toEqual(['from the emitter', 'from v2'])
      f = parseExposition(b.metrics())
      expect(counter(f, 'cluster_received_envelopes')).toBe(22)
      expect(histogramCount(f, 'cluster_pubsub_lag_seconds')).toBe(21)
      expect(sample(f, lag, `${lag}_bucket`, { le: '0.1' })).toBe(0)
      client.close()
    } finally {
      slow.close()
      await redis.stop()
    }
  }, 30_000)
})

describe('server.metrics() on an Express route (attach mode)', () => {
  it('the app mounts it on /metrics next to its WebSockets: scraped over HTTP, it parses and follows the traffic', async () => {
    // As docs/operations.md shows it.
    const app = express()
    const httpServer = http.createServer(app)
    const ws = new WsServer({ server: httpServer })
    ws.websocket('/ws', { onMessage: (socket, message) => void socket.send(message) })
    app.get('/metrics', (_req, res) => {
      res.set('Content-Type', 'text/plain; version=0.0.4; charset=utf-8').send(ws.metrics())
    })
    await new Promise<void>((r) => httpServer.listen(0, '127.0.0.1', r))
    const { port } = httpServer.address() as net.AddressInfo
    const scrape = (): Promise<{ status: number; type: string; families: Families }> =>
      new Promise((resolve, reject) => {
        http
          .get({ host: '127.0.0.1', port, path: '/metrics' }, (res) => {
            let body = ''
            res.setEncoding('utf8')
            res.on('data', (d: string) => (body += d))
            res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), families: parseExposition(body) }))
          })
          .on('error', reject)
      })
    try {
      let r = await scrape()
      expect(r.status).toBe(200)
      // Express may reorder the parameters; what a scraper reads is the media type and version.
      expect(r.type.split(';')[0]).toBe('text/plain')
      expect(r.type).toContain('version=0.0.4')
      expect(gauge(r.families, 'connections')).toBe(0)
      const client = await connect(`ws://127.0.0.1:${port}/ws`)
      client.send('through express')
      expect(await nextMessage(client)).toBe('through express')
      r = await scrape()
      expect(gauge(r.families, 'connections')).toBe(1)
      expect(counter(r.families, 'connections_accepted')).toBe(1)
      expect(counter(r.families, 'messages_received', { type: 'text' })).toBe(1)
      expect(counter(r.families, 'messages_sent', { type: 'text' })).toBe(1)
      client.close(4001)
      await closed(client)
      await waitFor(() => ws.getStats().totalConnections === 0)
      r = await scrape()
      expect(gauge(r.families, 'connections')).toBe(0)
      expect(counter(r.families, 'disconnects', { code: '4001' })).toBe(1)
      // The scrapes themselves are Express's requests: the engine saw one upgrade and nothing else.
      expect(r.families['rnode_ws_connections_refused']!.samples).toEqual([])
    } finally {
      await ws.close()
      await new Promise((r) => httpServer.close(r))
    }
  })
})

describe('docs/operations.md', () => {
  const certs = suiteCertificates()
  it('lists every family a server in cluster mode with tls exposes, with its type', async () => {
    const redis = await startRedis()
    if (!redis || !HAVE_OPENSSL) return void (await redis?.stop())
    try {
      const { server } = await start({}, { tls: certs.leaf, cluster: { redis: redis.url, prefix: `doc${process.pid}` } })
      server.createRoom('Listed', { id: 'listed', metrics: true })
      const rows = new Map<string, string>()
      for (const m of readFileSync(join(__dirname, '..', 'docs', 'operations.md'), 'utf8').matchAll(/^\| `(rnode_ws_\w+)` \| (\w+) \|/gm)) {
        rows.set(m[1]!, m[2]!)
      }
      const families = parseExposition(server.metrics())
      const exposed = new Map<string, string>()
      for (const [name, f] of Object.entries(families)) {
        // The parser names a counter's family without `_total`; the table names its samples.
        exposed.set(f.type === 'counter' ? `${name}_total` : name, f.type)
      }
      // Both ways: nothing exposed is missing from the table, nothing listed is gone.
      expect(new Map([...rows].sort())).toEqual(new Map([...exposed].sort()))
    } finally {
      await redis.stop()
    }
  })
})
