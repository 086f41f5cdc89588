// The `auth` option: a token (or a function giving one) sent as a query parameter on every
// (re)connect; refusals by HTTP status (before the upgrade) or by close code (after it).
import { afterEach, describe, expect, it } from 'vitest'
import type { RNodeClientError, RNodeWebSocketClient } from '../src/index'
import { sleep, startServer, waitFor, type Started } from '../../test-support/index'
import { makeClient, nextEvent } from './harness'

const cleanup: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f()
})
function track(c: RNodeWebSocketClient): RNodeWebSocketClient {
  cleanup.push(() => c.disconnect())
  return c
}

/** A server that closes connections whose `token` is not `good` with 1008, and records tokens. */
async function checkingServer(): Promise<{ s: Started; tokens: string[] }> {
  const tokens: string[] = []
  const s = await startServer({
    onConnect: (socket) => {
      tokens.push(socket.query.token ?? '(none)')
      if (socket.query.token !== 'good') socket.close(1008, 'bad token')
    },
  })
  cleanup.push(() => s.server.close())
  return { s, tokens }
}

/** An rnode-ws server whose `onUpgrade` refuses every upgrade with `status` (401 via `false`). */
async function refusingServer(status: 401 | 403): Promise<{ url: string; upgrades: () => number }> {
  let upgrades = 0
  const s = await startServer({
    onUpgrade: () => {
      upgrades++
      return status === 401 ? false : { status, message: 'token refused' }
    },
  })
  cleanup.push(() => s.server.close())
  return { url: s.url, upgrades: () => upgrades }
}

describe('auth', () => {
  it('sends a string token as the `token` query parameter and emits authSuccess', async () => {
    const { s, tokens } = await checkingServer()
    const c = track(makeClient(s.url, 'auth_1', { auth: 'good' }))
    const ok = nextEvent(c, 'authSuccess')
    await c.connect()
    await ok
    await waitFor(() => tokens.length === 1)
    expect(tokens).toEqual(['good'])
  })

  it('authParam renames the query parameter; no token means no authSuccess', async () => {
    const seen: Array<Record<string, string>> = []
    const s = await startServer({ onConnect: (socket) => void seen.push({ ...socket.query }) })
    cleanup.push(() => s.server.close())
    const c = track(makeClient(s.url, 'auth_2', { auth: 'abc', authParam: 'access_token' }))
    await c.connect()
    const plain = track(makeClient(s.url, 'auth_3'))
    let successes = 0
    plain.on('authSuccess', () => successes++)
    await plain.connect()
    await waitFor(() => seen.length === 2)
    expect(seen.find((q) => q.clientId === 'auth_2')).toEqual({ clientId: 'auth_2', access_token: 'abc' })
    expect(seen.find((q) => q.clientId === 'auth_3')).toEqual({ clientId: 'auth_3' })
    expect(successes).toBe(0)
  })

  it('calls an async token function before every (re)connect', async () => {
    let connects = 0
    const tokens: string[] = []
    const s = await startServer({
      onConnect: (socket) => {
        tokens.push(socket.query.token!)
        if (++connects === 1) socket.close(4000, 'reconnect please')
      },
    })
    cleanup.push(() => s.server.close())
    let calls = 0
    const c = track(
      makeClient(s.url, 'auth_4', {
        auth: async () => {
          await sleep(5)
          return `t${++calls}`
        },
      }),
    )
    await c.connect()
    await waitFor(() => tokens.length === 2, 3000, 'second connect')
    expect(tokens).toEqual(['t1', 't2'])
  })

  it('a 401 refusal emits authError with the status and is not retried with the same token', async () => {
    const { url, upgrades } = await refusingServer(401)
    const c = track(makeClient(url, 'auth_5', { auth: 'stale' }))
    const errors: RNodeClientError[] = []
    c.on('authError', (e) => errors.push(e))
    let reconnecting = 0
    c.on('reconnecting', () => reconnecting++)
    await expect(c.connect()).rejects.toMatchObject({ code: 'ERR_AUTH_FAILED' })
    expect(errors.map((e) => [e.code, e.status])).toEqual([['ERR_AUTH_FAILED', 401]])
    await sleep(300) // several reconnect delays
    expect(upgrades()).toBe(1)
    expect(reconnecting).toBe(0)
  })

  it('a 403 refusal with a token function that returns the same token stops after asking once more', async () => {
    const { url, upgrades } = await refusingServer(403)
    let calls = 0
    const c = track(makeClient(url, 'auth_6', { auth: () => (calls++, 'same') }))
    let authErrors = 0
    c.on('authError', () => authErrors++)
    await expect(c.connect()).rejects.toMatchObject({ code: 'ERR_AUTH_FAILED' })
    expect(calls).toBe(2)
    expect(upgrades()).toBe(1)
    expect(authErrors).toBe(1)
  })

  it('a 1008 close after the upgrade is an auth error; a fresh token from the function gets in', async () => {
    const { s, tokens } = await checkingServer()
    const fresh = ['expired', 'good']
    const c = track(makeClient(s.url, 'auth_7', { auth: () => fresh.shift() ?? 'none' }))
    const authError = nextEvent(c, 'authError')
    await c.connect() // resolves on the first open, before the server closes it
    const [err] = await authError
    expect(err.closeCode).toBe(1008)
    await waitFor(() => tokens.length === 2 && c.getStatus() === 'connected', 3000, 'second connection')
    expect(tokens).toEqual(['expired', 'good'])
  })

  it('a 1008 close with a fixed token: authError and no reconnect', async () => {
    const { s, tokens } = await checkingServer()
    const c = track(makeClient(s.url, 'auth_8', { auth: 'bad' }))
    const authError = nextEvent(c, 'authError')
    await c.connect()
    await authError
    await sleep(300)
    expect(tokens).toEqual(['bad'])
    expect(c.getStatus()).toBe('disconnected')
  })
})
