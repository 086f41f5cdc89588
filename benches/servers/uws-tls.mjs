// uWebSockets.js SSLApp (its OpenSSL build): /echo. TLS_CERT and TLS_KEY name PEM files.
import uWS from 'uwebsockets'

const app = uWS
  .SSLApp({ cert_file_name: process.env.TLS_CERT, key_file_name: process.env.TLS_KEY })
  .ws('/echo', {
    compression: uWS.DISABLED,
    maxPayloadLength: 16 * 1024 * 1024,
    maxBackpressure: 1024 * 1024,
    idleTimeout: 120,
    message: (ws, message, isBinary) => ws.send(message, isBinary),
  })
app.listen('127.0.0.1', 0, (listenSocket) => {
  if (!listenSocket) {
    console.error('uws-tls: listen failed')
    process.exit(1)
  }
  console.log(`LISTENING ${uWS.us_socket_local_port(listenSocket)}`)
})
