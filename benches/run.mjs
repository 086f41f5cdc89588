// `npm run bench`: rnode-ws side by side with ws, uWebSockets.js and Bun.
//
//   node benches/run.mjs [--quick] [--reps N] [--pin pinned|unpinned|both] [--only id,id]
//                        [--servers ws,uws,bun,rnode] [--warmup-ms MS] [--duration-ms MS] [--no-build]
//
// Each server runs alone, pinned to CPU 0 with the Rust load generator on CPU 1 (and once more
// unpinned); runs are interleaved (ws, uWS, Bun, ours, ws, ...), summarized as medians with
// min-max, written to benches/results/<date>.json plus an SVG chart, and printed as markdown.
//
// The `cluster` scenario (scale-out; `--only cluster` runs just it) runs ours only: one node,
// then two nodes sharing a private redis-server started for each run, subscribers split between
// them. Pinned, both nodes and Redis share CPU 0. `--servers rnode` includes the two-node run,
// which needs redis-server (REDIS_SERVER, else on PATH).
import { execSync, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, release, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { svgChart } from './harness/chart.mjs'
import { pinned, run, sleep, startRedis, startServer, stopServer } from './harness/process.mjs'
import { baselineRows, baselineTable, cpuTable, markdownTable, soloTable, stormTargets, tableRows, targetLines, targets } from './harness/report.mjs'
import { scenarios as allScenarios, servers as serverTable } from './harness/scenarios.mjs'
import { human, summarize } from './harness/stats.mjs'

const benches = dirname(fileURLToPath(import.meta.url))
const redisServer = process.env.REDIS_SERVER || 'redis-server'
const root = join(benches, '..')
const log = (...a) => console.error('[bench]', ...a)

function parseArgs(argv) {
  const o = { quick: false, reps: null, pin: null, only: null, servers: null, warmupMs: null, durationMs: null, build: true }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`)
      return argv[++i]
    }
    if (a === '--quick') o.quick = true
    else if (a === '--no-build') o.build = false
    else if (a === '--reps') o.reps = Number(value())
    else if (a === '--pin') o.pin = value()
    else if (a === '--only') o.only = value().split(',')
    else if (a === '--servers') o.servers = value().split(',')
    else if (a === '--warmup-ms') o.warmupMs = Number(value())
    else if (a === '--duration-ms') o.durationMs = Number(value())
    else throw new Error(`unknown option ${a}`)
  }
  o.reps ??= o.quick ? 1 : 3
  o.pin ??= o.quick ? 'pinned' : 'both'
  o.warmupMs ??= o.quick ? 250 : 500
  o.durationMs ??= o.quick ? 1000 : 2000
  if (!['pinned', 'unpinned', 'both'].includes(o.pin)) throw new Error('--pin is pinned, unpinned or both')
  if (!(o.reps >= 1 && o.reps <= 20)) throw new Error('--reps must be 1..20')
  if (!(o.durationMs >= 100 && o.durationMs <= 60000)) throw new Error('--duration-ms must be 100..60000')
  return o
}

const sh = (cmd, opts = {}) => execSync(cmd, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', ...opts }).trim()
const tryText = (f) => {
  try {
    return f()
  } catch {
    return null
  }
}

/** Installs the competitors (benches/package.json), builds ours and the load generator. */
function prepare(opts) {
  if (!existsSync(join(benches, 'node_modules/.package-lock.json'))) {
    log('installing competitors: npm ci in benches/')
    execSync('npm ci --no-audit --no-fund', { cwd: benches, stdio: ['ignore', 2, 2] })
  }
  if (opts.build) {
    log('building rnode-ws (scripts/bootstrap.mjs) and the load generator (cargo, release)')
    execSync('node scripts/bootstrap.mjs', { cwd: root, stdio: ['ignore', 2, 2] })
    execSync('cargo build --release --quiet -p rnode-loadgen', { cwd: root, stdio: ['ignore', 2, 2] })
  }
  const loadgen = join(root, 'target/release/rnode-loadgen')
  if (!existsSync(loadgen)) throw new Error(`no load generator at ${loadgen}: run without --no-build`)
  return loadgen
}

/** Which servers can run here; the others are reported as unavailable, not fatal. */
function availability(servers) {
  const ok = {}
  const notes = {}
  for (const [key, s] of Object.entries(servers)) {
    if (key === 'uws') {
      const err = tryText(() => sh(`node -e "require('uwebsockets')"`, { cwd: benches })) === null
      ok[key] = !err
      if (err) notes[key] = 'uwebsockets has no binary for this platform or Node ABI'
    } else if (key === 'bun') {
      ok[key] = existsSync(s.cmd[0]) && tryText(() => sh(`"${s.cmd[0]}" --version`)) !== null
      if (!ok[key]) notes[key] = '@oven/bun-linux-x64 binary missing or not runnable here'
    } else if (s.cluster) {
      ok[key] = tryText(() => sh(`"${redisServer}" --version`)) !== null
      if (!ok[key]) notes[key] = `${redisServer} not found: the two-node cluster run is skipped`
    } else ok[key] = true
  }
  return { ok, notes }
}

function versions(servers) {
  const pkg = (p) => tryText(() => JSON.parse(readFileSync(join(benches, 'node_modules', p, 'package.json'), 'utf8')).version)
  return {
    node: process.version,
    bun: tryText(() => sh(`"${servers.bun.cmd[0]}" --version`)),
    ws: pkg('ws'),
    uwebsockets: pkg('uwebsockets'),
    uwebsockets_source_commit: tryText(() => readFileSync(join(benches, 'node_modules/uwebsockets/source_commit'), 'utf8').trim()),
    rnode_commit: tryText(() => sh('git rev-parse --short HEAD')),
    rnode_tree_dirty: tryText(() => sh('git status --porcelain -- native lib') !== ''),
  }
}

/**
 * One run: starts the server (for a cluster, a private redis-server and its nodes, all on
 * `serverCpu`), runs the load generator on `loadgenCpu`, stops everything.
 */
async function runOne({ server, serverCpu, loadgenCpu, loadgenArgs, timeoutMs }) {
  let redis = null
  const nodes = []
  const stopAll = async () => {
    for (const n of nodes.reverse()) await stopServer(n.child)
    if (redis) await stopServer(redis.child)
  }
  try {
    let env
    if (server.cluster) {
      redis = await startRedis({ prefix: pinned(serverCpu, []), bin: redisServer })
      env = { REDIS_URL: `redis://127.0.0.1:${redis.port}`, ...server.cluster.env }
    }
    for (let i = 0; i < (server.cluster?.nodes ?? 1); i++) {
      const nodeEnv = server.cluster ? { ...env, STATS_FILE: statsFile(i) } : env
      nodes.push(await startServer(pinned(serverCpu, server.cmd), { cwd: benches, env: nodeEnv }))
    }
  } catch (e) {
    await stopAll()
    return { error: String(e.message ?? e) }
  }
  try {
    const args = [...loadgenArgs, '--port', String(nodes[0].port), '--server-pid', String(nodes[0].child.pid)]
    if (server.cluster) {
      args.push('--sub-ports', nodes.map((n) => n.port).join(','))
      args.push('--extra-pids', [...nodes.slice(1).map((n) => n.child.pid), redis.child.pid].join(','))
    }
    const r = await run(pinned(loadgenCpu, args), { cwd: benches, timeoutMs })
    const line = r.stdout.trim().split('\n').pop()
    let report = null
    try {
      report = JSON.parse(line)
    } catch {
      return { error: `load generator exited ${r.code}: ${r.stderr.slice(0, 500)}` }
    }
    if (report.errors > 0 && report.ready === 0) return { error: report.first_error ?? 'no connection', report }
    if (server.cluster) {
      await stopAll()
      Object.assign(report, redisInbound(nodes.length))
    }
    return { report }
  } finally {
    await stopAll()
  }
}

