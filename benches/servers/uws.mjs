// uWebSockets.js (from the npm package `uwebsockets`): the C++ speed reference.
// Paths: /echo, /sub (subscribe to the room), /pub (publish to it), /room (subscribe on open,
// nothing sent: the connection-storm scenarios).
import uWS from 'uwebsockets'

// BENCH_DEFLATE (any value): permessage-deflate with the shared compressor.
const compression = process.env.BENCH_DEFLATE ? uWS.SHARED_COMPRESSOR : uWS.DISABLED
const common = { compression, maxPayloadLength: 16 * 1024 * 1024, maxBackpressure: 1024 * 1024, idleTimeout: 120 }
const app = uWS
  .App()
  .ws('/echo', { ...common, message: (ws, message, isBinary) => ws.send(message, isBinary) })
  .ws('/sub', {
    ...common,
    open: (ws) => {
      ws.subscribe('bench')
      ws.send('ok')
    },
  })
  .ws('/room', { ...common, open: (ws) => ws.subscribe('bench') })
  .ws('/pub', { ...common, message: (ws, message, isBinary) => app.publish('bench', message, isBinary) })

app.listen('127.0.0.1', 0, (listenSocket) => {
  if (!listenSocket) {
    console.error('uws: listen failed')
    process.exit(1)
  }
  console.log(`LISTENING ${uWS.us_socket_local_port(listenSocket)}`)
})
