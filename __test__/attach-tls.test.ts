// Attach mode on an https server: the TLS session lives in Node, so connections take the slow
// path (bytes pumped through the engine). A throwaway certificate is made with the openssl CLI
// for each run; `wss://` from the ws client and from headless Chromium.
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import https from 'node:https'
import type net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import tls from 'node:tls'
import { chromium, type Browser } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { WsServer, type Socket } from '../lib/index'
import { BROWSER_ECHO, browserEchoScript, closed, nextMessage, sendUntilDropped, statusOf, upgradeRequest, waitFor } from '../test-support/index'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const SKIP_BROWSER = process.env.RNODE_SKIP_BROWSER === '1'
const PAGE = '<!doctype html><title>wss test</title>'
// The certificate comes from the openssl CLI (Linux CI has it); without it there is nothing to test.
const HAVE_OPENSSL = spawnSync('openssl', ['version']).status === 0

let dir: string
let cert: Buffer
let httpsServer: https.Server
let server: WsServer
let port: number
const closes: Array<[string, number, string]> = []

beforeAll(async () => {
  if (!HAVE_OPENSSL) return
  dir = mkdtempSync(join(tmpdir(), 'rnode-tls-'))
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
    '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
  ], { stdio: 'ignore' })
  cert = readFileSync(join(dir, 'cert.pem'))
  httpsServer = https.createServer({ key: readFileSync(join(dir, 'key.pem')), cert }, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' }).end(PAGE)
  })
  server = new WsServer({ server: httpsServer, maxBackpressure: 256 * 1024 })
  server.websocket('/ws', {
    onMessage: (s, m) => {
      if (m === 'close me') s.close(4002, 'tls bye')
      else s.send(m)
    },
    onClose: (s, code, reason) => void closes.push([s.clientId, code, reason]),
  })
  await new Promise<void>((r) => httpsServer.listen(0, '127.0.0.1', r))
  port = (httpsServer.address() as net.AddressInfo).port
})

afterAll(async () => {
  await server?.close({ timeout: 500 })
  if (httpsServer) {
    httpsServer.closeAllConnections()
    await new Promise((r) => httpsServer.close(r))
  }
  if (dir) rmSync(dir, { recursive: true, force: true })
})

function wss(query = ''): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`wss://127.0.0.1:${port}/ws${query}`, { ca: cert })
    ws.once('open', () => resolve(ws))
    ws.once('error', reject)
  })
}

/** Sends raw bytes over TLS; resolves with what came back until close or `ms`. */
function tlsExchange(data: string, ms = 1000): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    const sock = tls.connect({ port, host: '127.0.0.1', ca: cert, servername: 'localhost' }, () => sock.write(data))
    const done = (): void => resolve(Buffer.concat(chunks))
    const timer = setTimeout(() => {
      sock.destroy()
      done()
    }, ms)
    sock.on('data', (d) => chunks.push(d))
    sock.on('error', () => {})
    sock.on('close', () => {
      clearTimeout(timer)
      done()
    })
  })
}

