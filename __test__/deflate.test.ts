// permessage-deflate (docs/deflate.md): negotiation with real clients (ws, Python websockets,
// Chromium) and raw offers, every option's default, custom and bad value, per-path settings,
// context takeover over many messages, broadcasts to members with and without the extension,
// and the inflate bomb (docs/hardening.md rows 13, 34 and 35).
import { execFile } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import net from 'node:net'
import tls from 'node:tls'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import zlib from 'node:zlib'
import { chromium } from 'playwright-core'
import { describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { WsServer, type PerMessageDeflateOptions } from '../lib/index'
import {
  closed,
  connect,
  echo,
  HAVE_OPENSSL,
  isRoomJoined,
  messages,
  nextMessage,
  serverPool,
  suiteCertificates,
  waitFor,
} from '../test-support/index'

const server = serverPool()
// Child processes run without blocking this process: the server under test lives in it.
const run = promisify(execFile)
const TAIL = Buffer.from([0, 0, 0xff, 0xff])

/** A JSON text of about `n` bytes that compresses well. */
function json(n: number, seed = 0): string {
  const items: string[] = []
  let i = 0
  while (items.join(',').length < n) items.push(`{"id":${seed * 100000 + i++},"user":"alice","status":"online"}`)
  return `[${items.join(',')}]`.slice(0, n - 1) + ']'
}

interface Frame {
  first: number
  payload: Buffer
}

/** A raw client: sends an upgrade with this `Sec-WebSocket-Extensions` value, then frames. */
class RawClient {
  socket!: net.Socket
  answer: string | undefined
  #buf = Buffer.alloc(0)
  frames: Frame[] = []
  ended = false

  /** `ca`: connect over TLS, trusting this CA. */
  static async open(port: number, extensions: string | null, path = '/ws', ca?: string): Promise<RawClient> {
    const c = new RawClient()
    await new Promise<void>((resolve, reject) => {
      const socket = ca === undefined ? net.connect(port, '127.0.0.1') : tls.connect({ port, host: '127.0.0.1', ca })
      c.socket = socket
      let head: Buffer | null = Buffer.alloc(0)
      socket.on('error', () => {})
      socket.on('close', () => {
        c.ended = true
        reject(new Error('closed before the upgrade'))
      })
      socket.on('data', (d: Buffer) => {
        if (head === null) return c.#feed(d)
        head = Buffer.concat([head, d])
        const end = head.indexOf('\r\n\r\n')
        if (end < 0) return
        const text = head.subarray(0, end).toString('latin1')
        if (!text.startsWith('HTTP/1.1 101')) return reject(new Error(text.split('\r\n')[0]))
        const line = text.split('\r\n').find((l) => l.toLowerCase().startsWith('sec-websocket-extensions:'))
        c.answer = line?.slice(line.indexOf(':') + 1).trim()
        const rest = head.subarray(end + 4)
        head = null
        c.#feed(rest)
        resolve()
      })
      const ext = extensions === null ? '' : `Sec-WebSocket-Extensions: ${extensions}\r\n`
      socket.write(
        `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n${ext}\r\n`,
      )
    })
    return c
  }

  #feed(d: Buffer): void {
    this.#buf = Buffer.concat([this.#buf, d])
    for (;;) {
      if (this.#buf.length < 2) return
      let len = this.#buf[1]! & 0x7f
      let off = 2
      if (len === 126) {
        if (this.#buf.length < 4) return
        len = this.#buf.readUInt16BE(2)
        off = 4
      } else if (len === 127) {
        if (this.#buf.length < 10) return
        len = Number(this.#buf.readBigUInt64BE(2))
        off = 10
      }
      if (this.#buf.length < off + len) return
      this.frames.push({ first: this.#buf[0]!, payload: this.#buf.subarray(off, off + len) })
      this.#buf = this.#buf.subarray(off + len)
    }
  }

  /** Sends one masked frame; `rsv1` marks it compressed. */
  send(opcode: number, payload: Buffer, rsv1 = false): void {
    const head: number[] = [0x80 | (rsv1 ? 0x40 : 0) | opcode]
    let ext = Buffer.alloc(0)
    if (payload.length < 126) head.push(0x80 | payload.length)
    else if (payload.length < 65536) {
      head.push(0x80 | 126)
      ext = Buffer.alloc(2)
      ext.writeUInt16BE(payload.length)
    } else {
      head.push(0x80 | 127)
      ext = Buffer.alloc(8)
      ext.writeBigUInt64BE(BigInt(payload.length))
    }
    const key = randomBytes(4)
    const masked = Buffer.from(payload)
    for (let i = 0; i < masked.length; i++) masked[i] = masked[i]! ^ key[i & 3]!
    this.socket.write(Buffer.concat([Buffer.from(head), ext, key, masked]))
  }

  async frame(n: number): Promise<Frame> {
    await waitFor(() => this.frames.length >= n, 5000, `frame ${n}`)
    return this.frames[n - 1]!
  }

  /** The close code the server sent, once it sent one. */
  async closeCode(): Promise<number> {
    await waitFor(() => this.frames.some((f) => (f.first & 0x0f) === 8), 8000, 'a close frame')
    return this.frames.find((f) => (f.first & 0x0f) === 8)!.payload.readUInt16BE(0)
  }
}

const inflate = (payload: Buffer): Buffer =>
  zlib.inflateRawSync(Buffer.concat([payload, TAIL]), { finishFlush: zlib.constants.Z_SYNC_FLUSH })
const deflate = (data: Buffer | string): Buffer => {
  const out = zlib.deflateRawSync(data, { finishFlush: zlib.constants.Z_SYNC_FLUSH })
  return out.subarray(0, out.length - 4)
}

async function answerTo(options: boolean | PerMessageDeflateOptions, offer: string | null): Promise<string | undefined> {
  const { port } = await server({ onMessage: echo }, { perMessageDeflate: options })
  const c = await RawClient.open(port, offer)
  c.socket.destroy()
  return c.answer
}

describe('negotiation', () => {
  it('is off by default: the ws client offers it and gets no extension', async () => {
    const { url } = await server({ onMessage: echo })
    const ws = await connect(url)
    expect(ws.extensions).toBe('')
    const big = json(4096)
    ws.send(big)
    expect(await nextMessage(ws)).toBe(big)
    ws.close()
  })

  it('the ws client with its default offer negotiates it and messages round-trip both ways', async () => {
    const { url } = await server({ onMessage: echo }, { perMessageDeflate: true })
    const ws = await connect(url)
    expect(ws.extensions).toMatch(/^permessage-deflate/)
    for (const m of [json(4096), 'short', json(300_000)]) {
      ws.send(m)
      expect(await nextMessage(ws)).toBe(m)
    }
    const bin = randomBytes(5000)
    ws.send(bin)
    expect(Buffer.compare((await nextMessage(ws)) as Buffer, bin)).toBe(0)
    ws.close()
  })

  it('defaults: a plain offer gets a plain answer; a client window offer is answered with 15', async () => {
    expect(await answerTo(true, 'permessage-deflate')).toBe('permessage-deflate')
    expect(await answerTo(true, 'permessage-deflate; client_max_window_bits')).toBe(
      'permessage-deflate; client_max_window_bits=15',
    )
    expect(await answerTo(true, null)).toBeUndefined()
  })

  it('custom values appear in the answer', async () => {
    const offer = 'permessage-deflate; client_max_window_bits'
    expect(await answerTo({ serverNoContextTakeover: true }, offer)).toBe(
      'permessage-deflate; server_no_context_takeover; client_max_window_bits=15',
    )
    expect(await answerTo({ clientNoContextTakeover: true }, offer)).toBe(
      'permessage-deflate; client_no_context_takeover; client_max_window_bits=15',
    )
    expect(await answerTo({ serverMaxWindowBits: 10 }, offer)).toBe(
      'permessage-deflate; server_max_window_bits=10; client_max_window_bits=15',
    )
    expect(await answerTo({ clientMaxWindowBits: 9 }, offer)).toBe('permessage-deflate; client_max_window_bits=9')
    // A smaller client window cannot be imposed on a client that did not offer the parameter.
    expect(await answerTo({ clientMaxWindowBits: 9 }, 'permessage-deflate')).toBeUndefined()
  })

  it('malformed offers are declined, not failed, and the next acceptable offer is answered', async () => {
    for (const bad of [
      'permessage-deflate; server_max_window_bits',
      'permessage-deflate; server_max_window_bits=16',
      'permessage-deflate; client_max_window_bits=7',
      'permessage-deflate; server_no_context_takeover; server_no_context_takeover',
      'permessage-deflate; unknown_param',
    ]) {
      expect(await answerTo(true, bad), bad).toBeUndefined()
    }
    expect(await answerTo(true, 'permessage-deflate; foo, permessage-deflate; server_max_window_bits=12')).toBe(
      'permessage-deflate; server_max_window_bits=12',
    )
  })

  it('bad option values throw ERR_INVALID_OPTION, for the server and for a path', () => {
    const bad: unknown[] = [
      'yes',
      { threshold: -1 },
      { threshold: 1.5 },
      { serverMaxWindowBits: 7 },
      { serverMaxWindowBits: 16 },
      { clientMaxWindowBits: 16 },
      { memLevel: 0 },
      { memLevel: 10 },
      { serverNoContextTakeover: 'true' },
      { level: 10 },
      { level: -1 },
      { window: 9 },
    ]
    for (const value of bad) {
      expect(() => new WsServer({ perMessageDeflate: value as PerMessageDeflateOptions }), JSON.stringify(value)).toThrow(
        expect.objectContaining({ code: 'ERR_INVALID_OPTION' }),
      )
      const srv = new WsServer()
      expect(() => srv.websocket('/x', {}, { perMessageDeflate: value as PerMessageDeflateOptions })).toThrow(
        expect.objectContaining({ code: 'ERR_INVALID_OPTION' }),
      )
    }
  })

  it('a path overrides the server setting both ways', async () => {
    const srv = new WsServer({ host: '127.0.0.1', port: 0, perMessageDeflate: true })
    srv.websocket('/ws', { onMessage: echo })
    srv.websocket('/plain', { onMessage: echo }, { perMessageDeflate: false })
    srv.websocket('/small', { onMessage: echo }, { perMessageDeflate: { serverMaxWindowBits: 9 } })
    server.adopt(srv)
    const { port } = await srv.listen()
    const offer = 'permessage-deflate'
    const answers = await Promise.all(
      ['/ws', '/plain', '/small'].map(async (p) => {
        const c = await RawClient.open(port, offer, p)
        c.socket.destroy()
        return c.answer
      }),
    )
    expect(answers).toEqual(['permessage-deflate', undefined, 'permessage-deflate; server_max_window_bits=9'])
    const off = new WsServer({ host: '127.0.0.1', port: 0 })
    off.websocket('/ws', { onMessage: echo }, { perMessageDeflate: true })
    server.adopt(off)
    const c = await RawClient.open((await off.listen()).port, offer)
    expect(c.answer).toBe('permessage-deflate')
    c.socket.destroy()
  })

  it("per-path options are one object: an unknown key throws ERR_INVALID_OPTION, a '*' route's setting holds for paths without their own", async () => {
    const srv = new WsServer({ host: '127.0.0.1', port: 0 })
    expect(() => srv.websocket('/x', {}, { perMessageDeflat: true } as never)).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_OPTION' }),
    )
    srv.websocket('*', { onMessage: echo }, { perMessageDeflate: { serverMaxWindowBits: 10 } })
    srv.websocket('/own', { onMessage: echo })
    server.adopt(srv)
    const { port } = await srv.listen()
    const any = await RawClient.open(port, 'permessage-deflate', '/anything')
    const own = await RawClient.open(port, 'permessage-deflate', '/own')
    expect([any.answer, own.answer]).toEqual(['permessage-deflate; server_max_window_bits=10', undefined])
    any.socket.destroy()
    own.socket.destroy()
  })

  it('rateLimit and perMessageDeflate on one path: compressed messages count against the limit', async () => {
    const srv = new WsServer({ host: '127.0.0.1', port: 0 })
    srv.websocket('/ws', { onMessage: echo }, { perMessageDeflate: true, rateLimit: { messages: 3, interval: 60_000 } })
    server.adopt(srv)
    const { port } = await srv.listen()
    const ws = await connect(`ws://127.0.0.1:${port}/ws`, { perMessageDeflate: { threshold: 0 } })
    expect(ws.extensions).toContain('permessage-deflate')
    const done = closed(ws)
    for (let i = 0; i < 5; i++) ws.send('x'.repeat(2000))
    expect((await done).code).toBe(1008)
  })
})

describe('frames', () => {
  it('threshold: shorter messages go uncompressed, longer ones with RSV1; custom threshold 0 compresses all', async () => {
    const { port } = await server({ onMessage: echo }, { perMessageDeflate: true })
    const c = await RawClient.open(port, 'permessage-deflate')
    const small = 'x'.repeat(1023)
    const big = json(1024)
    c.send(1, Buffer.from(small))
    c.send(1, deflate(big), true)
    const [a, b] = [await c.frame(1), await c.frame(2)]
    expect(a.first & 0x40).toBe(0)
    expect(a.payload.toString()).toBe(small)
    expect(b.first & 0x40).toBe(0x40)
    expect(b.payload.length).toBeLessThan(big.length / 2)
    expect(inflate(b.payload).toString()).toBe(big)
    c.socket.destroy()

    const zero = await server({ onMessage: echo }, { perMessageDeflate: { threshold: 0 } })
    const z = await RawClient.open(zero.port, 'permessage-deflate')
    z.send(1, Buffer.from('hi'))
    const f = await z.frame(1)
    expect(f.first & 0x40).toBe(0x40)
    expect(inflate(f.payload).toString()).toBe('hi')
    z.socket.destroy()
  })

  it('level: 0 sends stored blocks, 1 and 9 compress, 9 at least as small as 1; all inflate to the message', async () => {
    const msg = json(20_000)
    const sizes: number[] = []
    for (const level of [0, 1, 9]) {
      const { port } = await server({ onMessage: echo }, { perMessageDeflate: { level } })
      const c = await RawClient.open(port, 'permessage-deflate')
      c.send(1, Buffer.from(msg))
      const f = await c.frame(1)
      expect(f.first & 0x40).toBe(0x40)
      expect(inflate(f.payload).toString()).toBe(msg)
      sizes.push(f.payload.length)
      c.socket.destroy()
    }
    expect(sizes[0]).toBeGreaterThan(msg.length)
    expect(sizes[1]).toBeLessThan(msg.length / 2)
    expect(sizes[2]).toBeLessThanOrEqual(sizes[1] as number)
  })

  it('RSV1 without the extension negotiated still closes 1002', async () => {
    const { port } = await server({ onMessage: echo }, { perMessageDeflate: true })
    const c = await RawClient.open(port, null)
    c.send(1, deflate('hello'), true)
    expect(await c.closeCode()).toBe(1002)
  })

  it('RSV1 on a control frame, invalid deflate data and inflated invalid UTF-8 close 1002, 1002, 1007', async () => {
    const { port } = await server({ onMessage: echo }, { perMessageDeflate: true })
    const cases: Array<[number, Buffer, number]> = [
      [9, Buffer.alloc(0), 1002],
      [1, Buffer.from([0xff, 0xff, 0xff, 0xff]), 1002],
      [1, deflate(Buffer.from([0xc3, 0x28])), 1007],
    ]
    for (const [opcode, payload, code] of cases) {
      const c = await RawClient.open(port, 'permessage-deflate')
      c.send(opcode, payload, true)
      expect(await c.closeCode()).toBe(code)
    }
  })

  it('the inflate bomb: a message inflating past maxPayload closes 1009, and the server never holds the inflated size (docs/hardening.md row 34)', async () => {
    const { port } = await server({ onMessage: echo }, { perMessageDeflate: true, maxPayload: 1024 * 1024 })
    // 256 MiB of zeros deflate to about 256 KB: well under maxPayload on the wire.
    const stream = zlib.createDeflateRaw()
    const parts: Buffer[] = []
    stream.on('data', (d: Buffer) => parts.push(d))
    const chunk = Buffer.alloc(1024 * 1024)
    for (let i = 0; i < 256; i++) stream.write(chunk)
    await new Promise<void>((r) => stream.flush(zlib.constants.Z_SYNC_FLUSH, () => r()))
    const bomb = Buffer.concat(parts)
    expect(bomb.length).toBeLessThan(1024 * 1024)
    const before = process.memoryUsage().rss
    const c = await RawClient.open(port, 'permessage-deflate')
    c.send(2, bomb.subarray(0, bomb.length - 4), true)
    expect(await c.closeCode()).toBe(1009)
    expect(process.memoryUsage().rss - before).toBeLessThan(64 * 1024 * 1024)
  })

  it('context takeover: many similar messages both ways stay in step and later ones shrink', async () => {
    const { port } = await server({ onMessage: echo }, { perMessageDeflate: true })
    const c = await RawClient.open(port, 'permessage-deflate')
    // Our side keeps its context too: one deflate stream for every message we send.
    const ours = zlib.createDeflateRaw()
    const theirs = zlib.createInflateRaw()
    const compress = (m: string): Promise<Buffer> =>
      new Promise((resolve) => {
        const parts: Buffer[] = []
        const on = (d: Buffer): number => parts.push(d)
        ours.on('data', on)
        ours.write(m)
        ours.flush(zlib.constants.Z_SYNC_FLUSH, () => {
          ours.off('data', on)
          const out = Buffer.concat(parts)
          resolve(out.subarray(0, out.length - 4))
        })
      })
    const decompress = (p: Buffer): Promise<string> =>
      new Promise((resolve) => {
        const parts: Buffer[] = []
        const on = (d: Buffer): number => parts.push(d)
        theirs.on('data', on)
        theirs.write(Buffer.concat([p, TAIL]))
        theirs.flush(zlib.constants.Z_SYNC_FLUSH, () => {
          theirs.off('data', on)
          resolve(Buffer.concat(parts).toString())
        })
      })
    const sizes: number[] = []
    for (let i = 0; i < 100; i++) {
      const m = json(2000, i % 3)
      c.send(1, await compress(m), true)
      const f = await c.frame(i + 1)
      expect(f.first & 0x40).toBe(0x40)
      expect(await decompress(f.payload)).toBe(m)
      sizes.push(f.payload.length)
    }
    expect(sizes[50]!).toBeLessThan(sizes[0]! / 2)
    c.socket.destroy()
  })

  it('memLevel and small windows still round-trip with the ws client', async () => {
    const options = { memLevel: 1, serverMaxWindowBits: 9, clientMaxWindowBits: 9, serverNoContextTakeover: true }
    const { url } = await server({ onMessage: echo }, { perMessageDeflate: options })
    const ws = new WebSocket(url)
    const answer = new Promise<string | undefined>((r) => ws.once('upgrade', (res) => r(res.headers['sec-websocket-extensions'])))
    await new Promise((r) => ws.once('open', r))
    expect(await answer).toBe('permessage-deflate; server_no_context_takeover; server_max_window_bits=9; client_max_window_bits=9')
    const all = Array.from({ length: 50 }, (_, i) => json(3000, i))
    const got = messages(ws, all.length)
    for (const m of all) ws.send(m)
    expect(await got).toEqual(all)
    ws.close()
  })
})

describe('broadcast', () => {
  for (const serverNoContextTakeover of [false, true]) {
    it(`reaches members with and without deflate alike (serverNoContextTakeover ${serverNoContextTakeover})`, async () => {
      const { url, server: srv } = await server(
        { onConnect: (s) => void s.joinRoom('r') },
        { perMessageDeflate: { serverNoContextTakeover } },
      )
      const withDeflate = [await connect(url), await connect(url)]
      const without = [await connect(url, { perMessageDeflate: false }), await connect(url, { perMessageDeflate: false })]
      expect(withDeflate.map((w) => w.extensions !== '')).toEqual([true, true])
      expect(without.map((w) => w.extensions)).toEqual(['', ''])
      await waitFor(() => srv.getConnections('r').length === 4)
      const all = [...withDeflate, ...without]
      const msgs = Array.from({ length: 20 }, (_, i) => json(1500, i))
      // The onConnect join's room_joined notice may still be in flight: it is not a broadcast.
      const got = all.map((w) => messages(w, msgs.length * 2, 5000, isRoomJoined))
      for (const m of msgs) {
        expect(srv.broadcast(m, { room: 'r' })).toBe(4)
        expect(srv.broadcast(m)).toBe(4)
      }
      const want = msgs.flatMap((m) => [m, m])
      for (const g of await Promise.all(got)) expect(g).toEqual(want)
      for (const w of all) w.close()
    })
  }
})

describe('room history', () => {
  it('a room with history: published messages (with offsets) go compressed to deflate members, plain to others', async () => {
    const { url, port, server: srv } = await server(
      { onConnect: (s) => void s.joinRoom('r') },
      { perMessageDeflate: true, history: { size: 50, ttl: 60_000 } },
    )
    const withDeflate = await connect(url)
    const without = await connect(url, { perMessageDeflate: false })
    const raw = await RawClient.open(port, 'permessage-deflate')
    await waitFor(() => srv.getConnections('r').length === 3)
    const msgs = Array.from({ length: 5 }, (_, i) => json(1500, i))
    const got = [withDeflate, without].map((w) => messages(w, msgs.length))
    for (const m of msgs) expect(srv.broadcast(m, { room: 'r' })).toBe(3)
    const [a, b] = await Promise.all(got)
    expect(a).toEqual(b)
    const parsed = (a as string[]).map((t) => JSON.parse(t) as { message: string; offset: number })
    expect(parsed.map((p) => p.message)).toEqual(msgs)
    expect(parsed.map((p) => p.offset - parsed[0]!.offset)).toEqual([0, 1, 2, 3, 4])
    // Frame 1 is the join's answer (short, so plain); then one compressed frame per message.
    await raw.frame(1 + msgs.length)
    expect(raw.frames.map((f) => f.first & 0x40)).toEqual([0, ...msgs.map(() => 0x40)])
    expect(inflate(raw.frames[1]!.payload).toString()).toBe(a[0])
    raw.socket.destroy()
    withDeflate.close()
    without.close()
  })
})

describe('other clients', () => {
  it('Python websockets with its default offer', async () => {
    const { url } = await server({ onMessage: echo }, { perMessageDeflate: true })
    // A venv kept between runs, made with pip on the first one.
    const venv = join(tmpdir(), 'rnode-deflate-websockets-13.1')
    const python = join(venv, 'bin', 'python')
    if (!existsSync(join(venv, 'ok'))) {
      await run('python3', ['-m', 'venv', venv])
      await run(join(venv, 'bin', 'pip'), ['install', '--quiet', 'websockets==13.1'], { timeout: 120_000 })
      await run('touch', [join(venv, 'ok')])
    }
    const script = [
      'import asyncio, sys, websockets',
      'async def main():',
      '    async with websockets.connect(sys.argv[1]) as ws:',
      '        msg = "x" * 3000 + "y" * 3000',
      '        await ws.send(msg)',
      '        back = await ws.recv()',
      '        print(ws.response_headers.get("Sec-WebSocket-Extensions"), back == msg)',
      'asyncio.run(main())',
    ].join('\n')
    const { stdout } = await run(python, ['-c', script, url], { encoding: 'utf8', timeout: 30_000 })
    expect(stdout.trim()).toBe('permessage-deflate; client_max_window_bits=15 True')
  }, 180_000)

  it('headless Chromium negotiates it and messages round-trip', async () => {
    const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
    if (process.env.RNODE_SKIP_BROWSER === '1') return
    const { url } = await server({ onMessage: echo }, { perMessageDeflate: true })
    const browser = await chromium.launch({
      executablePath: chromiumPath,
      args: ['--no-sandbox', '--disable-gpu', '--no-first-run'],
      headless: true,
      timeout: 30_000,
    })
    try {
      const page = await browser.newPage()
      // A string: the page's own WebSocket, not this file's import of `ws`.
      const result = (await page.evaluate(`(async (u) => {
        const ws = new WebSocket(u)
        await new Promise((r) => (ws.onopen = r))
        const msg = JSON.stringify(Array.from({ length: 200 }, (_, i) => ({ i, user: 'alice', status: 'online' })))
        const back = new Promise((r) => (ws.onmessage = (e) => r(String(e.data))))
        ws.send(msg)
        const echoed = await back
        ws.close()
        return { extensions: ws.extensions, same: echoed === msg }
      })(${JSON.stringify(url)})`)) as { extensions: string; same: boolean }
      expect(result.extensions).toMatch(/^permessage-deflate/)
      expect(result.same).toBe(true)
    } finally {
      await browser.close()
    }
  }, 60_000)
})

// Messages from 64 KiB on are compressed off the JS thread (native/offload.rs); what is sent after
// one waits behind it, so a later small message never overtakes an earlier large one.
describe('large messages compressed off the JS thread', () => {
  /** `json(n)` for large n, in linear time: JSON-like text of exactly `n` bytes. */
  function big(n: number, seed: number): string {
    const item = `{"id":${seed},"user":"alice","status":"online"},`
    return `[${item.repeat(Math.ceil(n / item.length))}`.slice(0, n - 1) + ']'
  }

  /** Large (compressed off-thread), medium (compressed inline when nothing waits) and tiny (plain) messages, mixed. */
  /** What a message is, cheap to compare (deep equality of megabytes is slow): kind, size, SHA-1. */
  function digest(m: string | Buffer): string {
    return `${typeof m === 'string' ? 'text' : 'binary'} ${m.length} ${createHash('sha1').update(m).digest('hex')}`
  }

  function mixed(n: number): Array<string | Buffer> {
    return Array.from({ length: n }, (_, i) => {
      if (i % 4 === 0) return big(200_000 + i * 1000, i)
      if (i % 4 === 1) return `small ${i}`
      if (i % 4 === 2) return json(2000, i)
      return Buffer.concat([Buffer.from(big(100_000, i)), randomBytes(64)])
    })
  }

  for (const serverNoContextTakeover of [false, true]) {
    it(`keeps per-connection order over mixed sizes, pings and the close frame (serverNoContextTakeover ${serverNoContextTakeover})`, async () => {
      const want = mixed(40)
      const statuses: string[] = []
      const { url } = await server(
        {
          onMessage: (socket) => {
            for (const m of want) statuses.push(socket.send(m))
            socket.close(4000, 'after the last')
          },
        },
        { perMessageDeflate: { serverNoContextTakeover }, maxBackpressure: 64 * 1024 * 1024 },
      )
      const ws = await connect(url)
      expect(ws.extensions).toMatch(/^permessage-deflate/)
      const got = messages(ws, want.length, 15_000)
      const done = closed(ws, 15_000)
      ws.send('go')
      expect((await got).map(digest)).toEqual(want.map(digest))
      expect(await done).toEqual({ code: 4000, reason: 'after the last' })
      expect(statuses.filter((s) => s === 'dropped')).toEqual([])
    })
  }

  for (const serverNoContextTakeover of [false, true]) {
    it(`broadcasts of mixed sizes reach every member in order, with and without deflate (serverNoContextTakeover ${serverNoContextTakeover})`, async () => {
      const { url, server: srv } = await server(
        { onConnect: (s) => void s.joinRoom('r') },
        { perMessageDeflate: { serverNoContextTakeover }, maxBackpressure: 64 * 1024 * 1024 },
      )
      const members = [await connect(url), await connect(url), await connect(url), await connect(url, { perMessageDeflate: false })]
      await waitFor(() => srv.getConnections('r').length === members.length)
      const want = mixed(24)
      const got = members.map((w) => messages(w, want.length, 15_000, isRoomJoined))
      for (const m of want) expect(srv.broadcast(m, { room: 'r' })).toBe(members.length)
      for (const g of await Promise.all(got)) expect(g.map(digest)).toEqual(want.map(digest))
      for (const w of members) w.close()
    })
  }

  it("a large send over half maxBackpressure returns 'buffered' and onDrain follows once it is compressed and written", async () => {
    const message = big(1_000_000, 1)
    const statuses: string[] = []
    let drained = 0
    const { url } = await server(
      { onMessage: (socket) => void statuses.push(socket.send(message)), onDrain: () => void drained++ },
      { perMessageDeflate: true, maxBackpressure: 1_500_000 },
    )
    const ws = await connect(url)
    const got = messages(ws, 1, 10_000)
    ws.send('go')
    expect((await got).map(digest)).toEqual([digest(message)])
    expect(statuses).toEqual(['buffered'])
    await waitFor(() => drained === 1)
    ws.close()
  })
})

describe('close', () => {
  it('a connection with deflate closes cleanly', async () => {
    const { url } = await server({ onMessage: echo }, { perMessageDeflate: true })
    const ws = await connect(url)
    const done = closed(ws)
    ws.close(1000, 'bye')
    expect((await done).code).toBe(1000)
  })
})

/** Writes `data` into a zlib stream and sync-flushes it: what came out, context kept. */
function through(z: zlib.DeflateRaw | zlib.InflateRaw, data: Buffer): Promise<Buffer> {
  return new Promise((resolve) => {
    const parts: Buffer[] = []
    const onData = (d: Buffer): void => void parts.push(d)
    z.on('data', onData)
    z.write(data)
    z.flush(zlib.constants.Z_SYNC_FLUSH, () => {
      z.off('data', onData)
      resolve(Buffer.concat(parts))
    })
  })
}

describe.skipIf(!HAVE_OPENSSL)('over native TLS (the tls option)', () => {
  const suite = suiteCertificates()

  it('the same negotiation; compressed frames both ways through the TLS session, in step over many messages', async () => {
    const { port } = await server({ onMessage: echo }, { perMessageDeflate: true, tls: suite.leaf })
    const c = await RawClient.open(port, 'permessage-deflate; client_max_window_bits', '/ws', suite.ca.cert)
    expect(c.answer).toBe('permessage-deflate; client_max_window_bits=15')
    const sent = [json(2048, 1), json(2048, 2), json(2048, 3)]
    // One compression context on each side, as context takeover needs.
    const out = zlib.createDeflateRaw()
    for (const m of sent) {
      const chunk = await through(out, Buffer.from(m))
      c.send(1, chunk.subarray(0, chunk.length - 4), true)
    }
    const back = zlib.createInflateRaw()
    for (let i = 0; i < sent.length; i++) {
      const f = await c.frame(i + 1)
      expect(f.first & 0x40).toBe(0x40)
      expect(f.payload.length).toBeLessThan(sent[i]!.length / 2)
      expect((await through(back, Buffer.concat([f.payload, TAIL]))).toString()).toBe(sent[i])
    }
    out.close()
    back.close()
    c.socket.destroy()
  })

  it('invalid deflate data over TLS closes 1002; a client offering nothing gets plain frames', async () => {
    const { port } = await server({ onMessage: echo }, { perMessageDeflate: true, tls: suite.leaf })
    const bad = await RawClient.open(port, 'permessage-deflate', '/ws', suite.ca.cert)
    bad.send(1, Buffer.from([0xff, 0xff, 0xff, 0xff]), true)
    expect(await bad.closeCode()).toBe(1002)
    bad.socket.destroy()
    const plain = await RawClient.open(port, null, '/ws', suite.ca.cert)
    expect(plain.answer).toBeUndefined()
    const big = json(4096)
    plain.send(1, Buffer.from(big))
    const f = await plain.frame(1)
    expect(f.first & 0x40).toBe(0)
    expect(f.payload.toString()).toBe(big)
    plain.socket.destroy()
  })

  it('ws clients over wss:// with and without it: 300 KB echoes, and room broadcasts reach both alike', async () => {
    const { port, server: srv } = await server(
      { onMessage: echo, onConnect: (s) => void s.joinRoom('r') },
      { perMessageDeflate: true, tls: suite.leaf },
    )
    const url = `wss://127.0.0.1:${port}/ws`
    const withDeflate = await connect(url, { ca: suite.ca.cert })
    const without = await connect(url, { ca: suite.ca.cert, perMessageDeflate: false })
    expect([withDeflate.extensions, without.extensions]).toEqual(['permessage-deflate', ''])
    const big = json(300_000)
    withDeflate.send(big)
    expect(await nextMessage(withDeflate, 10_000)).toBe(big)
    await waitFor(() => srv.getConnections('r').length === 2)
    const msgs = Array.from({ length: 10 }, (_, i) => json(1500, i))
    const got = [withDeflate, without].map((w) => messages(w, msgs.length))
    for (const m of msgs) expect(srv.broadcast(m, { room: 'r' })).toBe(2)
    for (const g of await Promise.all(got)) expect(g).toEqual(msgs)
    withDeflate.close()
    without.close()
  })
})
