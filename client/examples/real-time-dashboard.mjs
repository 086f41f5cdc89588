// A live dashboard: the server publishes metrics to the `dashboard` room every 100 ms; viewers
// keep the latest values and a bounded history. Runs on its own: `node client/examples/real-time-dashboard.mjs`.
import WebSocket from 'ws'
import { WsServer } from '../../dist/index.js'
import { RNodeWebSocketClient } from '../dist/index.mjs'

const server = new WsServer({ port: 0, host: '127.0.0.1' })
server.websocket('/ws', {})
server.createRoom('Dashboard', { id: 'dashboard' })
const { port } = await server.listen()
let tick = 0
const publisher = setInterval(() => {
  const metrics = { tick: ++tick, cpu: Math.round(Math.random() * 100), connections: server.getStats().totalConnections }
  server.broadcast(JSON.stringify({ type: 'metrics', ...metrics }), { room: 'dashboard' })
}, 100)

const viewer = new RNodeWebSocketClient(`ws://127.0.0.1:${port}/ws`, 'dashboard_viewer', { WebSocket })
const latest = {}
let updates = 0
const finished = new Promise((resolve) => {
  viewer.on('message', (data) => {
    Object.assign(latest, JSON.parse(String(data)))
    console.log(`tick ${latest.tick}: cpu ${latest.cpu}% · ${latest.connections} connection(s)`)
    if (++updates === 5) resolve()
  })
})
await viewer.connect()
await viewer.joinRoom('dashboard')
await finished

clearInterval(publisher)
viewer.disconnect()
await server.close()
