// rnode-ws attached to a Node https server: the TLS session lives in Node, so every
// connection takes the slow path (bytes pumped through the engine). /echo only.
import https from 'node:https'
import { WsServer } from '../../dist/index.js'
import { certificate } from './tls-certificate.mjs'

const httpsServer = https.createServer(certificate(), (_req, res) => res.end('ok'))
const server = new WsServer({ server: httpsServer })
server.websocket('/echo', { onMessage: (socket, message) => socket.send(message) })
httpsServer.listen(0, '127.0.0.1', () => console.log(`LISTENING ${httpsServer.address().port}`))
process.on('SIGTERM', () => server.close({ timeout: 1000 }).then(() => process.exit(0)))
