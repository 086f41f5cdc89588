// The built-in JSON room protocol (docs/protocol.md), spoken by raw `ws` clients.
import { describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { anyMessageWithin, connect, connectAs, lastJsonLine, nextMessage, type ProtocolFrame, request, runChild, serverPool, waitFor } from '../test-support/index'

const server = serverPool(1000)

describe('built-in protocol', () => {
  it('join, room_message (with from_client_id, not echoed to the sender), leave', async () => {
    const { url, server: srv } = await server()
    const alice = await connectAs(url, 'alice')
    const bob = await connectAs(url, 'bob')
    expect(await request(alice, { type: 'join_room', room_id: 'general', request_id: 'r1' })).toEqual({
      type: 'room_joined',
      room_id: 'general',
      request_id: 'r1',
    })
    expect(await request(bob, { type: 'join_room', room_id: 'general' })).toEqual({ type: 'room_joined', room_id: 'general' })
    expect(srv.getRoom('general')?.connectionsCount).toBe(2)

    const toBob = nextMessage(bob)
    const aliceHears = anyMessageWithin(alice, 200)
    alice.send(JSON.stringify({ type: 'room_message', room_id: 'general', message: 'Hello' }))
    expect(JSON.parse((await toBob) as string)).toEqual({
      type: 'room_message',
      room_id: 'general',
      message: 'Hello',
      from_client_id: 'alice',
    })
    expect(await aliceHears).toBe(false)

    // Structured messages pass through as JSON.
    const structured = nextMessage(alice)
    bob.send(JSON.stringify({ type: 'room_message', room_id: 'general', message: { text: 'hi', n: [1, 2] } }))
    expect(JSON.parse((await structured) as string).message).toEqual({ text: 'hi', n: [1, 2] })

    expect(await request(bob, { type: 'leave_room', room_id: 'general', request_id: 9 })).toEqual({
      type: 'room_left',
      room_id: 'general',
      request_id: 9,
    })
    expect(srv.getRoom('general')?.connectionsCount).toBe(1)
    alice.close()
    bob.close()
  })

  it('ping gets pong with the same timestamp and request_id', async () => {
    const { url } = await server()
    const ws = await connect(url)
    expect(await request(ws, { type: 'ping', timestamp: 1234567, request_id: 'p' })).toEqual({
      type: 'pong',
      timestamp: 1234567,
      request_id: 'p',
    })
    ws.close()
  })

  it('sending to a room you are not in is an error reply', async () => {
    const { url } = await server()
    const ws = await connect(url)
    const reply = await request(ws, { type: 'room_message', room_id: 'elsewhere', message: 'x', request_id: 3 })
    expect(reply.type).toBe('error')
    expect(reply.request_id).toBe(3)
    expect(String(reply.error)).toMatch(/not in room/)
    ws.close()
  })

  it('row 30: malformed protocol frames get an error reply and the connection stays up', async () => {
    const { url } = await server({ onMessage: (s, m) => void s.send(`app:${String(m)}`) })
    const ws = await connect(url)
    const bad: ProtocolFrame[] = [
      { type: 'join_room' },
      { type: 'join_room', room_id: 42 },
      { type: 'join_room', room_id: '' },
      { type: 'join_room', room_id: 'x'.repeat(1024 * 1024 - 100) },
      { type: 'leave_room', room_id: null },
      { type: 'room_message', room_id: 'a' },
      { type: 'room_message', message: 'no room' },
    ]
    for (const frame of bad) {
      const reply = await request(ws, { ...frame, request_id: 'bad' })
      expect(reply.type).toBe('error')
      expect(reply.request_id).toBe('bad')
      expect(typeof reply.error).toBe('string')
    }
    // Not protocol at all: plain text, broken JSON, unknown types go to onMessage.
    for (const text of ['hello', '{"type": "join_room", broken', '{"type":"chat"}']) {
      const reply = nextMessage(ws)
      ws.send(text)
      expect(await reply).toBe(`app:${text}`)
    }
    expect(ws.readyState).toBe(WebSocket.OPEN)
    ws.close()
  })

  it('protocol traffic never crosses into JS when no hook is registered', async () => {
    const { url, server: srv } = await server({})
    const a = await connect(url)
    const b = await connect(url)
    await waitFor(() => srv.getConnections().length === 2)
    const before = srv.getStats().batching.events
    await request(a, { type: 'join_room', room_id: 'quiet' })
    await request(b, { type: 'join_room', room_id: 'quiet' })
    const got = nextMessage(b)
    a.send(JSON.stringify({ type: 'room_message', room_id: 'quiet', message: 'm' }))
    await got
    await request(a, { type: 'ping', timestamp: 1 })
    a.send('app message without onMessage')
    await request(a, { type: 'leave_room', room_id: 'quiet' })
    expect(srv.getStats().batching.events).toBe(before)
    a.close()
    b.close()
  })

  // A substring of the batch string would keep the whole batch alive in V8; room ids and close
  // reasons are handed over as strings of their own. Each join below shares its batch with
  // 60 KB of text: 300 kept slices would hold about 14 MB.
  it('room ids a hook keeps do not keep their batch of messages alive', async () => {
    const script = `
      const { WsServer } = require('./dist/index.js')
      const WebSocket = require('ws')
      ;(async () => {
        const kept = []
        const server = new WsServer({ host: '127.0.0.1', port: 0 })
        server.websocket('/ws', { onMessage: () => {}, onJoinRoom: (_s, roomId) => void kept.push(roomId) })
        const { port } = await server.listen()
        const ws = new WebSocket('ws://127.0.0.1:' + port + '/ws')
        await new Promise((r) => ws.on('open', r))
        const replies = []
        let wake = null
        ws.on('message', (m) => { replies.push(String(m)); if (wake) wake() })
        const next = () => new Promise((r) => {
          if (replies.length) return r(replies.shift())
          wake = () => { wake = null; r(replies.shift()) }
        })
        const filler = 'x'.repeat(60000)
        gc(); gc()
        const before = process.memoryUsage().heapUsed
        for (let i = 0; i < 300; i++) {
          ws.send(JSON.stringify({ type: 'join_room', room_id: 'a-room-with-a-longer-name-' + i }))
          ws.send(filler)
          await next()
        }
        gc(); gc()
        const grown = process.memoryUsage().heapUsed - before
        console.log(JSON.stringify({ kept: kept.length, distinct: new Set(kept).size, grown }))
        ws.close()
        await server.close({ timeout: 500 })
      })()
    `
    const { code, out } = await runChild(script, 20_000, ['--expose-gc'])
    expect(code).toBe(0)
    const r = lastJsonLine<{ kept: number; distinct: number; grown: number }>(out)
    expect(r.kept).toBe(300)
    expect(r.distinct).toBe(300)
    expect(r.grown).toBeLessThan(4_000_000)
  })
})
