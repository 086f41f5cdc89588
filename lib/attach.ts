// Attach mode: WebSocket upgrades arrive through a Node http(s) server the application owns.
// Node parsed the request; the engine still runs its whole handshake on the bytes JS rebuilds,
// so every check and HTTP answer is the one of the own-port mode. Two ways to hand over a
// connection: adopt its descriptor (plain TCP on Unix), or pump its bytes through the engine's
// loopback listener (TLS, Windows, any other Duplex).
import http, { type IncomingMessage } from 'node:http'
import https from 'node:https'
import net from 'node:net'
import tls from 'node:tls'
import type { Duplex } from 'node:stream'
import type { NativeServer } from './binding'


/** The HTTP servers attach mode accepts for `{ server }`. */
export type AttachableServer = http.Server | https.Server

export function isAttachableServer(value: unknown): value is AttachableServer {
  return value instanceof http.Server || value instanceof https.Server
}

/**
 * The path of a request target the way the engine reads it: without query or fragment; the
 * absolute form (`http://host/ws`) gives its path.
 */
export function targetPath(url: string | undefined): string {
  const raw = url ?? ''
  const query = raw.indexOf('?')
  const fragment = raw.indexOf('#')
  const end = Math.min(query < 0 ? raw.length : query, fragment < 0 ? raw.length : fragment)
  const target = end === raw.length ? raw : raw.slice(0, end)
  if (target.charCodeAt(0) === 0x2f) return target
  const scheme = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.exec(target)
  if (scheme) {
    const slash = target.indexOf('/', scheme[0].length)
    return slash < 0 ? '/' : target.slice(slash)
  }
  return target
}

/**
 * The request head as the client sent it, rebuilt from what Node parsed: the original header
 * names, values and order (`rawHeaders`). Node decodes header bytes as latin1, so encoding
 * back as latin1 gives the same bytes.
 */
export function requestHead(req: IncomingMessage): Buffer {
  let head = `${req.method ?? ''} ${req.url ?? ''} HTTP/${req.httpVersion}\r\n`
  const raw = req.rawHeaders
  for (let i = 0; i + 1 < raw.length; i += 2) head += `${raw[i]}: ${raw[i + 1]}\r\n`
  return Buffer.from(head + '\r\n', 'latin1')
}

