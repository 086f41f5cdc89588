// The examples in client/examples run to completion against a real server.
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { ensureBuilt } from './harness'

beforeAll(() => ensureBuilt(), 60_000)

function run(name: string): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [join(__dirname, '..', 'examples', name)], { timeout: 15_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr })
    })
  })
}

describe('examples', () => {
  it('chat.mjs: joins general-chat and gets a reply with fromClientId', async () => {
    const { code, out } = await run('chat.mjs')
    expect(out).toContain('[general-chat] chat_friend: got "Hello, everyone!"')
    expect(code).toBe(0)
  })
  it('notifications.mjs: own room allowed, someone else refused, three notifications shown', async () => {
    const { code, out } = await run('notifications.mjs')
    expect(out).toContain('refused: denied')
    expect(out.match(/🔔/g)?.length).toBe(3)
    expect(code).toBe(0)
  })
  it('real-time-dashboard.mjs: five live updates', async () => {
    const { code, out } = await run('real-time-dashboard.mjs')
    expect(out).toMatch(/tick 5: cpu \d+%/)
    expect(code).toBe(0)
  })
})
