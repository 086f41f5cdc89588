// @rnode/ws/compat's WebSocketServer as ws 8 documents it, with ws's client on the other end:
// the three modes, options (default, custom, refused), verifyClient, handleProtocols, 'headers',
// clients, address() and close().
import http, { IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'
import { afterEach, describe, expect, it } from 'vitest'
import WsClient from 'ws'
import { WebSocket, WebSocketServer, type ServerOptions } from '../lib/compat/index'
import { closed, connect, lastJsonLine, nextMessage, rawExchange, runChild, statusOf, upgradeRequest, waitFor } from '../test-support/index'

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  await Promise.all(cleanups.splice(0).map((c) => c()))
})

function closeServer(wss: WebSocketServer): Promise<void> {
  for (const ws of wss.clients ?? []) ws.terminate()
  return new Promise((resolve) => wss.close(() => resolve()))
}

/** A port-mode server on 127.0.0.1 once 'listening' fired. */
function start(options: Omit<ServerOptions, 'port'> = {}): Promise<{ wss: WebSocketServer; port: number; url: string }> {
  return new Promise((resolve, reject) => {
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', ...options }, () => {
      const { port } = wss.address() as AddressInfo
      resolve({ wss, port, url: `ws://127.0.0.1:${port}` })
    })
    wss.once('error', reject)
    cleanups.push(() => closeServer(wss))
  })
}

function listenHttp(server: http.Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)))
}

function closeHttp(server: http.Server): Promise<void> {
  server.closeAllConnections()
  return new Promise((resolve) => server.close(() => resolve()))
}

function onConnection(wss: WebSocketServer): Promise<[WebSocket, IncomingMessage]> {
  return new Promise((resolve) => wss.once('connection', (ws: WebSocket, req: IncomingMessage) => resolve([ws, req])))
}

/** The HTTP status a ws client's refused upgrade got. */
function refusedWith(url: string, options: WsClient.ClientOptions = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const c = new WsClient(url, options)
    c.on('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0)
      c.terminate()
    })
    c.on('open', () => reject(new Error('the upgrade was accepted')))
    c.on('error', () => undefined)
  })
}

/** A ws client's upgrade response headers (its 'upgrade' event), then the open client. */
function upgradeHeaders(url: string, options: WsClient.ClientOptions = {}): Promise<[IncomingMessage['headers'], WsClient]> {
  return new Promise((resolve, reject) => {
    const client = new WsClient(url, options)
    let headers: IncomingMessage['headers'] = {}
    client.once('upgrade', (res: IncomingMessage) => void (headers = res.headers))
    client.once('open', () => resolve([headers, client]))
    client.once('error', reject)
  })
}

describe('package entry points', () => {
  it("'@rnode/ws/compat' loads through import and require (the same classes), and '@rnode/ws' still does", async () => {
    const script = `
      import { createRequire } from 'node:module'
      import { WebSocketServer, WebSocket, createWebSocketStream, Server } from '@rnode/ws/compat'
      import { WsServer } from '@rnode/ws'
      const require = createRequire(process.cwd() + '/')
      const cjs = require('@rnode/ws/compat')
      console.log(JSON.stringify({
        same: cjs.WebSocketServer === WebSocketServer && cjs.WebSocket === WebSocket && Server === WebSocketServer,
        stream: typeof createWebSocketStream,
        native: typeof WsServer === 'function' && require('@rnode/ws').WsServer === WsServer,
      }))`
    const { code, out } = await runChild(script, 15_000, ['--input-type=module'])
    expect(code, out).toBe(0)
    expect(lastJsonLine(out)).toEqual({ same: true, stream: 'function', native: true })
  })
})

