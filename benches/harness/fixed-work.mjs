// A fixed amount of work for a server (benches/servers/rnode.mjs paths), so that counts such
// as instructions compare between builds: N echoes, M broadcasts to K members, C connects.
// Each scenario sets up, warms up (JIT tiers, buffers grow), calls `measure.start()`, does
// exactly its work, waits until the server has done all of it (every echo, delivery and
// room_joined notice back), calls `measure.stop()`, then closes. The client is `ws` without
// permessage-deflate (builds that support it would otherwise negotiate it). Every wait is
// bounded by `timeoutMs`.
import WebSocket from 'ws'

const JOIN = JSON.stringify({ type: 'join_room', room_id: 'bench' })

/** Rejects after `ms` with `what` in the message; `clear()` it when the wait is over. */
function deadline(ms, what) {
  let timer
  const promise = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not done within ${ms} ms`)), ms)
  })
  return { promise, clear: () => clearTimeout(timer) }
}

async function bounded(ms, what, work) {
  const d = deadline(ms, what)
  try {
    return await Promise.race([work, d.promise])
  } finally {
    d.clear()
  }
}

/** Opens a client; resolves once open, with its first message when `firstMessage` is set. */
function open(url, { firstMessage = false } = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false })
    ws.once('error', reject)
    if (firstMessage) ws.once('message', () => resolve(ws))
    else ws.once('open', () => resolve(ws))
    if (firstMessage && url.endsWith('/sub')) ws.once('open', () => ws.send(JOIN))
  })
}

/** Opens `n` clients, `concurrency` handshakes at a time. */
async function openMany(url, n, concurrency, opts) {
  const out = []
  let next = 0
  const worker = async () => {
    while (next < n) {
      next++
      out.push(await open(url, opts))
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker))
  return out
}

function closeAll(clients) {
  for (const ws of clients) ws.terminate()
}

/** Each of `clients` sends `perConn` messages of `payload`, `window` in flight, until all echoed. */
function echoRound(clients, perConn, window, payload) {
  return Promise.all(
    clients.map(
      (ws) =>
        new Promise((resolve) => {
          let sent = 0
          let got = 0
          const onMessage = () => {
            got++
            if (sent < perConn) {
              sent++
              ws.send(payload)
            }
            if (got === perConn) {
              ws.off('message', onMessage)
              resolve()
            }
          }
          ws.on('message', onMessage)
          for (; sent < Math.min(window, perConn); sent++) ws.send(payload)
        }),
    ),
  )
}

/** `count` broadcasts through the publisher, at most `window` not yet delivered to all members. */
function broadcastRound(publisher, members, count, window, payload) {
  return new Promise((resolve) => {
    let sent = 0
    let delivered = 0
    const total = count * members.length
    const pump = () => {
      while (sent < count && sent - Math.floor(delivered / members.length) < window) {
        sent++
        publisher.send(payload)
      }
    }
    const onMessage = () => {
      delivered++
      if (delivered === total) {
        for (const m of members) m.off('message', onMessage)
        resolve()
      } else pump()
    }
    for (const m of members) m.on('message', onMessage)
    pump()
  })
}

/** Echo scenario: `conns` connections, `perConn` measured echoes each, `window` in flight. */
function echo(conns, perConn, window) {
  return {
    describe: `${(conns * perConn).toLocaleString('en-US')} echoes of 32 B text (${conns} connection${conns > 1 ? 's' : ''} x ${perConn.toLocaleString('en-US')}, ${window} in flight each, JS onMessage -> socket.send)`,
    async run(port, measure, timeoutMs) {
      const payload = 'x'.repeat(32)
      const clients = await bounded(timeoutMs, 'echo connect', openMany(`ws://127.0.0.1:${port}/echo`, conns, conns))
      try {
        await bounded(timeoutMs, 'echo warm-up', echoRound(clients, Math.ceil(perConn / 4), window, payload))
        await measure.start()
        await bounded(timeoutMs, 'echo', echoRound(clients, perConn, window, payload))
        await measure.stop()
        return { units: conns * perConn, unit: 'message' }
      } finally {
        closeAll(clients)
      }
    },
  }
}

/** Broadcast scenario: `count` measured broadcasts from JS to 1,000 members, `window` in flight. */
function broadcast(count, window) {
  return {
    describe: `${count} broadcasts of 32 B text to 1,000 members joined by join_room (${(count * 1000).toLocaleString('en-US')} deliveries; JS onMessage -> server.broadcast; ${window} in flight)`,
    async run(port, measure, timeoutMs) {
      const payload = 'b'.repeat(32)
      const members = await bounded(timeoutMs, 'members join', openMany(`ws://127.0.0.1:${port}/sub`, 1000, 32, { firstMessage: true }))
      const publisher = await bounded(timeoutMs, 'publisher connect', open(`ws://127.0.0.1:${port}/pub`))
      try {
        await bounded(timeoutMs, 'broadcast warm-up', broadcastRound(publisher, members, 20, window, payload))
        await measure.start()
        await bounded(timeoutMs, 'broadcast', broadcastRound(publisher, members, count, window, payload))
        await measure.stop()
        return { units: count * 1000, unit: 'delivery' }
      } finally {
        closeAll([publisher, ...members])
      }
    },
  }
}

/**
 * The scenarios. `run(port, measure, timeoutMs)` resolves `{ units, unit }`: how much work the
 * measured part did (messages, deliveries, connects). The lockstep ones keep one message in
 * flight, so no read or write ever batches two: the least timing-dependent counts.
 */
export const fixedWork = {
  'echo-32': echo(10, 2000, 16),
  'echo-32-lockstep': echo(1, 5000, 1),
  'broadcast-1000': broadcast(100, 4),
  'broadcast-1000-lockstep': broadcast(50, 1),
  // Upgrade plus the onConnect handler's socket.joinRoom, until the room_joined notice is back.
  'connect-join': {
    describe: '500 connects to /room (16 handshakes in flight; onConnect -> socket.joinRoom; until each room_joined notice), held open',
    async run(port, measure, timeoutMs) {
      const url = `ws://127.0.0.1:${port}/room`
      const warm = await bounded(timeoutMs, 'connect warm-up', openMany(url, 100, 16, { firstMessage: true }))
      let clients = []
      try {
        await measure.start()
        clients = await bounded(timeoutMs, 'connect', openMany(url, 500, 16, { firstMessage: true }))
        await measure.stop()
        return { units: 500, unit: 'connect' }
      } finally {
        closeAll([...warm, ...clients])
      }
    },
  },
}
