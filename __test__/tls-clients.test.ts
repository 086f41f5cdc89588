// wss:// on the native TLS port from other clients than Node's ws: Python's `websockets` with
// an `ssl` context trusting the test CA (in a venv, .venv-tls, made on first run), headless
// Chromium (certificate errors ignored), and 1,000 concurrent TLS connections from ws.
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import { existsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { chromium } from 'playwright-core'
import { describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { BROWSER_ECHO, browserEchoScript, echo, HAVE_OPENSSL, nextMessage, serverPool, suiteCertificates, waitFor } from '../test-support/index'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const SKIP_BROWSER = process.env.RNODE_SKIP_BROWSER === '1'
const VENV = join(__dirname, '..', '.venv-tls')
const PYTHON = join(VENV, 'bin', 'python')

const suite = suiteCertificates()

const start = serverPool()

/** The venv with `websockets` (pinned), made once; the CI script makes it up front. */
function python(): string {
  if (!existsSync(PYTHON) || spawnSync(PYTHON, ['-c', 'import websockets']).status !== 0) {
    execFileSync('python3', ['-m', 'venv', VENV], { stdio: 'ignore' })
    execFileSync(join(VENV, 'bin', 'pip'), ['install', '--quiet', 'websockets==15.0.1'], { stdio: 'ignore' })
  }
  return PYTHON
}

describe.skipIf(!HAVE_OPENSSL)('other clients', () => {
  it('Python websockets with an ssl context: echo and a room broadcast', async () => {
    const py = python()
    const { server, port } = await start({ onMessage: echo }, { tls: suite.leaf })
    const caFile = join(VENV, 'test-ca.pem')
    writeFileSync(caFile, suite.ca.cert)
    const script = `
import asyncio, json, ssl, sys
from websockets.asyncio.client import connect
async def main():
    ctx = ssl.create_default_context(cafile=sys.argv[2])
    async with connect(f"wss://localhost:{sys.argv[1]}/ws?clientId=py", ssl=ctx) as ws:
        await ws.send("from python")
        echo = await ws.recv()
        await ws.send(json.dumps({"type": "join_room", "room_id": "py-room"}))
        joined = json.loads(await ws.recv())
        print("JOINED", flush=True)
        news = await asyncio.wait_for(ws.recv(), 10)
        print(json.dumps({"echo": echo, "joined": joined, "news": news, "tls": ws.transport.get_extra_info("ssl_object").version()}))
asyncio.run(main())
`
    const child = spawn(py, ['-c', script, String(port), caFile])
    let out = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr.on('data', (d: Buffer) => (out += d.toString()))
    await waitFor(() => out.includes('JOINED'), 20_000, 'python joined')
    expect(server.broadcast('to python', { room: 'py-room' })).toBe(1)
    await new Promise((r) => child.on('exit', r))
    const result = JSON.parse(out.trim().split('\n').at(-1)!) as Record<string, unknown>
    expect(result).toEqual({ echo: 'from python', joined: { type: 'room_joined', room_id: 'py-room' }, news: 'to python', tls: 'TLSv1.3' })
  }, 120_000)

  it.skipIf(SKIP_BROWSER)('headless Chromium: text and binary echo and a close code', async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium`)
    const { port } = await start({ onMessage: echo }, { tls: suite.leaf })
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      timeout: 30_000,
      args: ['--no-sandbox', '--disable-gpu', '--ignore-certificate-errors', '--disable-background-networking', '--no-first-run'],
    })
    try {
      const page = await browser.newPage()
      await page.setContent('<!doctype html><title>native wss</title>')
      const result = await page.evaluate(browserEchoScript(`'wss://127.0.0.1:${port}/ws?clientId=browser'`))
      expect(result).toEqual(BROWSER_ECHO)
    } finally {
      await browser.close()
    }
  }, 60_000)

  it('1,000 concurrent TLS connections: all open, all echo, all close', async () => {
    const { server, port } = await start({ onMessage: echo }, { tls: suite.leaf })
    const open = (i: number): Promise<WebSocket> =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(`wss://127.0.0.1:${port}/ws?clientId=c${i}`, { ca: suite.ca.cert })
        ws.once('open', () => resolve(ws))
        ws.once('error', reject)
      })
    const all: WebSocket[] = []
    // In waves of 100, so the test's own TLS client (one JS thread) keeps up.
    for (let wave = 0; wave < 10; wave++) {
      all.push(...(await Promise.all(Array.from({ length: 100 }, (_, i) => open(wave * 100 + i)))))
    }
    await waitFor(() => server.getConnections().length === 1000, 10_000, '1000 connections')
    const echoes = all.map((ws, i) => {
      ws.send(`m${i}`)
      return nextMessage(ws, 20_000)
    })
    expect(await Promise.all(echoes)).toEqual(all.map((_, i) => `m${i}`))
    for (const ws of all) ws.close()
    await waitFor(() => server.getConnections().length === 0, 20_000, 'all closed')
  }, 120_000)
})
