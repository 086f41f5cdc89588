// Heartbeat: `ping` every pingInterval, a missing `pong` closes and reconnects. A TCP proxy
// that stops forwarding stands in for a dead network.
import { afterEach, describe, expect, it } from 'vitest'
import type { RNodeClientError, RNodeWebSocketClient } from '../src/index'
import { sleep, startProxy, startServer, type Proxy, type Started } from '../../test-support/index'
import { makeClient, nextEvent } from './harness'

const cleanup: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f()
})

// The engine answers `ping` natively; application messages would reach onMessage.
async function setup(): Promise<{ s: Started; proxy: Proxy; appMessages: () => number }> {
  let appMessages = 0
  const s = await startServer({ onMessage: () => void appMessages++ })
  cleanup.push(() => s.server.close())
  const proxy = await startProxy(s.port)
  cleanup.push(() => proxy.close())
  return { s, proxy, appMessages: () => appMessages }
}

function track(c: RNodeWebSocketClient): RNodeWebSocketClient {
  cleanup.push(() => c.disconnect())
  return c
}

describe('heartbeat', () => {
  it('answered pings keep the connection; each pong reports a latency', async () => {
    const { proxy } = await setup()
    const c = track(makeClient(proxy.url, 'hb_ok', { pingInterval: 60, pongTimeout: 200 }))
    const errors: RNodeClientError[] = []
    c.on('error', (e) => errors.push(e))
    let pongs = 0
    c.on('pong', (latency) => {
      expect(latency).toBeGreaterThanOrEqual(0)
      expect(latency).toBeLessThan(1000)
      pongs++
    })
    await c.connect()
    await sleep(700)
    expect(pongs).toBeGreaterThanOrEqual(4)
    expect(errors).toEqual([])
    expect(c.getStatus()).toBe('connected')
    expect(proxy.connections).toBe(1)
  })

  it('a missing pong closes the connection (ERR_PONG_TIMEOUT) and the client reconnects', async () => {
    const { proxy } = await setup()
    const c = track(makeClient(proxy.url, 'hb_dead', { pingInterval: 60, pongTimeout: 250 }))
    await c.connect()
    await nextEvent(c, 'pong', 2000)

    proxy.freeze()
    const frozenAt = Date.now()
    const [err] = await nextEvent(c, 'error', 3000)
    expect(err.code).toBe('ERR_PONG_TIMEOUT')
    const waited = Date.now() - frozenAt
    expect(waited).toBeGreaterThanOrEqual(200)
    expect(waited).toBeLessThan(1500)
    expect(c.getStatus()).not.toBe('connected')

    const back = nextEvent(c, 'connected', 5000)
    proxy.thaw()
    await back
    await nextEvent(c, 'pong', 2000)
    expect(proxy.connections).toBeGreaterThanOrEqual(2)
  })

  it('pingInterval: 0 sends no pings', async () => {
    const { proxy } = await setup()
    const c = track(makeClient(proxy.url, 'hb_off', { pingInterval: 0 }))
    let pongs = 0
    c.on('pong', () => pongs++)
    await c.connect()
    await sleep(300)
    expect(pongs).toBe(0)
  })

  it('pings are protocol frames the engine answers, never application messages', async () => {
    const { proxy, appMessages } = await setup()
    const c = track(makeClient(proxy.url, 'hb_proto', { pingInterval: 40 }))
    await c.connect()
    await nextEvent(c, 'pong', 2000)
    await nextEvent(c, 'pong', 2000)
    expect(appMessages()).toBe(0)
  })
})
