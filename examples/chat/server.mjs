// `npm start`: the chat demo. One port (PORT, default 3000) serves the page and, through attach
// mode, its WebSocket on /ws; the page uses the client's IIFE build. Open it in two tabs, pick
// names, join rooms, chat; stop and start this script: the tabs reconnect by themselves.
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import http from 'node:http'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { WsServer } from '../../dist/index.js'

const here = dirname(fileURLToPath(import.meta.url))
const root = join(here, '..', '..')
const PORT = Number(process.env.PORT ?? 3000)
const HOST = process.env.HOST ?? '127.0.0.1'

// The page loads the client's browser build; build it when src/ changed.
execFileSync(process.execPath, [join(root, 'client', 'scripts', 'build.mjs'), '--if-stale'], { stdio: 'inherit' })
const clientScript = readFileSync(join(root, 'client', 'dist', 'rnode-websocket.iife.min.js'))
const page = readFileSync(join(here, 'index.html'), 'utf8')

const web = http.createServer((req, res) => {
  const path = new URL(req.url ?? '/', 'http://x').pathname
  if (path === '/' || path === '/index.html') {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).end(page)
  } else if (path === '/rnode-websocket.js') {
    res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' }).end(clientScript)
  } else {
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found')
  }
})
// WebSocket upgrades on /ws go to the engine; everything else is the page server's.
const server = new WsServer({ server: web })
// Who is in a room: the page asks with client.presence() and follows presence events.
server.websocket('/ws', {
  onConnect: (socket) => console.log(`+ ${socket.clientId}`),
  onClose: (socket, code) => console.log(`- ${socket.clientId} (${code})`),
})
server.createRoom('General', { id: 'general', description: 'Anything goes', presenceEvents: true })
server.createRoom('Random', { id: 'random', description: 'Off topic', presenceEvents: true })
server.createRoom('Pairs', { id: 'pairs', description: 'Two people at most', maxConnections: 2, presenceEvents: true })

await new Promise((resolve) => web.listen(PORT, HOST, resolve))
console.log(`chat demo: open http://localhost:${PORT} in two tabs (WebSocket on ws://localhost:${PORT}/ws, same port)`)

let stopping = false
async function stop() {
  if (stopping) return
  stopping = true
  await server.close()
  web.close()
  web.closeAllConnections?.()
  process.exit(0)
}
process.on('SIGINT', stop)
process.on('SIGTERM', stop)
