// The reconnect-storm load generator: N clients of @rnode/websocket-client (on `ws`, default
// backoff and jitter) join a room, then the server is told to restart (SIGUSR2: it closes and
// listens again on the same port in the same process) and every client reconnects and rejoins
// on its own. Prints one JSON line: how long until the last client was back (and p50/p99 per
// client, from the restart signal), how many rejoined the room, the kernel's listen-queue
// counters over the storm, and the server's RSS before, 1 s after and 6 s after.
//   node storm.mjs --port P --server-pid PID [--path /sub] [--conns 10000] [--room bench]
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const benches = join(dirname(fileURLToPath(import.meta.url)), '..')
const WebSocket = createRequire(join(benches, 'package.json'))('ws')
const { RNodeWebSocketClient } = await import(join(benches, '../client/dist/index.mjs'))

const args = process.argv.slice(2)
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`)
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt
}
const port = Number(opt('port', '3000'))
const path = opt('path', '/sub')
const conns = Number(opt('conns', '10000'))
const room = opt('room', 'bench')
const serverPid = Number(opt('server-pid', '0'))
/** Longest the whole storm may take: clients not back by then are counted as missing. */
const LIMIT_MS = 60_000
/** How long after the storm the second RSS reading is taken. */
const LATER_MS = 5000
/** Handshakes in flight while the clients first connect (the storm itself is not throttled). */
const OPENING = 256

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

function rss(pid) {
  try {
    const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'))
    return Number(line.split(/\s+/)[1]) * 1024
  } catch {
    return null
  }
}

const COUNTERS = ['ListenOverflows', 'ListenDrops', 'TCPReqQFullDoCookies']
function counters() {
  const lines = readFileSync('/proc/net/netstat', 'utf8').split('\n').filter((l) => l.startsWith('TcpExt:'))
  const names = lines[0].split(/\s+/)
  const values = lines[1].split(/\s+/)
  return COUNTERS.map((c) => Number(values[names.indexOf(c)]))
}

function quantile(sorted, q) {
  return sorted.length === 0 ? null : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]
}

const url = `ws://127.0.0.1:${port}${path}`
const clients = []
let firstError = null
let storming = false
let restartedAt = 0
const backAt = []
let rejoined = 0
for (let i = 0; i < conns; i++) {
  const client = new RNodeWebSocketClient(url, `storm${i}`, { WebSocket, maxReconnectAttempts: 50 })
  client.on('error', (e) => (firstError ??= String(e?.message ?? e)))
  client.on('connected', () => storming && backAt.push(performance.now() - restartedAt))
  client.on('roomJoined', (id) => storming && id === room && rejoined++)
  clients.push(client)
}
let opened = 0
let failed = 0
async function opener(next) {
  for (let i = next(); i < conns; i = next()) {
    const joined = clients[i].joinRoom(room)
    clients[i].connect().catch(() => {})
    try {
      await joined
      opened++
    } catch (e) {
      failed++
      firstError ??= String(e?.message ?? e)
    }
  }
}
let cursor = 0
await Promise.all(Array.from({ length: OPENING }, () => opener(() => cursor++)))
await sleep(500)
const rssBefore = rss(serverPid)
const before = counters()
storming = true
restartedAt = performance.now()
process.kill(serverPid, 'SIGUSR2')
const deadline = Date.now() + LIMIT_MS
while ((backAt.length < opened || rejoined < opened) && Date.now() < deadline) await sleep(20)
const backMs = backAt.length ? Math.max(...backAt) : null
const after = counters()
await sleep(1000)
const rssAfter = rss(serverPid)
// Once more later: what V8 collects and malloc reuses by then is not a leak.
await sleep(LATER_MS)
const rssLater = rss(serverPid)
backAt.sort((a, b) => a - b)
const report = {
  mode: 'storm',
  conns,
  ready: opened,
  errors: failed,
  back: backAt.length,
  rejoined,
  back_ms: backMs,
  rate: backMs ? (backAt.length / backMs) * 1000 : null,
  p50_us: quantile(backAt, 0.5) * 1000,
  p99_us: quantile(backAt, 0.99) * 1000,
  listen_overflows: after[0] - before[0],
  listen_drops: after[1] - before[1],
  syn_cookies: after[2] - before[2],
  rss_before: rssBefore,
  rss_after: rssAfter,
  rss_after_ratio: rssBefore && rssAfter ? rssAfter / rssBefore : null,
  rss_later: rssLater,
  rss_later_ratio: rssBefore && rssLater ? rssLater / rssBefore : null,
  first_error: firstError,
}
for (const c of clients) c.disconnect()
console.log(JSON.stringify(report))
process.exit(0)
