// What counting for the metrics costs: echo and broadcast with this build against a build of the
// same engine without the metrics (a commit before them), in one run.
//
//   node benches/metrics-overhead.mjs --base DIST [--on DIST] [--reps N] [--duration-ms MS] [--warmup-ms MS]
//
// DIST is the `dist/` of the other build (check out the base commit elsewhere, `npm run build`).
// The metrics are always counted, so "on" is this build (or the one `--on` names, e.g. the
// commit that added them, to leave out what came later) and "off" the base. Each run: server
// pinned to CPU 0, the load generator to CPU 1; ours and the base alternate; medians and the
// ratio ours/base per scenario (of the medians, and the median of each rep's pair) are printed
// as JSON, for the rate and for messages per server CPU-second (both: higher is better).
import { existsSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { pinned, run, startServer, stopServer } from './harness/process.mjs'
import { scenarios } from './harness/scenarios.mjs'
import { summarize } from './harness/stats.mjs'

const benches = dirname(fileURLToPath(import.meta.url))
const root = join(benches, '..')

function parseArgs(argv) {
  const o = { base: null, on: join(root, 'dist'), reps: 5, durationMs: 2000, warmupMs: 500 }
  for (let i = 0; i < argv.length; i++) {
    const value = () => argv[++i]
    if (argv[i] === '--base') o.base = resolve(value())
    else if (argv[i] === '--on') o.on = resolve(value())
    else if (argv[i] === '--reps') o.reps = Number(value())
    else if (argv[i] === '--duration-ms') o.durationMs = Number(value())
    else if (argv[i] === '--warmup-ms') o.warmupMs = Number(value())
    else throw new Error(`unknown option ${argv[i]}`)
  }
  if (!o.base || !existsSync(join(o.base, 'index.js'))) throw new Error('--base must name a built dist/ directory')
  if (!existsSync(join(o.on, 'index.js'))) throw new Error('--on must name a built dist/ directory')
  if (!(o.reps >= 1 && o.reps <= 20)) throw new Error('--reps must be 1..20')
  return o
}

const opts = parseArgs(process.argv.slice(2))
const loadgen = join(root, 'target/release/rnode-loadgen')
if (!existsSync(loadgen)) throw new Error('no load generator: cargo build --release -p rnode-loadgen')
const builds = { on: opts.on, off: opts.base }
const all = scenarios({ quick: false, benches })
const wanted = [
  { id: 'echo-32', sc: all.find((s) => s.id === 'echo-32'), extra: [] },
  { id: 'echo-4k', sc: all.find((s) => s.id === 'echo-4k'), extra: [] },
  { id: 'broadcast', sc: all.find((s) => s.id === 'broadcast'), extra: all.find((s) => s.id === 'broadcast').variants.rnode.extra },
]

async function once(build, w) {
  const server = await startServer(pinned(0, ['node', join(benches, 'servers/rnode.mjs')]), {
    cwd: benches,
    env: { RNODE_WS_DIST: join(builds[build], 'index.js') },
  })
  try {
    const args = [loadgen, ...w.sc.loadgen, ...w.extra, '--warmup-ms', String(opts.warmupMs), '--duration-ms', String(opts.durationMs)]
    const r = await run(pinned(1, [...args, '--port', String(server.port), '--server-pid', String(server.child.pid)]), {
      cwd: benches,
      timeoutMs: 60_000,
    })
    const report = JSON.parse(r.stdout.trim().split('\n').pop())
    // Messages per CPU-second of the server: what the counting costs in CPU, steadier than the
    // rate when other work shares the machine (the server's CPU time only grows while it runs).
    return { rate: report.rate, perCpu: report.server_cpu > 0 ? report.rate / report.server_cpu : NaN }
  } finally {
    await stopServer(server.child)
  }
}

const rates = Object.fromEntries(wanted.map((w) => [w.id, { on: [], off: [] }]))
const perCpu = Object.fromEntries(wanted.map((w) => [w.id, { on: [], off: [] }]))
for (let rep = 0; rep < opts.reps; rep++) {
  for (const w of wanted) {
    // Alternate which build goes first, so drift over the run hits both alike.
    const order = rep % 2 === 0 ? ['on', 'off'] : ['off', 'on']
    for (const build of order) {
      const r = await once(build, w)
      rates[w.id][build].push(r.rate)
      perCpu[w.id][build].push(r.perCpu)
    }
    console.error(`[metrics-overhead] rep ${rep + 1}/${opts.reps} ${w.id}: rate on ${rates[w.id].on.at(-1)} off ${rates[w.id].off.at(-1)}; per CPU-s on ${perCpu[w.id].on.at(-1)} off ${perCpu[w.id].off.at(-1)}`)
  }
}
const out = {}
for (const w of wanted) {
  const on = summarize(rates[w.id].on)
  const off = summarize(rates[w.id].off)
  // Each rep ran on and off back to back: the median of those pairs' ratios is less sensitive
  // to load that drifts over the run than the ratio of the medians.
  const pairs = summarize(rates[w.id].on.map((r, i) => r / rates[w.id].off[i]))
  const cpuOn = summarize(perCpu[w.id].on)
  const cpuOff = summarize(perCpu[w.id].off)
  const cpuPairs = summarize(perCpu[w.id].on.map((r, i) => r / perCpu[w.id].off[i]))
  out[w.id] = {
    rate: { on, off, ratio: on.median / off.median, pairRatio: pairs, runs: rates[w.id] },
    perCpuSecond: { on: cpuOn, off: cpuOff, ratio: cpuOn.median / cpuOff.median, pairRatio: cpuPairs, runs: perCpu[w.id] },
  }
}
console.log(JSON.stringify(out, null, 2))
