// `ws` 8.x attached to a plain Node http server (`{ server }`), the usual way an app adds
// WebSockets to its port. Paths as in ws.mjs.
import http from 'node:http'
import { WebSocketServer } from 'ws'
import { servePaths } from './ws-paths.mjs'

const httpServer = http.createServer((_req, res) => res.end('ok'))
servePaths(new WebSocketServer({ server: httpServer, perMessageDeflate: false, maxPayload: 16 * 1024 * 1024 }))
httpServer.listen(0, '127.0.0.1', () => console.log(`LISTENING ${httpServer.address().port}`))