/** A minimal HTTP error answer, then the socket is closed (as the engine answers). */
export function refuse(socket: Duplex, status: number, message: string): void {
  if (socket.destroyed) return
  const body = Buffer.from(message)
  socket.once('error', () => socket.destroy())
  socket.once('finish', () => socket.destroy())
  socket.end(
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ''}\r\nConnection: close\r\n` +
      `Content-Type: text/plain\r\nContent-Length: ${body.length}\r\n\r\n${message}`,
  )
}

interface TcpHandle {
  fd?: number
  readStop?: () => number
  readStart?: () => number
}

/** Node's descriptor of a plain TCP socket, or -1 when it cannot be adopted. */
function adoptableFd(socket: Duplex): number {
  if (process.platform === 'win32' || !(socket instanceof net.Socket) || socket instanceof tls.TLSSocket) return -1
  const handle = (socket as unknown as { _handle?: TcpHandle | null })._handle
  if (!handle || typeof handle.fd !== 'number' || handle.fd < 0 || typeof handle.readStop !== 'function') return -1
  // libuv's TCP handle; a Unix-domain socket's is a Pipe (the engine would refuse it too).
  if (handle.constructor.name !== 'TCP') return -1
  return handle.fd
}

/** What Node had read from the socket and not handed to anyone (when called after the event). */
function takeBuffered(socket: Duplex): Buffer[] {
  const out: Buffer[] = []
  for (let chunk: unknown = socket.read(); chunk !== null; chunk = socket.read()) {
    if (Buffer.isBuffer(chunk)) out.push(chunk)
    else if (typeof chunk === 'string') out.push(Buffer.from(chunk, 'latin1'))
  }
  return out
}

/**
 * Hands the connection to the engine; returns the attach id its connect or upgrade-failed
 * event will carry (0: refused here, with 503). The fast path stops libuv reading, takes what Node buffered, lets the
 * engine duplicate the descriptor, then closes Node's handle: closing one of two descriptors of
 * a socket sends nothing (no FIN, no RST). Anything else goes through the loopback pump.
 */
export function handOver(native: NativeServer, req: IncomingMessage, socket: Duplex, head: Buffer, adopt: boolean): number {
  const prefix = [requestHead(req), head]
  const fd = adopt ? adoptableFd(socket) : -1
  if (fd >= 0) {
    // Drained first: read() may ask libuv to read again, which readStop then cancels. No
    // bytes are read between the two (libuv reads in its poll phase, not here).
    prefix.push(...takeBuffered(socket))
    const handle = (socket as unknown as { _handle: Required<TcpHandle> })._handle
    handle.readStop()
    try {
      const attach = native.adopt(fd, Buffer.concat(prefix))
      socket.destroy()
      return attach
    } catch {
      // Not adoptable after all: pump it instead. net.js still counts the handle as reading.
      handle.readStart()
    }
  }
  try {
    return pump(native, socket, req, Buffer.concat(prefix))
  } catch {
    // The loopback listener could not be started (no local port left, say).
    refuse(socket, 503, 'WebSocket engine unavailable')
    return 0
  }
}

/**
 * The slow path: a loopback connection to the engine carries the socket's bytes both ways
 * (`pipe` keeps backpressure on both sides). Its first line holds the server's secret and the
 * real peer address; either side closing or failing ends the other.
 */
function pump(native: NativeServer, socket: Duplex, req: IncomingMessage, prefix: Buffer): number {
  const { port, secret } = native.loopback()
  const attach = native.attachId()
  const peer = socket instanceof net.Socket ? socket : req.socket
  const ip = peer.remoteAddress && net.isIP(peer.remoteAddress) !== 0 ? peer.remoteAddress : '0.0.0.0'
  const link = net.connect({ port, host: '127.0.0.1', noDelay: true })
  link.write(`${secret} ${attach} ${ip} ${peer.remotePort ?? 0}\n`)
  link.write(prefix)
  const end = (): void => {
    link.destroy()
    socket.destroy()
  }
  socket.on('error', end)
  link.on('error', end)
  socket.on('close', () => link.destroy())
  // The engine closed: end the client's side (FIN, or close_notify then FIN), then let go.
  link.on('close', () => {
    if (socket.destroyed) return
    if (socket.writableFinished) return void socket.destroy()
    socket.once('finish', () => socket.destroy())
    socket.end()
  })
  socket.pipe(link)
  link.pipe(socket)
  return attach
}

/** One WsServer as the per-http-server dispatcher sees it. */
export interface UpgradeTarget {
  shouldHandle(req: IncomingMessage): boolean
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void
}

interface Registry {
  targets: Set<UpgradeTarget>
  listener: (req: IncomingMessage, socket: Duplex, head: Buffer) => void
}

/** WsServers attached to each http server, behind one `upgrade` listener per http server. */
const registries = new WeakMap<AttachableServer, Registry>()

/**
 * Attaches a WsServer to an http server. The first WsServer whose routes have the request's
 * path takes the upgrade; a path none of them has is left to the server's other `upgrade`
 * listeners, or answered 404 when there is none.
 */
export function attach(server: AttachableServer, target: UpgradeTarget): void {
  let registry = registries.get(server)
  if (!registry) {
    const targets = new Set<UpgradeTarget>()
    const listener = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
      for (const t of targets) {
        if (t.shouldHandle(req)) {
          try {
            t.handleUpgrade(req, socket, head)
          } catch {
            // Only a socket another listener already took or answered gets here: leave it.
          }
          return
        }
      }
      if (server.listenerCount('upgrade') <= 1) refuse(socket, 404, 'No WebSocket handler on this path')
    }
    registry = { targets, listener }
    registries.set(server, registry)
    server.on('upgrade', listener)
  }
  registry.targets.add(target)
}

/** Detaches a WsServer; the last one removes the `upgrade` listener. */
export function detach(server: AttachableServer, target: UpgradeTarget): void {
  const registry = registries.get(server)
  if (!registry) return
  registry.targets.delete(target)
  if (registry.targets.size === 0) {
    server.off('upgrade', registry.listener)
    registries.delete(server)
  }
}
