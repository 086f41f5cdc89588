// rnode-ws as one node of a cluster: the same paths as rnode.mjs, with the room shared with the
// other nodes through the Redis at REDIS_URL (the runner starts a private redis-server and two
// of these). Prints LISTENING only once this node's Redis subscription is up, so nothing
// published after the load generator starts can miss it.
import { WsServer } from '../../dist/index.js'

const redis = process.env.REDIS_URL
if (!redis) throw new Error('rnode-cluster.mjs needs REDIS_URL')
const server = new WsServer({ port: 0, host: '127.0.0.1', cluster: { redis, prefix: process.env.CLUSTER_PREFIX ?? 'bench' } })
server.websocket('/echo', { onMessage: (socket, message) => socket.send(message) })
server.websocket('/sub', {})
server.websocket('/pub', { onMessage: (_socket, message) => server.broadcast(message, { room: 'bench' }) })

const { port } = await server.listen()
server.createRoom('bench', { id: 'bench' })
for (let i = 0; i < 500 && !server.getStats().cluster?.connected; i++) await new Promise((r) => setTimeout(r, 10))
if (!server.getStats().cluster?.connected) throw new Error('not subscribed to Redis after 5 s')
console.log(`LISTENING ${port}`)
process.on('SIGTERM', () => server.close({ timeout: 1000 }).then(() => process.exit(0)))
