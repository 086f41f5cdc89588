// Reconnect against a real server that is stopped and started again on the same port, the
// bounded offline queue, final close codes and maxReconnectAttempts.
import { afterEach, describe, expect, it } from 'vitest'
import type { RNodeWebSocketClient } from '../src/index'
import { closedPort, sleep, startServer, waitFor, type Started } from '../../test-support/index'
import { makeClient, nextEvent } from './harness'

const clients: RNodeWebSocketClient[] = []
const servers: Started[] = []
afterEach(async () => {
  for (const c of clients.splice(0)) c.disconnect()
  for (const s of servers.splice(0)) await s.server.close()
})

/** A server that records the text messages it receives. */
async function recordingServer(port = 0): Promise<{ s: Started; got: string[] }> {
  const got: string[] = []
  const s = await startServer(
    {
      onMessage: (_socket, m) => void got.push(String(m)),
    },
    { port },
  )
  servers.push(s)
  return { s, got }
}

describe('reconnect', () => {
  it('reconnects after the server restarts on the same port and delivers what was sent offline, in order', async () => {
    const first = await recordingServer()
    const c = makeClient(first.s.url, 'restart_1')
    clients.push(c)
    await c.connect()
    await c.send('before')
    await waitFor(() => first.got.length === 1, 3000, 'first message')

    const dropped = nextEvent(c, 'disconnected')
    await first.s.server.close()
    servers.splice(servers.indexOf(first.s), 1)
    const [code] = await dropped
    expect(code).toBe(1001) // the server's going-away close
    await waitFor(() => c.getStatus() === 'reconnecting', 2000, 'reconnecting status')

    await c.send('offline 1')
    await c.send({ offline: 2 })
    await c.send('offline 3')
    expect(c.getQueuedMessageCount()).toBe(3)

    await sleep(250) // a few failed attempts against the closed port
    const reconnected = nextEvent(c, 'connected', 8000)
    const second = await recordingServer(first.s.port)
    await reconnected
    await waitFor(() => second.got.length === 3, 3000, 'queued messages on the new server')
    expect(second.got).toEqual(['offline 1', '{"offline":2}', 'offline 3'])
    expect(c.getQueuedMessageCount()).toBe(0)
    await c.send('after')
    await waitFor(() => second.got.length === 4, 3000, 'message after reconnect')
    expect(first.got).toEqual(['before'])
  })

  it('emits reconnecting(attempt, delay) with growing delays and gives up after maxReconnectAttempts', async () => {
    const port = await closedPort()
    const c = makeClient(`ws://127.0.0.1:${port}/ws`, 'giveup_1', {
      maxReconnectAttempts: 3,
      reconnectDelay: 20,
      maxReconnectDelay: 1000,
    })
    clients.push(c)
    const seen: Array<[number, number]> = []
    c.on('reconnecting', (attempt, delay) => seen.push([attempt, delay]))
    const errors: string[] = []
    c.on('error', (e) => errors.push(e.code))
    const reached = nextEvent(c, 'maxReconnectAttemptsReached', 5000)
    await expect(c.connect()).rejects.toMatchObject({ code: 'ERR_MAX_RECONNECT_ATTEMPTS' })
    expect(await reached).toEqual([3])
    expect(seen).toEqual([
      [1, 20],
      [2, 40],
      [3, 80],
    ])
    expect(errors).toEqual(['ERR_CONNECTION_FAILED', 'ERR_CONNECTION_FAILED', 'ERR_CONNECTION_FAILED', 'ERR_CONNECTION_FAILED'])
    expect(c.getStatus()).toBe('disconnected')
  })

  it('autoReconnect: false rejects connect() on the first failure', async () => {
    const port = await closedPort()
    const c = makeClient(`ws://127.0.0.1:${port}/ws`, 'noretry_1', { autoReconnect: false })
    clients.push(c)
    let reconnecting = 0
    c.on('reconnecting', () => reconnecting++)
    await expect(c.connect()).rejects.toMatchObject({ code: 'ERR_CONNECTION_FAILED' })
    expect(reconnecting).toBe(0)
  })

  it('does not reconnect after a close the server marks as final (1008)', async () => {
    const s = await startServer({ onConnect: (socket) => socket.close(1008, 'go away') })
    servers.push(s)
    const c = makeClient(s.url, 'final_1')
    clients.push(c)
    let reconnecting = 0
    c.on('reconnecting', () => reconnecting++)
    const gone = nextEvent(c, 'disconnected')
    await c.connect()
    expect(await gone).toEqual([1008, 'go away'])
    await sleep(300)
    expect(reconnecting).toBe(0)
    expect(c.getStatus()).toBe('disconnected')
  })

  it('a close the client does not know as final (4000) is followed by a reconnect', async () => {
    let connects = 0
    const s = await startServer({
      onConnect: (socket) => {
        if (++connects === 1) socket.close(4000, 'try again')
      },
    })
    servers.push(s)
    const c = makeClient(s.url, 'nonfinal_1')
    clients.push(c)
    await c.connect()
    await nextEvent(c, 'disconnected')
    await nextEvent(c, 'connected')
    await waitFor(() => connects === 2, 3000, 'second server-side connect')
    await sleep(100)
    expect(connects).toBe(2)
  })
})

describe('offline queue', () => {
  it('keeps at most maxQueuedMessages, dropping the oldest with messageDropped', async () => {
    const { s, got } = await recordingServer()
    const c = makeClient(s.url, 'queue_1', { maxQueuedMessages: 2 })
    clients.push(c)
    const dropped: unknown[] = []
    c.on('messageDropped', (m) => dropped.push(m))
    await c.send('a')
    await c.send('b')
    await c.send({ c: 3 })
    expect(dropped).toEqual(['a'])
    expect(c.getQueuedMessageCount()).toBe(2)
    await c.connect()
    await waitFor(() => got.length === 2, 3000, 'queued messages')
    expect(got).toEqual(['b', '{"c":3}'])
  })

  it('maxQueuedMessages: 0 sends nothing that was given while offline', async () => {
    const { s, got } = await recordingServer()
    const c = makeClient(s.url, 'queue_2', { maxQueuedMessages: 0 })
    clients.push(c)
    let dropped = 0
    c.on('messageDropped', () => dropped++)
    await c.send('lost')
    expect(dropped).toBe(1)
    await c.connect()
    await c.send('kept')
    await waitFor(() => got.length === 1, 3000, 'one message')
    await sleep(50)
    expect(got).toEqual(['kept'])
  })
})
