// What the application decides before the 101: onUpgrade (authentication, clientId, data) and
// subprotocols.
import type { IncomingHttpHeaders } from 'node:http'
import { describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import type { Socket } from '../lib/index'
import { connect, rawExchange, refusedStatus, serverPool, sleep, statusOf, upgradeRequest, waitFor } from '../test-support/index'

const server = serverPool()

describe('onUpgrade', () => {
  it('authenticates with a token in the query; data and clientId reach the socket', async () => {
    let socket: Socket | undefined
    const seen: Array<{ path: string; query: Record<string, string>; ua: string | undefined; ip: string }> = []
    const { url } = await server({
      onUpgrade: async (req) => {
        seen.push({ path: req.path, query: req.query, ua: req.headers['user-agent'], ip: req.remoteAddress })
        await sleep(10)
        if (req.query.token !== 'secret') return false
        return { clientId: 'user_42', data: { role: 'admin' } }
      },
      onConnect: (s) => void (socket = s),
    })
    expect(await refusedStatus(`${url}?token=wrong`)).toBe(401)
    const ws = await connect(`${url}?token=secret`, { headers: { 'User-Agent': 'test-agent' } })
    await waitFor(() => socket !== undefined)
    expect(socket!.clientId).toBe('user_42')
    expect(socket!.data).toEqual({ role: 'admin' })
    expect(seen[1]).toEqual({ path: '/ws', query: { token: 'secret' }, ua: 'test-agent', ip: '127.0.0.1' })
    ws.close()
  })

  it('{ status, message } refuses with that status; a throw refuses with 500', async () => {
    const { url } = await server({
      onUpgrade: (req) => {
        if (req.query.mode === 'throw') throw new Error('broken auth')
        if (req.query.mode === 'teapot') return { status: 418, message: 'no' }
        return { status: 403 }
      },
    })
    expect(await refusedStatus(`${url}?mode=teapot`)).toBe(418)
    expect(await refusedStatus(`${url}?mode=deny`)).toBe(403)
    expect(await refusedStatus(`${url}?mode=throw`)).toBe(500)
  })

  it('an invalid clientId from onUpgrade refuses with 500 instead of upgrading', async () => {
    const { url } = await server({ onUpgrade: () => ({ clientId: 'bad id with spaces' }) })
    expect(await refusedStatus(url)).toBe(500)
  })
})

describe('onUpgrade headers', () => {
  /** The 101's headers as the ws client read them (its 'upgrade' event). */
  function upgradeHeaders(url: string): Promise<[IncomingHttpHeaders, WebSocket]> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url)
      let headers: IncomingHttpHeaders = {}
      ws.once('upgrade', (res) => void (headers = res.headers))
      ws.once('open', () => resolve([headers, ws]))
      ws.once('error', reject)
    })
  }

  it('lines onUpgrade returns go out in the 101, after the handshake headers', async () => {
    const { url } = await server({
      onUpgrade: async (req) => ({ headers: ['Set-Cookie: a=1; Path=/', 'Set-Cookie: b=2', `X-Query: ${req.query.q ?? ''}`, 'X-Empty:'] }),
    })
    const [headers, ws] = await upgradeHeaders(`${url}?q=7`)
    expect(headers['set-cookie']).toEqual(['a=1; Path=/', 'b=2'])
    expect(headers['x-query']).toBe('7')
    expect(headers['x-empty']).toBe('')
    expect(headers.upgrade).toBe('websocket')
    ws.close()
  })

  it.each([
    ['a CR/LF in a value', 'X-A: 1\r\nSet-Cookie: evil=1'],
    ['a bare LF', 'X-A: 1\nX-B: 2'],
    ['no colon', 'just text'],
    ['a name that is not a token', 'X A: 1'],
    ['one of the handshake headers', 'Sec-WebSocket-Accept: forged'],
  ])('%s refuses the upgrade with 500 (ERR_INVALID_HANDLER_RESULT), nothing of it sent', async (_name, line) => {
    const errors: unknown[] = []
    const original = console.error
    console.error = (...args: unknown[]) => void errors.push(args[1])
    try {
      const { url } = await server({ onUpgrade: () => ({ headers: ['X-Fine: 1', line] }) })
      expect(await refusedStatus(url)).toBe(500)
      expect(errors).toEqual([expect.objectContaining({ code: 'ERR_INVALID_HANDLER_RESULT' })])
    } finally {
      console.error = original
    }
  })
})

describe('subprotocols', () => {
  it('a list: the first client offer the server speaks wins', async () => {
    let socket: Socket | undefined
    const { url } = await server({ onConnect: (s) => void (socket = s) }, { protocols: ['chat.v2', 'chat.v1'] })
    const ws = await connect(url, {}).then((w) => w)
    expect(ws.protocol).toBe('')
    ws.close()
    const ws2 = new WebSocket(url, ['chat.v1', 'chat.v2'])
    await new Promise((r) => ws2.once('open', r))
    expect(ws2.protocol).toBe('chat.v1')
    await waitFor(() => socket?.protocol === 'chat.v1')
    ws2.close()
  })

  it('a selector function decides', async () => {
    const { url } = await server({}, { protocols: (offered) => (offered.includes('b') ? 'b' : false) })
    const ws = new WebSocket(url, ['a', 'b'])
    await new Promise((r) => ws.once('open', r))
    expect(ws.protocol).toBe('b')
    ws.close()
  })

  it('pathological Sec-WebSocket-Protocol headers parse in linear time (row 9)', async () => {
    const { port } = await server({}, { protocols: ['chat'] })
    // Each fits the request-head limit, so each upgrades: with `chat` where the client offered it,
    // else with no subprotocol (RFC 6455 §4.2.2: the server picks one of the offers or none).
    const cases: Array<[string, string | null]> = [
      [' '.repeat(7000), null],
      [','.repeat(7000), null],
      ['__proto__, constructor', null],
      ['"unclosed, quote', null],
      ['chat' + ', x'.repeat(2000), 'chat'],
      // Only the first 32 offers are considered (docs/limits.md).
      ['x, '.repeat(31) + 'chat', 'chat'],
      ['x, '.repeat(32) + 'chat', null],
    ]
    for (const [value, chosen] of cases) {
      const started = Date.now()
      const res = (await rawExchange(port, upgradeRequest('/ws', { 'Sec-WebSocket-Protocol': value }), 300)).toString('latin1')
      expect(Date.now() - started).toBeLessThan(1000)
      expect(statusOf(Buffer.from(res, 'latin1'))).toBe(101)
      expect(/^sec-websocket-protocol: (.*)$/im.exec(res)?.[1]?.trim() ?? null).toBe(chosen)
    }
  })
})
