// In headless Chromium (Debian's /usr/bin/chromium driven by playwright-core; no browser
// download): the IIFE build loaded by a page joins a room and talks with a Node client.
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { chromium, type Browser, type Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { RNodeWebSocketClient } from '../src/index'
import { ClusterNode, Redis, SKIP_REDIS, startProxy, startServer, type Started } from '../../test-support/index'
import { ensureBuilt, makeClient, nextEvent } from './harness'

// CHROMIUM_PATH points elsewhere (e.g. Google Chrome on GitHub's runners); RNODE_SKIP_BROWSER=1
// skips the suite where no Chromium can be had (the macOS and Windows CI jobs).
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const SKIP_BROWSER = process.env.RNODE_SKIP_BROWSER === '1'
const ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--no-first-run',
  '--disable-sync',
]

let s: Started
let browser: Browser
let page: Page
let node: RNodeWebSocketClient

beforeAll(async () => {
  if (SKIP_BROWSER) return
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium`)
  await ensureBuilt()
  s = await startServer()
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true, timeout: 30_000 })
  page = await browser.newPage()
  await page.setContent('<!doctype html><title>client test</title>')
  await page.addScriptTag({ content: readFileSync(join(__dirname, '..', 'dist', 'rnode-websocket.iife.min.js'), 'utf8') })
}, 60_000)
afterAll(async () => {
  node?.disconnect()
  await browser?.close()
  await s?.server.close()
})

describe.skipIf(SKIP_BROWSER)('in a browser', () => {
  it('the IIFE global connects with the native WebSocket, joins a room and exchanges messages with Node', async () => {
    const joined = await page.evaluate(async (url) => {
      const w = window as unknown as {
        RNodeWebSocket: typeof import('../src/index')
        got: string[]
        client: import('../src/index').RNodeWebSocketClient
      }
      w.got = []
      const client = new w.RNodeWebSocket.RNodeWebSocketClient(url, 'browser_user')
      w.client = client
      client.on('roomMessage', (room, message, from) => w.got.push(`${room}|${message}|${from}`))
      await client.connect()
      const room = await client.joinRoom('general')
      return { status: client.getStatus(), joined: room.isJoinedToRoom() }
    }, s.url)
    expect(joined).toEqual({ status: 'connected', joined: true })
    expect(s.server.getConnections('general').map((x) => x.clientId)).toEqual(['browser_user'])

    node = makeClient(s.url, 'node_user')
    await node.connect()
    await node.joinRoom('general')
    await node.sendToRoom('general', 'hello browser')
    await page.waitForFunction(() => (window as unknown as { got: string[] }).got.length === 1, null, { timeout: 5000 })
    expect(await page.evaluate(() => (window as unknown as { got: string[] }).got)).toEqual([
      'general|hello browser|node_user',
    ])

    const reply = nextEvent(node, 'roomMessage')
    await page.evaluate(() =>
      (window as unknown as { client: import('../src/index').RNodeWebSocketClient }).client.sendToRoom('general', 'hello node'),
    )
    expect(await reply).toEqual(['general', 'hello node', 'browser_user'])
  })

  it('binary from the server arrives in the page as an ArrayBuffer', async () => {
    const socket = s.server.getConnections('general').find((x) => x.clientId === 'browser_user')!
    const pending = page.evaluate(
      () =>
        new Promise<number[]>((resolve) => {
          const c = (window as unknown as { client: import('../src/index').RNodeWebSocketClient }).client
          c.once('message', (data) => resolve(data instanceof ArrayBuffer ? [...new Uint8Array(data)] : []))
        }),
    )
    await page.waitForTimeout(50)
    socket.send(Buffer.from([7, 0, 255]))
    expect(await pending).toEqual([7, 0, 255])
  })

  it('recovers after its TCP connection drops: the missed room messages arrive once, in order', async () => {
    const r = await startServer({}, { recovery: { maxDisconnection: 60_000 } })
    const proxy = await startProxy(r.port)
    try {
      r.server.createRoom('R', { id: 'r', history: { size: 100, ttl: 60_000 } })
      await page.evaluate(async (url) => {
        const w = window as unknown as {
          RNodeWebSocket: typeof import('../src/index')
          rgot: string[]
          recovered: string[][]
          rclient: import('../src/index').RNodeWebSocketClient
        }
        w.rgot = []
        w.recovered = []
        const client = new w.RNodeWebSocket.RNodeWebSocketClient(url, 'browser_recovery', { reconnectDelay: 50, reconnectJitter: 0 })
        w.rclient = client
        client.on('roomMessage', (_room, message) => w.rgot.push(message))
        client.on('recovered', (rooms) => w.recovered.push(rooms))
        await client.connect()
        await client.joinRoom('r')
      }, proxy.url)
      r.server.broadcast('m0', { room: 'r' })
      await page.waitForFunction(() => (window as unknown as { rgot: string[] }).rgot.length === 1, null, { timeout: 5000 })
      proxy.freeze()
      for (let i = 1; i <= 5; i++) r.server.broadcast(`m${i}`, { room: 'r' })
      proxy.thaw()
      await page.waitForFunction(() => (window as unknown as { recovered: string[][] }).recovered.length === 1, null, { timeout: 8000 })
      r.server.broadcast('m6', { room: 'r' })
      await page.waitForFunction(() => (window as unknown as { rgot: string[] }).rgot.length >= 7, null, { timeout: 5000 })
      const state = await page.evaluate(() => {
        const w = window as unknown as { rgot: string[]; recovered: string[][]; rclient: import('../src/index').RNodeWebSocketClient }
        w.rclient.disconnect()
        return { got: w.rgot, recovered: w.recovered }
      })
      expect(state).toEqual({ got: ['m0', 'm1', 'm2', 'm3', 'm4', 'm5', 'm6'], recovered: [['r']] })
    } finally {
      await proxy.close()
      await r.server.close({ timeout: 500 })
    }
  })

  it.skipIf(SKIP_REDIS)('recovers after its server restarts: the session and history were in Redis', async () => {
    const redis = await Redis.start()
    const env = { HISTORY: '100,60000', RECOVERY: '60000' }
    let node = await ClusterNode.start(redis.url, 'browser', env)
    const port = node.port
    try {
      await page.evaluate(async (url) => {
        const w = window as unknown as {
          RNodeWebSocket: typeof import('../src/index')
          cgot: string[]
          crecovered: string[][]
          cclient: import('../src/index').RNodeWebSocketClient
        }
        w.cgot = []
        w.crecovered = []
        const client = new w.RNodeWebSocket.RNodeWebSocketClient(url, 'browser_restart', {
          reconnectDelay: 100,
          maxReconnectDelay: 200,
          reconnectJitter: 0,
          maxReconnectAttempts: 100,
        })
        w.cclient = client
        client.on('roomMessage', (_room, message) => w.cgot.push(message))
        client.on('recovered', (rooms) => w.crecovered.push(rooms))
        await client.connect()
        await client.joinRoom('r')
      }, `ws://127.0.0.1:${port}/ws`)
      await node.call('many', { items: [{ message: 'before', room: 'r' }] })
      await page.waitForFunction(() => (window as unknown as { cgot: string[] }).cgot.length === 1, null, { timeout: 5000 })
      // The server dies; while it is down another node publishes to the room.
      node.kill()
      const other = await ClusterNode.start(redis.url, 'browser', env)
      await other.call('many', { items: [1, 2, 3].map((i) => ({ message: `while down ${i}`, room: 'r' })) })
      other.kill()
      node = await ClusterNode.start(redis.url, 'browser', { ...env, PORT: String(port) })
      await page.waitForFunction(() => (window as unknown as { crecovered: string[][] }).crecovered.length === 1, null, { timeout: 15_000 })
      await node.call('many', { items: [{ message: 'after', room: 'r' }] })
      await page.waitForFunction(() => (window as unknown as { cgot: string[] }).cgot.length >= 5, null, { timeout: 5000 })
      const state = await page.evaluate(() => {
        const w = window as unknown as { cgot: string[]; crecovered: string[][]; cclient: import('../src/index').RNodeWebSocketClient }
        w.cclient.disconnect()
        return { got: w.cgot, recovered: w.crecovered }
      })
      expect(state).toEqual({ got: ['before', 'while down 1', 'while down 2', 'while down 3', 'after'], recovered: [['r']] })
    } finally {
      node.kill()
      await redis.stop()
    }
  }, 60_000)
})