/** Where cluster node `i` writes its getStats() when stopped. */
function statsFile(i) {
  return join(tmpdir(), `rnode-bench-${process.pid}-node${i}.json`)
}

/**
 * Redis-to-node traffic from the nodes' own counters (whole run, warm-up included): the mean
 * per node, and that mean per message published (what the first node's `/pub` received).
 */
function redisInbound(n) {
  const stats = []
  for (let i = 0; i < n; i++) {
    const s = tryText(() => JSON.parse(readFileSync(statsFile(i), 'utf8')))
    tryText(() => rmSync(statsFile(i)))
    if (s?.cluster) stats.push(s)
  }
  if (stats.length !== n) return {}
  const mean = stats.reduce((a, s) => a + s.cluster.inboundBytes, 0) / n
  const published = stats[0].published
  return { redis_in_bytes_node: mean, redis_in_per_pub: published > 0 ? mean / published : null }
}

const METRICS = [
  'rate', 'p50_us', 'p99_us', 'server_cpu', 'loadgen_cpu', 'rss_per_conn', 'cpu0_busy', 'cpu1_busy', 'cpu0_steal', 'cpu1_steal',
  // connection storms and scale (issue 23)
  'listen_overflows', 'listen_drops', 'syn_cookies', 'back_ms', 'rejoined', 'rss_after_ratio', 'rss_later_ratio', 'connect_seconds', 'server_rss', 'probe_worst_ms', 'probe_failures',
  // cluster
  'redis_in_per_pub', 'redis_in_bytes_node',
]

