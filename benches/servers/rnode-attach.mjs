// rnode-ws in attach mode: the paths of rnode.mjs on a plain Node http server's port
// (`{ server }`). With --pump (adopt: false) every connection takes the slow path (bytes pumped
// through the engine's loopback listener) instead of descriptor adoption.
import http from 'node:http'
import { WsServer } from '../../dist/index.js'

const adopt = !process.argv.includes('--pump')
const httpServer = http.createServer((_req, res) => res.end('ok'))
const server = new WsServer({ server: httpServer, adopt })
server.websocket('/echo', { onMessage: (socket, message) => socket.send(message) })
server.websocket('/sub', {})
server.websocket('/pub', { onMessage: (_socket, message) => server.broadcast(message, { room: 'bench' }) })
server.createRoom('bench', { id: 'bench' })

httpServer.listen(0, '127.0.0.1', () => console.log(`LISTENING ${httpServer.address().port}`))
process.on('SIGTERM', () => server.close({ timeout: 1000 }).then(() => process.exit(0)))
