// rnode-ws, the server under test. Paths: /echo through a JS onMessage handler; /sub, where
// clients join the room with the protocol frame {"type":"join_room","room_id":"bench"} (and may
// publish natively with room_message frames); /pub, whose messages a JS handler broadcasts;
// /room, whose onConnect joins every socket to the room (the connection-storm scenarios).
// SIGUSR2 restarts the server in this process: it closes (every client gets 1001) and listens
// again on the same port, as a deploy would (the reconnect-storm scenario).
// RNODE_WS_DIST: another build's dist/index.js (benches/metrics-overhead.mjs compares two).
// --history: the room keeps its last 1,000 messages (each broadcast is numbered and stored).
const { WsServer } = await import(process.env.RNODE_WS_DIST ?? '../../dist/index.js')
const history = process.argv.includes('--history') ? { size: 1000, ttl: 60_000 } : undefined
// BENCH_DEFLATE=1: permessage-deflate with context takeover; =shared: without server context
// takeover (one compression per broadcast), as uWS's SHARED_COMPRESSOR.
const deflate = { '': false, 1: true, shared: { serverNoContextTakeover: true } }[process.env.BENCH_DEFLATE ?? '']

async function start(port) {
  const server = new WsServer({ port, host: '127.0.0.1', perMessageDeflate: deflate })
  server.websocket('/echo', { onMessage: (socket, message) => socket.send(message) })
  server.websocket('/sub', {})
  server.websocket('/room', { onConnect: (socket) => socket.joinRoom('bench') })
  server.websocket('/pub', { onMessage: (_socket, message) => server.broadcast(message, { room: 'bench' }) })
  await server.listen()
  server.createRoom('bench', { id: 'bench', history })
  return server
}

let server = await start(0)
console.log(`LISTENING ${server.port}`)
process.on('SIGUSR2', async () => {
  const port = server.port
  const t0 = performance.now()
  await server.close({ timeout: 1000 })
  const t1 = performance.now()
  server = await start(port)
  if (process.env.RNODE_BENCH_DEBUG) {
    console.error(`restart: closed in ${Math.round(t1 - t0)} ms, listening again ${Math.round(performance.now() - t1)} ms later`)
    const marks = [1000, 5000, 9000, 10000]
    const timer = setInterval(() => {
      const n = server.getRoom('bench')?.connectionsCount ?? 0
      while (marks.length && n >= marks[0]) console.error(`restart: ${marks.shift()} in the room after ${Math.round(performance.now() - t0)} ms`)
      if (!marks.length) clearInterval(timer)
    }, 20)
  }
})
process.on('SIGTERM', () => server.close({ timeout: 1000 }).then(() => process.exit(0)))
