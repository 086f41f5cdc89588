// Native TLS on the own port (`tls` option): wss:// from the ws client with the test CA, TLS
// versions and ALPN, the options' bad values with their codes, encrypted keys, certificates
// that clients must refuse, plain HTTP and broken handshakes on the TLS port, client
// certificates, and rooms, backpressure and heartbeat over TLS. SNI and certificate renewal are
// in tls-certificates.test.ts; scale, Python and Chromium in tls-clients.test.ts. With
// proxyProtocol and the metrics/health endpoints at the end.
import { execFile } from 'node:child_process'
import { rmSync, writeFileSync } from 'node:fs'
import https from 'node:https'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Duplex } from 'node:stream'
import tls from 'node:tls'
import { describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { WsServer, type UpgradeRequest } from '../lib/index'
import {
  closed,
  closePayload,
  ClusterNode,
  collect,
  connect,
  Redis,
  refusedStatus,
  request,
  SKIP_REDIS,
  echo,
  HAVE_OPENSSL,
  makeCa,
  nextMessage,
  RawPeer,
  sendUntilDropped,
  serverPool,
  thrownBy,
  sleep,
  statusOf,
  suiteCertificates,
  waitFor,
} from '../test-support/index'
import { parseExposition, sample, type Family } from './prometheus'

const suite = suiteCertificates()

const start = serverPool()

function wss(port: number, query = '', options: WebSocket.ClientOptions = {}): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`wss://127.0.0.1:${port}/ws${query}`, { ca: suite.ca.cert, ...options })
    ws.once('open', () => resolve(ws))
    ws.once('error', reject)
  })
}

/** Why a TLS client gives up on the server: its error's code. */
function refusal(port: number, options: tls.ConnectionOptions): Promise<string> {
  return new Promise((resolve) => {
    const sock = tls.connect({ port, host: '127.0.0.1', ...options }, () => {
      sock.destroy()
      resolve('connected')
    })
    sock.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'))
  })
}

/** Opens TCP, sends `data` (optionally), and resolves with what came back and how long until close. */
function rawTcp(port: number, data: Buffer | string | undefined, ms = 5000): Promise<{ bytes: Buffer; elapsed: number }> {
  return new Promise((resolve) => {
    const t0 = Date.now()
    const chunks: Buffer[] = []
    const sock = net.connect(port, '127.0.0.1', () => data !== undefined && sock.write(data))
    const timer = setTimeout(() => sock.destroy(), ms)
    sock.on('data', (d) => chunks.push(d))
    sock.on('error', () => {})
    sock.on('close', () => {
      clearTimeout(timer)
      resolve({ bytes: Buffer.concat(chunks), elapsed: Date.now() - t0 })
    })
  })
}

