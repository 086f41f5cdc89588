// Echo server on our public API for the Autobahn|Testsuite fuzzing client (kosoku).
// Limits are raised because cases 9.* send messages of up to 16 MiB. permessage-deflate is on
// (cases 12.* and 13.*) with threshold 0, so every echoed message is compressed. No server pings
// during the run: a 12.*/13.* case treats any ping it receives as the end of the case.
import { WsServer } from '../dist/index.js'

const server = new WsServer({
  host: '127.0.0.1',
  port: Number(process.env.PORT ?? 0),
  maxPayload: 64 * 1024 * 1024,
  maxBackpressure: 64 * 1024 * 1024,
  closeTimeout: 2000,
  pingInterval: 600_000,
  perMessageDeflate: { threshold: 0 },
})
const echo = { onMessage: (socket, message) => void socket.send(message) }
for (const path of ['/', '/runCase', '/getCaseCount', '/updateReports']) server.websocket(path, echo)
const { port } = await server.listen()
console.log(`port=${port}`)
process.on('SIGTERM', () => server.close({ timeout: 500 }).then(() => process.exit(0)))
