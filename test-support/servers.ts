// Real @rnode/ws servers on 127.0.0.1 for the server and client suites, and free ports.
import net from 'node:net'
import { afterEach } from 'vitest'
import { WsServer, type ServerOptions, type Socket, type WebSocketHandlers } from '../lib/index'
import { sleep } from './waits'

export interface Started {
  server: WsServer
  port: number
  url: string
}

/**
 * Starts a server with one path ('/ws' unless given) on `options.port` (0, the default: a free
 * port). A fixed port may still be held by a server just closed, so that case retries briefly.
 */
export async function startServer(
  handlers: WebSocketHandlers = {},
  options: ServerOptions = {},
  path = '/ws',
): Promise<Started> {
  for (let attempt = 0; ; attempt++) {
    const server = new WsServer({ host: '127.0.0.1', port: 0, ...options })
    server.websocket(path, handlers)
    try {
      const { port } = await server.listen()
      return { server, port, url: `ws://127.0.0.1:${port}${path}` }
    } catch (err) {
      await server.close()
      if (!options.port || attempt >= 20) throw err
      await sleep(50)
    }
  }
}

/** Echoes every message back to its sender. */
export const echo: NonNullable<WebSocketHandlers['onMessage']> = (socket, message) => void socket.send(message)

/** Starts servers for one test file; every server it started or adopted is closed after each test. */
export interface ServerPool {
  (handlers?: WebSocketHandlers, options?: ServerOptions): Promise<Started>
  /** Servers the test made itself, to close after it too. */
  adopt(...servers: WsServer[]): void
}

export function serverPool(closeTimeout = 500): ServerPool {
  const running: WsServer[] = []
  afterEach(async () => {
    await Promise.all(running.splice(0).map((server) => server.close({ timeout: closeTimeout })))
  })
  const start = async (handlers: WebSocketHandlers = {}, options: ServerOptions = {}): Promise<Started> => {
    const s = await startServer(handlers, options)
    running.push(s.server)
    return s
  }
  return Object.assign(start, { adopt: (...servers: WsServer[]) => void running.push(...servers) })
}

/** A free TCP port on 127.0.0.1 with nothing listening on it (connections are refused). */
export async function closedPort(): Promise<number> {
  const srv = net.createServer()
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  const { port } = srv.address() as net.AddressInfo
  await new Promise<void>((r) => srv.close(() => r()))
  return port
}

/**
 * Sends 64 KiB chunks to `socket` (whose client stopped reading) every millisecond until one is
 * `'dropped'` or 15 s pass; returns every send's status.
 */
export async function sendUntilDropped(socket: Socket): Promise<string[]> {
  const chunk = Buffer.alloc(64 * 1024, 5)
  const statuses: string[] = []
  const deadline = Date.now() + 15_000
  while (statuses.at(-1) !== 'dropped' && Date.now() < deadline) {
    statuses.push(socket.send(chunk))
    await sleep(1)
  }
  return statuses
}
