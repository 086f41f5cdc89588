// Session recovery at scale (issue 19): N clients (default 10,000) in 100 rooms with history
// drop at once (their process is SIGKILLed, so the kernel resets every TCP connection), the
// server publishes while they are away, then N clients come back with the tokens and offsets
// and `recover`. Reported: how long until every one of them got `recovered: true` with every
// missed message. One node: a server restart would lose its sessions by design
// (docs/recovery.md), so the drop is on the client side.
//
// --cluster: the server is a cluster node on a private redis-server (history and sessions in
// Redis). After the join, the node is SIGKILLed with the clients; a new node starts, publishes
// the missed messages, and the clients come back to it: the recovery after a node restart.
//
//   node benches/recovery.mjs [--sessions N] [--missed K] [--no-pin] [--cluster]
//
// The server runs pinned to CPU 0, the clients to CPU 1 (taskset), unless --no-pin.
import { fork, spawn, spawnSync } from 'node:child_process'
import net from 'node:net'
import { mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const self = fileURLToPath(import.meta.url)
const root = join(self, '..', '..')
const arg = (name, def) => {
  const i = process.argv.indexOf(name)
  return i < 0 ? def : Number(process.argv[i + 1])
}
const ROOMS = 100

async function serverMain() {
  const { WsServer } = await import(join(root, 'dist/index.js'))
  const cluster = process.env.REDIS_URL ? { cluster: { redis: process.env.REDIS_URL, prefix: 'recovery' } } : {}
  const server = new WsServer({ host: '127.0.0.1', port: 0, recovery: { maxDisconnection: 120_000 }, history: { size: 1000, ttl: 120_000 }, ...cluster })
  server.websocket('/ws', {})
  const { port } = await server.listen()
  for (let r = 0; r < ROOMS; r++) server.createRoom(`r${r}`, { id: `r${r}` })
  process.on('message', (m) => {
    if (m.publish) {
      for (let k = 0; k < m.publish; k++) for (let r = 0; r < ROOMS; r++) server.broadcast(`p${m.tag}-${k}`, { room: `r${r}` })
      process.send({ published: true })
    } else if (m.count) {
      process.send({ connections: server.getStats().totalConnections })
    } else if (m.cpu) {
      const u = process.cpuUsage()
      process.send({ cpuMs: (u.user + u.system) / 1000 })
    }
  })
  process.send({ port })
}

/** Opens `n` connections with a concurrency cap; `each(ws, i)` resolves when that one is done. */
async function pool(n, concurrency, each) {
  let next = 0
  const worker = async () => {
    while (next < n) await each(next++)
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
}

async function clientsMain(mode, port, file, n, missed) {
  const { default: WebSocket } = await import(join(root, 'node_modules/ws/index.js'))
  const url = `ws://127.0.0.1:${port}/ws`
  if (mode === 'first') {
    const out = new Array(n)
    const sockets = []
    const t0 = process.hrtime.bigint()
    await pool(n, 200, (i) => new Promise((resolve, reject) => {
      const room = `r${i % ROOMS}`
      const ws = new WebSocket(url)
      sockets.push(ws)
      let token = ''
      ws.on('error', reject)
      ws.on('open', () => ws.send(JSON.stringify({ type: 'join_room', room_id: room })))
      ws.on('message', (data) => {
        const f = JSON.parse(data.toString())
        if (f.type === 'session') token = f.token
        if (f.type === 'room_joined') {
          out[i] = { token, room, epoch: f.epoch, offset: f.offset }
          resolve()
        }
      })
    }))
    const { writeFileSync } = await import('node:fs')
    writeFileSync(file, JSON.stringify(out))
    process.send({ ready: Number(process.hrtime.bigint() - t0) / 1e6 })
    await new Promise(() => {}) // until SIGKILL
  }
  const sessions = JSON.parse(readFileSync(file, 'utf8'))
  let failed = 0
  let wrong = 0
  const t0 = process.hrtime.bigint()
  await pool(n, 200, (i) => new Promise((resolve, reject) => {
    const s = sessions[i]
    const ws = new WebSocket(`${url}?session=${s.token}`)
    let replayed = 0
    ws.on('error', reject)
    ws.on('message', (data) => {
      const f = JSON.parse(data.toString())
      if (f.type === 'session') {
        ws.send(JSON.stringify({ type: 'recover', rooms: { [s.room]: { epoch: s.epoch, offset: s.offset } } }))
      } else if (f.type === 'room_message') {
        replayed++
      } else if (f.type === 'recovered') {
        if (f.rooms[s.room] !== true) failed++
        if (replayed !== missed) wrong++
        resolve()
      }
    })
  }))
  const ms = Number(process.hrtime.bigint() - t0) / 1e6
  const u = process.cpuUsage()
  process.send({ ms, failed, wrong, clientCpuMs: (u.user + u.system) / 1000 })
  process.exit(0)
}

function pinArgs(cpu) {
  if (process.argv.includes('--no-pin')) return null
  return spawnSync('taskset', ['-V']).status === 0 ? cpu : null
}

function start(args, cpu) {
  const pin = pinArgs(cpu)
  const child = fork(self, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  if (pin !== null) spawnSync('taskset', ['-a', '-p', '-c', String(pin), String(child.pid)])
  return child
}

const once = (child, key) =>
  new Promise((resolve) => {
    const on = (m) => {
      if (!(key in m)) return
      child.off('message', on)
      resolve(m)
    }
    child.on('message', on)
  })

/** A private redis-server on a free port (for --cluster); resolves with it and its URL. */
async function startRedis() {
  const port = await new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = s.address().port
      s.close(() => resolve(p))
    })
  })
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' })
  for (let i = 0; i < 100; i++) {
    const up = await new Promise((r) => net.connect(port, '127.0.0.1').on('connect', function () { this.destroy(); r(true) }).on('error', () => r(false)))
    if (up) break
    await new Promise((r) => setTimeout(r, 50))
  }
  return { proc, url: `redis://127.0.0.1:${port}` }
}

