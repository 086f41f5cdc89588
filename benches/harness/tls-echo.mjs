// A wss:// echo load generator for the https scenario: the Rust load generator speaks plain TCP
// only, so this one uses Node's TLS (OpenSSL) with hand-written frames (one constant masked
// frame, no client library), C connections with W messages in flight each. Prints the load
// generator's JSON report fields it can measure: rate, p50_us, p99_us, server_cpu, loadgen_cpu.
//   node tls-echo.mjs --port P [--path /echo] [--conns 100] [--inflight 10] [--size 32]
//                     [--warmup-ms 500] [--duration-ms 2000] [--server-pid PID]
import { readFileSync } from 'node:fs'
import tls from 'node:tls'

const args = process.argv.slice(2)
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`)
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt
}
const port = Number(opt('port', '3000'))
const path = opt('path', '/echo')
const conns = Number(opt('conns', '100'))
const inflight = Number(opt('inflight', '10'))
const size = Number(opt('size', '32'))
const warmupMs = Number(opt('warmup-ms', '500'))
const durationMs = Number(opt('duration-ms', '2000'))
const serverPid = opt('server-pid', null)

/** One masked text frame with a zero mask key (masking is then the identity): sent as is. */
function frame(n) {
  const head = n < 126 ? Buffer.from([0x81, 0x80 | n]) : Buffer.from([0x81, 0x80 | 126, n >> 8, n & 0xff])
  return Buffer.concat([head, Buffer.alloc(4), Buffer.alloc(n, 0x61)])
}
const FRAME = frame(size)

/** CPU seconds (user + system) of a process, from /proc. */
function cpuSeconds(pid) {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
    return (Number(fields[11]) + Number(fields[12])) / 100
  } catch {
    return null
  }
}

let counting = false
let count = 0
let errors = 0
let firstError = null
const latencies = []

function open() {
  return new Promise((resolve) => {
    const sent = []
    let buf = Buffer.alloc(0)
    let upgraded = false
    const sock = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false }, () => {
      sock.setNoDelay(true)
      sock.write(
        `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      )
    })
    sock.on('error', (e) => {
      errors++
      firstError ??= String(e.message)
      resolve(false)
    })
    sock.on('data', (d) => {
      buf = buf.length ? Buffer.concat([buf, d]) : d
      if (!upgraded) {
        const end = buf.indexOf('\r\n\r\n')
        if (end < 0) return
        if (!buf.subarray(0, 12).toString().startsWith('HTTP/1.1 101')) {
          errors++
          firstError ??= buf.subarray(0, end).toString().split('\r\n')[0]
          sock.destroy()
          return resolve(false)
        }
        upgraded = true
        buf = buf.subarray(end + 4)
        const now = performance.now()
        for (let i = 0; i < inflight; i++) sent.push(now)
        sock.write(Buffer.concat(Array(inflight).fill(FRAME)))
        resolve(true)
      }
      let replies = 0
      for (;;) {
        if (buf.length < 2) break
        let len = buf[1] & 0x7f
        let off = 2
        if (len === 126) {
          if (buf.length < 4) break
          len = buf.readUInt16BE(2)
          off = 4
        }
        if (buf.length < off + len) break
        buf = buf.subarray(off + len)
        replies++
      }
      if (replies === 0) return
      const now = performance.now()
      for (let i = 0; i < replies; i++) {
        const t = sent.shift()
        if (counting) {
          count++
          if (t !== undefined && (count & 7) === 0) latencies.push((now - t) * 1000)
        }
        sent.push(now)
      }
      sock.write(replies === 1 ? FRAME : Buffer.concat(Array(replies).fill(FRAME)))
    })
  })
}

const ready = (await Promise.all(Array.from({ length: conns }, open))).filter(Boolean).length
await new Promise((r) => setTimeout(r, warmupMs))
const cpu0 = [cpuSeconds(serverPid), cpuSeconds(process.pid)]
const t0 = performance.now()
counting = true
await new Promise((r) => setTimeout(r, durationMs))
counting = false
const seconds = (performance.now() - t0) / 1000
const cpu1 = [cpuSeconds(serverPid), cpuSeconds(process.pid)]
latencies.sort((a, b) => a - b)
const pct = (p) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] : null)
const share = (i) => (cpu0[i] === null || cpu1[i] === null ? null : (cpu1[i] - cpu0[i]) / seconds)
console.log(JSON.stringify({
  ready,
  errors,
  first_error: firstError,
  rate: count / seconds,
  p50_us: pct(0.5),
  p99_us: pct(0.99),
  server_cpu: share(0),
  loadgen_cpu: share(1),
}))
process.exit(0)
