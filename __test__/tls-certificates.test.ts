// Which certificate a TLS handshake gets: SNI names from `tls.serverNames` and
// `addServerName()`/`removeServerName()`, and certificate renewal with `setSecureContext()`
// while connections stay open. Each check reads the certificate the client was shown.
import tls from 'node:tls'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { HAVE_OPENSSL, makeCa, nextMessage, serverPool, thrownBy, type Leaf, type TestCa } from '../test-support/index'

let ca: TestCa
let main: Leaf
let a: Leaf
let b: Leaf
let wild: Leaf
beforeAll(() => {
  if (!HAVE_OPENSSL) return
  ca = makeCa()
  main = ca.leaf('main.example', ['main.example', 'localhost'])
  a = ca.leaf('a.example', ['a.example'])
  b = ca.leaf('b.example', ['b.example'])
  wild = ca.leaf('wild.example', ['*.wild.example'])
})
afterAll(() => ca?.dispose())

const start = serverPool()

/** The fingerprint and CN of the certificate the server shows a client naming `servername`. */
function shown(port: number, servername?: string): Promise<{ cn: string; fingerprint256: string }> {
  return new Promise((resolve, reject) => {
    const options: tls.ConnectionOptions = { port, host: '127.0.0.1', ca: ca.cert, checkServerIdentity: () => undefined }
    if (servername !== undefined) options.servername = servername
    const sock = tls.connect(options, () => {
      const peer = sock.getPeerCertificate()
      resolve({ cn: String(peer.subject.CN), fingerprint256: peer.fingerprint256 })
      sock.destroy()
    })
    sock.on('error', reject)
  })
}

function wss(port: number, servername = 'localhost'): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`wss://127.0.0.1:${port}/ws`, { ca: ca.cert, servername } as WebSocket.ClientOptions & tls.ConnectionOptions)
    ws.once('open', () => resolve(ws))
    ws.once('error', reject)
  })
}

const echo = { onMessage: (s: { send: (m: string | Buffer) => unknown }, m: string | Buffer) => void s.send(m) }

describe.skipIf(!HAVE_OPENSSL)('SNI', () => {
  it('serverNames pick the certificate by name (case-insensitive, one-label wildcards); others get the default', async () => {
    const { port } = await start(echo, { tls: { ...main, serverNames: { 'a.example': a, 'B.Example': b, '*.wild.example': wild } } })
    expect((await shown(port, 'a.example')).fingerprint256).toBe(a.fingerprint256)
    expect((await shown(port, 'b.example')).cn).toBe('b.example')
    expect((await shown(port, 'A.EXAMPLE')).cn).toBe('a.example')
    expect((await shown(port, 'x.wild.example')).fingerprint256).toBe(wild.fingerprint256)
    expect((await shown(port, 'y.x.wild.example')).cn).toBe('main.example')
    expect((await shown(port, 'unknown.example')).cn).toBe('main.example')
    expect((await shown(port)).cn).toBe('main.example')
    // A whole WebSocket session on a named certificate, verified against its name.
    const ws = await wss(port, 'a.example')
    ws.send('sni')
    expect(await nextMessage(ws)).toBe('sni')
    ws.close()
  })

  it('addServerName and removeServerName change what new handshakes get; bad input throws with a code', async () => {
    const { server, port } = await start(echo, { tls: main })
    expect((await shown(port, 'a.example')).cn).toBe('main.example')
    server.addServerName('a.example', a)
    expect((await shown(port, 'a.example')).cn).toBe('a.example')
    server.addServerName('a.example', b)
    expect((await shown(port, 'a.example')).cn).toBe('b.example')
    expect(server.removeServerName('a.example')).toBe(true)
    expect(server.removeServerName('a.example')).toBe(false)
    expect((await shown(port, 'a.example')).cn).toBe('main.example')
    expect(thrownBy(() => server.addServerName('', a))).toEqual(['TypeError', 'ERR_INVALID_ARG'])
    expect(thrownBy(() => server.addServerName('a.example', { cert: 5 } as never))).toEqual(['TypeError', 'ERR_INVALID_ARG'])
    expect(thrownBy(() => server.addServerName('a b', a))).toEqual(['TypeError', 'ERR_INVALID_CERT'])
    expect(thrownBy(() => server.addServerName('a.example', { cert: a.cert, key: b.key }))).toEqual(['TypeError', 'ERR_INVALID_KEY'])
    expect((await shown(port, 'a.example')).cn).toBe('main.example')
  })
})

describe.skipIf(!HAVE_OPENSSL)('setSecureContext', () => {
  it('renews the certificate while 100 connections stay open; new handshakes get the new one at once', async () => {
    const { server, port } = await start(echo, { tls: main })
    const open = await Promise.all(Array.from({ length: 100 }, () => wss(port)))
    expect((await shown(port)).fingerprint256).toBe(main.fingerprint256)
    const renewed = ca.leaf('renewed.example', ['localhost'])
    server.setSecureContext(renewed)
    expect((await shown(port)).fingerprint256).toBe(renewed.fingerprint256)
    const fresh = await wss(port)
    fresh.send('new cert')
    expect(await nextMessage(fresh)).toBe('new cert')
    // Every old connection is still up and echoes.
    const echoes = open.map((ws, i) => {
      ws.send(`old ${i}`)
      return nextMessage(ws)
    })
    expect(await Promise.all(echoes)).toEqual(open.map((_, i) => `old ${i}`))
    for (const ws of [...open, fresh]) ws.close()
  })

  it('a bad certificate or key throws a TypeError with its code and the old certificate stays in force', async () => {
    const { server, port } = await start(echo, { tls: main })
    expect(thrownBy(() => server.setSecureContext({ cert: 'garbage', key: a.key }))).toEqual(['TypeError', 'ERR_INVALID_CERT'])
    expect(thrownBy(() => server.setSecureContext({ cert: a.cert, key: 'garbage' }))).toEqual(['TypeError', 'ERR_INVALID_KEY'])
    expect(thrownBy(() => server.setSecureContext({ cert: a.cert, key: b.key }))).toEqual(['TypeError', 'ERR_INVALID_KEY'])
    expect(thrownBy(() => server.setSecureContext(undefined as never))).toEqual(['TypeError', 'ERR_INVALID_ARG'])
    const enc = ca.encrypted('pw')
    expect(thrownBy(() => server.setSecureContext({ cert: enc.cert, key: enc.key }))).toEqual(['TypeError', 'ERR_BAD_PASSPHRASE'])
    expect((await shown(port)).fingerprint256).toBe(main.fingerprint256)
    server.setSecureContext({ ...enc, passphrase: 'pw' })
    expect((await shown(port)).cn).toBe('encrypted')
  })
})