/**
 * Runs this script again with the soft open-file limit raised to the hard one (Node cannot
 * call setrlimit), so large connection runs are not cut short by a low default. Returns true
 * when the re-run happened and this process should only pass its exit code on.
 */
function raiseFileLimit() {
  if (process.env.RNODE_BENCH_NOFILE) return false
  const soft = tryText(() => sh('ulimit -Sn', { shell: '/bin/sh' }))
  const hard = tryText(() => sh('ulimit -Hn', { shell: '/bin/sh' }))
  if (!soft || !hard || soft === hard) return false
  const argv = [process.argv[1], ...process.argv.slice(2)].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ')
  const r = spawnSync('/bin/sh', ['-c', `ulimit -n ${hard} && exec "${process.execPath}" ${argv}`], {
    stdio: 'inherit',
    env: { ...process.env, RNODE_BENCH_NOFILE: hard },
  })
  process.exit(r.status ?? 1)
}

/** Builds the client package's bundles (the storm's clients load client/dist). */
function buildClient(opts) {
  if (!opts.build && existsSync(join(root, 'client/dist/index.mjs'))) return
  log('building @rnode/websocket-client (client/scripts/build.mjs)')
  execSync('node client/scripts/build.mjs', { cwd: root, stdio: ['ignore', 2, 2] })
}

