// `node benches/tls.mjs [--reps 3] [--duration-ms 2000]`: native TLS (wss:// on the own port)
// against uWebSockets.js SSLApp and Bun with `tls`, in the same run: echo 32 B and 4 KiB
// (the Rust load generator with --tls), TLS handshakes + upgrades per second and RSS per idle
// TLS connection (its connect mode). Each server runs alone pinned to CPU 0, the load generator
// on CPU 1; runs are interleaved (uWS, Bun, ours, uWS, ...) and reported as medians
// with the ratio ours / theirs. Needs `npm run build` (dist/), `npm ci` in benches/ and
// `cargo build --release -p rnode-loadgen`.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { pinned, run, sleep, startServer, stopServer } from './harness/process.mjs'

const benches = dirname(fileURLToPath(import.meta.url))
const args = process.argv.slice(2)
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`)
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt
}
const reps = Number(opt('reps', '3'))
const durationMs = Number(opt('duration-ms', '2000'))
const idleConns = Number(opt('idle-conns', '1000'))

const dir = mkdtempSync(join(tmpdir(), 'rnode-bench-tls-'))
const cert = join(dir, 'cert.pem')
const key = join(dir, 'key.pem')
execFileSync('openssl', [
  'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
  '-subj', '/CN=localhost', '-keyout', key, '-out', cert,
], { stdio: 'ignore' })

const servers = {
  uws: { label: 'uWS.js SSLApp', cmd: ['node', join(benches, 'servers/uws-tls.mjs')] },
  bun: { label: 'Bun tls', cmd: [join(benches, 'node_modules/@oven/bun-linux-x64/bin/bun'), join(benches, 'servers/bun-tls.mjs')] },
  rnode: { label: 'rnode-ws tls', cmd: ['node', join(benches, 'servers/rnode-tls.mjs')] },
}
const loadgen = join(benches, '..', 'target/release/rnode-loadgen')
const lg = (...a) => [loadgen, '--tls', ...a]
const measures = {
  echo32: (port, pid) => lg('--mode', 'echo', '--port', port, '--path', '/echo', '--size', '32', '--conns', '100', '--inflight', '10', '--duration-ms', durationMs, '--server-pid', pid),
  echo4k: (port, pid) => lg('--mode', 'echo', '--port', port, '--path', '/echo', '--size', '4096', '--conns', '100', '--inflight', '10', '--duration-ms', durationMs, '--server-pid', pid),
  // Full handshakes + upgrades, 16 at a time, kept open: the rate, then RSS per idle connection.
  connect: (port, pid) => lg('--mode', 'connect', '--port', port, '--path', '/echo', '--conns', idleConns, '--concurrency', '16', '--settle-ms', '1000', '--server-pid', pid),
}
const fields = { echo32: ['rate'], echo4k: ['rate'], connect: ['rate', 'rss_per_conn'] }
const results = {}
for (let rep = 0; rep < reps; rep++) {
  for (const [id, server] of Object.entries(servers)) {
    for (const [m, cmd] of Object.entries(measures)) {
      // A fresh server per measure: idle RSS is measured on a server that served nothing else.
      const { child, port } = await startServer(pinned(0, server.cmd), { cwd: benches, env: { TLS_CERT: cert, TLS_KEY: key } })
      await sleep(300)
      const out = await run(pinned(1, cmd(String(port), String(child.pid)).map(String)), { cwd: benches, timeoutMs: 120_000 })
      await stopServer(child)
      let report = {}
      try {
        report = JSON.parse(out.stdout.trim().split('\n').at(-1))
      } catch {
        console.error(`[bench] ${id} ${m}: no result\n${out.stderr}`)
      }
      for (const f of fields[m]) ((results[`${m}.${f}`] ??= {})[id] ??= []).push(report[f] ?? null)
      const value = fields[m].map((f) => report[f]).join(' ')
      console.error(`[bench] rep ${rep + 1} ${server.label} ${m}: ${value}`)
    }
  }
}
rmSync(dir, { recursive: true, force: true })

const median = (xs) => {
  const v = xs.filter((x) => typeof x === 'number').sort((a, b) => a - b)
  return v.length ? v[Math.floor(v.length / 2)] : null
}
const fmt = (x, m) => (x === null ? 'n/a' : m.endsWith('rss_per_conn') ? `${(x / 1024).toFixed(1)} KiB` : `${Math.round(x)}/s`)
const lines = ['| measure | uWS.js SSLApp | Bun tls | rnode-ws tls | ours / uWS | ours / Bun |', '|---|---|---|---|---|---|']
for (const m of Object.keys(results)) {
  const [u, b, r] = ['uws', 'bun', 'rnode'].map((id) => median(results[m][id]))
  const ratio = (x) => (x && r ? (r / x).toFixed(2) : 'n/a')
  lines.push(`| ${m} | ${fmt(u, m)} | ${fmt(b, m)} | ${fmt(r, m)} | ${ratio(u)} | ${ratio(b)} |`)
}
console.log(lines.join('\n'))
console.log(JSON.stringify({ reps, durationMs, idleConns, results }))
