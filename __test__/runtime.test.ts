// The engine's I/O threads run under SCHED_BATCH on Linux (a ready socket does not preempt the JS
// thread on a shared core), unless RNODE_SCHED_BATCH=0. Read back from /proc, in child processes
// so that each gets its own runtime and environment.
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

describe.runIf(process.platform === 'linux')('I/O thread scheduling', () => {
  it('the engine threads run under SCHED_BATCH, the JS thread keeps the normal policy', async () => {
    const { code, out } = await runChild(script, 20_000, [], { RNODE_SCHED_BATCH: undefined })
    expect(code, out).toBe(0)
    const r = lastJsonLine<{ reply: string; policies: number[]; mainPolicy: number }>(out)
    expect(r.reply).toBe('ping')
    expect(r.policies.length).toBeGreaterThan(0)
    expect(new Set(r.policies)).toEqual(new Set([SCHED_BATCH]))
    expect(r.mainPolicy).toBe(SCHED_OTHER)
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
