// rnode-ws, the server under test. Paths: /echo through a JS onMessage handler; /sub, where
// clients join the room with the protocol frame {"type":"join_room","room_id":"bench"} (and may
// publish natively with room_message frames); /pub, whose messages a JS handler broadcasts;
// /room, whose onConnect joins every socket to the room (the connection-storm scenarios).
// SIGUSR2 restarts the server in this process: it closes (every client gets 1001) and listens
// again on the same port, as a deploy would (the reconnect-storm scenario).
import { WsServer } from '../../dist/index.js'

async function start(port) {
  const server = new WsServer({ port, host: '127.0.0.1' })
  server.websocket('/echo', { onMessage: (socket, message) => socket.send(message) })
  server.websocket('/sub', {})
  server.websocket('/room', { onConnect: (socket) => socket.joinRoom('bench') })
  server.websocket('/pub', { onMessage: (_socket, message) => server.broadcast(message, { room: 'bench' }) })
  await server.listen()
  server.createRoom('bench', { id: 'bench' })
  return server
}

let server = await start(0)
console.log(`LISTENING ${server.port}`)
process.on('SIGUSR2', async () => {
  const port = server.port
  await server.close({ timeout: 1000 })
  server = await start(port)
})
process.on('SIGTERM', () => server.close({ timeout: 1000 }).then(() => process.exit(0)))
