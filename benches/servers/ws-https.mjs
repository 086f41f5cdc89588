// `ws` 8.x on a Node https server (`{ server }`). /echo only.
import https from 'node:https'
import { WebSocketServer } from 'ws'
import { certificate } from './tls-certificate.mjs'

const httpsServer = https.createServer(certificate(), (_req, res) => res.end('ok'))
const wss = new WebSocketServer({ server: httpsServer, perMessageDeflate: false, maxPayload: 16 * 1024 * 1024 })
wss.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })))
httpsServer.listen(0, '127.0.0.1', () => console.log(`LISTENING ${httpsServer.address().port}`))
