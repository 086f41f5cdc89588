// An Express app and its WebSockets on one port: HTTP routes from Express, WebSocket upgrades
// on /ws from rnode-ws, attached to the same http server.
//   node examples/express.mjs            (PORT, default 3000)
//   curl http://localhost:3000/api/time
//   node -e "const W=require('ws');const w=new W('ws://localhost:3000/ws');w.on('open',()=>w.send('hi'));w.on('message',m=>{console.log(String(m));w.close()})"
import http from 'node:http'
import express from 'express'
import { WsServer } from '../dist/index.js'

const app = express()
app.get('/api/time', (_req, res) => res.json({ now: Date.now() }))
app.get('/api/clients', (_req, res) => res.json({ connected: ws.getConnections().length }))

const httpServer = http.createServer(app)
const ws = new WsServer({ server: httpServer })
ws.websocket('/ws', {
  onConnect: (socket) => socket.send(JSON.stringify({ type: 'welcome', clientId: socket.clientId })),
  onMessage: (socket, message) => socket.send(message),
})

const port = Number(process.env.PORT ?? 3000)
httpServer.listen(port, process.env.HOST ?? '127.0.0.1', () => {
  console.log(`express + rnode-ws on http://localhost:${httpServer.address().port} (WebSocket: /ws)`)
})

const stop = async () => {
  await ws.close()
  httpServer.close()
}
process.on('SIGINT', stop)
process.on('SIGTERM', stop)
