// Bun.serve with `tls` (BoringSSL): /echo. TLS_CERT and TLS_KEY name PEM files.
const server = Bun.serve({
  hostname: '127.0.0.1',
  port: 0,
  tls: { cert: Bun.file(process.env.TLS_CERT), key: Bun.file(process.env.TLS_KEY) },
  fetch(req, server) {
    if (server.upgrade(req)) return undefined
    return new Response('upgrade required', { status: 426 })
  },
  websocket: {
    perMessageDeflate: false,
    maxPayloadLength: 16 * 1024 * 1024,
    backpressureLimit: 1024 * 1024,
    message(ws, message) {
      ws.send(message)
    },
  },
})
console.log(`LISTENING ${server.port}`)