describe.skipIf(!HAVE_OPENSSL)('the tls option', () => {
  it('echoes text and 1 MB binary over wss:// with the test CA; the server reports TLS 1.3 and ALPN http/1.1', async () => {
    const { port } = await start({ onMessage: echo }, { tls: suite.leaf })
    const ws = await wss(port)
    const socket = (ws as unknown as { _socket: tls.TLSSocket })._socket
    expect(socket.getProtocol()).toBe('TLSv1.3')
    expect(socket.alpnProtocol).toBe(false) // ws offers no ALPN; the server then picks none
    ws.send('over native tls')
    expect(await nextMessage(ws)).toBe('over native tls')
    const big = Buffer.alloc(1_000_000)
    for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff
    ws.send(big)
    expect(await nextMessage(ws, 10_000)).toEqual(big)
    ws.close()
  })

  it('TLS 1.2 works too, and a client offering http/1.1 gets it by ALPN', async () => {
    const { port } = await start({ onMessage: echo }, { tls: suite.leaf })
    const got = await new Promise<{ protocol: string | null; alpn: string | false | null }>((resolve, reject) => {
      const sock = tls.connect({ port, host: '127.0.0.1', ca: suite.ca.cert, maxVersion: 'TLSv1.2', ALPNProtocols: ['h2', 'http/1.1'] }, () => {
        resolve({ protocol: sock.getProtocol(), alpn: sock.alpnProtocol })
        sock.destroy()
      })
      sock.on('error', reject)
    })
    expect(got).toEqual({ protocol: 'TLSv1.2', alpn: 'http/1.1' })
    const ws = await wss(port, '', { maxVersion: 'TLSv1.2' } as WebSocket.ClientOptions)
    ws.send('1.2')
    expect(await nextMessage(ws)).toBe('1.2')
    ws.close()
  })

  it('bad values throw with codes: type errors, garbage PEM, a key that is not the certificate\'s, attach-mode clash', () => {
    expect(thrownBy(() => new WsServer({ tls: 5 as never }))).toEqual(['TypeError', 'ERR_INVALID_OPTION'])
    expect(thrownBy(() => new WsServer({ tls: { cert: suite.leaf.cert } as never }))).toEqual(['TypeError', 'ERR_INVALID_OPTION'])
    expect(thrownBy(() => new WsServer({ tls: { ...suite.leaf, requestCert: true } }))).toEqual(['TypeError', 'ERR_INVALID_OPTION'])
    expect(thrownBy(() => new WsServer({ noServer: true, tls: suite.leaf }))).toEqual(['TypeError', 'ERR_INVALID_OPTION'])
    expect(thrownBy(() => new WsServer({ tls: { cert: 'garbage', key: suite.leaf.key } }))).toEqual(['TypeError', 'ERR_INVALID_CERT'])
    const broken = suite.leaf.cert.replace(/\n[A-Za-z0-9+/]{20}/, '\nAAAAAAAAAAAAAAAAAAAA')
    expect(thrownBy(() => new WsServer({ tls: { cert: broken, key: suite.leaf.key } }))).toEqual(['TypeError', 'ERR_INVALID_CERT'])
    expect(thrownBy(() => new WsServer({ tls: { cert: suite.leaf.cert, key: 'garbage' } }))).toEqual(['TypeError', 'ERR_INVALID_KEY'])
    const other = suite.ca.leaf('other')
    expect(thrownBy(() => new WsServer({ tls: { cert: suite.leaf.cert, key: other.key } }))).toEqual(['TypeError', 'ERR_INVALID_KEY'])
    expect(thrownBy(() => new WsServer({ tls: { ...suite.leaf, serverNames: { 'bad name': suite.leaf } } }))).toEqual(['TypeError', 'ERR_INVALID_CERT'])
    const plain = new WsServer()
    expect(thrownBy(() => plain.setSecureContext(suite.leaf))).toEqual(['Error', 'ERR_NO_TLS'])
    expect(thrownBy(() => plain.removeServerName('a.example'))).toEqual(['Error', 'ERR_NO_TLS'])
    void plain.close()
  })

  it('PEM as Buffers; an encrypted key needs its passphrase (ERR_BAD_PASSPHRASE without or with a wrong one)', async () => {
    const enc = suite.ca.encrypted('s3cret')
    const code = (passphrase?: string): unknown => {
      try {
        new WsServer({ tls: { cert: enc.cert, key: enc.key, ...(passphrase === undefined ? {} : { passphrase }) } })
      } catch (e) {
        return (e as { code?: string }).code
      }
      return 'ok'
    }
    expect(code()).toBe('ERR_BAD_PASSPHRASE')
    expect(code('wrong')).toBe('ERR_BAD_PASSPHRASE')
    const { port } = await start({ onMessage: echo }, { tls: { cert: Buffer.from(enc.cert), key: Buffer.from(enc.key), passphrase: 's3cret' } })
    const ws = await wss(port)
    ws.send('decrypted')
    expect(await nextMessage(ws)).toBe('decrypted')
    ws.close()
  })

  it('clients refuse an expired certificate and one for another name; the server keeps serving', async () => {
    const expired = suite.ca.leaf('localhost', ['localhost'], { days: -1 })
    const a = await start({ onMessage: echo }, { tls: expired })
    expect(await refusal(a.port, { ca: suite.ca.cert, servername: 'localhost' })).toBe('CERT_HAS_EXPIRED')
    const elsewhere = suite.ca.leaf('elsewhere.example', ['elsewhere.example'])
    const b = await start({ onMessage: echo }, { tls: elsewhere })
    expect(await refusal(b.port, { ca: suite.ca.cert, servername: 'localhost' })).toBe('ERR_TLS_CERT_ALTNAME_INVALID')
    expect(await refusal(b.port, { servername: 'elsewhere.example' })).toBe('UNABLE_TO_VERIFY_LEAF_SIGNATURE')
    const ws = await wss(b.port, '', { servername: 'elsewhere.example', checkServerIdentity: () => undefined } as unknown as WebSocket.ClientOptions)
    ws.send('still up')
    expect(await nextMessage(ws)).toBe('still up')
    ws.close()
  })

  it('a plain HTTP request on the TLS port gets a plaintext 400 and is closed', async () => {
    const { port } = await start({ onMessage: echo }, { tls: suite.leaf })
    const { bytes } = await rawTcp(port, 'GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n')
    expect(statusOf(bytes)).toBe(400)
  })

  it('a truncated ClientHello, garbage, and a stalled handshake are dropped (within handshakeTimeout); the port still works', async () => {
    const { port } = await start({ onMessage: echo }, { tls: suite.leaf, handshakeTimeout: 400 })
    // The start of a TLS 1.2 ClientHello record announcing 512 bytes, then nothing.
    const truncated = Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03])
    const held = await rawTcp(port, truncated)
    expect(held.bytes.length).toBe(0)
    expect(held.elapsed).toBeGreaterThanOrEqual(350)
    expect(held.elapsed).toBeLessThan(3000)
    // A record that is not TLS at all: an alert or nothing, then the close.
    const garbage = await rawTcp(port, Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5]))
    expect(garbage.elapsed).toBeLessThan(3000)
    // Connected and silent: dropped at the timeout.
    const silent = await rawTcp(port, undefined)
    expect(silent.elapsed).toBeGreaterThanOrEqual(350)
    expect(silent.elapsed).toBeLessThan(3000)
    const ws = await wss(port)
    ws.send('fine')
    expect(await nextMessage(ws)).toBe('fine')
    ws.close()
  })

  it('slowloris over TLS: a request head dribbled in after the handshake is cut at handshakeTimeout', async () => {
    const { port } = await start({ onMessage: echo }, { tls: suite.leaf, handshakeTimeout: 600 })
    const t0 = Date.now()
    const endedAfter = await new Promise<number>((resolve) => {
      const sock = tls.connect({ port, host: '127.0.0.1', ca: suite.ca.cert }, () => {
        const head = 'GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n'
        let i = 0
        const timer = setInterval(() => {
          if (i < head.length && !sock.destroyed) sock.write(head[i++]!)
        }, 50)
        sock.on('close', () => {
          clearInterval(timer)
          resolve(Date.now() - t0)
        })
      })
      sock.on('error', () => {})
    })
    expect(endedAfter).toBeGreaterThanOrEqual(550)
    expect(endedAfter).toBeLessThan(4000)
  })

  it('client certificates: requestCert with ca; onUpgrade sees the subject; a client without one is refused', async () => {
    const clientCa = makeCa('client CA')
    try {
      const alice = clientCa.leaf('alice', [], { client: true })
      const seen: UpgradeRequest[] = []
      const { port } = await start(
        { onUpgrade: (req) => void seen.push(req), onMessage: echo },
        { tls: { ...suite.leaf, ca: clientCa.cert, requestCert: true } },
      )
      const ws = await wss(port, '', { cert: alice.cert, key: alice.key })
      ws.send('mutual')
      expect(await nextMessage(ws)).toBe('mutual')
      expect(seen[0]?.peerCertificate?.subject).toEqual({ CN: 'alice', O: 'rnode tests' })
      expect(seen[0]?.peerCertificate?.issuer.CN).toBe('client CA')
      expect(seen[0]?.peerCertificate?.fingerprint256).toBe(alice.fingerprint256)
      ws.close()
      // No certificate: the handshake fails (TLS 1.3 reports it on the first read).
      const refused = await new Promise<string>((resolve) => {
        const bare = new WebSocket(`wss://127.0.0.1:${port}/ws`, { ca: suite.ca.cert })
        bare.on('open', () => resolve('open'))
        bare.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message))
      })
      expect(refused).not.toBe('open')
      // A certificate from another CA: refused too.
      const mallory = suite.ca.leaf('mallory', [], { client: true })
      const wrong = await new Promise<string>((resolve) => {
        const c = new WebSocket(`wss://127.0.0.1:${port}/ws`, { ca: suite.ca.cert, cert: mallory.cert, key: mallory.key })
        c.on('open', () => resolve('open'))
        c.on('error', () => resolve('refused'))
      })
      expect(wrong).toBe('refused')
      expect(seen).toHaveLength(1)
      // Without requestCert there is no peerCertificate.
      const plain = await start({ onUpgrade: (req) => void seen.push(req), onMessage: echo }, { tls: suite.leaf })
      const ws2 = await wss(plain.port)
      expect(seen[1]?.peerCertificate).toBeUndefined()
      ws2.close()
    } finally {
      clientCa.dispose()
    }
  })
})