async function main() {
  const n = arg('--sessions', 10_000)
  const missed = arg('--missed', 5)
  const clustered = process.argv.includes('--cluster')
  const redis = clustered ? await startRedis() : undefined
  if (redis) process.env.REDIS_URL = redis.url
  const file = join(mkdtempSync(join(tmpdir(), 'rnode-recovery-')), 'sessions.json')
  let server = start(['--server'], 0)
  let { port } = await once(server, 'port')
  const first = start(['--clients', 'first', String(port), file, String(n), String(missed)], 1)
  const { ready: joinMs } = await once(first, 'ready')
  server.send({ publish: 2, tag: 'before' })
  await once(server, 'published')
  if (redis) {
    // The node dies with its clients; a new one takes over the same Redis.
    await new Promise((r) => setTimeout(r, 500))
    server.kill('SIGKILL')
    first.kill('SIGKILL')
    server = start(['--server'], 0)
    ;({ port } = await once(server, 'port'))
  }
  first.kill('SIGKILL')
  for (;;) {
    server.send({ count: true })
    const { connections } = await once(server, 'connections')
    if (connections === 0) break
    await new Promise((r) => setTimeout(r, 50))
  }
  server.send({ publish: missed, tag: 'missed' })
  await once(server, 'published')
  // The two published before the drop may or may not have reached the first clients; the offsets
  // they recorded at join time predate them, so each recovers those two plus the missed ones.
  server.send({ cpu: true })
  const { cpuMs: before } = await once(server, 'cpuMs')
  const second = start(['--clients', 'second', String(port), file, String(n), String(missed + 2)], 1)
  const result = await once(second, 'ms')
  server.send({ cpu: true })
  const { cpuMs: after } = await once(server, 'cpuMs')
  // joinMs: the same clients' first connect and join, for scale (the client side's own cost is in both).
  console.log(JSON.stringify({ cluster: clustered, sessions: n, missedPerRoom: missed + 2, joinMs: Math.round(joinMs), recoverMs: Math.round(result.ms), failed: result.failed, wrongCount: result.wrong, serverCpuMs: Math.round(after - before), clientCpuMs: Math.round(result.clientCpuMs) }))
  server.kill('SIGTERM')
  redis?.proc.kill('SIGKILL')
}

if (process.argv[2] === '--server') await serverMain()
else if (process.argv[2] === '--clients') {
  const [, , , mode, port, file, n, missed] = process.argv
  await clientsMain(mode, Number(port), file, Number(n), Number(missed))
} else await main()
