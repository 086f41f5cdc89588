// The close handshake: codes and reasons both ways, what onClose reports, closeTimeout.
import { describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import type { Socket, WebSocketHandlers } from '../lib/index'
import { closed, closePayload, connect, echo, encodeFrame, messages, nextMessage, RawPeer, serverPool, sleep, type Started, waitFor } from '../test-support/index'

const start = serverPool(1000)
const echoServer = (extra: WebSocketHandlers = {}): Promise<Started> => start({ onMessage: echo, ...extra })

describe('close', () => {
  it('client close code and reason reach onClose', async () => {
    const seen: Array<[number, string]> = []
    const { url } = await echoServer({ onClose: (_s, code, reason) => void seen.push([code, reason]) })
    const ws = await connect(url)
    ws.close(4321, 'client says bye')
    await waitFor(() => seen.length === 1)
    expect(seen[0]).toEqual([4321, 'client says bye'])
  })

  it('server close code and reason reach the client, after queued messages; row 33: send after close is dropped', async () => {
    const { url } = await echoServer({
      onConnect: (s) => {
        s.send('first')
        s.send('second')
        s.close(4000, 'server says bye')
        expect(s.send('after close')).toBe('dropped')
      },
    })
    const ws = new WebSocket(url)
    const got = messages(ws, 2)
    const c = closed(ws)
    expect(await got).toEqual(['first', 'second'])
    expect(await c).toEqual({ code: 4000, reason: 'server says bye' })
  })

  it('a dropped TCP connection reports 1006', async () => {
    const seen: number[] = []
    const { url } = await echoServer({ onClose: (_s, code) => void seen.push(code) })
    const ws = await connect(url)
    ws.terminate()
    await waitFor(() => seen.length === 1)
    expect(seen[0]).toBe(1006)
  })

  // A short read clears the socket's readiness (no extra recv per wake-up): the next bytes must
  // still wake the reader, and a FIN right behind data must still end the connection.
  it('a frame trickling in over several reads is delivered; a FIN right behind a frame still closes', async () => {
    const seen: number[] = []
    const got: string[] = []
    const { port } = await echoServer({
      onMessage: (socket, msg) => {
        got.push(String(msg))
        socket.send(msg)
      },
      onClose: (_s, code) => void seen.push(code),
    })
    const peer = await RawPeer.connect(port)
    const frame = encodeFrame({ opcode: 0x1, payload: Buffer.from('trickled in') })
    for (const piece of [frame.subarray(0, 1), frame.subarray(1, 5), frame.subarray(5)]) {
      peer.send(piece)
      await sleep(30)
    }
    expect((await peer.nextFrame())?.payload.toString()).toBe('trickled in')
    // Data and FIN in one go: the message is still handled, and the half-closed peer is let go.
    peer.socket.end(encodeFrame({ opcode: 0x1, payload: Buffer.from('last words') }))
    await peer.waitEnd()
    await waitFor(() => seen.length === 1)
    expect(got).toEqual(['trickled in', 'last words'])
    expect(seen[0]).toBe(1006)
  })

  it('row 32, 33: invalid close codes and long reasons throw RangeError, bad types TypeError, each with its code', async () => {
    let socket: Socket | undefined
    const { url } = await echoServer({ onConnect: (s) => void (socket = s) })
    const ws = await connect(url)
    await waitFor(() => socket !== undefined)
    for (const code of [0, 999, 1004, 1005, 1006, 1015, 2000, 2999, 5000, 1000.5]) {
      expect(() => socket!.close(code)).toThrow(RangeError)
      expect(() => socket!.close(code)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_CLOSE_CODE' }))
    }
    expect(() => socket!.close(1000, 'x'.repeat(124))).toThrow(RangeError)
    expect(() => socket!.close(1000, 'é'.repeat(62))).toThrow(expect.objectContaining({ code: 'ERR_INVALID_CLOSE_REASON' })) // 124 bytes
    expect(() => socket!.close('1000' as unknown as number)).toThrow(TypeError)
    expect(() => socket!.close('1000' as unknown as number)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_CLOSE_CODE' }))
    expect(() => socket!.send(42 as unknown as string)).toThrow(TypeError)
    expect(() => socket!.send({} as unknown as string)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG' }))
    // Nothing was sent by the failed calls: the connection is still usable.
    const reply = nextMessage(ws)
    ws.send('still here')
    expect(await reply).toBe('still here')
    socket!.close(1000, 'é'.repeat(61)) // 122 bytes: fine
    expect((await closed(ws)).code).toBe(1000)
  })
})

describe('closeTimeout', () => {
  it('row 26: a peer that never answers our close is dropped after closeTimeout', async () => {
    const codes: number[] = []
    const srv = await start(
      { onConnect: (socket) => socket.close(4000, 'bye'), onClose: (_s, c) => void codes.push(c) },
      { closeTimeout: 300 },
    )
    const peer = await RawPeer.connect(srv.port)
    const started = Date.now()
    expect(await peer.closeCode()).toBe(4000)
    // We do not answer: the server must drop the TCP connection on its own.
    await peer.waitEnd(3000)
    expect(Date.now() - started).toBeGreaterThanOrEqual(250)
    expect(Date.now() - started).toBeLessThan(2500)
    await waitFor(() => codes.length === 1)
    expect(codes).toEqual([4000])
  })
})

// What onClose reports, in its order of precedence (lib/types.ts, docs/api.md "Close").
describe('what onClose reports', () => {
  const reported = (): { seen: Array<[number, string]>; handlers: WebSocketHandlers } => {
    const seen: Array<[number, string]> = []
    return { seen, handlers: { onClose: (_s, code, reason) => void seen.push([code, reason]) } }
  }

  it("a peer close frame without a code: 1005 and ''", async () => {
    const { seen, handlers } = reported()
    const { port } = await start(handlers)
    const peer = await RawPeer.connect(port)
    peer.send({ opcode: 0x8 })
    // The server answers with an empty close frame of its own (closeCode reads that as 1005).
    expect(await peer.closeCode()).toBe(1005)
    await waitFor(() => seen.length === 1)
    expect(seen).toEqual([[1005, '']])
    peer.destroy()
  })

  it("the peer's close frame wins over the close we asked for", async () => {
    const { seen, handlers } = reported()
    const { port } = await start({ ...handlers, onConnect: (socket) => socket.close(4001, 'ours') })
    const peer = await RawPeer.connect(port)
    expect(await peer.closeCode()).toBe(4001)
    // The peer answers with a close of its own rather than an echo.
    peer.send({ opcode: 0x8, payload: closePayload(4002, 'theirs') })
    await peer.waitEnd(3000)
    await waitFor(() => seen.length === 1)
    expect(seen).toEqual([[4002, 'theirs']])
  })

  it("a peer silent past idleTimeout: 1006 and 'Idle timeout'", async () => {
    const { seen, handlers } = reported()
    const { port } = await start(handlers, { pingInterval: 60_000, idleTimeout: 200 })
    const peer = await RawPeer.connect(port)
    await peer.waitEnd(3000)
    await waitFor(() => seen.length === 1)
    expect(seen).toEqual([[1006, 'Idle timeout']])
  })

  it('our close the peer never answers: our code and reason', async () => {
    const { seen, handlers } = reported()
    const { port } = await start({ ...handlers, onConnect: (socket) => socket.close(4003, 'unanswered') }, { closeTimeout: 200 })
    const peer = await RawPeer.connect(port)
    expect(await peer.closeCode()).toBe(4003)
    await peer.waitEnd(3000)
    await waitFor(() => seen.length === 1)
    expect(seen).toEqual([[4003, 'unanswered']])
  })

  it('server.close() the peer never answers: 1001', async () => {
    const { seen, handlers } = reported()
    const { server, port } = await start(handlers)
    const peer = await RawPeer.connect(port)
    await waitFor(() => server.getConnections().length === 1)
    const closing = server.close({ timeout: 300 })
    expect(await peer.closeCode()).toBe(1001)
    await closing
    await waitFor(() => seen.length === 1)
    expect(seen[0]![0]).toBe(1001)
  })
})
