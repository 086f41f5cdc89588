// rnode-ws, the server under test. Paths: /echo through a JS onMessage handler; /sub, where
// clients join the room with the protocol frame {"type":"join_room","room_id":"bench"} (and may
// publish natively with room_message frames); /pub, whose messages a JS handler broadcasts.
// RNODE_WS_DIST: another build's dist/index.js (benches/metrics-overhead.mjs compares two).
const { WsServer } = await import(process.env.RNODE_WS_DIST ?? '../../dist/index.js')

const server = new WsServer({ port: 0, host: '127.0.0.1' })
server.websocket('/echo', { onMessage: (socket, message) => socket.send(message) })
server.websocket('/sub', {})
server.websocket('/pub', { onMessage: (_socket, message) => server.broadcast(message, { room: 'bench' }) })

const { port } = await server.listen()
// --history: the room keeps its last 1,000 messages (each broadcast is numbered and stored).
const history = process.argv.includes('--history') ? { size: 1000, ttl: 60_000 } : undefined
server.createRoom('bench', { id: 'bench', history })
console.log(`LISTENING ${port}`)
process.on('SIGTERM', () => server.close({ timeout: 1000 }).then(() => process.exit(0)))
