// A TCP proxy between a client and a server that can stall its connections (a dead network).
import net from 'node:net'

/** A TCP proxy to `target`; `freeze()` stops forwarding on open connections (a dead network). */
export interface Proxy {
  port: number
  url: string
  connections: number
  freeze(): void
  /** Destroys frozen connections; new ones forward again. */
  thaw(): void
  close(): Promise<void>
}

export async function startProxy(targetPort: number, path = '/ws'): Promise<Proxy> {
  const pairs = new Set<{ a: net.Socket; b: net.Socket }>()
  let frozen = false
  const srv = net.createServer((a) => {
    proxy.connections++
    const b = net.connect(targetPort, '127.0.0.1')
    const pair = { a, b }
    pairs.add(pair)
    a.on('data', (d) => frozen || b.write(d))
    b.on('data', (d) => frozen || a.write(d))
    const end = (): void => {
      pairs.delete(pair)
      a.destroy()
      b.destroy()
    }
    a.on('close', end).on('error', end)
    b.on('close', end).on('error', end)
  })
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  const { port } = srv.address() as net.AddressInfo
  const proxy: Proxy = {
    port,
    url: `ws://127.0.0.1:${port}${path}`,
    connections: 0,
    freeze: () => void (frozen = true),
    thaw: () => {
      for (const p of pairs) {
        p.a.destroy()
        p.b.destroy()
      }
      pairs.clear()
      frozen = false
    },
    close: async () => {
      proxy.thaw()
      await new Promise<void>((r) => srv.close(() => r()))
    },
  }
  return proxy
}
