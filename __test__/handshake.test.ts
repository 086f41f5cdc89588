// HTTP answers before the upgrade (docs/hardening.md rows 1-5, 7 and 10), over raw TCP.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { rawExchange, type Started, startServer, statusOf, upgradeRequest } from '../test-support/index'

let s: Started
beforeAll(async () => {
  s = await startServer({ onMessage: (socket, msg) => void socket.send(msg) })
})
afterAll(async () => {
  await s.server.close()
})

describe('upgrade request checks', () => {
  it('a valid request gets 101 with the RFC 6455 accept key', async () => {
    const res = await rawExchange(s.port, upgradeRequest('/ws'), 300)
    expect(statusOf(res)).toBe(101)
    // The sample key from RFC 6455 §1.3.
    expect(res.toString('latin1')).toMatch(/sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=/i)
  })

  it('row 10: unknown path: 404', async () => {
    expect(statusOf(await rawExchange(s.port, upgradeRequest('/nope')))).toBe(404)
  })

  it('row 3: plain HTTP GET on a WebSocket path: 426 with Upgrade: websocket', async () => {
    const res = await rawExchange(s.port, 'GET /ws HTTP/1.1\r\nHost: x\r\n\r\n')
    expect(statusOf(res)).toBe(426)
    expect(res.toString('latin1')).toMatch(/upgrade: websocket/i)
  })

  it('row 3: wrong Upgrade header: 426', async () => {
    expect(statusOf(await rawExchange(s.port, upgradeRequest('/ws', { Upgrade: 'h2c' })))).toBe(426)
  })

  it('row 3: Connection header without Upgrade: 400', async () => {
    expect(statusOf(await rawExchange(s.port, upgradeRequest('/ws', { Connection: 'keep-alive' })))).toBe(400)
  })

  it('row 1: method other than GET: 405', async () => {
    const res = await rawExchange(s.port, upgradeRequest('/ws', {}, 'POST /ws HTTP/1.1'))
    expect(statusOf(res)).toBe(405)
  })

  it('row 2: HTTP/1.0 request line: 505', async () => {
    const res = await rawExchange(s.port, upgradeRequest('/ws', {}, 'GET /ws HTTP/1.0'))
    expect(statusOf(res)).toBe(505)
  })

  it('row 4: missing Sec-WebSocket-Key: 400', async () => {
    expect(statusOf(await rawExchange(s.port, upgradeRequest('/ws', { 'Sec-WebSocket-Key': null })))).toBe(400)
  })

  it.each(['not base64!', 'c2hvcnQ=', 'dGhpcyBrZXkgaXMgd2F5IHRvbyBsb25nIGZvciBhIGtleQ=='])(
    'row 4: Sec-WebSocket-Key %j that is not base64 of 16 bytes: 400',
    async (key) => {
      expect(statusOf(await rawExchange(s.port, upgradeRequest('/ws', { 'Sec-WebSocket-Key': key })))).toBe(400)
    },
  )

  it.each([null, '8', '12', '14', 'abc'])('row 5: Sec-WebSocket-Version %j: 426 with Sec-WebSocket-Version: 13', async (v) => {
    const res = await rawExchange(s.port, upgradeRequest('/ws', { 'Sec-WebSocket-Version': v }))
    expect(statusOf(res)).toBe(426)
    expect(res.toString('latin1')).toMatch(/sec-websocket-version: 13/i)
  })

  it('row 7: too many headers: 431, and the server keeps serving', async () => {
    const many: Record<string, string> = {}
    for (let i = 0; i < 150; i++) many[`X-H${i}`] = 'v'
    expect(statusOf(await rawExchange(s.port, upgradeRequest('/ws', many)))).toBe(431)
    expect(statusOf(await rawExchange(s.port, upgradeRequest('/ws'), 300))).toBe(101)
  })

  it('row 7: a request head over the limit: 431, and the server keeps serving', async () => {
    expect(statusOf(await rawExchange(s.port, upgradeRequest('/ws', { 'X-Big': 'a'.repeat(64 * 1024) })))).toBe(431)
    expect(statusOf(await rawExchange(s.port, upgradeRequest('/ws'), 300))).toBe(101)
  })
})
