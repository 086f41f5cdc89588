// `ws` 8.x attached to a plain Node http server (`{ server }`), the usual way an app adds
// WebSockets to its port. Paths as in ws.mjs.
import http from 'node:http'
import { WebSocketServer } from 'ws'

const room = new Set()
const httpServer = http.createServer((_req, res) => res.end('ok'))
const wss = new WebSocketServer({ server: httpServer, perMessageDeflate: false, maxPayload: 16 * 1024 * 1024 })

wss.on('connection', (ws, req) => {
  if (req.url === '/sub') {
    room.add(ws)
    ws.on('close', () => room.delete(ws))
    ws.send('ok')
  } else if (req.url === '/pub') {
    ws.on('message', (data, isBinary) => {
      for (const member of room) member.send(data, { binary: isBinary })
    })
  } else {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }))
  }
})
httpServer.listen(0, '127.0.0.1', () => console.log(`LISTENING ${httpServer.address().port}`))
