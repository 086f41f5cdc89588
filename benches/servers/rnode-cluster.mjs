// rnode-ws as one node of a cluster: the same paths as rnode.mjs, with the room shared with the
// other nodes through the Redis at REDIS_URL (the runner starts a private redis-server and the
// nodes). Prints LISTENING only once this node's Redis subscription is up, so nothing
// published after the load generator starts can miss it.
//
// ROOMS=1: `/pub` messages name their room (`r12|payload`, the load generator's rooms mode)
// instead of all going to `bench`. CHANNELS: the cluster's `channels` option. STATS_FILE: on
// SIGTERM, this node's getStats() and the count of published messages are written there (the
// runner reads the Redis-to-node bytes).
import { writeFileSync } from 'node:fs'
import { WsServer } from '../../dist/index.js'

const redis = process.env.REDIS_URL
if (!redis) throw new Error('rnode-cluster.mjs needs REDIS_URL')
const channels = process.env.CHANNELS
// HISTORY=1: the room keeps its last 1,000 messages in Redis (each broadcast is numbered by a
// Lua script there and delivered by every node from the room's channel).
const history = process.env.HISTORY === '1' ? { size: 1000, ttl: 60_000 } : undefined
const server = new WsServer({
  port: 0,
  host: '127.0.0.1',
  cluster: { redis, prefix: process.env.CLUSTER_PREFIX ?? 'bench', ...(channels ? { channels } : {}) },
})
const byRoom = process.env.ROOMS === '1'
/** Messages the publisher sent through this node. */
let published = 0
server.websocket('/echo', { onMessage: (socket, message) => socket.send(message) })
server.websocket('/sub', {})
server.websocket('/pub', {
  onMessage: byRoom
    ? (_socket, message) => {
        published++
        server.broadcast(message, { room: String(message).slice(0, String(message).indexOf('|')) })
      }
    : (_socket, message) => {
        published++
        server.broadcast(message, { room: 'bench' })
      },
})

const { port } = await server.listen()
server.createRoom('bench', { id: 'bench', history })
for (let i = 0; i < 500 && !server.getStats().cluster?.connected; i++) await new Promise((r) => setTimeout(r, 10))
if (!server.getStats().cluster?.connected) throw new Error('not subscribed to Redis after 5 s')
console.log(`LISTENING ${port}`)
process.on('SIGTERM', () => {
  if (process.env.STATS_FILE) writeFileSync(process.env.STATS_FILE, JSON.stringify({ ...server.getStats(), published }))
  server.close({ timeout: 1000 }).then(() => process.exit(0))
})
