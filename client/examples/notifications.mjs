// Notifications in the callback style: the server pushes to a per-user room; the client shows
// them. Runs on its own: `node client/examples/notifications.mjs`.
import WebSocket from 'ws'
import { WsServer } from '../../dist/index.js'
import { createWebSocketClient } from '../dist/index.mjs'

const server = new WsServer({ port: 0, host: '127.0.0.1' })
server.websocket('/ws', {
  // Each user may only subscribe to their own notifications.
  onJoinRoom: (socket, roomId) => roomId === `notifications:${socket.clientId}`,
})
const { port } = await server.listen()

let shown = 0
const done = new Promise((resolve) => {
  const client = createWebSocketClient({
    url: `ws://127.0.0.1:${port}/ws`,
    clientId: 'user_42',
    WebSocket,
    onConnect: async () => {
      await client.joinRoom('notifications:user_42')
      await client.joinRoom('notifications:someone_else').catch((err) => console.log(`refused: ${err.reason}`))
      for (const text of ['New follower: ada', 'Build #17 passed', 'Meeting in 5 minutes']) {
        server.broadcast(JSON.stringify({ type: 'notification', text }), { room: 'notifications:user_42' })
      }
    },
    onMessage: (event) => {
      const n = JSON.parse(String(event.data))
      console.log(`🔔 ${n.text}`)
      if (++shown === 3) resolve(client)
    },
  })
  void client.connect()
}).then((client) => client.disconnect())

await done
await server.close()
