// A reconnect storm: every client of a server dropped at once by a restart, coming back through
// the client's backoff and jitter (@rnode/websocket-client on `ws`). All must return with their
// rooms, and the kernel must not have had to drop a handshake for a full listen queue.
import { existsSync, readFileSync } from 'node:fs'
import { afterEach, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { startServer, waitFor, type Started } from '../../test-support/index'
import { RNodeWebSocketClient } from '../src/index'

const CLIENTS = 2000
const ROOM = 'storm'

/** ListenOverflows from /proc/net/netstat (Linux), or undefined. */
function listenOverflows(): number | undefined {
  if (!existsSync('/proc/net/netstat')) return undefined
  const lines = readFileSync('/proc/net/netstat', 'utf8').split('\n').filter((l) => l.startsWith('TcpExt:'))
  const names = lines[0]?.split(/\s+/) ?? []
  const values = lines[1]?.split(/\s+/) ?? []
  const i = names.indexOf('ListenOverflows')
  return i < 0 ? undefined : Number(values[i])
}

const clients: RNodeWebSocketClient[] = []
const servers: Started[] = []
afterEach(async () => {
  for (const c of clients.splice(0)) c.disconnect()
  await Promise.all(servers.splice(0).map((s) => s.server.close({ timeout: 500 })))
})

describe('reconnect storm', () => {
  it(`${CLIENTS} clients dropped by a restart all come back, rooms rejoined, no listen overflow`, async () => {
    const first = await startServer()
    servers.push(first)
    let connected = 0
    for (let i = 0; i < CLIENTS; i++) {
      const client = new RNodeWebSocketClient(first.url, `c${i}`, {
        WebSocket,
        reconnectDelay: 200,
        maxReconnectDelay: 1000,
        reconnectJitter: 0.5,
        maxReconnectAttempts: 30,
      })
      client.on('connected', () => connected++)
      clients.push(client)
    }
    // Joined on open; connect() settles when disconnect() ends the test.
    const joined = clients.map((c) => c.joinRoom(ROOM))
    for (const c of clients) c.connect().catch(() => {})
    await Promise.all(joined)
    expect(first.server.getRoom(ROOM)?.connectionsCount).toBe(CLIENTS)
    expect(connected).toBe(CLIENTS)

    const overflowsBefore = listenOverflows()
    connected = 0
    await first.server.close({ timeout: 1000 })
    servers.length = 0
    const second = await startServer({}, { port: first.port })
    servers.push(second)
    await waitFor(() => connected === CLIENTS, 20_000, `all ${CLIENTS} clients back`)
    await waitFor(() => second.server.getRoom(ROOM)?.connectionsCount === CLIENTS, 5000, 'every room membership back')
    expect(second.server.getStats().totalConnections).toBe(CLIENTS)
    const overflowsAfter = listenOverflows()
    if (overflowsBefore !== undefined && overflowsAfter !== undefined) expect(overflowsAfter - overflowsBefore).toBe(0)
  }, 60_000)
})