describe.skipIf(!HAVE_OPENSSL)('the rest of the engine over TLS', () => {
  it('rooms: join over the wire, broadcast and room messages reach every member', async () => {
    const { server, port } = await start({ onMessage: echo }, { tls: suite.leaf })
    const members = await Promise.all([0, 1, 2].map((i) => wss(port, `?clientId=m${i}`)))
    for (const ws of members) {
      ws.send(JSON.stringify({ type: 'join_room', room_id: 'tls-room' }))
      expect(JSON.parse(String(await nextMessage(ws)))).toEqual({ type: 'room_joined', room_id: 'tls-room' })
    }
    const got = Promise.all(members.map((ws) => nextMessage(ws)))
    expect(server.broadcast('room news', { room: 'tls-room' })).toBe(3)
    expect(await got).toEqual(['room news', 'room news', 'room news'])
    for (const ws of members) ws.close()
  })

  it('corked fan-out: 50 broadcasts from one handler to 40 TLS members arrive whole and in order', async () => {
    let srv: WsServer | undefined
    const { server, port } = await start({
      onMessage: (_s, m) => {
        if (m !== 'go') return
        for (let i = 0; i < 50; i++) srv!.broadcast(`n${i}:${'x'.repeat(i * 40)}`, { room: 'fan' })
      },
      onConnect: (s) => void s.joinRoom('fan'),
    }, { tls: suite.leaf })
    srv = server
    const members = await Promise.all(Array.from({ length: 40 }, (_, i) => wss(port, `?clientId=f${i}`)))
    // Everything but the room_joined notice of the onConnect join, whenever that arrived.
    const got = members.map((ws) => {
      const list: string[] = []
      ws.on('message', (d) => void (String(d).startsWith('n') && list.push(String(d))))
      return list
    })
    await waitFor(() => server.getRoom('fan')?.connectionsCount === 40)
    members[0]!.send('go')
    const expected = Array.from({ length: 50 }, (_, i) => `n${i}:${'x'.repeat(i * 40)}`).join('|')
    await waitFor(() => got.every((list) => list.length >= 50), 10_000, '50 broadcasts at every member')
    for (const list of got) expect(list.join('|') === expected).toBe(true)
    for (const ws of members) ws.close()
  })

  it('backpressure: sends to a TLS client that stops reading are buffered, then dropped, then closed 1008', async () => {
    const closes = new Map<string, number>()
    const { server, port } = await start({ onClose: (s, code) => void closes.set(s.clientId, code) }, { tls: suite.leaf, maxBackpressure: 256 * 1024 })
    const ws = await wss(port, '?clientId=slow')
    ws.on('error', () => {})
    await waitFor(() => server.getConnections().some((s) => s.clientId === 'slow'))
    const socket = server.getConnections().find((s) => s.clientId === 'slow')!
    ;(ws as unknown as { _socket: net.Socket })._socket.pause()
    const statuses = await sendUntilDropped(socket)
    expect(statuses).toContain('buffered')
    expect(statuses.at(-1)).toBe('dropped')
    await waitFor(() => closes.has('slow'), 10_000, 'slow reader closed')
    expect(closes.get('slow')).toBe(1008)
    ws.terminate()
  })

  it('heartbeat: server pings reach a TLS client and its pongs keep it open past idleTimeout', async () => {
    const { port } = await start({ onMessage: echo }, { tls: suite.leaf, pingInterval: 100, idleTimeout: 600 })
    const ws = await wss(port)
    let pings = 0
    ws.on('ping', () => pings++)
    await sleep(1000)
    expect(pings).toBeGreaterThanOrEqual(3)
    ws.send('alive')
    expect(await nextMessage(ws)).toBe('alive')
    ws.close()
  })

  it('close codes both ways over TLS', async () => {
    const closes: Array<[number, string]> = []
    const { port } = await start({
      onMessage: (s, m) => (m === 'close me' ? s.close(4002, 'tls bye') : void s.send(m)),
      onClose: (_s, code, reason) => void closes.push([code, reason]),
    }, { tls: suite.leaf })
    const a = await wss(port)
    const aClosed = closed(a)
    a.close(4001, 'client bye')
    expect((await aClosed).code).toBe(4001)
    await waitFor(() => closes.length === 1)
    expect(closes[0]).toEqual([4001, 'client bye'])
    const b = await wss(port)
    const bClosed = closed(b)
    b.send('close me')
    expect(await bClosed).toEqual({ code: 4002, reason: 'tls bye' })
  })

  it('hardening over TLS: bad frames get the same close codes as over TCP, and onClose reports them', async () => {
    const closes = new Map<string, number>()
    const { port } = await start({ onMessage: echo, onClose: (s, code) => void closes.set(s.clientId, code) }, { tls: suite.leaf, maxPayload: 1024 })
    const cases: Array<[string, Parameters<RawPeer['send']>[0], number]> = [
      ['unmasked', { opcode: 0x1, payload: 'x', mask: false }, 1002],
      ['rsv2', { opcode: 0x1, payload: 'x', rsv: 0x2 }, 1002],
      ['badutf8', { opcode: 0x1, payload: Buffer.from([0xc3, 0x28]) }, 1007],
      ['toobig', { opcode: 0x2, payload: Buffer.alloc(2000) }, 1009],
      ['badopcode', { opcode: 0x3, payload: 'x' }, 1002],
      ['bigping', { opcode: 0x9, payload: Buffer.alloc(126) }, 1002],
      ['badclose', { opcode: 0x8, payload: closePayload(1005) }, 1002],
    ]
    for (const [id, frame, code] of cases) {
      const peer = await RawPeer.connect(port, `/ws?clientId=${id}`, { ca: suite.ca.cert, servername: 'localhost' })
      peer.send(frame)
      expect(await peer.closeCode(), id).toBe(code)
      await peer.waitEnd()
      await waitFor(() => closes.has(id), 3000, `onClose ${id}`)
      expect(closes.get(id), id).toBe(code)
    }
  })
})

