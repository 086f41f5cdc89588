// Heartbeat: server pings every pingInterval, silent peers are dropped after idleTimeout, the
// built-in ping message, ping-frame floods (docs/hardening.md rows 28, 29).
import { describe, expect, it } from 'vitest'
import { connect, encodeFrame, RawPeer, serverPool, sleep, waitFor } from '../test-support/index'

const TEXT = 0x1
const CLOSE = 0x8
const PING = 0x9

const start = serverPool()

describe('heartbeat', () => {
  it('row 28: a dead peer (no pongs, nothing sent) is closed after idleTimeout', async () => {
    const srv = await start({}, { pingInterval: 100, idleTimeout: 400 })
    const peer = await RawPeer.connect(srv.port)
    // The server pings us...
    const ping = await peer.nextFrame(2000, false)
    expect(ping?.opcode).toBe(PING)
    // ...we never answer, so it drops us.
    const started = Date.now()
    await peer.waitEnd(3000)
    expect(Date.now() - started).toBeLessThan(1500)
  })

  it('a live peer that answers pings outlives idleTimeout; lastPong moves', async () => {
    const srv = await start({}, { pingInterval: 100, idleTimeout: 300 })
    const ws = await connect(srv.url)
    await waitFor(() => srv.server.getConnections().length === 1)
    const socket = srv.server.getConnections()[0]!
    const firstPong = socket.lastPong!.getTime()
    await sleep(800)
    expect(ws.readyState).toBe(ws.OPEN)
    expect(socket.lastPong!.getTime()).toBeGreaterThan(firstPong)
    ws.close()
  })

  it('the built-in ping message updates lastPing and counts as activity', async () => {
    // Six pings over 1.8 s keep a connection with a 1 s idleTimeout open; the gaps leave room for
    // a loaded machine.
    const srv = await start({}, { pingInterval: 60_000, idleTimeout: 1000 })
    const peer = await RawPeer.connect(srv.port)
    await waitFor(() => srv.server.getConnections().length === 1)
    const socket = srv.server.getConnections()[0]!
    const before = socket.lastPing!.getTime()
    for (let i = 0; i < 6; i++) {
      await sleep(300)
      peer.send({ opcode: TEXT, payload: JSON.stringify({ type: 'ping', timestamp: i }) })
      expect(JSON.parse((await peer.nextFrame())!.payload.toString())).toEqual({ type: 'pong', timestamp: i })
    }
    expect(peer.ended).toBe(false)
    expect(socket.lastPing!.getTime()).toBeGreaterThan(before)
    peer.destroy()
  })

  it('row 29: ping frames are answered; a flood is closed with 1008', async () => {
    const srv = await start({})
    const peer = await RawPeer.connect(srv.port)
    peer.send({ opcode: PING, payload: 'p1' })
    const pong = await peer.nextFrame()
    expect(pong?.opcode).toBe(0xa)
    expect(pong?.payload.toString()).toBe('p1')
    peer.send(Buffer.concat(Array.from({ length: 500 }, () => encodeFrame({ opcode: PING, payload: 'x' }))))
    let code: number | null = null
    for (;;) {
      const f = await peer.nextFrame()
      if (f === null || f.opcode === CLOSE) {
        code = f ? f.payload.readUInt16BE(0) : null
        break
      }
    }
    expect(code).toBe(1008)
  })
})
