// client.presence(roomId) and the presenceJoin / presenceLeave events against the real engine.
import { afterEach, describe, expect, it } from 'vitest'
import type { RNodeWebSocketClient } from '../src/index'
import { startServer, waitFor, type Started } from '../../test-support/index'
import { makeClient, nextEvent } from './harness'

const clients: RNodeWebSocketClient[] = []
const servers: Started[] = []
afterEach(async () => {
  for (const c of clients.splice(0)) c.disconnect()
  for (const s of servers.splice(0)) await s.server.close()
})

async function serverWithPresence(): Promise<Started> {
  const s = await startServer(
    { onConnect: (socket) => socket.setMetadata('name', `N-${socket.clientId}`) },
    { presence: { fields: ['name'] } },
  )
  s.server.createRoom('events', { id: 'ev', presenceEvents: true })
  servers.push(s)
  return s
}

/** Connected, and `onConnect` has set its metadata (a join before that would carry no name). */
async function connected(s: Started, id: string): Promise<RNodeWebSocketClient> {
  const c = makeClient(s.url, id)
  clients.push(c)
  await c.connect()
  await waitFor(() => s.server.getConnections().some((x) => x.clientId === id), 5000)
  return c
}

describe('presence', () => {
  it('presence(roomId) lists the members with their public fields; not joined: ERR_NOT_JOINED', async () => {
    const s = await serverWithPresence()
    const a = await connected(s, 'ann')
    const b = await connected(s, 'bob')
    await a.joinRoom('ev')
    await b.joinRoom('ev')
    const members = await a.presence('ev')
    expect(members.sort((x, y) => x.clientId.localeCompare(y.clientId))).toEqual([
      { clientId: 'ann', fields: { name: 'N-ann' } },
      { clientId: 'bob', fields: { name: 'N-bob' } },
    ])
    await expect(a.presence('elsewhere')).rejects.toMatchObject({ code: 'ERR_NOT_JOINED' })
  })

  it('presenceJoin and presenceLeave tell the other members', async () => {
    const s = await serverWithPresence()
    const a = await connected(s, 'ann')
    await a.joinRoom('ev')
    const b = await connected(s, 'bob')
    const joined = nextEvent(a, 'presenceJoin')
    await b.joinRoom('ev')
    expect(await joined).toEqual(['ev', { clientId: 'bob', fields: { name: 'N-bob' } }])
    const left = nextEvent(a, 'presenceLeave')
    await b.leaveRoom('ev')
    expect(await left).toEqual(['ev', { clientId: 'bob', fields: { name: 'N-bob' } }])
  })
})
