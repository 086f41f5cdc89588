// rnode-ws with native TLS on its own port (`tls` option); /echo echoes through a JS handler.
// TLS_CERT and TLS_KEY name PEM files (benches/tls.mjs makes a throwaway pair).
import { readFileSync } from 'node:fs'
import { WsServer } from '../../dist/index.js'

const tls = { cert: readFileSync(process.env.TLS_CERT), key: readFileSync(process.env.TLS_KEY) }
const server = new WsServer({ port: 0, host: '127.0.0.1', tls })
server.websocket('/echo', { onMessage: (socket, message) => socket.send(message) })
const { port } = await server.listen()
console.log(`LISTENING ${port}`)
process.on('SIGTERM', () => server.close({ timeout: 1000 }).then(() => process.exit(0)))
