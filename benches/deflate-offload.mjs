// JS-thread time of one large send with permessage-deflate (docs/deflate.md):
//   node benches/deflate-offload.mjs [--reps N] [--sends N]
// The same server twice per rep, interleaved: compressing on the blocking pool (the default,
// messages from 64 KiB on) and compressing on the thread that calls send (RNODE_DEFLATE_OFFLOAD=0,
// as before). The server (CPU 0) sends one JSON message at a time to a ws client (CPU 1), which
// answers each once it has it inflated; the server times the send() call itself and the round
// until the answer. Medians over all sends of all reps; context takeover on.
import { fork, spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { dirname, join } from 'node:path'

const self = fileURLToPath(import.meta.url)
const root = join(dirname(self), '..')
const arg = (name, dflt) => {
  const i = process.argv.indexOf(name)
  return i < 0 ? dflt : Number(process.argv[i + 1])
}
const SIZES = [64 * 1024, 256 * 1024, 1024 * 1024]

/** JSON-like text of `n` bytes that compresses about as chat or dashboard JSON does. */
function json(n, seed) {
  let out = '['
  for (let i = 0; out.length < n; i++) out += `{"id":${seed * 1e6 + i},"user":"user${i % 97}","status":"${i % 3 ? 'online' : 'away'}","score":${(i * 7919) % 10007}},`
  return out.slice(0, n - 1) + ']'
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

function pin(child, cpu) {
  if (spawnSync('taskset', ['-V']).status === 0) spawnSync('taskset', ['-a', '-p', '-c', String(cpu), String(child.pid)])
}

if (process.argv[2] === '--server') {
  const { WsServer } = await import(join(root, 'dist', 'index.js'))
  const sends = Number(process.argv[3])
  const srv = new WsServer({ port: 0, host: '127.0.0.1', perMessageDeflate: true, maxBackpressure: 64 << 20, maxPayload: 64 << 20 })
  const result = {}
  let resolveAck
  srv.websocket('/ws', {
    onConnect: async (socket) => {
      for (const size of SIZES) {
        const msgs = Array.from({ length: 8 }, (_, i) => json(size, i))
        const call = []
        const round = []
        for (let i = 0; i < sends; i++) {
          const acked = new Promise((r) => (resolveAck = r))
          const t0 = performance.now()
          socket.send(msgs[i % msgs.length])
          const t1 = performance.now()
          await acked
          call.push((t1 - t0) * 1000)
          round.push((performance.now() - t0) * 1000)
        }
        result[size] = { call, round }
      }
      process.send(result)
    },
    onMessage: () => resolveAck(),
  })
  const { port } = await srv.listen()
  process.send({ port })
} else if (process.argv[2] === '--client') {
  const { default: WebSocket } = await import(join(root, 'node_modules', 'ws', 'index.js'))
  const ws = new WebSocket(`ws://127.0.0.1:${process.argv[3]}/ws`, { maxPayload: 64 << 20 })
  ws.on('message', () => ws.send('k'))
  process.on('disconnect', () => process.exit(0))
} else {
  const reps = arg('--reps', 5)
  const sends = arg('--sends', 40)
  const modes = [
    { label: 'off the JS thread (default)', env: {} },
    { label: 'on the JS thread (RNODE_DEFLATE_OFFLOAD=0)', env: { RNODE_DEFLATE_OFFLOAD: '0' } },
  ]
  const all = {}
  for (let r = 0; r < reps; r++) {
    for (const mode of modes) {
      const server = fork(self, ['--server', String(sends)], { env: { ...process.env, ...mode.env } })
      pin(server, 0)
      const { port } = await new Promise((res) => server.once('message', res))
      const client = fork(self, ['--client', String(port)])
      pin(client, 1)
      const result = await new Promise((res) => server.once('message', res))
      client.kill()
      server.kill()
      for (const [size, { call, round }] of Object.entries(result)) {
        const slot = (all[`${mode.label}|${size}`] ??= { call: [], round: [] })
        slot.call.push(...call)
        slot.round.push(...round)
      }
      console.error(`[deflate-offload] rep ${r + 1}/${reps}: ${mode.label} done`)
    }
  }
  console.log(`JS-thread time of send() and round trip, medians of ${reps} x ${sends} sends (µs)`)
  console.log('| message | mode | send() on the JS thread | send to client answer |')
  console.log('| --- | --- | ---: | ---: |')
  for (const size of SIZES) {
    for (const mode of modes) {
      const s = all[`${mode.label}|${size}`]
      console.log(`| ${size / 1024} KiB JSON | ${mode.label} | ${median(s.call).toFixed(0)} | ${median(s.round).toFixed(0)} |`)
    }
  }
}
