// A Fastify app and its WebSockets on one port: Fastify's routes, and WebSocket upgrades on /ws
// from rnode-ws attached to Fastify's own http server (`app.server`).
//   node examples/fastify.mjs            (PORT, default 3000)
//   curl http://localhost:3000/api/time
import Fastify from 'fastify'
import { WsServer } from '../dist/index.js'

const app = Fastify()
app.get('/api/time', async () => ({ now: Date.now() }))
app.get('/api/clients', async () => ({ connected: ws.getConnections().length }))

const ws = new WsServer({ server: app.server })
ws.websocket('/ws', {
  onConnect: (socket) => socket.send(JSON.stringify({ type: 'welcome', clientId: socket.clientId })),
  onMessage: (socket, message) => socket.send(message),
})
// Close the WebSockets with the app.
app.addHook('onClose', async () => ws.close())

const port = Number(process.env.PORT ?? 3000)
const address = await app.listen({ port, host: process.env.HOST ?? '127.0.0.1' })
console.log(`fastify + rnode-ws on ${address} (WebSocket: /ws)`)

const stop = () => app.close()
process.on('SIGINT', stop)
process.on('SIGTERM', stop)
