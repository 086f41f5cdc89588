// The engine's I/O threads run under SCHED_BATCH on Linux (a ready socket does not preempt the JS
// thread on a shared core) where the system allows it, unless RNODE_SCHED_BATCH=0. Read back from /proc, in child processes
// so that each gets its own runtime and environment.
import { spawnSync } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import { echoChildScript, lastJsonLine, runChild } from '../test-support/index'

const SCHED_OTHER = 0
const SCHED_BATCH = 3

// Prints the scheduling policy of each of the process's threads named rnode-ws (field 41 of
// /proc/<pid>/task/<tid>/stat), while a server is listening and has echoed one message.
const script = echoChildScript(`
  const fs = require('node:fs')
  const policy = (stat) => Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[41 - 3])
  const policies = []
  for (const tid of fs.readdirSync('/proc/self/task')) {
    const dir = '/proc/self/task/' + tid
    if (fs.readFileSync(dir + '/comm', 'utf8').trim() === 'rnode-ws') policies.push(policy(fs.readFileSync(dir + '/stat', 'utf8')))
  }
  const mainPolicy = policy(fs.readFileSync('/proc/self/stat', 'utf8'))
  console.log(JSON.stringify({ reply, policies, mainPolicy }))
  ws.close()
  await server.close()
`)

/**
 * Whether this machine lets a thread take SCHED_BATCH (a sandbox may refuse it), asked of
 * `chrt` or Python; undefined when neither is there to ask.
 */
function batchAllowed(): boolean | undefined {
  const chrt = spawnSync('chrt', ['--batch', '0', 'true'], { stdio: 'ignore' })
  if (!chrt.error) return chrt.status === 0
  const py = spawnSync('python3', ['-c', 'import os; os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))'], { stdio: 'ignore' })
  if (!py.error) return py.status === 0
  return undefined
}

describe.runIf(process.platform === 'linux')('I/O thread scheduling', () => {
  // Documented: the engine threads ask for SCHED_BATCH; where the system refuses, they keep the
  // normal policy and the engine runs all the same. Either way the JS thread is left alone.
  it('the engine threads run under SCHED_BATCH (or, where refused, the normal policy and still serve)', async () => {
    const { code, out } = await runChild(script, 20_000, [], { RNODE_SCHED_BATCH: undefined })
    expect(code, out).toBe(0)
    const r = lastJsonLine<{ reply: string; policies: number[]; mainPolicy: number }>(out)
    expect(r.reply).toBe('ping')
    expect(r.policies.length).toBeGreaterThan(0)
    expect(r.mainPolicy).toBe(SCHED_OTHER)
    const policies = [...new Set(r.policies)]
    const allowed = batchAllowed()
    if (allowed === true) expect(policies).toEqual([SCHED_BATCH])
    else if (allowed === false) expect(policies).toEqual([SCHED_OTHER])
    else expect([[SCHED_BATCH], [SCHED_OTHER]]).toContainEqual(policies)
  })

  it('RNODE_SCHED_BATCH=0 keeps the normal policy', async () => {
    const { code, out } = await runChild(script, 20_000, [], { RNODE_SCHED_BATCH: '0' })
    expect(code, out).toBe(0)
    const r = lastJsonLine<{ reply: string; policies: number[] }>(out)
    expect(r.reply).toBe('ping')
    expect(r.policies.length).toBeGreaterThan(0)
    expect(new Set(r.policies)).toEqual(new Set([SCHED_OTHER]))
  })
})