describe('constructor', () => {
  it('throws the TypeError ws throws when none or several of port/server/noServer are given', () => {
    const server = http.createServer()
    for (const options of [{}, { port: 0, noServer: true }, { port: 0, server }, { server, noServer: true }]) {
      expect(() => new WebSocketServer(options)).toThrow(TypeError)
    }
    expect(() => new WebSocketServer(undefined as unknown as ServerOptions)).toThrow(TypeError)
  })

  it('fills in ws defaults in options', () => {
    const wss = new WebSocketServer({ noServer: true })
    expect(wss.options).toMatchObject({ clientTracking: true, maxPayload: 100 * 1024 * 1024, perMessageDeflate: false, closeTimeout: 30_000 })
    expect(wss.clients).toBeInstanceOf(Set)
    wss.close()
  })

  it.each([
    ['skipUTF8Validation', { skipUTF8Validation: true }],
    ['autoPong', { autoPong: false }],
    ['allowSynchronousEvents', { allowSynchronousEvents: false }],
    ['maxFragments', { maxFragments: 10 } as ServerOptions],
    ['a WebSocket class of another family', { WebSocket: WsClient as unknown as typeof WebSocket }],
  ])('refuses %s with ERR_UNSUPPORTED_OPTION', (_name, options) => {
    expect(() => new WebSocketServer({ noServer: true, ...options })).toThrow(expect.objectContaining({ code: 'ERR_UNSUPPORTED_OPTION' }))
  })

  it('accepts the refused options at their ws defaults', () => {
    const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, skipUTF8Validation: false, autoPong: true, allowSynchronousEvents: true })
    wss.close()
  })

  it('rnode: passes engine options ws does not have; bad values throw as in the native API', async () => {
    const { wss } = await start({ rnode: { pingInterval: 1234, maxBackpressure: 4096 } })
    expect(wss.native.limits).toMatchObject({ pingInterval: 1234, maxBackpressure: 4096, maxPayload: 100 * 1024 * 1024, closeTimeout: 30_000 })
    expect(() => new WebSocketServer({ noServer: true, rnode: { pingInterval: -1 } })).toThrow(RangeError)
  })

  it('backlog and host reach the http server it listens on (host default: any address, as ws)', async () => {
    const wss = new WebSocketServer({ port: 0, backlog: 8 })
    await new Promise((r) => wss.once('listening', r))
    expect((wss.address() as AddressInfo).address).toBe('::')
    const client = await connect(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`)
    client.close()
    await closeServer(wss)
  })

  it('answers a plain HTTP request with 426, as ws', async () => {
    const { port } = await start()
    const response = await rawExchange(port, 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 2000)
    expect(statusOf(response)).toBe(426)
    expect(response.toString().endsWith('Upgrade Required')).toBe(true)
  })

  it('reports a bind failure as an error event', async () => {
    const { port } = await start()
    const second = new WebSocketServer({ port, host: '127.0.0.1' })
    const err = await new Promise<unknown>((resolve) => second.once('error', resolve))
    expect(err).toBeInstanceOf(Error)
  })
})

describe('port mode', () => {
  it("emits 'connection' with the WebSocket and an IncomingMessage carrying url, headers and the peer address", async () => {
    const { wss, url } = await start()
    const connection = onConnection(wss)
    const client = await connect(`${url}/chat?room=a`, { headers: { 'x-app': 'yes' } })
    const [ws, req] = await connection
    expect(ws).toBeInstanceOf(WebSocket)
    expect(req).toBeInstanceOf(IncomingMessage)
    expect(req.url).toBe('/chat?room=a')
    expect(req.method).toBe('GET')
    expect(req.headers['x-app']).toBe('yes')
    expect(req.socket.remoteAddress).toBe('127.0.0.1')
    expect(typeof req.socket.remotePort).toBe('number')
    expect(req.headers.upgrade).toBe('websocket')
    expect(ws.readyState).toBe(WebSocket.OPEN)
    client.close()
  })

  it('clients sending the same Sec-WebSocket-Key each get their own upgrade and their own req', async () => {
    const { wss, port } = await start()
    const seen: Array<[WebSocket, IncomingMessage]> = []
    wss.on('connection', (ws: WebSocket, req: IncomingMessage) => seen.push([ws, req]))
    const responses = await Promise.all(Array.from({ length: 5 }, () => rawExchange(port, upgradeRequest('/'), 300)))
    expect(responses.map(statusOf)).toEqual([101, 101, 101, 101, 101])
    await waitFor(() => seen.length === 5)
    expect(new Set(seen.map(([, req]) => req.socket.remotePort)).size).toBe(5)
    for (const [ws, req] of seen) expect(ws.native.remoteAddress).toBe(req.socket.remoteAddress)
  })

  it('address() is the bound address, null after close()', async () => {
    const { wss, port } = await start()
    expect(wss.address()).toEqual({ address: '127.0.0.1', family: 'IPv4', port })
    await new Promise<void>((resolve) => wss.close(() => resolve()))
    expect(wss.address()).toBeNull()
  })

  it('the path option takes that path only (others: 400)', async () => {
    const { wss, url } = await start({ path: '/ws' })
    expect(await refusedWith(`${url}/other`)).toBe(400)
    const connection = onConnection(wss)
    const client = await connect(`${url}/ws?x=1`)
    await connection
    client.close()
  })

  it('without path, every path is taken', async () => {
    const { wss, url } = await start()
    const connection = onConnection(wss)
    const client = await connect(`${url}/any/where`)
    expect((await connection)[1].url).toBe('/any/where')
    client.close()
  })

  it('tracks clients in a Set, and not at all with clientTracking: false', async () => {
    const { wss, url } = await start()
    const a = await connect(url)
    await waitFor(() => wss.clients?.size === 1, 5000, 'one client')
    const b = await connect(url)
    await waitFor(() => wss.clients?.size === 2, 5000, 'two clients')
    a.close()
    await waitFor(() => wss.clients?.size === 1, 5000, 'a gone')
    b.terminate()
    await waitFor(() => wss.clients?.size === 0, 5000, 'b gone')

    const untracked = await start({ clientTracking: false })
    expect(untracked.wss.clients).toBeUndefined()
    const c = await connect(untracked.url)
    c.close()
  })

  it('maxPayload: ws default 100 MiB; a custom value closes larger messages with 1009', async () => {
    const big = await start()
    const conn = onConnection(big.wss)
    const c1 = await connect(big.url)
    const [ws] = await conn
    const got = new Promise<Buffer>((resolve) => ws.once('message', (d: Buffer) => resolve(d)))
    c1.send(Buffer.alloc(2 * 1024 * 1024, 1))
    expect((await got).length).toBe(2 * 1024 * 1024)
    c1.close()

    const small = await start({ maxPayload: 16 })
    const c2 = await connect(small.url)
    const done = closed(c2)
    c2.send('x'.repeat(17))
    expect((await done).code).toBe(1009)
  })
})

describe('verifyClient', () => {
  it('sync: false refuses with 401, true accepts; info has origin, secure and req', async () => {
    let seen: { origin: string | undefined; secure: boolean; url: string | undefined } | undefined
    const { url } = await start({
      verifyClient: (info: { origin: string | undefined; secure: boolean; req: IncomingMessage }) => {
        seen = { origin: info.origin, secure: info.secure, url: info.req.url }
        return info.req.url !== '/deny'
      },
    })
    expect(await refusedWith(`${url}/deny`)).toBe(401)
    const client = await connect(`${url}/ok`, { origin: 'https://app.example' })
    expect(seen).toEqual({ origin: 'https://app.example', secure: false, url: '/ok' })
    client.close()
  })

  it('async: the callback refuses with its code (401 without one) or accepts; the req reaches connection', async () => {
    const { wss, url } = await start({
      verifyClient: (info: { req: IncomingMessage }, cb: (ok: boolean, code?: number, message?: string) => void) => {
        setTimeout(() => {
          if (info.req.url === '/forbidden') cb(false, 403, 'Forbidden')
          else if (info.req.url === '/nope') cb(false)
          else cb(true)
        }, 5)
      },
    })
    expect(await refusedWith(`${url}/forbidden`)).toBe(403)
    expect(await refusedWith(`${url}/nope`)).toBe(401)
    let verified: IncomingMessage | undefined
    wss.options.verifyClient = (info: { req: IncomingMessage }, cb: (ok: boolean) => void) => {
      verified = info.req
      cb(true)
    }
    const connection = onConnection(wss)
    const client = await connect(`${url}/yes`)
    expect((await connection)[1]).toBe(verified)
    client.close()
  })
})

describe('verifyClient refusals as ws writes them', () => {
  it('the status, the message as the body and custom headers reach the client', async () => {
    const { port } = await start({
      verifyClient: (_info: unknown, cb: (ok: boolean, code?: number, message?: string, headers?: Record<string, string>) => void) =>
        cb(false, 503, 'Come back later', { 'Retry-After': '5' }),
    })
    const response = (await rawExchange(port, upgradeRequest('/'), 2000)).toString()
    expect(statusOf(Buffer.from(response))).toBe(503)
    expect(response).toMatch(/\r\nRetry-After: 5\r\n/)
    expect(response.endsWith('\r\n\r\nCome back later')).toBe(true)
  })
})

describe('subprotocols', () => {
  it("picks the client's first offer by default, as ws does", async () => {
    const { url } = await start()
    const offered = new WsClient(url, ['b', 'a'])
    await new Promise((r) => offered.once('open', r))
    expect(offered.protocol).toBe('b')
    offered.close()
  })

  it('handleProtocols chooses (with the Set and the req), false chooses none', async () => {
    let args: [string[], string | undefined] | undefined
    const { wss, url } = await start({
      handleProtocols: (protocols: Set<string>, req: IncomingMessage) => {
        args = [[...protocols], req.url]
        return protocols.has('b') ? 'b' : false
      },
    })
    const connection = onConnection(wss)
    const c1 = new WsClient(`${url}/p`, ['a', 'b'])
    await new Promise((r) => c1.once('open', r))
    expect(c1.protocol).toBe('b')
    expect((await connection)[0].protocol).toBe('b')
    expect(args).toEqual([['a', 'b'], '/p'])
    // No subprotocol chosen: ws's client gives up on such a server, whichever server it is.
    const c2 = new WsClient(url, ['a'])
    const failure = await new Promise<Error>((resolve) => c2.once('error', resolve))
    expect(failure).toBeInstanceOf(Error)
    expect(args?.[0]).toEqual(['a'])
    c1.close()
  })

  it('refuses an invalid Sec-WebSocket-Protocol header with 400, as ws does', async () => {
    const { port } = await start()
    const response = await rawExchange(port, upgradeRequest('/', { 'Sec-WebSocket-Protocol': 'foo;bar' }), 2000)
    expect(statusOf(response)).toBe(400)
    expect(response.toString().endsWith('\r\n\r\nInvalid Sec-WebSocket-Protocol header')).toBe(true)
  })
})

describe("'headers' event", () => {
  it('hands the 101 head lines and the req before the response', async () => {
    const { wss, url } = await start()
    const seen = new Promise<[string[], IncomingMessage]>((resolve) => wss.once('headers', (h: string[], req: IncomingMessage) => resolve([[...h], req])))
    const client = new WsClient(url, ['x'])
    await new Promise((r) => client.once('open', r))
    const [headers, req] = await seen
    expect(headers.slice(0, 3)).toEqual(['HTTP/1.1 101 Switching Protocols', 'Upgrade: websocket', 'Connection: Upgrade'])
    expect(headers[3]).toMatch(/^Sec-WebSocket-Accept: [A-Za-z0-9+/]{27}=$/)
    expect(headers[4]).toBe('Sec-WebSocket-Protocol: x')
    expect(req).toBeInstanceOf(IncomingMessage)
    client.close()
  })

  it("lines a listener adds go out in the 101, as in ws (Set-Cookie, several, repeated)", async () => {
    const { wss, url } = await start()
    wss.on('headers', (h: string[], req: IncomingMessage) => {
      h.push('Set-Cookie: session=abc; HttpOnly', `X-Path: ${req.url ?? ''}`)
    })
    wss.on('headers', (h: string[]) => void h.push('Set-Cookie: second=2'))
    const [headers, client] = await upgradeHeaders(`${url}/p?q=1`)
    expect(headers['set-cookie']).toEqual(['session=abc; HttpOnly', 'second=2'])
    expect(headers['x-path']).toBe('/p?q=1')
    expect(headers.upgrade).toBe('websocket')
    client.close()
  })

  it('a malformed line (CR/LF injection, no colon, a bad name) or an edit of the handshake lines is not sent, with a warning saying why', async () => {
    const { wss, url } = await start()
    wss.on('headers', (h: string[]) => {
      h.push('X-Split: a\r\nSet-Cookie: evil=1', 'no colon here', 'Bad Name: x', 'X-Good: yes')
      h[2] = 'Connection: close'
    })
    const warnings: Array<Error & { code?: string }> = []
    const onWarning = (w: Error & { code?: string }): void => void warnings.push(w)
    process.on('warning', onWarning)
    try {
      const [headers, client] = await upgradeHeaders(url)
      expect(headers['x-good']).toBe('yes')
      expect(headers['set-cookie']).toBeUndefined()
      expect(headers['x-split']).toBeUndefined()
      expect(headers.connection).toBe('Upgrade')
      await waitFor(() => warnings.length === 5)
      expect(warnings.map((w) => w.code)).toEqual(Array(5).fill('ERR_INVALID_HANDLER_RESULT'))
      const text = warnings.map((w) => w.message).join('\n')
      expect(text).toMatch(/X-Split.*control character/)
      expect(text).toMatch(/no colon/)
      expect(text).toMatch(/not an HTTP token/)
      expect(text).toMatch(/Connection is set by the handshake itself/)
      expect(text).toMatch(/cannot be removed or changed/)
      client.close()
    } finally {
      process.off('warning', onWarning)
    }
  })
})

describe('perMessageDeflate', () => {
  it('true: the ws client negotiates it through the compat server; ws.extensions shows it and messages round-trip', async () => {
    const { wss, url } = await start({ perMessageDeflate: true })
    expect(wss.options.perMessageDeflate).toBe(true)
    wss.on('connection', (ws: WebSocket) => ws.on('message', (data: Buffer, isBinary: boolean) => ws.send(data, { binary: isBinary })))
    const [headers, client] = await upgradeHeaders(url)
    expect(headers['sec-websocket-extensions']).toBe('permessage-deflate; client_max_window_bits=15')
    expect(client.extensions).toMatch(/^permessage-deflate/)
    await waitFor(() => wss.clients?.size === 1)
    const [ws] = [...(wss.clients ?? [])]
    expect(ws?.extensions).toBe('permessage-deflate')
    expect(ws?.native.extensions).toBe('permessage-deflate; client_max_window_bits=15')
    const big = 'x'.repeat(100_000)
    client.send(big)
    expect(await nextMessage(client)).toBe(big)
    client.close()
  })

  it("ws's option shape maps: its README example (thresholds, no context takeover, windows, zlibDeflateOptions memLevel and level, chunkSize, concurrencyLimit)", async () => {
    const { wss, url } = await start({
      perMessageDeflate: {
        zlibDeflateOptions: { chunkSize: 1024, memLevel: 7, level: 3 },
        zlibInflateOptions: { chunkSize: 10 * 1024 },
        clientNoContextTakeover: true,
        serverNoContextTakeover: true,
        serverMaxWindowBits: 10,
        concurrencyLimit: 10,
        threshold: 1024,
      },
    })
    wss.on('connection', (ws: WebSocket) => ws.on('message', (data: Buffer) => ws.send(data.toString())))
    const [headers, client] = await upgradeHeaders(url)
    expect(headers['sec-websocket-extensions']).toBe(
      'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=15',
    )
    for (const m of ['short', 'y'.repeat(5000)]) {
      client.send(m)
      expect(await nextMessage(client)).toBe(m)
    }
    client.close()
  })

  it.each([
    ['zlibDeflateOptions.strategy', { zlibDeflateOptions: { strategy: 1 } }],
    ['zlibInflateOptions.windowBits', { zlibInflateOptions: { windowBits: 10 } }],
    ['serverMaxWindowBits false', { serverMaxWindowBits: false }],
    ['an option ws does not have', { level: 1 } as Record<string, unknown>],
  ])('refuses %s with ERR_UNSUPPORTED_OPTION', (_name, perMessageDeflate) => {
    expect(() => new WebSocketServer({ noServer: true, perMessageDeflate })).toThrow(expect.objectContaining({ code: 'ERR_UNSUPPORTED_OPTION' }))
  })

  it('values the engine checks throw its ERR_INVALID_OPTION; false and the defaults are off as in ws', () => {
    expect(() => new WebSocketServer({ noServer: true, perMessageDeflate: { serverMaxWindowBits: 16 } })).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_OPTION' }),
    )
    expect(() => new WebSocketServer({ noServer: true, perMessageDeflate: { zlibDeflateOptions: { memLevel: 0 } } })).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_OPTION' }),
    )
    expect(() => new WebSocketServer({ noServer: true, perMessageDeflate: { zlibDeflateOptions: { level: 10 } } })).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_OPTION' }),
    )
    for (const perMessageDeflate of [false, undefined, { zlibDeflateOptions: { level: -1 }, clientMaxWindowBits: true, serverMaxWindowBits: true }]) {
      new WebSocketServer({ noServer: true, perMessageDeflate }).close()
    }
  })

  it("a malformed offer gets ws's 400 when it is on; a well-formed one the engine declines opens uncompressed; off, the header is not looked at", async () => {
    const on = await start({ perMessageDeflate: true })
    for (const bad of ['permessage-deflate; server_max_window_bits=foo', 'permessage-deflate; server_max_window_bits', 'permessage-deflate; a=1', 'permessage-deflate; client_no_context_takeover; client_no_context_takeover', 'x y', '']) {
      const response = (await rawExchange(on.port, upgradeRequest('/', { 'Sec-WebSocket-Extensions': bad }), 2000)).toString()
      expect(statusOf(Buffer.from(response)), bad).toBe(400)
      expect(response, bad).toMatch(/Invalid or unacceptable Sec-WebSocket-Extensions header$/)
    }
    const declined = await rawExchange(on.port, upgradeRequest('/', { 'Sec-WebSocket-Extensions': 'x-other; a="1", permessage-deflate; server_max_window_bits="10"' }), 300)
    expect(statusOf(declined)).toBe(101)
    expect(declined.toString()).toMatch(/Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10\r\n/)
    const small = await start({ perMessageDeflate: { clientMaxWindowBits: 10 } })
    const plain = await rawExchange(small.port, upgradeRequest('/', { 'Sec-WebSocket-Extensions': 'permessage-deflate' }), 300)
    expect(statusOf(plain)).toBe(101)
    expect(plain.toString()).not.toMatch(/Sec-WebSocket-Extensions/)
    const off = await start()
    expect(statusOf(await rawExchange(off.port, upgradeRequest('/', { 'Sec-WebSocket-Extensions': 'permessage-deflate; a=1' }), 300))).toBe(101)
  })

  it('off by default: the ws client offers it and gets plain frames', async () => {
    const { url } = await start()
    const [headers, client] = await upgradeHeaders(url)
    expect(headers['sec-websocket-extensions']).toBeUndefined()
    expect(client.extensions).toBe('')
    client.close()
  })
})

describe('close()', () => {
  it("stops listening, keeps open connections, and emits 'close' once the last one is gone", async () => {
    const { wss, url } = await start()
    const client = await connect(url)
    await waitFor(() => wss.clients?.size === 1)
    let closedEvent = false
    wss.close(() => {
      closedEvent = true
    })
    const refused = await new Promise<{ code?: string }>((resolve) => new WsClient(url).once('error', resolve))
    expect(refused.code).toBe('ECONNREFUSED')
    client.send('still here')
    const [ws] = [...(wss.clients ?? [])]
    expect(ws?.readyState).toBe(WebSocket.OPEN)
    await new Promise((r) => setTimeout(r, 50))
    expect(closedEvent).toBe(false)
    client.close()
    await waitFor(() => closedEvent, 5000, "'close'")
  })

  it('a second close() callback after the server closed gets an error', async () => {
    const { wss } = await start()
    await new Promise<void>((resolve) => wss.close(() => resolve()))
    const err = await new Promise<Error | undefined>((resolve) => wss.close(resolve))
    expect(err).toBeInstanceOf(Error)
  })
})

describe('server mode ({ server })', () => {
  it('upgrades on the http server while its requests keep working', async () => {
    const server = http.createServer((_req, res) => res.end('http ok'))
    const wss = new WebSocketServer({ server, path: '/ws' })
    const port = await listenHttp(server)
    cleanups.push(async () => {
      await closeServer(wss)
      await closeHttp(server)
    })
    const connection = onConnection(wss)
    const client = await connect(`ws://127.0.0.1:${port}/ws?a=1`)
    const [ws, req] = await connection
    expect(req.url).toBe('/ws?a=1')
    ws.on('message', (data: Buffer, isBinary: boolean) => ws.send(data, { binary: isBinary }))
    client.send('hi')
    expect(await nextMessage(client)).toBe('hi')
    const body = await new Promise<string>((resolve) => http.get(`http://127.0.0.1:${port}/`, (res) => res.on('data', (d: Buffer) => resolve(d.toString()))))
    expect(body).toBe('http ok')
    expect(wss.address()).toEqual(server.address())
    client.close()
  })
})

