// Smoke test of the harness (not part of `npm test`): `node benches/smoke.mjs`.
// One short pinned run of each scenario for ws and rnode-ws (and the two-node rnode-ws cluster
// when redis-server is there); checks that every run produced
// numbers, that the table and the chart were written, and that the load generator had headroom.
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import assert from 'node:assert/strict'

const benches = dirname(fileURLToPath(import.meta.url))
const stdout = execFileSync(
  'node',
  [join(benches, 'run.mjs'), '--quick', '--servers', 'ws,rnode', '--warmup-ms', '100', '--duration-ms', '300'],
  { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 300_000 },
)
assert.match(stdout, /\| echo, 100 conns, 32 B, 64 in flight \(msgs\/s\) \|/)
assert.match(stdout, /Targets \(issue 6\):/)
const day = new Date().toISOString().slice(0, 10)
const results = JSON.parse(readFileSync(join(benches, 'results', `${day}-quick.json`), 'utf8'))
const runs = Object.values(results.pins).flatMap((p) => p.runs)
assert.ok(runs.length >= 10, `expected at least 10 runs, got ${runs.length}`)
for (const r of runs) {
  assert.equal(r.error, undefined, `${r.scenario}/${r.run}: ${r.error}`)
  assert.ok(r.report.rate > 0, `${r.scenario}/${r.run}: no messages`)
  assert.ok(r.report.loadgen_cpu === null || r.report.loadgen_cpu < 0.95, `${r.scenario}/${r.run}: load generator saturated`)
}
assert.match(readFileSync(join(benches, 'results', `${day}-quick.svg`), 'utf8'), /^<svg /)
// The scale-out table (issue 8) when the two-node run could run (redis-server present).
if (runs.some((r) => r.run === 'rnode-cluster')) assert.match(stdout, /\| scenario \| rnode-ws, 1 node \| rnode-ws, 2 nodes \+ Redis \| ratio \|/)
console.log(`smoke: ${runs.length} passed, 0 failed`)
