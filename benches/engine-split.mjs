// Two builds of the engine side by side, the way issue 15 asks for its split (behaviour and
// speed the same before and after): instructions per unit of fixed work under callgrind, and
// wall-clock rates with the load generator.
//
//   node benches/engine-split.mjs --before ROOT [--after ROOT] [--only callgrind|wall]
//                                 [--callgrind-reps N] [--wall-reps N] [--scenarios id,id]
//                                 [--keep-dumps DIR]
//
// ROOT is a built checkout (dist/ and native-build/*.node, e.g. `git worktree add` of the older
// commit, then `node scripts/bootstrap.mjs` there); --after defaults to this checkout. Both run
// this checkout's benches/servers/rnode.mjs (RNODE_WS_DIST points it at the build).
//
// callgrind: the server runs under `valgrind --tool=callgrind` pinned to CPU 0, with
// instrumentation off until the fixed work of benches/harness/fixed-work.mjs (this process, on
// CPU 1) has set up and warmed up; then `callgrind_control` zeroes the counters, the work runs,
// and a dump is read: instructions of the server process (all its threads, which callgrind
// serializes) per echo, per delivery, per connect, split into the engine's .node, node itself
// and the rest (libc, kernel entry stubs, JIT code). Counts do not depend on machine load,
// only on what the server does, which still varies a little with timing (how many frames one
// read returns, how often a thread parks): the runs give the spread.
//
// wall (the scenarios without -lockstep): the load generator's echo-32, broadcast (1,000 members, server.broadcast from JS) and
// connect-room (2,000 connects, onConnect joins) scenarios, server on CPU 0, generator on CPU 1,
// builds alternating; medians of the rate and of the rate per server CPU-second.
//
// --keep-dumps copies each callgrind dump to DIR/<scenario>-<build>-<rep>.out, for
// `callgrind_annotate` (the builds need their symbols: build with CARGO_PROFILE_RELEASE_STRIP=none,
// which changes no code). Prints JSON on stdout. Runs interleave before/after, the first build alternating per rep.
import { execFileSync, execSync } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { cpus, loadavg, tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { instructionsByObject, splitByOwner } from './harness/callgrind.mjs'
import { fixedWork } from './harness/fixed-work.mjs'
import { pinned, run, sleep, startServer, stopServer } from './harness/process.mjs'
import { scenarios } from './harness/scenarios.mjs'
import { summarize } from './harness/stats.mjs'

const benches = dirname(fileURLToPath(import.meta.url))
const root = join(benches, '..')
const log = (...a) => console.error('[engine-split]', ...a)

function parseArgs(argv) {
  const o = { before: null, after: root, only: null, callgrindReps: 3, wallReps: 5, scenarios: null, keepDumps: null }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`)
      return argv[++i]
    }
    if (a === '--before') o.before = resolve(value())
    else if (a === '--after') o.after = resolve(value())
    else if (a === '--only') o.only = value()
    else if (a === '--callgrind-reps') o.callgrindReps = Number(value())
    else if (a === '--wall-reps') o.wallReps = Number(value())
    else if (a === '--scenarios') o.scenarios = value().split(',')
    else if (a === '--keep-dumps') o.keepDumps = resolve(value())
    else throw new Error(`unknown option ${a}`)
  }
  for (const r of [o.before, o.after]) {
    if (!r || !existsSync(join(r, 'dist/index.js'))) throw new Error(`${r ?? '--before'}: not a built checkout (no dist/index.js)`)
  }
  if (o.only !== null && !['callgrind', 'wall'].includes(o.only)) throw new Error('--only is callgrind or wall')
  if (!(o.callgrindReps >= 1 && o.callgrindReps <= 10)) throw new Error('--callgrind-reps must be 1..10')
  if (!(o.wallReps >= 1 && o.wallReps <= 20)) throw new Error('--wall-reps must be 1..20')
  return o
}

const opts = parseArgs(process.argv.slice(2))
const builds = { before: opts.before, after: opts.after }
const commit = (dir) => execSync('git rev-parse --short HEAD', { cwd: dir, encoding: 'utf8' }).trim()
const orderFor = (rep) => (rep % 2 === 0 ? ['before', 'after'] : ['after', 'before'])
const serverCmd = ['node', join(benches, 'servers/rnode.mjs')]
const env = (build) => ({ RNODE_WS_DIST: join(builds[build], 'dist/index.js') })

// This process is the fixed-work client: CPU 1, away from the server on CPU 0.
execSync(`taskset -a -p -c 1 ${process.pid}`, { stdio: 'ignore' })

const control = (args, pid) => execFileSync('callgrind_control', [...args, String(pid)], { stdio: 'ignore', timeout: 60_000 })

/** One fixed-work scenario against `build` under callgrind; instructions of the measured part. */
async function callgrindOnce(build, id, rep) {
  const dir = mkdtempSync(join(tmpdir(), 'engine-split-'))
  const cmd = pinned(0, ['valgrind', '--tool=callgrind', '--instr-atstart=no', `--callgrind-out-file=${join(dir, 'cg.%p.out')}`, ...serverCmd])
  const server = await startServer(cmd, { cwd: benches, env: env(build), timeoutMs: 300_000 })
  try {
    const pid = server.child.pid
    const measure = {
      start: async () => {
        control(['--instr=on'], pid)
        control(['--zero'], pid)
      },
      stop: async () => control(['--dump'], pid),
    }
    const work = await fixedWork[id].run(server.port, measure, 300_000)
    const dump = join(dir, `cg.${pid}.out.1`)
    for (let i = 0; i < 600 && !existsSync(dump); i++) await sleep(100)
    if (!existsSync(dump)) throw new Error(`no callgrind dump in ${dir}: ${readdirSync(dir).join(', ')}`)
    if (opts.keepDumps) {
      mkdirSync(opts.keepDumps, { recursive: true })
      copyFileSync(dump, join(opts.keepDumps, `${id}-${build}-${rep}.out`))
    }
    const { total, byObject } = instructionsByObject(dump)
    const parts = splitByOwner(byObject)
    return { ...work, total, ...parts }
  } finally {
    await stopServer(server.child, 60_000)
    rmSync(dir, { recursive: true, force: true })
  }
}

const loadgen = join(root, 'target/release/rnode-loadgen')
const all = scenarios({ quick: true, benches })
const byId = (id) => all.find((s) => s.id === id)
const wallScenarios = {
  'echo-32': { args: byId('echo-32').loadgen },
  'broadcast-1000': { args: [...byId('broadcast').loadgen, ...byId('broadcast').variants.rnode.extra] },
  'connect-join': { args: byId('connect-room').loadgen },
}

/** One load-generator run against `build`: rate and rate per server CPU-second. */
async function wallOnce(build, id) {
  const server = await startServer(pinned(0, serverCmd), { cwd: benches, env: env(build) })
  try {
    const args = [loadgen, ...wallScenarios[id].args, '--warmup-ms', '500', '--duration-ms', '2000']
    const r = await run(pinned(1, [...args, '--port', String(server.port), '--server-pid', String(server.child.pid)]), { cwd: benches, timeoutMs: 120_000 })
    if (r.code !== 0) throw new Error(`loadgen failed (${r.code}): ${r.stderr}`)
    const report = JSON.parse(r.stdout.trim().split('\n').pop())
    return { rate: report.rate, perCpu: report.server_cpu > 0 ? report.rate / report.server_cpu : null }
  } finally {
    await stopServer(server.child)
  }
}

/** Runs `once` for each scenario, `reps` times, builds interleaved; raw runs per build. */
async function interleaved(ids, reps, once, label) {
  const runs = Object.fromEntries(ids.map((id) => [id, { before: [], after: [] }]))
  for (let rep = 0; rep < reps; rep++) {
    for (const id of ids) {
      for (const build of orderFor(rep)) {
        const r = await once(build, id, rep)
        runs[id][build].push(r)
        log(`${label} rep ${rep + 1}/${reps} ${id} ${build}: ${JSON.stringify(r)}`)
      }
    }
  }
  return runs
}

/** Medians of `key` per build, their ratio after/before, and the median of each rep's pair. */
function compare(runs, key, per = (r) => r[key]) {
  const before = runs.before.map(per)
  const after = runs.after.map(per)
  const b = summarize(before)
  const a = summarize(after)
  return { before: b, after: a, ratio: a.median / b.median, pairRatio: summarize(after.map((x, i) => x / before[i])) }
}

const out = {
  builds: { before: { root: builds.before, commit: commit(builds.before) }, after: { root: builds.after, commit: commit(builds.after) } },
  machine: { cpus: cpus().length, model: cpus()[0]?.model, loadavgStart: loadavg() },
}
const ids = opts.scenarios ?? Object.keys(fixedWork)
for (const id of ids) if (!fixedWork[id]) throw new Error(`unknown scenario ${id}; known: ${Object.keys(fixedWork).join(', ')}`)

if (opts.only !== 'wall') {
  const runs = await interleaved(ids, opts.callgrindReps, callgrindOnce, 'callgrind')
  out.callgrind = {}
  for (const id of ids) {
    const perUnit = (key) => (r) => r[key] / r.units
    out.callgrind[id] = {
      work: fixedWork[id].describe,
      unit: runs[id].before[0].unit,
      irPerUnit: compare(runs[id], 'total', perUnit('total')),
      engineIrPerUnit: compare(runs[id], 'engine', perUnit('engine')),
      nodeIrPerUnit: compare(runs[id], 'node', perUnit('node')),
      otherIrPerUnit: compare(runs[id], 'other', perUnit('other')),
      runs: runs[id],
    }
  }
}
if (opts.only !== 'callgrind') {
  if (!existsSync(loadgen)) throw new Error('no load generator: cargo build --release -p rnode-loadgen')
  const wallIds = ids.filter((id) => wallScenarios[id])
  const runs = await interleaved(wallIds, opts.wallReps, wallOnce, 'wall')
  out.wall = {}
  for (const id of wallIds) {
    out.wall[id] = { loadgen: wallScenarios[id].args.join(' '), rate: compare(runs[id], 'rate'), perCpuSecond: compare(runs[id], 'perCpu'), runs: runs[id] }
  }
}
out.machine.loadavgEnd = loadavg()
console.log(JSON.stringify(out, null, 2))
