// `node benches/tls-broadcast.mjs [--members 500] [--rounds 20]`: what a broadcast costs the JS
// thread per member, plain vs native TLS (where each member's frame is encrypted by the thread
// that sends it). Times only the synchronous `server.broadcast()` calls, outside any cork, with
// the members' clients (ws, same process) reading between rounds. Needs `npm run build`.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import WebSocket from 'ws'
import { WsServer } from '../dist/index.js'

const args = process.argv.slice(2)
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`)
  return i >= 0 && i + 1 < args.length ? Number(args[i + 1]) : dflt
}
const members = opt('members', 500)
const rounds = opt('rounds', 20)
const dir = mkdtempSync(join(tmpdir(), 'rnode-bench-tls-'))
execFileSync('openssl', [
  'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
  '-subj', '/CN=localhost', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
], { stdio: 'ignore' })
const tls = { cert: readFileSync(join(dir, 'cert.pem')), key: readFileSync(join(dir, 'key.pem')) }
rmSync(dir, { recursive: true, force: true })

const out = {}
for (const mode of ['plain', 'tls', 'plain', 'tls']) {
  const server = new WsServer({ port: 0, host: '127.0.0.1', ...(mode === 'tls' ? { tls } : {}) })
  server.websocket('/ws', { onConnect: (s) => void s.joinRoom('r') })
  const { port } = await server.listen()
  let received = 0
  const clients = []
  for (let i = 0; i < members; i += 50) {
    clients.push(...(await Promise.all(Array.from({ length: Math.min(50, members - i) }, () => new Promise((resolve, reject) => {
      const ws = new WebSocket(`${mode === 'tls' ? 'wss' : 'ws'}://127.0.0.1:${port}/ws`, { rejectUnauthorized: false })
      ws.on('message', () => received++)
      ws.once('open', () => resolve(ws))
      ws.once('error', reject)
    })))))
  }
  while (server.getRoom('r')?.connectionsCount !== members) await new Promise((r) => setTimeout(r, 10))
  for (const size of [32, 4096]) {
    const msg = 'x'.repeat(size)
    let ns = 0n
    for (let round = 0; round < rounds; round++) {
      const before = received
      const t0 = process.hrtime.bigint()
      server.broadcast(msg, { room: 'r' })
      ns += process.hrtime.bigint() - t0
      const deadline = Date.now() + 10_000
      while (received < before + members && Date.now() < deadline) await new Promise((r) => setImmediate(r))
    }
    const perMember = Number(ns) / rounds / members
    ;((out[`${mode} ${size} B`] ??= [])).push(Math.round(perMember))
  }
  for (const ws of clients) ws.terminate()
  await server.close({ timeout: 500 })
}
for (const [k, v] of Object.entries(out)) console.log(`${k}: ${v.join(', ')} ns per member per broadcast (JS thread)`)
process.exit(0)
