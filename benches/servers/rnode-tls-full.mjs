// rnode-ws on TLS at maxConnections 1, for benches/tls-full.mjs. TLS_CERT / TLS_KEY: PEM files.
// MODE=precheck: refused before the handshake (the default for a TLS port); MODE=handshake:
// with metricsPath set, so the handshake is done and the upgrade then gets its 503.
import { readFileSync } from 'node:fs'

const { WsServer } = await import(process.env.RNODE_WS_DIST ?? '../../dist/index.js')
const tls = { cert: readFileSync(process.env.TLS_CERT, 'utf8'), key: readFileSync(process.env.TLS_KEY, 'utf8') }
const metricsPath = process.env.MODE === 'handshake' ? '/metrics' : undefined
const server = new WsServer({ port: 0, host: '127.0.0.1', tls, maxConnections: 1, metricsPath })
server.websocket('/ws', {})
await server.listen()
console.log(`LISTENING ${server.port}`)