describe("ws's handshake checks in server mode", () => {
  async function attachedServer(): Promise<{ wss: WebSocketServer; port: number }> {
    const server = http.createServer()
    const wss = new WebSocketServer({ server })
    const port = await listenHttp(server)
    cleanups.push(async () => {
      await closeServer(wss)
      await closeHttp(server)
    })
    return { wss, port }
  }

  it("answers a bad request with ws's status and body; a valid one still upgrades", async () => {
    const { port } = await attachedServer()
    const noKey = (await rawExchange(port, upgradeRequest('/', { 'Sec-WebSocket-Key': null }), 2000)).toString()
    expect(statusOf(Buffer.from(noKey))).toBe(400)
    expect(noKey.endsWith('\r\n\r\nMissing or invalid Sec-WebSocket-Key header')).toBe(true)
    const badVersion = (await rawExchange(port, upgradeRequest('/', { 'Sec-WebSocket-Version': '7' }), 2000)).toString()
    expect(statusOf(Buffer.from(badVersion))).toBe(400)
    expect(badVersion).toMatch(/\r\nSec-WebSocket-Version: 13, 8\r\n/)
    const client = await connect(`ws://127.0.0.1:${port}/`)
    client.close()
  })

  it("hands a bad request to 'wsClientError' listeners (error, socket, req) instead of answering", async () => {
    const { wss, port } = await attachedServer()
    const seen = new Promise<[Error, IncomingMessage]>((resolve) =>
      wss.once('wsClientError', (err: Error, socket: Duplex, req: IncomingMessage) => {
        socket.end('HTTP/1.1 418 I am a teapot\r\n\r\n')
        resolve([err, req])
      }),
    )
    const response = await rawExchange(port, upgradeRequest('/', { Upgrade: 'h2c' }), 2000)
    expect(statusOf(response)).toBe(418)
    const [err, req] = await seen
    expect(err).toBeInstanceOf(Error)
    expect(req.headers.upgrade).toBe('h2c')
  })
})