/**
 * A TLS transport behind a PROXY v1 `header`: with `together` the header and the ClientHello
 * leave in one TCP write (the engine reads both at once), else the ClientHello follows later.
 */
function behindProxy(port: number, header: string, together: boolean): Duplex {
  const tcp = net.connect(port, '127.0.0.1')
  if (!together) tcp.write(header)
  let first = true
  const transport = new Duplex({
    read() {},
    write(chunk: Buffer, _encoding, done) {
      if (!first) return void tcp.write(chunk, done)
      first = false
      if (together) return void tcp.write(Buffer.concat([Buffer.from(header), chunk]), done)
      setTimeout(() => tcp.write(chunk, done), 100)
    },
    final(done) {
      tcp.end()
      done()
    },
  })
  tcp.on('data', (d) => transport.push(d))
  tcp.on('end', () => transport.push(null))
  tcp.on('error', (e) => transport.destroy(e))
  transport.on('close', () => tcp.destroy())
  return transport
}

/** GET over https with the suite CA: status and body. */
function httpsGet(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get({ host: '127.0.0.1', port, path, ca: suite.ca.cert, servername: 'localhost' }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => (body += d))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('error', reject)
  })
}

describe.skipIf(!HAVE_OPENSSL)('tls with proxyProtocol and the endpoints', () => {
  it('the TLS handshake follows the PROXY header, in the same write or later; the header names the client', async () => {
    const seen: string[] = []
    const { port } = await start(
      { onMessage: echo, onUpgrade: (req: UpgradeRequest) => void seen.push(req.remoteAddress) },
      { tls: suite.leaf, proxyProtocol: true },
    )
    for (const [address, together] of [['198.51.100.7', true], ['198.51.100.8', false]] as const) {
      const socket = behindProxy(port, `PROXY TCP4 ${address} 127.0.0.1 5555 443\r\n`, together)
      const peer = await RawPeer.connect(port, '/ws', { ca: suite.ca.cert, servername: 'localhost', socket })
      peer.send({ opcode: 0x1, payload: `via ${address}` })
      const frame = await peer.nextFrame()
      expect(frame?.payload.toString()).toBe(`via ${address}`)
      peer.socket.destroy()
    }
    expect(seen).toEqual(['198.51.100.7', '198.51.100.8'])
  })

  it('without the PROXY header, a TLS client is dropped and counted', async () => {
    const { port, server } = await start({ onMessage: echo }, { tls: suite.leaf, proxyProtocol: true })
    expect(await refusal(port, { ca: suite.ca.cert, servername: 'localhost' })).toBe('ECONNRESET')
    await waitFor(() => /reason="proxy_protocol_invalid"\} 1/.test(server.metrics()))
  })

  it('metricsPath and healthPath answer over TLS; a WebSocket upgrade on the same port still works', async () => {
    const { port } = await start({ onMessage: echo }, { tls: suite.leaf, metricsPath: '/metrics', healthPath: '/health' })
    const ws = await wss(port)
    const metrics = await httpsGet(port, '/metrics')
    expect(metrics.status).toBe(200)
    expect(metrics.body).toMatch(/rnode_ws_connections_accepted_total 1/)
    const health = await httpsGet(port, '/health')
    expect(health.status).toBe(200)
    ws.close()
  })
})