describe.skipIf(!HAVE_OPENSSL)('wss:// through an https server (slow path)', () => {
  it('echoes text and large binary byte for byte; remoteAddress is the real peer', async () => {
    let seen: Socket | undefined
    const ws = await wss('?clientId=tls1')
    await waitFor(() => (seen = server.getConnection(server.getConnections().find((s) => s.clientId === 'tls1')?.id ?? '')) !== undefined)
    ws.send('over tls')
    expect(await nextMessage(ws)).toBe('over tls')
    const big = Buffer.alloc(1_000_000)
    for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff
    ws.send(big)
    expect(await nextMessage(ws, 10_000)).toEqual(big)
    expect(seen?.remoteAddress).toMatch(/127\.0\.0\.1$/)
    ws.close()
  })

  it('rooms and broadcast', async () => {
    const a = await wss('?clientId=ra')
    const b = await wss('?clientId=rb')
    for (const ws of [a, b]) {
      ws.send(JSON.stringify({ type: 'join_room', room_id: 'tls-room' }))
      expect(JSON.parse(String(await nextMessage(ws)))).toEqual({ type: 'room_joined', room_id: 'tls-room' })
    }
    const got = Promise.all([nextMessage(a), nextMessage(b)])
    expect(server.broadcast('room news', { room: 'tls-room' })).toBe(2)
    expect(await got).toEqual(['room news', 'room news'])
    a.close()
    b.close()
  })

  it('close codes both ways', async () => {
    const a = await wss('?clientId=c1')
    const aClosed = closed(a)
    a.close(4001, 'client bye')
    expect((await aClosed).code).toBe(4001)
    await waitFor(() => closes.some(([id]) => id === 'c1'))
    expect(closes.find(([id]) => id === 'c1')).toEqual(['c1', 4001, 'client bye'])
    const b = await wss('?clientId=c2')
    const bClosed = closed(b)
    b.send('close me')
    expect(await bClosed).toEqual({ code: 4002, reason: 'tls bye' })
  })

  it('backpressure: sends to a client that stops reading are buffered, then dropped or closed, bounded', async () => {
    const ws = await wss('?clientId=slow')
    await waitFor(() => server.getConnections().some((s) => s.clientId === 'slow'))
    const socket = server.getConnections().find((s) => s.clientId === 'slow')!
    ;(ws as unknown as { _socket: net.Socket })._socket.pause()
    const statuses = await sendUntilDropped(socket)
    expect(statuses).toContain('buffered')
    expect(statuses.at(-1)).toBe('dropped')
    // The default policy closes the slow reader with 1008.
    await waitFor(() => closes.some(([id]) => id === 'slow'), 10_000, 'slow reader closed')
    expect(closes.find(([id]) => id === 'slow')?.[1]).toBe(1008)
    ws.terminate()
  })

  it('hardening answers come back over TLS: bad key 400, bad version 426, non-GET 405, unknown path 404', async () => {
    expect(statusOf(await tlsExchange(upgradeRequest('/ws', { 'Sec-WebSocket-Key': 'x' })))).toBe(400)
    expect(statusOf(await tlsExchange(upgradeRequest('/ws', { 'Sec-WebSocket-Version': '7' })))).toBe(426)
    expect(statusOf(await tlsExchange(upgradeRequest('/ws', {}, 'POST /ws HTTP/1.1')))).toBe(405)
    expect(statusOf(await tlsExchange(upgradeRequest('/elsewhere')))).toBe(404)
    expect(statusOf(await tlsExchange(upgradeRequest('/ws')))).toBe(101)
  })

  it('a TLS client that drops its TCP connection: onClose with 1006', async () => {
    const ws = await wss('?clientId=drop')
    ws.on('error', () => {})
    await waitFor(() => server.getConnections().some((s) => s.clientId === 'drop'))
    ;(ws as unknown as { _socket: tls.TLSSocket })._socket.destroy()
    await waitFor(() => closes.some(([id]) => id === 'drop'), 5000, 'onClose')
    expect(closes.find(([id]) => id === 'drop')?.[1]).toBe(1006)
  })
})

describe.skipIf(SKIP_BROWSER || !HAVE_OPENSSL)('wss:// from headless Chromium', () => {
  let browser: Browser | undefined
  afterAll(async () => {
    await browser?.close()
  })

  it('a page served by the https server talks to its WebSocket on the same port', async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium`)
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      timeout: 30_000,
      args: [
        '--headless', '--no-sandbox', '--disable-gpu', '--ignore-certificate-errors', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', '--no-first-run',
      ],
    })
    const page = await (await browser.newContext({ ignoreHTTPSErrors: true })).newPage()
    await page.goto(`https://127.0.0.1:${port}/`)
    const result = await page.evaluate(browserEchoScript("'wss://' + location.host + '/ws?clientId=browser'"))
    expect(result).toEqual(BROWSER_ECHO)
    await waitFor(() => closes.some(([id]) => id === 'browser'))
    expect(closes.find(([id]) => id === 'browser')?.slice(1)).toEqual([4005, 'done'])
  }, 60_000)
})
