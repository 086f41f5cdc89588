// Turning summaries into the markdown table, the CPU table and the target verdicts.
import { COMPETITORS } from './scenarios.mjs'
import { human } from './stats.mjs'

/** Table lines: one per (row, shape of ours), with every server's summary of `row.metric`. */
export function tableRows(scenarios, summary, servers) {
  const lines = []
  for (const sc of scenarios.filter((s) => !s.baseline && !s.solo)) {
    const ours = sc.runs.filter((r) => servers[sc.variants?.[r]?.server ?? r]?.ours)
    for (const row of sc.rows) {
      for (const o of ours) {
        const label = sc.variants?.[o]?.label
        lines.push({
          ...row,
          scenario: sc.id,
          ours: o,
          title: ours.length > 1 ? `${row.title}: ${label ?? o}` : row.title,
          cells: Object.fromEntries([...COMPETITORS, o].map((r) => [r === o ? 'ours' : r, summary[sc.id]?.[r]?.[row.metric] ?? null])),
        })
      }
    }
  }
  return lines
}

function cell(s) {
  if (!s || s.median === null) return 'n/a'
  if (s.n < 2 || s.min === s.max) return human(s.median)
  return `${human(s.median)} (${human(s.min)}–${human(s.max)})`
}

/** `ours / theirs` of the medians, or null. */
export function ratio(line, them) {
  const a = line.cells.ours?.median
  const b = line.cells[them]?.median
  return Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? a / b : null
}

const fmtRatio = (r) => (r === null ? 'n/a' : `${r.toFixed(2)}x`)

/** The markdown table for one pin mode. */
export function markdownTable(lines, servers) {
  const head = `| scenario | ${COMPETITORS.map((c) => servers[c].label).join(' | ')} | rnode-ws | ours/ws | ours/uWS.js | ours/Bun |`
  const rule = `|---|${COMPETITORS.map(() => '---:').join('|')}|---:|---:|---:|---:|`
  const body = lines.map((l) => {
    const title = l.better === 'lower' ? `${l.title}, lower is better` : l.title
    return `| ${title} | ${COMPETITORS.map((c) => cell(l.cells[c])).join(' | ')} | ${cell(l.cells.ours)} | ${fmtRatio(ratio(l, 'ws'))} | ${fmtRatio(ratio(l, 'uws'))} | ${fmtRatio(ratio(l, 'bun'))} |`
  })
  return [head, rule, ...body].join('\n')
}

/**
 * Rows of the scenarios that compare our runs with a baseline run of ours (scale-out): one per
 * (row, non-baseline run), with both summaries of `row.metric`.
 */
export function baselineRows(scenarios, summary, labelOf) {
  const out = []
  for (const sc of scenarios.filter((s) => s.baseline && s.runs.includes(s.baseline))) {
    for (const row of sc.rows) {
      for (const r of sc.runs.filter((x) => x !== sc.baseline)) {
        const base = summary[sc.id]?.[sc.baseline]?.[row.metric] ?? null
        const it = summary[sc.id]?.[r]?.[row.metric] ?? null
        const a = it?.median
        const b = base?.median
        out.push({
          id: row.id,
          scenario: sc.id,
          title: row.title,
          better: row.better,
          baseline: labelOf(sc, sc.baseline),
          run: labelOf(sc, r),
          cells: { baseline: base, run: it },
          ratio: Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? a / b : null,
        })
      }
    }
  }
  return out
}

/** The markdown table of `baselineRows`: one table per (baseline, compared) pair. */
export function baselineTable(rows) {
  const tables = []
  for (const pair of new Set(rows.map((l) => `${l.baseline}\u0000${l.run}`))) {
    const [baseline, run] = pair.split('\u0000')
    const out = [`| scenario | ${baseline} | ${run} | ratio |`, '|---|---:|---:|---:|']
    for (const l of rows.filter((x) => x.baseline === baseline && x.run === run)) {
      const title = l.better === 'lower' ? `${l.title}, lower is better` : l.title
      out.push(`| ${title} | ${cell(l.cells.baseline)} | ${cell(l.cells.run)} | ${fmtRatio(l.ratio)} |`)
    }
    tables.push(out.join('\n'))
  }
  return tables.join('\n\n')
}

/** The markdown table of the scenarios only ours runs (`solo`, the reconnect storm). */
export function soloTable(scenarios, summary) {
  const out = ['| scenario | rnode-ws |', '|---|---:|']
  for (const sc of scenarios.filter((s) => s.solo)) {
    for (const row of sc.rows) {
      const title = row.better === 'lower' ? `${row.title}, lower is better` : row.title
      out.push(`| ${title} | ${cell(summary[sc.id]?.[sc.runs[0]]?.[row.metric])} |`)
    }
  }
  return out.length > 2 ? out.join('\n') : ''
}

/**
 * Median CPU use of server and load generator processes, and how busy each CPU was (with
 * softirq, which loopback TCP needs and no process is charged for) and how much the
 * hypervisor stole, per scenario and server.
 */