/** Runs `openssl s_client` against the port (no input); resolves with what it printed on stderr. */
function opensslClient(port: number, args: string[]): Promise<string> {
  return new Promise((resolve) => {
    const child = execFile('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'localhost', ...args], { timeout: 5000 }, (_e, _out, err) =>
      resolve(String(err)),
    )
    child.stdin?.end()
  })
}

/** A real ClientHello, as Node's TLS client sends it first (caught by a TCP server that answers nothing). */
async function realClientHello(): Promise<Buffer> {
  const catcher = net.createServer()
  await new Promise<void>((r) => catcher.listen(0, '127.0.0.1', r))
  const hello = new Promise<Buffer>((resolve) => catcher.once('connection', (s) => s.once('data', (d: Buffer) => resolve(d))))
  const client = tls.connect({ port: (catcher.address() as net.AddressInfo).port, host: '127.0.0.1', servername: 'localhost' })
  client.on('error', () => {})
  const bytes = await hello
  client.destroy()
  catcher.close()
  return bytes
}

describe.skipIf(!HAVE_OPENSSL)('TLS handshakes in the metrics; maxConnections before the handshake', () => {
  type Families = Record<string, Family>
  const failures = (f: Families): Record<string, number> =>
    Object.fromEntries(f['rnode_ws_tls_handshake_failures']!.samples.map(([, l, v]) => [l['reason']!, Number(v)]))
  const handshakes = (f: Families): number => sample(f, 'rnode_ws_tls_handshakes', 'rnode_ws_tls_handshakes_total')
  const droppedFull = (f: Families): number =>
    sample(f, 'rnode_ws_connections_dropped', 'rnode_ws_connections_dropped_total', { reason: 'max_connections' })

  it('failed handshakes are counted by reason: timeout, closed, not TLS, plain HTTP, protocol error, alert, incompatible', async () => {
    const { port, server } = await start({ onMessage: echo }, { tls: suite.leaf, handshakeTimeout: 400 })
    const start0 = parseExposition(server.metrics())
    expect(handshakes(start0)).toBe(0)
    expect(Object.values(failures(start0)).every((n) => n === 0)).toBe(true)
    // The start of a ClientHello record announcing 512 bytes: held open, then closed by us.
    const truncated = Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03])
    await rawTcp(port, truncated)
    // The same, and the client closes first.
    await new Promise<void>((resolve) => {
      const sock = net.connect(port, '127.0.0.1', () => sock.end(truncated))
      sock.on('error', () => {})
      sock.on('close', () => resolve())
      sock.resume()
    })
    await rawTcp(port, Buffer.from([0x00, 0x01, 0x02, 0x03]))
    await rawTcp(port, 'GET /ws HTTP/1.1\r\nHost: x\r\n\r\n')
    // A handshake record that holds no ClientHello.
    await rawTcp(port, Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5]))
    // A client that does not trust our certificate: OpenSSL's ends the handshake with an alert
    // (unknown CA); Node's checks the certificate afterwards and just closes.
    const unrelated = makeCa('unrelated CA')
    const caFile = join(tmpdir(), `rnode-unrelated-ca-${process.pid}.pem`)
    writeFileSync(caFile, unrelated.cert)
    const s = await opensslClient(port, ['-verify_return_error', '-CAfile', caFile])
    rmSync(caFile)
    unrelated.dispose()
    expect(s).toMatch(/verify/i)
    expect(await refusal(port, { servername: 'localhost' })).toBe('UNABLE_TO_VERIFY_LEAF_SIGNATURE')
    // A client that offers TLS 1.1 at most: nothing in common.
    const old = await refusal(port, { ca: suite.ca.cert, servername: 'localhost', minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' })
    expect(old).not.toBe('connected')
    const ws = await wss(port)
    ws.send('fine')
    expect(await nextMessage(ws)).toBe('fine')
    ws.close()
    await waitFor(() => Object.values(failures(parseExposition(server.metrics()))).reduce((a, b) => a + b, 0) === 8, 3000, 'failures')
    const f = parseExposition(server.metrics())
    expect(failures(f)).toEqual({
      timeout: 1,
      closed: 2,
      plain_http: 1,
      not_tls: 1,
      protocol_error: 1,
      incompatible: 1,
      alert: 1,
      client_certificate: 0,
      other: 0,
    })
    expect(handshakes(f)).toBe(1)
  })

  it('requestCert: a client without a certificate is counted as client_certificate', async () => {
    const { port, server } = await start({}, { tls: { ...suite.leaf, ca: suite.ca.cert, requestCert: true } })
    // TLS 1.3: the client's side is done before the server's verdict arrives, as an alert.
    const got = await new Promise<string>((resolve) => {
      const sock = tls.connect({ port, host: '127.0.0.1', ca: suite.ca.cert, servername: 'localhost' })
      sock.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'))
      sock.on('close', () => resolve('closed'))
      sock.resume()
    })
    expect(got).toBe('ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED')
    await waitFor(() => failures(parseExposition(server.metrics()))['client_certificate'] === 1, 3000, 'counted')
    expect(handshakes(parseExposition(server.metrics()))).toBe(0)
  })

  it('at maxConnections a TLS client gets an internal_error alert and no ServerHello; no handshake is done; a slot frees', async () => {
    const { port, server } = await start({ onMessage: echo }, { tls: suite.leaf, maxConnections: 1 })
    const first = await wss(port)
    await waitFor(() => server.getStats().totalConnections === 1)
    // TLS clients are refused with the alert, before any certificate (ws reports it as EPROTO).
    expect(await refusal(port, { ca: suite.ca.cert, servername: 'localhost' })).toBe('ERR_SSL_TLSV1_ALERT_INTERNAL_ERROR')
    const refused = await new Promise<string>((resolve) => {
      const ws = new WebSocket(`wss://127.0.0.1:${port}/ws`, { ca: suite.ca.cert })
      ws.once('open', () => resolve('open'))
      ws.once('error', (e) => resolve(e.message))
    })
    expect(refused).toMatch(/alert internal error/)
    // A raw client sending a real ClientHello reads the alert record, and nothing else.
    const { bytes } = await rawTcp(port, await realClientHello())
    expect([...bytes]).toEqual([21, 3, 3, 0, 2, 2, 80])
    let f = parseExposition(server.metrics())
    expect(droppedFull(f)).toBe(3)
    expect(handshakes(f)).toBe(1)
    expect(Object.values(failures(f)).every((n) => n === 0)).toBe(true)
    // Not an HTTP refusal: no request was read.
    expect(f['rnode_ws_connections_refused']!.samples).toEqual([])
    first.close()
    await waitFor(() => server.getStats().totalConnections === 0)
    const next = await wss(port)
    next.send('room again')
    expect(await nextMessage(next)).toBe('room again')
    next.close()
    f = parseExposition(server.metrics())
    expect(handshakes(f)).toBe(2)
  })

  it('at maxConnections with metricsPath the handshake is done: the endpoints answer, upgrades get 503 as over TCP', async () => {
    const { port, server } = await start({ onMessage: echo }, { tls: suite.leaf, maxConnections: 1, metricsPath: '/metrics' })
    const first = await wss(port)
    await waitFor(() => server.getStats().totalConnections === 1)
    const metrics = await httpsGet(port, '/metrics')
    expect(metrics.status).toBe(200)
    const status = await new Promise<number>((resolve) => {
      const ws = new WebSocket(`wss://127.0.0.1:${port}/ws`, { ca: suite.ca.cert })
      ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0))
      ws.once('open', () => resolve(101))
      ws.once('error', () => resolve(0))
    })
    expect(status).toBe(503)
    const f = parseExposition(server.metrics())
    expect(droppedFull(f)).toBe(0)
    expect(sample(f, 'rnode_ws_connections_refused', 'rnode_ws_connections_refused_total', { status: '503' })).toBe(1)
    first.close()
  })

  it('no TLS families without tls', async () => {
    const { server } = await start()
    expect(Object.keys(parseExposition(server.metrics())).filter((n) => n.includes('tls'))).toEqual([])
  })
})

