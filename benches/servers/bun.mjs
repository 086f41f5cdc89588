// Bun.serve websockets with publish/subscribe; run by the binary of `@oven/bun-linux-x64`.
// Paths: /echo, /sub (subscribe to the room), /pub (publish to it), /room (subscribe on open,
// nothing sent: the connection-storm scenarios).
const server = Bun.serve({
  hostname: '127.0.0.1',
  port: 0,
  fetch(req, server) {
    const url = req.url
    const path = url.slice(url.indexOf('/', url.indexOf('//') + 2))
    if (server.upgrade(req, { data: { path } })) return undefined
    return new Response('upgrade required', { status: 426 })
  },
  websocket: {
    // BENCH_DEFLATE (any value): Bun's permessage-deflate.
    perMessageDeflate: Boolean(process.env.BENCH_DEFLATE),
    maxPayloadLength: 16 * 1024 * 1024,
    backpressureLimit: 1024 * 1024,
    open(ws) {
      if (ws.data.path === '/sub') {
        ws.subscribe('bench')
        ws.send('ok')
      } else if (ws.data.path === '/room') ws.subscribe('bench')
    },
    message(ws, message) {
      if (ws.data.path === '/pub') server.publish('bench', message)
      else ws.send(message)
    },
  },
})
console.log(`LISTENING ${server.port}`)
