// TLS connection load for benches/tls.mjs, with Node's TLS client (OpenSSL):
//   --mode handshakes: C workers each open a TLS connection, upgrade, close, again, for the
//     duration; prints { rate } (completed TLS handshake + upgrade per second).
//   --mode idle: opens N upgraded TLS connections and holds them; prints the server's RSS
//     growth per connection { rss_per_conn } (from /proc/<server-pid>/status).
//   node tls-connect.mjs --port P --mode handshakes|idle [--conns 16] [--n 1000]
//                        [--duration-ms 2000] [--server-pid PID]
import { readFileSync } from 'node:fs'
import tls from 'node:tls'

const args = process.argv.slice(2)
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`)
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt
}
const port = Number(opt('port', '3000'))
const mode = opt('mode', 'handshakes')
const conns = Number(opt('conns', '16'))
const n = Number(opt('n', '1000'))
const durationMs = Number(opt('duration-ms', '2000'))
const serverPid = opt('server-pid', null)
const REQUEST =
  'GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
  'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n'

/** Opens a TLS connection and upgrades it; resolves the socket (null on failure, within 10 s). */
function upgrade() {
  return new Promise((resolve) => {
    // No session resumption: every connection is a full handshake, as a new client's is.
    const sock = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false, session: undefined }, () => sock.write(REQUEST))
    let head = ''
    const timer = setTimeout(() => done(null), 10_000)
    const done = (v) => {
      clearTimeout(timer)
      if (v === null) sock.destroy()
      resolve(v)
    }
    sock.on('data', (d) => {
      head += d.toString('latin1')
      if (head.includes('\r\n\r\n')) done(head.startsWith('HTTP/1.1 101') ? sock : null)
    })
    sock.on('error', () => done(null))
  })
}

function rssBytes(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m ? Number(m[1]) * 1024 : null
}

if (mode === 'handshakes') {
  let count = 0
  let failed = 0
  const end = performance.now() + durationMs
  const t0 = performance.now()
  await Promise.all(Array.from({ length: conns }, async () => {
    while (performance.now() < end) {
      const s = await upgrade()
      if (s) {
        count++
        s.destroy()
      } else failed++
    }
  }))
  console.log(JSON.stringify({ rate: count / ((performance.now() - t0) / 1000), failed }))
} else {
  const before = rssBytes(serverPid)
  const open = []
  for (let i = 0; i < n; i += 50) {
    open.push(...(await Promise.all(Array.from({ length: Math.min(50, n - i) }, upgrade))))
  }
  await new Promise((r) => setTimeout(r, 1000))
  const after = rssBytes(serverPid)
  const ok = open.filter(Boolean).length
  console.log(JSON.stringify({ ready: ok, rss_per_conn: ok ? (after - before) / ok : null }))
  for (const s of open) s?.destroy()
}
process.exit(0)
