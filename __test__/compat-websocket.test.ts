// @rnode/ws/compat's server-side WebSocket as ws 8 documents it, with ws's client on the other
// end: messages as Buffers, send options and callbacks, close/terminate, ping/pong, binaryType,
// the DOM-style listeners, createWebSocketStream, and rooms through ws.native.
import type { AddressInfo } from 'node:net'
import { pipeline } from 'node:stream'
import { afterEach, describe, expect, it } from 'vitest'
import WsClient from 'ws'
import { CloseEvent, createWebSocketStream, MessageEvent, WebSocket, WebSocketServer, type ServerOptions } from '../lib/compat/index'
import { closed, connect, messages, nextMessage, waitFor } from '../test-support/index'

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  await Promise.all(cleanups.splice(0).map((c) => c()))
})

/** A server and one connected client, with the server's WebSocket for it. */
async function pair(options: Omit<ServerOptions, 'port'> = {}): Promise<{ wss: WebSocketServer; ws: WebSocket; client: WsClient; url: string }> {
  const wss = await new Promise<WebSocketServer>((resolve) => {
    const s: WebSocketServer = new WebSocketServer({ port: 0, host: '127.0.0.1', ...options }, () => resolve(s))
  })
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        for (const c of wss.clients ?? []) c.terminate()
        wss.close(() => resolve())
      }),
  )
  const url = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`
  const connection = new Promise<WebSocket>((resolve) => wss.once('connection', resolve))
  const client = await connect(url)
  return { wss, ws: await connection, client, url }
}

function nextServerMessage(ws: WebSocket): Promise<[unknown, boolean]> {
  return new Promise((resolve) => ws.once('message', (data: unknown, isBinary: boolean) => resolve([data, isBinary])))
}

describe('messages', () => {
  it("text arrives as a Buffer with isBinary false, binary as a Buffer with isBinary true", async () => {
    const { ws, client } = await pair()
    const text = nextServerMessage(ws)
    client.send('héllo')
    const [data, isBinary] = await text
    expect(Buffer.isBuffer(data)).toBe(true)
    expect((data as Buffer).toString()).toBe('héllo')
    expect(isBinary).toBe(false)
    const bin = nextServerMessage(ws)
    client.send(Buffer.from([1, 2, 3]))
    expect(await bin).toEqual([Buffer.from([1, 2, 3]), true])
  })

  it('the echo of ws (send(data, { binary: isBinary })) keeps text text and binary binary', async () => {
    const { ws, client } = await pair()
    ws.on('message', (data: Buffer, isBinary: boolean) => ws.send(data, { binary: isBinary }))
    client.send('text')
    client.send(Buffer.from([9, 8]))
    const got = await messages(client, 2)
    expect(got).toEqual(['text', Buffer.from([9, 8])])
  })

  it('send: strings are text, bytes binary, binary: true/false overrides; numbers become text', async () => {
    const { ws, client } = await pair()
    const got = new Promise<Array<[string, boolean]>>((resolve) => {
      const out: Array<[string, boolean]> = []
      client.on('message', (d: Buffer, isBinary: boolean) => {
        out.push([d.toString(), isBinary])
        if (out.length === 7) resolve(out)
      })
    })
    ws.send('a')
    ws.send(Buffer.from('b'))
    ws.send('c', { binary: true })
    ws.send(Buffer.from('d'), { binary: false })
    ws.send(42)
    ws.send(new Uint16Array([0x6665]).buffer)
    ws.send(Buffer.from([0x61, 0xfe]), { binary: false })
    expect(await got).toEqual([
      ['a', false],
      ['b', true],
      ['c', true],
      ['d', false],
      ['42', false],
      ['ef', true],
      ['a\ufffd', false],
    ])
  })

  it('send() callbacks run once the message is accepted; after close they get an error', async () => {
    const { ws, client } = await pair()
    const err = await new Promise<Error | undefined>((resolve) => ws.send('x', resolve))
    expect(err).toBeUndefined()
    expect(await nextMessage(client)).toBe('x')
    const done = new Promise((r) => ws.once('close', r))
    client.close()
    await done
    expect(ws.readyState).toBe(WebSocket.CLOSED)
    const late = await new Promise<Error | undefined>((resolve) => ws.send('y', {}, resolve))
    expect(late).toBeInstanceOf(Error)
    expect(() => ws.send('z')).not.toThrow()
  })

  it("a full send buffer with rnode: { backpressurePolicy: 'drop' } hands ERR_MESSAGE_DROPPED to the callback", async () => {
    const { ws, client } = await pair({ rnode: { maxBackpressure: 64 * 1024, backpressurePolicy: 'drop' } })
    const tcp = (client as unknown as { _socket: { pause(): void; resume(): void } })._socket
    tcp.pause()
    const chunk = Buffer.alloc(64 * 1024, 7)
    const sends = Array.from({ length: 200 }, () => new Promise<string | undefined>((resolve) => ws.send(chunk, (err) => resolve((err as { code?: string } | undefined)?.code))))
    // Reading again lets the buffer drain, so callbacks of 'buffered' sends run too.
    setTimeout(() => tcp.resume(), 100)
    const results = await Promise.all(sends)
    expect(results.length).toBe(200)
    expect(results).toContain('ERR_MESSAGE_DROPPED')
    expect(ws.readyState).toBe(WebSocket.OPEN)
  })

  it('fin: false and mask: true throw ERR_UNSUPPORTED_OPTION; compress is accepted (nothing to compress)', async () => {
    const { ws, client } = await pair()
    expect(() => ws.send('x', { fin: false })).toThrow(expect.objectContaining({ code: 'ERR_UNSUPPORTED_OPTION' }))
    expect(() => ws.send('x', { mask: true })).toThrow(expect.objectContaining({ code: 'ERR_UNSUPPORTED_OPTION' }))
    expect(() => ws.ping('x', true)).toThrow(expect.objectContaining({ code: 'ERR_UNSUPPORTED_OPTION' }))
    ws.send('ok', { compress: true, fin: true, mask: false })
    expect(await nextMessage(client)).toBe('ok')
    expect(() => ws.send({} as unknown as string)).toThrow(TypeError)
    expect(() => ws.send(new Blob(['x']) as unknown as string)).toThrow(expect.objectContaining({ code: 'ERR_UNSUPPORTED_OPTION' }))
  })

  it('binaryType: nodebuffer (default), arraybuffer, fragments, blob; unknown values are ignored', async () => {
    const { ws, client } = await pair()
    expect(ws.binaryType).toBe('nodebuffer')
    ws.binaryType = 'arraybuffer'
    let next = nextServerMessage(ws)
    client.send(Buffer.from([1, 2]))
    const [ab] = await next
    expect(ab).toBeInstanceOf(ArrayBuffer)
    expect([...new Uint8Array(ab as ArrayBuffer)]).toEqual([1, 2])
    ws.binaryType = 'fragments'
    next = nextServerMessage(ws)
    client.send(Buffer.from([3]))
    expect((await next)[0]).toEqual([Buffer.from([3])])
    ws.binaryType = 'blob'
    next = nextServerMessage(ws)
    client.send(Buffer.from([4]))
    const [blob] = await next
    expect(blob).toBeInstanceOf(Blob)
    expect(Buffer.from(await (blob as Blob).arrayBuffer())).toEqual(Buffer.from([4]))
    ws.binaryType = 'nonsense' as 'blob'
    expect(ws.binaryType).toBe('blob')
    // Text is a Buffer whatever binaryType says, as in ws.
    next = nextServerMessage(ws)
    client.send('t')
    expect(Buffer.isBuffer((await next)[0])).toBe(true)
  })

  it('pause() holds messages until resume()', async () => {
    const { ws, client } = await pair()
    const got: string[] = []
    ws.on('message', (d: Buffer) => got.push(d.toString()))
    ws.pause()
    expect(ws.isPaused).toBe(true)
    client.send('1')
    client.send('2')
    await new Promise((r) => setTimeout(r, 50))
    expect(got).toEqual([])
    ws.resume()
    expect(got).toEqual(['1', '2'])
  })
})

describe('state and close', () => {
  it('readyState and the four constants; protocol, extensions, bufferedAmount, url', async () => {
    const { ws } = await pair()
    expect([WebSocket.CONNECTING, WebSocket.OPEN, WebSocket.CLOSING, WebSocket.CLOSED]).toEqual([0, 1, 2, 3])
    expect([ws.CONNECTING, ws.OPEN, ws.CLOSING, ws.CLOSED]).toEqual([0, 1, 2, 3])
    expect(ws.readyState).toBe(ws.OPEN)
    expect(ws.protocol).toBe('')
    expect(ws.extensions).toBe('')
    expect(ws.bufferedAmount).toBe(0)
    expect(ws.url).toBeUndefined()
  })

  it("close(code, reason) reaches the client; the server's 'close' has the code and the reason as a Buffer", async () => {
    const { ws, client } = await pair()
    const clientSaw = closed(client)
    const serverSaw = new Promise<[number, Buffer]>((resolve) => ws.once('close', (c: number, r: Buffer) => resolve([c, r])))
    ws.close(4001, Buffer.from('bye'))
    expect(ws.readyState).toBe(WebSocket.CLOSING)
    expect(await clientSaw).toEqual({ code: 4001, reason: 'bye' })
    const [code, reason] = await serverSaw
    expect(code).toBe(4001)
    expect(Buffer.isBuffer(reason)).toBe(true)
    expect(ws.readyState).toBe(WebSocket.CLOSED)
  })

  it('close() rejects invalid codes and long reasons like ws (TypeError / RangeError)', async () => {
    const { ws } = await pair()
    expect(() => ws.close(1005)).toThrow(RangeError)
    expect(() => ws.close(1000, 'x'.repeat(124))).toThrow(RangeError)
    expect(ws.readyState).toBe(WebSocket.OPEN)
  })

  it("the client's close code and reason reach 'close'; 1005 without a code", async () => {
    const { ws, client } = await pair()
    const serverSaw = new Promise<[number, string]>((resolve) => ws.once('close', (c: number, r: Buffer) => resolve([c, r.toString()])))
    client.close()
    expect(await serverSaw).toEqual([1005, ''])
  })

  it('terminate() drops the connection: the client sees 1006', async () => {
    const { ws, client } = await pair()
    const clientSaw = closed(client)
    ws.terminate()
    expect((await clientSaw).code).toBe(1006)
    await waitFor(() => ws.readyState === WebSocket.CLOSED)
  })
})

describe('ping and pong', () => {
  it("the client's ping arrives as 'ping' with its data (and is answered); its pong as 'pong'", async () => {
    const { ws, client } = await pair()
    const ping = new Promise<Buffer>((resolve) => ws.once('ping', resolve))
    const answered = new Promise<Buffer>((resolve) => client.once('pong', resolve))
    client.ping(Buffer.from('are you there'))
    expect((await ping).toString()).toBe('are you there')
    expect((await answered).toString()).toBe('are you there')
    const pong = new Promise<Buffer>((resolve) => ws.once('pong', resolve))
    client.pong('unsolicited')
    expect((await pong).toString()).toBe('unsolicited')
  })

  it("ws.ping(data, cb) reaches the client, whose automatic pong comes back as 'pong'", async () => {
    const { ws, client } = await pair()
    const clientPing = new Promise<Buffer>((resolve) => client.once('ping', resolve))
    const pong = new Promise<Buffer>((resolve) => ws.once('pong', resolve))
    const sent = await new Promise<Error | undefined>((resolve) => ws.ping('hb', undefined, resolve))
    expect(sent).toBeUndefined()
    expect((await clientPing).toString()).toBe('hb')
    expect((await pong).toString()).toBe('hb')
    const clientPong = new Promise<Buffer>((resolve) => client.once('pong', resolve))
    ws.pong(7)
    expect((await clientPong).toString()).toBe('7')
    expect(() => ws.ping(Buffer.alloc(126))).toThrow(RangeError)
  })
})

describe('DOM-style listeners', () => {
  it('addEventListener gets MessageEvent (text as a string) and CloseEvent; once; duplicates are added once', async () => {
    const { ws, client } = await pair()
    const events: unknown[] = []
    const onMessage = (e: unknown): void => {
      events.push(e)
    }
    ws.addEventListener('message', onMessage)
    ws.addEventListener('message', onMessage)
    const onceEvents: unknown[] = []
    ws.addEventListener('message', (e) => onceEvents.push(e), { once: true })
    client.send('a')
    client.send(Buffer.from([1]))
    await waitFor(() => events.length === 2)
    expect(events[0]).toBeInstanceOf(MessageEvent)
    expect((events[0] as MessageEvent).data).toBe('a')
    expect((events[0] as MessageEvent).target).toBe(ws)
    expect((events[1] as MessageEvent).data).toEqual(Buffer.from([1]))
    expect(onceEvents).toHaveLength(1)
    ws.removeEventListener('message', onMessage)
    client.send('b')
    await new Promise((r) => setTimeout(r, 30))
    expect(events).toHaveLength(2)
    const close = new Promise<unknown>((resolve) => ws.addEventListener('close', resolve))
    client.close(4002, 'done')
    const ev = (await close) as CloseEvent
    expect(ev).toBeInstanceOf(CloseEvent)
    expect([ev.code, ev.reason, ev.wasClean]).toEqual([4002, 'done', true])
  })

  it('onmessage/onclose attributes: set, replaced, cleared with null', async () => {
    const { ws, client } = await pair()
    const first: unknown[] = []
    const second: unknown[] = []
    ws.onmessage = (e) => first.push(e)
    expect(ws.onmessage).toBeTypeOf('function')
    ws.onmessage = (e) => second.push(e)
    client.send('x')
    await waitFor(() => second.length === 1)
    expect(first).toHaveLength(0)
    ws.onmessage = null
    expect(ws.onmessage).toBeNull()
    expect(ws.listenerCount('message')).toBe(0)
    const closedEv = new Promise<unknown>((resolve) => {
      ws.onclose = resolve
    })
    client.close()
    expect(await closedEv).toBeInstanceOf(CloseEvent)
  })
})

describe('createWebSocketStream', () => {
  it('is a Duplex: piping it to itself echoes, and ending it closes the connection', async () => {
    const { ws, client } = await pair()
    const duplex = createWebSocketStream(ws)
    pipeline(duplex, duplex, () => undefined)
    client.send('one')
    client.send(Buffer.from([2]))
    const got = await messages(client, 2)
    expect(got.map((m) => Buffer.from(m).toString('hex'))).toEqual([Buffer.from('one').toString('hex'), '02'])
    const clientSaw = closed(client)
    duplex.end()
    expect((await clientSaw).code).toBe(1000)
  })

  it('destroy() terminates the WebSocket', async () => {
    const { ws, client } = await pair()
    const duplex = createWebSocketStream(ws, { encoding: 'utf8' })
    const clientSaw = closed(client)
    duplex.destroy()
    expect((await clientSaw).code).toBe(1006)
  })
})

describe('rooms through ws.native and wss.native', () => {
  it('ws.native is our Socket (joinRoom, sendToRoom), wss.native our WsServer (broadcast to a room)', async () => {
    const { wss, ws, client, url } = await pair()
    const second = new Promise<WebSocket>((resolve) => wss.once('connection', resolve))
    const other = await connect(url)
    const ws2 = await second
    const toClient = messages(client, 2)
    const toOther = messages(other, 3)
    expect(ws.native.joinRoom('lobby')).toBe(true)
    expect(ws2.native.joinRoom('lobby')).toBe(true)
    expect(ws.native.sendToRoom('lobby', { hello: 1 })).toBe(1)
    expect(wss.native.broadcast('to all in lobby', { room: 'lobby' })).toBe(2)
    const [joined, broadcast] = await toClient
    expect(JSON.parse(String(joined))).toEqual({ type: 'room_joined', room_id: 'lobby' })
    expect(broadcast).toBe('to all in lobby')
    const [joined2, relayed, broadcast2] = await toOther
    expect(JSON.parse(String(joined2))).toEqual({ type: 'room_joined', room_id: 'lobby' })
    expect(JSON.parse(String(relayed))).toMatchObject({ type: 'room_message', room_id: 'lobby', message: { hello: 1 } })
    expect(broadcast2).toBe('to all in lobby')
    other.close()
  })
})

describe('WebSocket option', () => {
  it('a subclass of the compat WebSocket is what connection listeners get', async () => {
    class Tagged extends WebSocket {
      readonly tag = 'mine'
    }
    const { ws } = await pair({ WebSocket: Tagged })
    expect(ws).toBeInstanceOf(Tagged)
    expect((ws as Tagged).tag).toBe('mine')
    expect(() => new WebSocket('ws://x' as unknown as null)).toThrow(expect.objectContaining({ code: 'ERR_UNSUPPORTED_OPTION' }))
  })
})
