// `npm start`: a small echo server. Open it with any WebSocket client, e.g.
//   node -e "const W=require('ws');const w=new W('ws://localhost:3000/ws');w.on('open',()=>w.send('hi'));w.on('message',m=>{console.log(String(m));w.close()})"
import { WsServer } from '../dist/index.js'

const port = Number(process.env.PORT ?? 3000)
const server = new WsServer({ port })

server.websocket('/ws', {
  onConnect: (socket) => console.log(`connected ${socket.clientId} from ${socket.remoteAddress}`),
  onMessage: (socket, message) => socket.send(message),
  onClose: (socket, code) => console.log(`closed ${socket.clientId} (${code})`),
})

const { port: bound } = await server.listen()
console.log(`rnode-ws echo server listening on ws://localhost:${bound}/ws`)

const stop = async () => {
  await server.close()
  process.exit(0)
}
process.on('SIGINT', stop)
process.on('SIGTERM', stop)
