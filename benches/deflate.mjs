// permessage-deflate benchmarks (docs/deflate.md), one run for all servers:
//   node benches/deflate.mjs [--reps N] [--duration-ms MS]
// 1. broadcast of 1 KiB JSON to 1,000 subscribers: rnode-ws without server context takeover
//    (one compression per broadcast) vs uWebSockets.js SHARED_COMPRESSOR vs Bun perMessageDeflate;
// 2. echo of 4 KiB JSON, 100 connections: rnode-ws vs ws, both with context takeover.
// The load generator (CPU 1) offers permessage-deflate, sends uncompressed and counts frames
// without inflating them; servers run on CPU 0. Runs are interleaved; medians and ratios printed.
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { pinned, run, sleep, startServer, stopServer } from './harness/process.mjs'
import { servers as serverTable } from './harness/scenarios.mjs'

const benches = dirname(fileURLToPath(import.meta.url))
const root = join(benches, '..')
const loadgen = join(root, 'target', 'release', 'rnode-loadgen')
const arg = (name, dflt) => {
  const i = process.argv.indexOf(name)
  return i < 0 ? dflt : Number(process.argv[i + 1])
}
const reps = arg('--reps', 3)
const durationMs = arg('--duration-ms', 3000)
const table = serverTable(benches)

const scenarios = [
  {
    id: 'broadcast-1k-json',
    title: 'broadcast 1 KiB JSON to 1,000 subscribers, 16 in flight (deliveries/s)',
    loadgen: ['--mode', 'broadcast', '--sub-path', '/sub', '--pub-path', '/pub', '--conns', '1000', '--inflight', '16', '--size', '1024'],
    runs: [
      { server: 'rnode', env: { BENCH_DEFLATE: 'shared' }, extra: ['--join-frame', '{"type":"join_room","room_id":"bench"}'], label: 'rnode-ws (serverNoContextTakeover)' },
      { server: 'uws', env: { BENCH_DEFLATE: '1' }, extra: [], label: 'uWebSockets.js SHARED_COMPRESSOR' },
      { server: 'bun', env: { BENCH_DEFLATE: '1' }, extra: [], label: 'Bun perMessageDeflate' },
    ],
  },
  {
    id: 'echo-4k-json',
    title: 'echo 4 KiB JSON, 100 connections, 10 in flight (msgs/s)',
    loadgen: ['--mode', 'echo', '--path', '/echo', '--conns', '100', '--inflight', '10', '--size', '4096'],
    runs: [
      { server: 'rnode', env: { BENCH_DEFLATE: '1' }, extra: [], label: 'rnode-ws (context takeover)' },
      { server: 'ws', env: { BENCH_DEFLATE: '1' }, extra: [], label: 'ws perMessageDeflate' },
    ],
  },
]

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const results = {}
for (const sc of scenarios) {
  for (let r = 0; r < reps; r++) {
    for (const entry of sc.runs) {
      const { child, port } = await startServer(pinned(0, table[entry.server].cmd), { cwd: benches, env: entry.env })
      try {
        await sleep(300)
        const args = [...sc.loadgen, ...entry.extra, '--deflate', '--port', String(port), '--server-pid', String(child.pid), '--duration-ms', String(durationMs)]
        const out = await run(pinned(1, [loadgen, ...args]), { cwd: benches, timeoutMs: 120_000 })
        const report = JSON.parse(out.stdout.trim().split('\n').pop())
        ;(results[`${sc.id}|${entry.label}`] ??= []).push(report)
        console.error(`[deflate-bench] ${sc.id} ${entry.label}: ${Math.round(report.rate)}/s server cpu ${report.server_cpu ?? '?'}`)
      } finally {
        await stopServer(child)
      }
    }
  }
}

const lines = []
for (const sc of scenarios) {
  lines.push(`\n### ${sc.title}\n`, '| server | rate (median, min-max) | rnode-ws / this | server CPU (median) |', '|---|---|---|---|')
  const ours = median(results[`${sc.id}|${sc.runs[0].label}`].map((r) => r.rate))
  for (const entry of sc.runs) {
    const rs = results[`${sc.id}|${entry.label}`]
    const rate = median(rs.map((r) => r.rate))
    const rates = rs.map((r) => r.rate)
    const cpu = median(rs.map((r) => r.server_cpu ?? NaN))
    const span = `${Math.round(Math.min(...rates)).toLocaleString('en-US')}-${Math.round(Math.max(...rates)).toLocaleString('en-US')}`
    lines.push(`| ${entry.label} | ${Math.round(rate).toLocaleString('en-US')} (${span}) | ${(ours / rate).toFixed(2)}x | ${Number.isFinite(cpu) ? cpu.toFixed(2) : '-'} |`)
  }
}
console.log(lines.join('\n'))
console.log(JSON.stringify(results))