describe.skipIf(!HAVE_OPENSSL || SKIP_REDIS)('cluster over TLS', () => {
  it('two nodes serving wss:// share a private Redis: room messages and broadcasts cross nodes', async () => {
    const redis = await Redis.start()
    const env = { TLS_CERT: suite.leaf.cert, TLS_KEY: suite.leaf.key }
    const nodes = await Promise.all([0, 1].map(() => ClusterNode.start(redis.url, `tls${process.pid}`, env)))
    try {
      const [na, nb] = nodes as [ClusterNode, ClusterNode]
      const url = (n: ClusterNode, id: string): string => `wss://127.0.0.1:${n.port}/ws?clientId=${id}`
      // The node's port speaks TLS only.
      expect(await refusedStatus(`ws://127.0.0.1:${na.port}/ws`)).toBe(400)
      const a = await connect(url(na, 'a'), { ca: suite.ca.cert })
      const b = await connect(url(nb, 'b'), { ca: suite.ca.cert })
      const outsider = await connect(url(nb, 'outsider'), { ca: suite.ca.cert })
      for (const ws of [a, b]) expect((await request(ws, { type: 'join_room', room_id: 'secure' })).type).toBe('room_joined')
      const [gotA, gotB, gotOut] = [a, b, outsider].map(collect) as [Array<string | Buffer>, Array<string | Buffer>, Array<string | Buffer>]
      // A client's room messages on node A reach the member on node B, in order.
      for (let i = 0; i < 50; i++) a.send(JSON.stringify({ type: 'room_message', room_id: 'secure', message: i }))
      await waitFor(() => gotB.length === 50, 10_000, 'room messages on node B')
      expect(gotB.map((m) => (JSON.parse(m as string) as { message: number }).message)).toEqual(Array.from({ length: 50 }, (_, i) => i))
      expect((JSON.parse(gotB[0] as string) as { from_client_id: string }).from_client_id).toBe('a')
      // A broadcast to everyone from node A reaches every client of node B (and node A's own).
      await na.call('broadcast', { message: 'to everyone' })
      await waitFor(() => gotA.length === 1 && gotB.length === 51 && gotOut.length === 1, 5000, 'broadcast')
      expect([gotA[0], gotB[50], gotOut[0]]).toEqual(['to everyone', 'to everyone', 'to everyone'])
      // A 100 KB binary room broadcast from node B arrives byte-exact on node A (many TLS records).
      const payload = Buffer.from(Array.from({ length: 100_000 }, (_, i) => (i * 31) & 0xff))
      await nb.call('broadcast', { message: payload.toString('base64'), binary: true, room: 'secure' })
      await waitFor(() => gotA.length === 2 && gotB.length === 52, 5000, 'binary room broadcast')
      for (const m of [gotA[1], gotB[51]]) expect(Buffer.isBuffer(m) && m.equals(payload)).toBe(true)
      expect(gotOut.length).toBe(1)
      for (const ws of [a, b, outsider]) ws.close()
    } finally {
      for (const n of nodes) n.kill()
      await redis.stop()
    }
  }, 30_000)
})
