// The native API's control frames and catch-all route: onPing/onPong, socket.ping()/pong(),
// socket.terminate(), and websocket('*') for every path without a route of its own.
import { describe, expect, it } from 'vitest'
import type { Socket } from '../lib/index'
import { closed, connect, nextMessage, serverPool, startServer } from '../test-support/index'

const start = serverPool()

function opened(): { socket: Promise<Socket>; onConnect: (s: Socket) => void } {
  let resolve: (s: Socket) => void = () => undefined
  const socket = new Promise<Socket>((r) => (resolve = r))
  return { socket, onConnect: (s) => resolve(s) }
}

describe('control frames', () => {
  it("onPing gets the client's ping payload (the engine answers it); onPong its pongs", async () => {
    const pings: string[] = []
    const pongs: string[] = []
    const { url } = await start({ onPing: (_s, d) => void pings.push(d.toString()), onPong: (_s, d) => void pongs.push(d.toString('hex')) })
    const client = await connect(url)
    const answer = new Promise<Buffer>((r) => client.once('pong', r))
    client.ping('hello')
    expect((await answer).toString()).toBe('hello')
    client.pong(Buffer.from([0, 255]))
    await expect.poll(() => pongs).toEqual(['00ff'])
    expect(pings).toEqual(['hello'])
    client.close()
  })

  it('without onPing/onPong, pings are answered and nothing reaches JS', async () => {
    const { url } = await start({ onMessage: (s, m) => void s.send(m) })
    const client = await connect(url)
    const answer = new Promise<Buffer>((r) => client.once('pong', r))
    client.ping('x')
    expect((await answer).toString()).toBe('x')
    client.close()
  })

  it('socket.ping()/pong() send frames; over 125 bytes is a RangeError; false once closed', async () => {
    const o = opened()
    const { url } = await start({ onConnect: o.onConnect })
    const client = await connect(url)
    const socket = await o.socket
    const ping = new Promise<Buffer>((r) => client.once('ping', r))
    expect(socket.ping('are you there')).toBe(true)
    expect((await ping).toString()).toBe('are you there')
    const pong = new Promise<Buffer>((r) => client.once('pong', r))
    expect(socket.pong(new Uint8Array([1, 2]))).toBe(true)
    expect([...(await pong)]).toEqual([1, 2])
    expect(() => socket.ping(Buffer.alloc(126))).toThrow(RangeError)
    expect(() => socket.ping(5 as unknown as string)).toThrow(TypeError)
    const done = closed(client)
    socket.close(1000, '')
    await done
    expect(socket.ping()).toBe(false)
  })

  it('socket.terminate() drops the connection: the client and onClose see 1006', async () => {
    const o = opened()
    let serverCode = 0
    const { url } = await start({ onConnect: o.onConnect, onClose: (_s, code) => void (serverCode = code) })
    const client = await connect(url)
    const socket = await o.socket
    const done = closed(client)
    socket.terminate()
    expect((await done).code).toBe(1006)
    await expect.poll(() => serverCode).toBe(1006)
    socket.terminate()
  })
})

describe("websocket('*')", () => {
  it('takes every path without a route of its own; exact routes still win', async () => {
    const { server, port } = await startServer({ onMessage: (s, m) => void s.send(`any ${s.path} ${String(m)}`) }, {}, '*')
    server.websocket('/exact', { onMessage: (s, m) => void s.send(`exact ${String(m)}`) })
    try {
      const a = await connect(`ws://127.0.0.1:${port}/some/where?x=1`)
      a.send('1')
      expect(await nextMessage(a)).toBe('any /some/where 1')
      const b = await connect(`ws://127.0.0.1:${port}/exact`)
      b.send('2')
      expect(await nextMessage(b)).toBe('exact 2')
      a.close()
      b.close()
    } finally {
      await server.close({ timeout: 500 })
    }
  })

  it("a path that is neither '/…' nor '*' is a TypeError", async () => {
    const { server } = await startServer()
    try {
      expect(() => server.websocket('chat', {})).toThrow(TypeError)
      expect(() => server.websocket('**', {})).toThrow(TypeError)
    } finally {
      await server.close({ timeout: 500 })
    }
  })
})
