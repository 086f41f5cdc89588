// Echo server on our public API for the Autobahn|Testsuite fuzzing client (kosoku).
// Limits are raised because cases 9.* send messages of up to 16 MiB. permessage-deflate is on
// (cases 12.* and 13.*) with threshold 0, so every echoed message is compressed.
import { WsServer } from '../dist/index.js'

const server = new WsServer({
  host: '127.0.0.1',
  port: Number(process.env.PORT ?? 0),
  maxPayload: 64 * 1024 * 1024,
  maxBackpressure: 64 * 1024 * 1024,
  closeTimeout: 2000,
  perMessageDeflate: { threshold: 0 },
})
const echo = { onMessage: (socket, message) => void socket.send(message) }
for (const path of ['/', '/runCase', '/getCaseCount', '/updateReports']) server.websocket(path, echo)
const { port } = await server.listen()
console.log(`port=${port}`)
process.on('SIGTERM', () => server.close({ timeout: 500 }).then(() => process.exit(0)))