async function main() {
  raiseFileLimit()
  const opts = parseArgs(process.argv.slice(2))
  const loadgen = prepare(opts)
  const servers = serverTable(benches)
  const { ok: available, notes } = availability(servers)
  const ncpu = cpus().length
  let pins = opts.pin === 'both' ? ['pinned', 'unpinned'] : [opts.pin]
  if (ncpu < 2 && pins.includes('pinned')) {
    notes.pinning = `only ${ncpu} CPU: pinned runs skipped`
    pins = pins.filter((p) => p !== 'pinned')
    if (pins.length === 0) pins = ['unpinned']
  }
  const fdLimit = Number(tryText(() => sh('ulimit -n', { shell: '/bin/sh' }))) || 1024
  // Opt-in scenarios (`scale`) run only when `--only` names them (or their group).
  const scenarioList = allScenarios({ quick: opts.quick, benches }).filter((s) =>
    opts.only ? opts.only.includes(s.id) || opts.only.includes(s.group) : !s.optIn,
  )
  for (const sc of scenarioList) {
    sc.runs = sc.runs.filter((r) => {
      const key = sc.variants?.[r]?.server ?? r
      // `--servers rnode` takes in the two-node variant of ours too.
      const base = servers[key]?.cluster ? 'rnode' : key
      return available[key] && (!opts.servers || [key, r, base].some((k) => opts.servers.includes(k)))
    })
    // Every connection is a descriptor in the server and in the load generator: stay under the
    // open-file limit (raised to the hard limit at start, see `raiseFileLimit`).
    const i = sc.loadgen.indexOf('--conns')
    const want = Number(sc.loadgen[i + 1])
    if (i >= 0 && want > fdLimit - 500) {
      const n = Math.max(100, fdLimit - 500)
      sc.loadgen[i + 1] = String(n)
      notes[sc.id] = `open-file limit ${fdLimit}: ${sc.id} uses ${n} connections instead of ${want}`
      for (const row of sc.rows) row.title = row.title.replace(want.toLocaleString('en-US'), n.toLocaleString('en-US'))
    }
  }
  if (scenarioList.some((sc) => sc.id === 'storm')) buildClient(opts)
  const labelOf = (sc, r) => sc.variants?.[r]?.label ?? servers[r]?.label ?? r
  const started = new Date()
  const meta = {
    date: started.toISOString(),
    quick: opts.quick,
    reps: opts.reps,
    warmup_ms: opts.warmupMs,
    duration_ms: opts.durationMs,
    cpus: ncpu,
    cpu_model: cpus()[0]?.model,
    kernel: release(),
    loadavg_start: loadavg(),
    versions: versions(servers),
    notes,
  }
  log(`servers: ${Object.keys(servers).filter((k) => available[k]).join(', ')}; pins: ${pins.join(', ')}; reps: ${opts.reps}`)
  for (const [k, n] of Object.entries(notes)) log(`note (${k}): ${n}`)
  const results = { meta, pins: {} }
  for (const pin of pins) {
    const runs = []
    for (const sc of scenarioList) {
      for (let rep = 1; rep <= opts.reps; rep++) {
        for (const r of sc.runs) {
          const variant = sc.variants?.[r]
          const server = servers[variant?.server ?? r]
          const longRun = sc.loadgen.includes('connect') || sc.id === 'storm' || sc.id === 'scale' ? 150000 : 0
          const loadgenArgs = [...(sc.client ?? [loadgen]), ...sc.loadgen, ...(variant?.extra ?? []), '--warmup-ms', String(opts.warmupMs), '--duration-ms', String(opts.durationMs)]
          const outcome = await runOne({
            server,
            serverCpu: pin === 'pinned' ? 0 : null,
            loadgenCpu: pin === 'pinned' ? 1 : null,
            loadgenArgs,
            timeoutMs: opts.warmupMs + opts.durationMs + longRun + 60000,
          })
          runs.push({ scenario: sc.id, run: r, rep, ...outcome })
          const rep_ = outcome.report
          log(
            `${pin} ${sc.id} ${rep}/${opts.reps} ${labelOf(sc, r)}: ` +
              (outcome.error
                ? `FAILED ${outcome.error.split('\n')[0]}`
                : `${human(rep_.rate)}/s p99 ${human(rep_.p99_us)} us` +
                  (rep_.rss_per_conn != null ? ` rss/conn ${human(rep_.rss_per_conn)} B` : '') +
                  ` cpu server ${human(rep_.server_cpu)} loadgen ${human(rep_.loadgen_cpu)}` +
                  (rep_.errors ? ` (${rep_.errors} conn errors: ${rep_.first_error})` : '')),
          )
          await sleep(200)
        }
      }
    }
    const summary = {}
    for (const sc of scenarioList) {
      summary[sc.id] = {}
      for (const r of sc.runs) {
        const reports = runs.filter((x) => x.scenario === sc.id && x.run === r && x.report && !x.error).map((x) => x.report)
        summary[sc.id][r] = Object.fromEntries(METRICS.map((m) => [m, summarize(reports.map((x) => x[m]))]))
      }
    }
    const lines = tableRows(scenarioList, summary, servers)
    results.pins[pin] = {
      runs,
      summary,
      table: lines.map(({ id, ours, title, better, cells }) => ({ id, ours, title, better, cells })),
      scale_out: baselineRows(scenarioList, summary, labelOf),
      targets: [...targets(lines), ...stormTargets(lines)],
    }
  }
  meta.loadavg_end = loadavg()
  meta.seconds = (Date.now() - started.getTime()) / 1000

  const day = started.toISOString().slice(0, 10)
  const outDir = join(benches, 'results')
  mkdirSync(outDir, { recursive: true })
  const base = join(outDir, `${day}${opts.quick ? '-quick' : ''}`)
  const md = []
  md.push(`rnode-ws benchmarks, ${day} (${opts.quick ? 'quick run, ' : ''}${opts.reps} interleaved runs each, ${opts.durationMs / 1000} s measured after ${opts.warmupMs / 1000} s warm-up; median (min–max))`)
  md.push(`Node ${meta.versions.node}, ws ${meta.versions.ws}, uWebSockets.js via uwebsockets ${meta.versions.uwebsockets}, Bun ${meta.versions.bun}; ${ncpu} x ${meta.cpu_model}; load ${meta.loadavg_start.map((x) => x.toFixed(2)).join(' ')} at start.`)
  for (const pin of pins) {
    const p = results.pins[pin]
    const lines = tableRows(scenarioList, p.summary, servers)
    md.push('')
    md.push(
      pin === 'pinned'
        ? '### Pinned: server on CPU 0, load generator on CPU 1'
        : '### Unpinned: no affinity; rnode-ws I/O threads, Bun and the load generator may all use both cores',
    )
    md.push('')
    if (lines.length) {
      md.push(markdownTable(lines, servers))
      md.push('')
    }
    const clusterRows = p.scale_out.filter((l) => l.scenario === 'cluster')
    const attachRows = p.scale_out.filter((l) => l.scenario.startsWith('attach'))
    const historyRows = p.scale_out.filter((l) => l.scenario === 'history' || l.scenario === 'cluster-history')
    if (clusterRows.length) {
      md.push(
        pin === 'pinned'
          ? 'Scale-out (issue 8): one rnode-ws node vs two nodes sharing a private Redis, subscribers alternating between the nodes, publisher on the first. Both nodes and Redis share CPU 0 with the single node\'s budget; the load generator is on CPU 1. The two-node run\'s server CPU below is both nodes plus Redis.'
          : 'Scale-out (issue 8): one rnode-ws node vs two nodes sharing a private Redis, subscribers alternating between the nodes, publisher on the first. No affinity: the nodes, Redis and the load generator share both cores. The two-node run\'s server CPU below is both nodes plus Redis.',
      )
      md.push('')
      md.push(baselineTable(clusterRows))
      md.push('')
    }
    if (attachRows.length) {
      md.push(
        'Attach mode (issue 16): rnode-ws on a Node http server\'s port (`{ server }`) against its own port, the forced slow path, ' +
          'connections/s against ws `{ server }`, and wss:// on an https server (slow path; Node load generator `harness/tls-echo.mjs`) against ws on https.',
      )
      md.push('')
      md.push(baselineTable(attachRows))
      md.push('')
    }
    const solo = soloTable(scenarioList, p.summary)
    if (solo) {
      md.push(
        'Reconnect storm (issue 23): clients of @rnode/websocket-client (on `ws`, default backoff and jitter) dropped at once by an in-process server restart, times from the restart signal.',
      )
      md.push('')
      md.push(solo)
      md.push('')
    }
    if (historyRows.length) {
      md.push('Room history (issue 19): the broadcast with the room keeping its last 1,000 messages against the same server without history, interleaved in one run; `cluster-history`: the same on two nodes with the history in Redis.')
      md.push('')
      md.push(baselineTable(historyRows))
      md.push('')
    }
    const steals = p.runs.filter((x) => x.report).map((x) => Math.max(x.report.cpu0_steal ?? 0, x.report.cpu1_steal ?? 0))
    const worst = Math.max(0, ...steals)
    if (worst > 0.05) {
      md.push(`Noise: the hypervisor stole up to ${Math.round(worst * 100)}% of a CPU during some runs (median ${Math.round(100 * (summarize(steals).median ?? 0))}%); compare ratios, not absolute numbers.`)
      md.push('')
    }
    if (lines.length) {
      md.push('Targets (issues 6 and 23):')
      md.push(targetLines(p.targets))
      md.push('')
    }
    md.push('<details><summary>CPU use: server vs load generator, and per-CPU busy time (medians)</summary>\n')
    md.push(cpuTable(scenarioList, p.summary, labelOf))
    md.push('\n</details>')
  }
  const notesText = Object.values(notes)
  if (notesText.length) md.push('', 'Notes: ' + notesText.join('; '))
  const markdown = md.join('\n') + '\n'

  const chartPin = pins.includes('pinned') ? 'pinned' : pins[0]
  const chartRows = ['echo-32-rate', 'echo-4k-rate', 'broadcast-rate', 'connect-rate', 'connect-rss', 'echo-paced-p99']
  const panels = []
  for (const id of chartRows) {
    const sc = scenarioList.find((s) => s.rows.some((r) => r.id === id))
    if (!sc) continue
    const row = sc.rows.find((r) => r.id === id)
    const bars = sc.runs.map((r) => {
      const s = results.pins[chartPin].summary[sc.id][r][row.metric]
      return { label: sc.variants?.[r]?.short ?? labelOf(sc, r), key: servers[sc.variants?.[r]?.server ?? r].ours ? 'ours' : r, ...s }
    })
    panels.push({ title: row.title, better: row.better, bars })
  }
  const svg = svgChart(
    `rnode-ws vs ws, uWebSockets.js, Bun (${chartPin})`,
    `${day}: medians of ${opts.reps} interleaved runs, whiskers min-max; ${ncpu} x ${meta.cpu_model}`,
    panels,
  )
  writeFileSync(`${base}.json`, JSON.stringify(results, null, 2) + '\n')
  writeFileSync(`${base}.md`, markdown)
  writeFileSync(`${base}.svg`, svg)
  process.stdout.write(markdown)
  log(`wrote ${base}.json, .md and .svg in ${meta.seconds.toFixed(0)} s`)
}

main().catch((e) => {
  console.error('[bench] failed:', e?.stack ?? e)
  process.exit(1)
})
