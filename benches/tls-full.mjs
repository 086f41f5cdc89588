// What a TLS port at maxConnections spends on a connection it refuses: refused before the
// handshake (what the engine does) against refused after it (what it does when the port also
// serves metricsPath, and what it did before the check moved), in one run.
//
//   node benches/tls-full.mjs [--reps N] [--connections N]
//
// Server pinned to CPU 0, this process (the clients) to CPU 1. One WebSocket holds the only
// slot; then `--connections` TLS clients connect, 16 at a time, and each is refused. The
// server's CPU time (utime + stime from /proc, Linux) over those refusals, per refusal; the two
// modes alternate. Prints JSON: medians in microseconds of server CPU per refused connection,
// and their ratio.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import tls from 'node:tls'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { pinned, startServer } from './harness/process.mjs'
import { median } from './harness/stats.mjs'

const benches = dirname(fileURLToPath(import.meta.url))
const argv = process.argv.slice(2)
const arg = (name, dflt) => {
  const i = argv.indexOf(name)
  return i === -1 ? dflt : Number(argv[i + 1])
}
const reps = arg('--reps', 5)
const connections = arg('--connections', 2000)
if (!(reps >= 1 && reps <= 20) || !(connections >= 100 && connections <= 20000)) throw new Error('--reps 1..20, --connections 100..20000')

const dir = mkdtempSync(join(tmpdir(), 'rnode-tls-full-'))
const cert = join(dir, 'cert.pem')
const key = join(dir, 'key.pem')
execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
  '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', key, '-out', cert], { stdio: 'ignore' })
const ca = readFileSync(cert, 'utf8')

const ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim())

/** utime + stime of a process, in microseconds (clock-tick resolution: 10 ms at 100 Hz). */
function cpuMicros(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  const ticks = Number(fields[11]) + Number(fields[12])
  return (ticks * 1e6) / ticksPerSecond
}

/** One TLS client: resolves once the server refused it (an error or a close), within 5 s. */
function attempt(port) {
  return new Promise((resolve) => {
    const sock = tls.connect({ port, host: '127.0.0.1', ca, servername: 'localhost' }, () => {
      // Handshake mode: the handshake is done; ask for the upgrade the server then refuses.
      sock.write('GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n')
    })
    const timer = setTimeout(() => sock.destroy(), 5000)
    sock.on('error', () => {})
    sock.on('close', () => {
      clearTimeout(timer)
      resolve()
    })
    sock.resume()
  })
}

async function once(mode) {
  const server = await startServer(pinned(0, ['node', join(benches, 'servers/rnode-tls-full.mjs')]), {
    cwd: benches,
    env: { TLS_CERT: cert, TLS_KEY: key, MODE: mode },
  })
  try {
    const { port } = server
    // The one slot, taken and kept.
    const holder = tls.connect({ port, host: '127.0.0.1', ca, servername: 'localhost' })
    await new Promise((resolve, reject) => {
      holder.once('secureConnect', () => {
        holder.write(`GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`)
      })
      holder.once('data', (d) => (String(d).startsWith('HTTP/1.1 101') ? resolve() : reject(new Error(String(d)))))
      holder.once('error', reject)
    })
    const before = cpuMicros(server.child.pid)
    let next = 0
    const worker = async () => {
      while (next < connections) {
        next++
        await attempt(port)
      }
    }
    await Promise.all(Array.from({ length: 16 }, worker))
    const used = cpuMicros(server.child.pid) - before
    holder.destroy()
    return used / connections
  } finally {
    server.child.kill('SIGKILL')
  }
}

const results = { precheck: [], handshake: [] }
for (let r = 0; r < reps; r++) {
  for (const mode of r % 2 === 0 ? ['precheck', 'handshake'] : ['handshake', 'precheck']) results[mode].push(await once(mode))
}
rmSync(dir, { recursive: true, force: true })
const m = { precheck: median(results.precheck), handshake: median(results.handshake) }
console.log(JSON.stringify({
  date: new Date().toISOString().slice(0, 10),
  loadAverage: (await import('node:os')).loadavg(),
  connections,
  reps,
  serverCpuMicrosPerRefusal: m,
  runs: results,
  handshakeOverPrecheck: m.handshake / m.precheck,
}, null, 2))