export function cpuTable(scenarios, summary, labelOf) {
  const out = [
    '| scenario | server | server process (cores) | loadgen process (cores) | CPU 0 busy | CPU 1 busy | steal |',
    '|---|---|---:|---:|---:|---:|---:|',
  ]
  const pct = (x) => (Number.isFinite(x) ? `${Math.round(x * 100)}%` : 'n/a')
  for (const sc of scenarios) {
    for (const r of sc.runs) {
      const s = summary[sc.id]?.[r]
      if (!s) continue
      const steal = Math.max(s.cpu0_steal?.median ?? 0, s.cpu1_steal?.median ?? 0)
      out.push(
        `| ${sc.id} | ${labelOf(sc, r)} | ${human(s.server_cpu?.median)} | ${human(s.loadgen_cpu?.median)} | ` +
          `${pct(s.cpu0_busy?.median)} | ${pct(s.cpu1_busy?.median)} | ${pct(steal)} |`,
      )
    }
  }
  return out.join('\n')
}

/** The five targets, each with its measured ratios and whether it is met. */
export function targets(lines) {
  const find = (id, ours = 'rnode') => lines.find((l) => l.id === id && l.ours === ours)
  const check = (name, parts) => {
    const known = parts.filter((p) => p.ratio !== null)
    const met = known.length === parts.length && known.every((p) => (p.atLeast !== undefined ? p.ratio >= p.atLeast : p.ratio <= p.atMost))
    return { name, met, parts }
  }
  const at = (l, them, bound) => ({ what: `${l?.id ?? '?'}${l?.ours === 'rnode-native' ? ' (native)' : ''} vs ${them}`, ratio: l ? ratio(l, them) : null, ...bound })
  const e32 = find('echo-32-rate')
  const c32 = find('echo-32-rate', 'rnode-compat')
  const e4k = find('echo-4k-rate')
  const bc = find('broadcast-rate')
  const bcNative = find('broadcast-rate', 'rnode-native')
  const rss = find('connect-rss')
  const conn = find('connect-rate')
  const p99 = find('echo-paced-p99')
  return [
    check('1. echo through JS onMessage: >= 6x ws and >= 1.0x uWebSockets.js (32 B and 4 KiB)', [
      at(e32, 'ws', { atLeast: 6 }),
      at(e32, 'uws', { atLeast: 1 }),
      at(e4k, 'ws', { atLeast: 6 }),
      at(e4k, 'uws', { atLeast: 1 }),
    ]),
    { ...check('2. room broadcast started from JS to 1,000 members: >= 1.0x Bun publish', [at(bc, 'bun', { atLeast: 1 })]), also: at(bcNative, 'bun', { atLeast: 1 }) },
    check('3. RSS per idle connection: at most Bun', [at(rss, 'bun', { atMost: 1 })]),
    check('4. connections accepted per second: >= 1.0x Bun', [at(conn, 'bun', { atLeast: 1 })]),
    check('5. echo p99 RTT at the same offered load: no worse than uWebSockets.js', [at(p99, 'uws', { atMost: 1 })]),
    check('6. echo 32 B through @rnode/ws/compat (ws API): >= 8x ws and >= 0.6x the native API', [
      at(c32, 'ws', { atLeast: 8 }),
      { what: 'echo-32-rate compat vs native', ratio: c32 && e32 ? ratio({ cells: { ours: c32.cells.ours, native: e32.cells.ours } }, 'native') : null, atLeast: 0.6 },
    ]),
  ]
}

/** Issue 23's connect target: >= 1.2x Bun's rate with a p99 no worse than Bun's. */
export function stormTargets(lines) {
  const find = (id) => lines.find((l) => l.id === id && l.ours === 'rnode')
  const rate = find('connect-room-rate')
  const p99 = find('connect-room-p99')
  const parts = [
    { what: 'connect-room-rate vs bun', ratio: rate ? ratio(rate, 'bun') : null, atLeast: 1.2 },
    { what: 'connect-room-p99 vs bun', ratio: p99 ? ratio(p99, 'bun') : null, atMost: 1 },
  ]
  if (!rate) return []
  const met = parts.every((p) => p.ratio !== null && (p.atLeast !== undefined ? p.ratio >= p.atLeast : p.ratio <= p.atMost))
  return [{ name: 'issue 23: connections/s with onConnect joining a room, 256 in flight: >= 1.2x Bun, p99 no worse', met, parts }]
}

/** Target verdicts as markdown bullet lines. */
export function targetLines(verdicts) {
  // A target none of whose scenarios ran (`--only`) says nothing.
  return verdicts
    .filter((v) => v.parts.some((p) => p.ratio !== null))
    .map((v) => {
      const parts = v.parts.map((p) => `${p.what} ${fmtRatio(p.ratio)} (need ${p.atLeast !== undefined ? '>= ' + p.atLeast : '<= ' + p.atMost})`)
      if (v.also) parts.push(`for reference ${v.also.what} ${fmtRatio(v.also.ratio)}`)
      return `- ${v.met ? 'MET' : 'NOT MET'}: ${v.name}: ${parts.join('; ')}`
    })
    .join('\n')
}