describe('noServer mode and handleUpgrade', () => {
  it('handleUpgrade calls back with the WebSocket and the req; shouldHandle follows path; address() throws', async () => {
    const wss = new WebSocketServer({ noServer: true, path: '/ws' })
    expect(() => wss.address()).toThrow(Error)
    const server = http.createServer()
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      if (!wss.shouldHandle(req)) {
        socket.end('HTTP/1.1 404 Not Found\r\n\r\n')
        return
      }
      wss.handleUpgrade(req, socket, head, (ws, request) => wss.emit('connection', ws, request))
    })
    const port = await listenHttp(server)
    cleanups.push(async () => {
      await closeServer(wss)
      await closeHttp(server)
    })
    expect(await refusedWith(`ws://127.0.0.1:${port}/other`)).toBe(404)
    const connection = onConnection(wss)
    const client = await connect(`ws://127.0.0.1:${port}/ws`)
    const [ws, req] = await connection
    expect(ws).toBeInstanceOf(WebSocket)
    expect(req.url).toBe('/ws')
    expect(wss.clients?.has(ws)).toBe(true)
    client.close()
    await waitFor(() => wss.clients?.size === 0)
  })

  it('verifyClient sees the real IncomingMessage in noServer mode', async () => {
    let seen: IncomingMessage | undefined
    const wss = new WebSocketServer({
      noServer: true,
      verifyClient: (info: { req: IncomingMessage }) => {
        seen = info.req
        return info.req.headers['x-token'] === 'ok'
      },
    })
    const server = http.createServer()
    let upgraded: IncomingMessage | undefined
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      upgraded = req
      wss.handleUpgrade(req, socket, head, () => undefined)
    })
    const port = await listenHttp(server)
    cleanups.push(async () => {
      await closeServer(wss)
      await closeHttp(server)
    })
    expect(await refusedWith(`ws://127.0.0.1:${port}/`, { headers: { 'x-token': 'bad' } })).toBe(401)
    expect(seen).toBe(upgraded)
    const client = await connect(`ws://127.0.0.1:${port}/`, { headers: { 'x-token': 'ok' } })
    client.close()
  })

  it("ws's 'multiple servers sharing a single HTTP server' recipe: two noServer servers routed by path", async () => {
    const one = new WebSocketServer({ noServer: true })
    const two = new WebSocketServer({ noServer: true })
    one.on('connection', (ws) => ws.send('one'))
    two.on('connection', (ws) => ws.send('two'))
    const server = http.createServer()
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      const target = req.url === '/one' ? one : req.url === '/two' ? two : undefined
      if (!target) return socket.destroy()
      target.handleUpgrade(req, socket, head, (ws) => target.emit('connection', ws, req))
    })
    const port = await listenHttp(server)
    cleanups.push(async () => {
      await Promise.all([closeServer(one), closeServer(two)])
      await closeHttp(server)
    })
    // The greeting comes right after the upgrade: listen for it before the client opens.
    const greeting = (path: string): Promise<string> =>
      new Promise((resolve) => {
        const c = new WsClient(`ws://127.0.0.1:${port}${path}`)
        c.once('message', (d: Buffer) => {
          resolve(d.toString())
          c.close()
        })
      })
    expect(await Promise.all([greeting('/one'), greeting('/two')])).toEqual(['one', 'two'])
    await waitFor(() => one.clients?.size === 0 && two.clients?.size === 0)
  })

  it('close() in noServer mode with no clients emits close', async () => {
    const wss = new WebSocketServer({ noServer: true, clientTracking: false })
    await new Promise<void>((resolve) => wss.close(() => resolve()))
  })
})
