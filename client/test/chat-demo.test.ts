// The `npm start` chat demo (examples/chat) in headless Chromium: two tabs pick names, join a
// room, see each other join, chat, and keep chatting after the server process restarts. The
// page and its WebSocket share one port.
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { chromium, type Browser, type Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { closedPort } from '../../test-support/index'
import { ensureBuilt } from './harness'

// CHROMIUM_PATH points elsewhere (e.g. Google Chrome on GitHub's runners); RNODE_SKIP_BROWSER=1
// skips the suite where no Chromium can be had (the macOS and Windows CI jobs).
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const SKIP_BROWSER = process.env.RNODE_SKIP_BROWSER === '1'
const ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync']
const script = join(__dirname, '..', '..', 'examples', 'chat', 'server.mjs')

let ports: { PORT: string }
let proc: ChildProcess | undefined
let browser: Browser

/** Starts the demo and resolves once it says it listens. */
function startDemo(): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [script], { env: { ...process.env, ...ports }, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    const timer = setTimeout(() => reject(new Error(`demo did not start: ${out}`)), 20_000)
    const onData = (d: Buffer): void => {
      out += d.toString()
      if (out.includes('chat demo: open')) {
        clearTimeout(timer)
        resolve(p)
      }
    }
    p.stdout!.on('data', onData)
    p.stderr!.on('data', onData)
    p.on('exit', (code) => reject(new Error(`demo exited with ${code}: ${out}`)))
  })
}

function stopDemo(p: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (p.exitCode !== null) return resolve()
    const timer = setTimeout(() => p.kill('SIGKILL'), 5000)
    p.once('exit', () => {
      clearTimeout(timer)
      resolve()
    })
    p.kill('SIGTERM')
  })
}

async function tab(name: string): Promise<Page> {
  const page = await browser.newPage()
  await page.goto(`http://127.0.0.1:${ports.PORT}/`)
  await page.fill('#name', name)
  await page.click('#login button')
  await page.waitForSelector('#status.connected', { timeout: 5000 })
  await page.click('button[data-room="general"][data-act="join"]')
  await page.waitForSelector('#log >> text=you joined General', { timeout: 5000 })
  return page
}

beforeAll(async () => {
  if (SKIP_BROWSER) return
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium`)
  await ensureBuilt()
  ports = { PORT: String(await closedPort()) }
  proc = await startDemo()
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true, timeout: 30_000 })
}, 60_000)
afterAll(async () => {
  await browser?.close()
  if (proc) await stopDemo(proc)
})

describe.skipIf(SKIP_BROWSER)('chat demo', () => {
  it('two tabs chat in a room, see joins, and keep chatting after the server restarts', async () => {
    const alice = await tab('alice')
    const bob = await tab('bob')
    await alice.waitForSelector('#log >> text=bob joined the room', { timeout: 5000 })
    await alice.waitForSelector('#members >> text=bob', { timeout: 5000 })

    await alice.fill('#text', 'hi bob')
    await alice.click('#send')
    await bob.waitForSelector('#log >> text=hi bob', { timeout: 5000 })

    await stopDemo(proc!)
    await bob.waitForSelector('#status.reconnecting', { timeout: 5000 })
    proc = await startDemo()
    await alice.waitForSelector('#status.connected', { timeout: 10_000 })
    await bob.waitForSelector('#status.connected', { timeout: 10_000 })

    // The page and its WebSocket share one port (attach mode).
    expect(await alice.evaluate('url')).toBe(`ws://127.0.0.1:${ports.PORT}/ws`)
    await bob.fill('#text', 'still here')
    await bob.click('#send')
    await alice.waitForSelector('#log >> text=still here', { timeout: 5000 })

    await bob.click('button[data-room="general"][data-act="leave"]')
    await alice.waitForSelector('#log >> text=bob left the room', { timeout: 5000 })
    expect(await alice.textContent('#members')).not.toContain('bob')
  })
})
