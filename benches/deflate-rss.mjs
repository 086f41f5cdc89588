// RSS per idle connection with permessage-deflate negotiated, per preset (docs/deflate.md).
// Usage: node benches/deflate-rss.mjs [connections=500]
// The server runs in a child process; each connection (the `ws` client with its default offer)
// sends one 4 KiB JSON message and gets it back compressed, so every zlib stream a preset keeps
// per connection exists; then the connections stay idle and the server's RSS is read from
// /proc (Linux). The figure is (RSS with N connections - RSS before) / N, median of 3 runs.
import { fork } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import WebSocket from 'ws'

const here = dirname(fileURLToPath(import.meta.url))
const N = Number(process.argv[2] ?? 500)
const RUNS = 3

export const PRESETS = {
  off: false,
  'default (context takeover both ways)': true,
  'serverNoContextTakeover': { serverNoContextTakeover: true },
  'shared (no context takeover either way)': { serverNoContextTakeover: true, clientNoContextTakeover: true },
  'small (windows 10, memLevel 4)': { serverMaxWindowBits: 10, clientMaxWindowBits: 10, memLevel: 4 },
}

const SERVER = `
const { WsServer } = require(${JSON.stringify(join(here, '..', 'dist', 'index.js'))})
const server = new WsServer({ host: '127.0.0.1', port: 0, perMessageDeflate: JSON.parse(process.env.PMD) })
server.websocket('/ws', { onMessage: (s, m) => void s.send(m) })
server.listen().then(({ port }) => process.send({ port }))
`

function rss(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  return Number(/VmRSS:\s+(\d+)/.exec(status)[1]) * 1024
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const message = JSON.stringify(Array.from({ length: 64 }, (_, i) => ({ id: i, user: 'alice', status: 'online' })))

async function measure(preset) {
  const child = fork('-e', [SERVER], { env: { ...process.env, PMD: JSON.stringify(preset) }, execArgv: [] })
  try {
    const { port } = await new Promise((r) => child.once('message', r))
    await sleep(300)
    const before = rss(child.pid)
    const sockets = []
    for (let i = 0; i < N; i += 50) {
      const batch = Array.from({ length: Math.min(50, N - i) }, async () => {
        const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`)
        await new Promise((r, j) => (ws.once('open', r), ws.once('error', j)))
        const back = new Promise((r) => ws.once('message', r))
        ws.send(message)
        await back
        sockets.push(ws)
      })
      await Promise.all(batch)
    }
    await sleep(1000)
    const after = rss(child.pid)
    for (const ws of sockets) ws.terminate()
    return (after - before) / N
  } finally {
    child.kill()
  }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const rows = []
for (const [name, preset] of Object.entries(PRESETS)) {
  const runs = []
  for (let r = 0; r < RUNS; r++) runs.push(await measure(preset))
  rows.push({ preset: name, bytesPerConnection: Math.round(median(runs)) })
  console.log(`${name}: ${(median(runs) / 1024).toFixed(1)} KiB per idle connection (runs: ${runs.map((x) => (x / 1024).toFixed(1)).join(', ')})`)
}
console.log(JSON.stringify({ connections: N, rows }))
