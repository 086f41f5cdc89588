// ws 8's WebSocketServer (an EventEmitter: 'connection', 'headers', 'listening', 'close'...) over
// our WsServer: the engine accepts, upgrades and frames; this class only translates.
import { createHash } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { createServer, STATUS_CODES, type IncomingMessage, type Server as HttpServer } from 'node:http'
import type { Server as HttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'
import { WsServer } from '../server'
import type { Socket } from '../socket'
import type { ServerOptions as NativeServerOptions, UpgradeRequest, UpgradeResult, WebSocketHandlers } from '../types'
import { fromWsDeflate, type WsPerMessageDeflateOptions } from './deflate'
import { abortHandshake, checkUpgrade, type Refusal } from './handshake'
import { badHeaderLine } from '../response-headers'
import { codedError, unsupported } from './unsupported'
import { ATTACH, CLOSED_BY_ENGINE, CONTROL, DRAINED, FAILED, RECEIVE, WebSocket } from './websocket'

/** What verifyClient sees. */
export interface VerifyClientInfo {
  origin: string | undefined
  secure: boolean
  req: IncomingMessage
}

/** ws's two forms: return a boolean, or (with two parameters) answer through the callback. */
export type VerifyClient =
  | ((info: VerifyClientInfo) => boolean)
  | ((
      info: VerifyClientInfo,
      callback: (verified: boolean, code?: number, message?: string, headers?: Record<string, string>) => void,
    ) => void)

/** The options of ws 8's `new WebSocketServer(options, callback)`. */
export interface ServerOptions {
  port?: number
  host?: string
  /** An http or https server whose upgrades this server takes. */
  server?: HttpServer | HttpsServer
  noServer?: boolean
  path?: string
  backlog?: number
  verifyClient?: VerifyClient | null
  handleProtocols?: ((protocols: Set<string>, request: IncomingMessage) => string | false) | null
  clientTracking?: boolean
  /** Largest message; 0 means the engine's largest (4 GiB - 1). Default 100 MiB, as ws. */
  maxPayload?: number
  /** permessage-deflate, off by default as in ws; see fromWsDeflate for what maps. */
  perMessageDeflate?: boolean | WsPerMessageDeflateOptions
  /** Only false: the engine always validates UTF-8. */
  skipUTF8Validation?: boolean
  /** Only true: the engine always answers pings. */
  autoPong?: boolean
  /** Only true. */
  allowSynchronousEvents?: boolean
  /** Time allowed for the peer's answer to our close frame. Default 30 000, as ws. */
  closeTimeout?: number
  /** A subclass of this module's WebSocket. */
  WebSocket?: typeof WebSocket
  /** Engine options ws does not have (`idleTimeout`, `pingInterval`, `maxBackpressure`...). */
  rnode?: Omit<NativeServerOptions, 'port' | 'host' | 'reusePort' | 'server' | 'noServer' | 'maxPayload' | 'closeTimeout' | 'protocols' | 'perMessageDeflate'>
}

/** `options` as `wss.options` shows them: ws's defaults filled in. */
export type ResolvedOptions = ServerOptions & {
  clientTracking: boolean
  maxPayload: number
  perMessageDeflate: boolean | WsPerMessageDeflateOptions
  WebSocket: typeof WebSocket
  closeTimeout: number
}

const RUNNING = 0
const CLOSING = 1
const CLOSED = 2
const MAX_PAYLOAD = 100 * 1024 * 1024
const MAX_ENGINE_PAYLOAD = 0xffffffff
const CLOSE_TIMEOUT = 30_000
/** The engine's default handshakeTimeout. */
const HANDSHAKE_TIMEOUT = 10_000
const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'
const ONLY_DEFAULT: ReadonlyArray<[keyof ServerOptions, unknown, string]> = [
  ['skipUTF8Validation', false, 'the engine always validates UTF-8'],
  ['autoPong', true, 'the engine always answers pings'],
  ['allowSynchronousEvents', true, 'messages of one batch are always emitted in the same tick'],
]
const RECEIVER_LIMITS = ['maxBufferedChunks', 'maxFragments', 'maxPendingAutoPongs'] as const

function firstOf(protocols: Set<string>): string | undefined {
  for (const p of protocols) return p
  return undefined
}

/** Drops the listeners `addListeners` put on an http server. */
type RemoveListeners = () => void

type Listener = (...args: never[]) => void

function addListeners(server: HttpServer, map: Record<string, Listener>): RemoveListeners {
  const entries = Object.entries(map) as Array<[string, (...args: unknown[]) => void]>
  for (const [event, fn] of entries) server.on(event, fn)
  return () => {
    for (const [event, fn] of entries) server.removeListener(event, fn)
  }
}

/** The events of ws's WebSocketServer, typed for listeners. */
export interface WebSocketServer {
  on(event: 'connection', listener: (ws: WebSocket, req: IncomingMessage) => void): this
  on(event: 'headers', listener: (headers: string[], req: IncomingMessage) => void): this
  on(event: 'wsClientError', listener: (error: Error, socket: Duplex, req: IncomingMessage) => void): this
  on(event: 'error', listener: (error: Error) => void): this
  on(event: 'listening' | 'close', listener: () => void): this
  on(event: string | symbol, listener: (...args: never[]) => void): this
  once(event: 'connection', listener: (ws: WebSocket, req: IncomingMessage) => void): this
  once(event: 'headers', listener: (headers: string[], req: IncomingMessage) => void): this
  once(event: 'wsClientError', listener: (error: Error, socket: Duplex, req: IncomingMessage) => void): this
  once(event: 'error', listener: (error: Error) => void): this
  once(event: 'listening' | 'close', listener: () => void): this
  once(event: string | symbol, listener: (...args: never[]) => void): this
}

// The interface above adds typed overloads to EventEmitter's on/once.
/** A ws-compatible WebSocket server whose connections run in our engine. */
export class WebSocketServer extends EventEmitter {
  /** The options, ws's defaults filled in. */
  readonly options: ResolvedOptions
  /** Open connections, unless `clientTracking` is false. */
  readonly clients: Set<WebSocket> | undefined
  readonly #engine: WsServer
  #state = RUNNING
  #finishing = false
  /** The http server made for `port` (closed by `close()`, unlike one given as `server`). */
  #ownServer: HttpServer | undefined
  /** `close()` waits for it to close (or for nothing, without an own http server). */
  #ownServerClosed = true
  #open = 0
  #httpServer: HttpServer | undefined
  #removeListeners: RemoveListeners | undefined

  constructor(options: ServerOptions, callback?: () => void) {
    super()
    if (options === null || typeof options !== 'object') {
      throw new TypeError('One and only one of the "port", "server", or "noServer" options must be specified')
    }
    const o: ResolvedOptions = {
      clientTracking: true,
      maxPayload: MAX_PAYLOAD,
      handleProtocols: null,
      verifyClient: null,
      noServer: false,
      closeTimeout: CLOSE_TIMEOUT,
      WebSocket,
      ...options,
      perMessageDeflate: options.perMessageDeflate ?? false,
    }
    const port = options.port
    if (
      (port == null && !options.server && !options.noServer) ||
      (port != null && (options.server || options.noServer)) ||
      (options.server && options.noServer)
    ) {
      throw new TypeError('One and only one of the "port", "server", or "noServer" options must be specified')
    }
    for (const [name, only, why] of ONLY_DEFAULT) {
      if (options[name] !== undefined && options[name] !== only) throw unsupported(`${name}: ${String(options[name])}`, why)
    }
    for (const name of RECEIVER_LIMITS) {
      if (name in options) throw unsupported(name, 'the engine bounds messages with maxPayload (fragments included)')
    }
    if (o.WebSocket !== WebSocket && !(o.WebSocket.prototype instanceof WebSocket)) {
      throw unsupported('a WebSocket option that does not extend @rnode/ws/compat\'s WebSocket', 'the engine needs its own socket class')
    }
    this.options = o
    this.clients = o.clientTracking ? new Set() : undefined
    // As ws: every mode takes upgrades from an http server (its own one with `port`), the
    // engine adopts each accepted connection (attach mode), and messages then stay native.
    this.#engine = new WsServer({
      ...o.rnode,
      maxPayload: o.maxPayload === 0 ? MAX_ENGINE_PAYLOAD : o.maxPayload,
      closeTimeout: o.closeTimeout,
      perMessageDeflate: fromWsDeflate(o.perMessageDeflate),
      noServer: true,
    })
    this.#engine.websocket('*', this.#handlers())
    let server = options.server
    if (port != null) {
      server = createServer((_req, res) => {
        const body = STATUS_CODES[426] ?? ''
        res.writeHead(426, { 'Content-Length': body.length, 'Content-Type': 'text/plain' })
        res.end(body)
      })
      this.#ownServer = server
      server.listen(port, options.host ?? undefined, options.backlog ?? undefined, callback)
    }
    if (server) {
      this.#httpServer = server
      this.#removeListeners = addListeners(server, {
        listening: () => this.emit('listening'),
        error: (err: Error) => this.emit('error', err),
        upgrade: (req: IncomingMessage, socket: Duplex, head: Buffer) =>
          this.handleUpgrade(req, socket, head, (ws, request) => this.emit('connection', ws, request)),
      })
    }
  }

  /** Our WsServer underneath: rooms (`createRoom`, `broadcast(msg, { room })`), `getStats()`. */
  get native(): WsServer {
    return this.#engine
  }

  /** The bound address (null before listening and after close); throws in noServer mode. */
  address(): AddressInfo | string | null {
    if (this.options.noServer) throw new Error('The server is operating in "noServer" mode')
    return this.#httpServer?.address() ?? null
  }

  /**
   * Stops taking new connections (upgrades get 503) and emits 'close' once every open connection
   * is gone; open connections are not closed, as in ws. `cb` is a one-time 'close' listener.
   */
  close(cb?: (err?: Error) => void): void {
    if (this.#state === CLOSED) {
      if (cb) this.once('close', () => cb(new Error('The server is not running')))
      process.nextTick(() => this.emit('close'))
      return
    }
    if (cb) this.once('close', cb)
    if (this.#state === CLOSING) return
    this.#state = CLOSING
    if (this.#removeListeners) {
      this.#removeListeners()
      this.#removeListeners = undefined
      this.#httpServer = undefined
    }
    const own = this.#ownServer
    if (own) {
      this.#ownServerClosed = false
      own.close(() => {
        this.#ownServerClosed = true
        this.#maybeFinishClose()
      })
    }
    this.#maybeFinishClose()
  }

  /** Whether this server takes `req` (its `path` option, when set, must match). */
  shouldHandle(req: IncomingMessage): boolean {
    const path = this.options.path
    if (!path) return true
    const url = req.url ?? ''
    const index = url.indexOf('?')
    return (index === -1 ? url : url.slice(0, index)) === path
  }

  /**
   * Completes an upgrade the application's http server received (server and noServer modes).
   * ws's checks run first, with ws's answers ('wsClientError' when it has listeners).
   */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, cb: (ws: WebSocket, req: IncomingMessage) => void): void {
    const refused = checkUpgrade(req, this.shouldHandle(req), this.options.perMessageDeflate !== false)
    if (refused) {
      if (refused.emit && this.listenerCount('wsClientError') > 0) this.emit('wsClientError', new Error(refused.message), socket, req)
      else abortHandshake(socket, refused.status, refused.message, refused.headers)
      return
    }
    const verdict = this.#verify(req)
    const next = (refusal: Refusal | undefined): void => {
      if (refusal) abortHandshake(socket, refusal.status, refusal.message, refusal.headers)
      else this.#handOver(req, socket, head, cb)
    }
    if (verdict instanceof Promise) void verdict.then(next)
    else next(verdict)
  }

  /** Hands a checked and verified upgrade to the engine, which answers it. */
  #handOver(req: IncomingMessage, socket: Duplex, head: Buffer, cb: (ws: WebSocket, req: IncomingMessage) => void): void {
    // The engine has taken a socket handed over before (its descriptor, or its stream).
    if (this.#handedOver.has(socket)) {
      throw codedError(
        'ERR_UPGRADE_TAKEN',
        'server.handleUpgrade() was called more than once with the same socket, possibly due to a misconfiguration',
      )
    }
    // As ws: a client that went away meanwhile is dropped; a closing server answers 503.
    if (!socket.readable || !socket.writable) {
      socket.destroy()
      return
    }
    if (this.#state !== RUNNING) return abortHandshake(socket, 503)
    this.#handedOver.add(socket)
    // net.Socket caches the peer address on first read: read it now, so req.socket.remoteAddress
    // (what ws apps log) still answers once the engine has taken the descriptor.
    const peer = socket as { remoteAddress?: string; remotePort?: number }
    const waiting = { req, address: peer.remoteAddress, port: peer.remotePort }
    const key = req.headers['sec-websocket-key'] ?? ''
    const list = this.#requests.get(key)
    if (list) list.push(waiting)
    else this.#requests.set(key, [waiting])
    // An upgrade the engine refuses before onUpgrade never reaches #upgrade: forget it after the
    // handshake timeout.
    setTimeout(() => this.#takeRequest(key, (w) => w === waiting), HANDSHAKE_TIMEOUT).unref()
    this.#engine.handleUpgrade(req, socket, head, (native, request) => cb(this.#attach(native), request))
  }

  /** Sockets given to the engine by `#handOver`. */
  readonly #handedOver = new WeakSet<Duplex>()

  /** verifyClient's verdict on `req`: undefined accepts; a Promise for its callback form. */
  #verify(req: IncomingMessage): Refusal | undefined | Promise<Refusal | undefined> {
    const verify = this.options.verifyClient
    if (!verify) return undefined
    const version = Number(req.headers['sec-websocket-version'])
    const peer = req.socket as { encrypted?: boolean; authorized?: boolean } | null
    const origin = req.headers[version === 8 ? 'sec-websocket-origin' : 'origin']
    const info: VerifyClientInfo = { origin: Array.isArray(origin) ? origin[0] : origin, secure: Boolean(peer?.authorized || peer?.encrypted), req }
    if (verify.length === 2) {
      return new Promise((resolve) => {
        ;(verify as Extract<VerifyClient, (i: VerifyClientInfo, cb: never) => void>)(info, (verified, code, message, headers) => {
          resolve(verified ? undefined : { status: code || 401, message, headers, emit: false })
        })
      })
    }
    return (verify as (i: VerifyClientInfo) => boolean)(info) ? undefined : { status: 401, emit: false }
  }

  /** Requests given to `handleUpgrade`, by their Sec-WebSocket-Key, until `onUpgrade` sees them. */
  // Clients may all send the same key; the peer address tells their requests apart.
  readonly #requests = new Map<string, Array<{ req: IncomingMessage; address: string | undefined; port: number | undefined }>>()

  /** Removes and returns the first waiting request of `key` that `match` accepts. */
  #takeRequest(
    key: string,
    match: (w: { req: IncomingMessage; address: string | undefined; port: number | undefined }) => boolean,
  ): IncomingMessage | undefined {
    const list = this.#requests.get(key)
    const i = list?.findIndex(match) ?? -1
    if (list === undefined || i === -1) return undefined
    const [taken] = list.splice(i, 1)
    if (list.length === 0) this.#requests.delete(key)
    return taken?.req
  }

  #handlers(): WebSocketHandlers {
    return {
      onUpgrade: (r) => this.#upgrade(r),
      // In attach mode handleUpgrade's callback has made the WebSocket already.
      onConnect: (socket) => {
        if (socket.data instanceof WebSocket) return
        const req = socket.data as IncomingMessage
        this.emit('connection', this.#attach(socket), req)
      },
      onMessage: (socket, message) => (socket.data as WebSocket)[RECEIVE](message),
      onClose: (socket, code, reason) => {
        const ws = socket.data
        if (!(ws instanceof WebSocket)) return
        this.clients?.delete(ws)
        this.#open--
        ws[CLOSED_BY_ENGINE](code, reason)
        this.#maybeFinishClose()
      },
      onDrain: (socket) => (socket.data as WebSocket)[DRAINED](),
      onPing: (socket, data) => (socket.data as WebSocket)[CONTROL](false, data),
      onPong: (socket, data) => (socket.data as WebSocket)[CONTROL](true, data),
      onError: (socket, error) => {
        if (socket.data instanceof WebSocket) socket.data[FAILED](error)
      },
    }
  }

  /** Makes the WebSocket of a connection that just opened. */
  #attach(socket: Socket): WebSocket {
    if (socket.data instanceof WebSocket) return socket.data
    const ws = new this.options.WebSocket(null, undefined, this.options)
    ws[ATTACH](socket)
    socket.data = ws
    this.#open++
    this.clients?.add(ws)
    return ws
  }

  /** verifyClient, the path, handleProtocols and 'headers', before the engine sends the 101. */
  /** The engine asks before its 101: handleUpgrade has run ws's checks and verifyClient. */
  #upgrade(r: UpgradeRequest): UpgradeResult {
    const key = r.headers['sec-websocket-key'] ?? ''
    // The peer's address where the engine knows it as Node does, else the oldest with this key.
    const req =
      this.#takeRequest(key, (w) => w.port === r.remotePort && w.address === r.remoteAddress) ?? this.#takeRequest(key, () => true)
    // None only after the handshake timeout: the engine would have refused it by then.
    if (req === undefined) return refusal(503)
    return this.#accept(r, req)
  }

  #accept(r: UpgradeRequest, req: IncomingMessage): UpgradeResult {
    if (this.#state !== RUNNING) return refusal(503)
    const offered = new Set(r.protocols)
    let protocol: string | undefined
    if (offered.size > 0) {
      const chosen = this.options.handleProtocols ? this.options.handleProtocols(offered, req) : firstOf(offered)
      if (chosen) protocol = chosen
    }
    let extra: string[] | undefined
    if (this.listenerCount('headers') > 0) {
      const digest = createHash('sha1').update(`${r.headers['sec-websocket-key'] ?? ''}${GUID}`).digest('base64')
      const own = ['HTTP/1.1 101 Switching Protocols', 'Upgrade: websocket', 'Connection: Upgrade', `Sec-WebSocket-Accept: ${digest}`]
      if (protocol !== undefined) own.push(`Sec-WebSocket-Protocol: ${protocol}`)
      const headers = [...own]
      this.emit('headers', headers, req)
      extra = addedHeaders(own, headers)
    }
    const accepted: UpgradeResult = { data: req }
    if (protocol !== undefined) accepted.protocol = protocol
    if (extra !== undefined && extra.length > 0) accepted.headers = extra
    return accepted
  }

  /** 'close' once closing, with every connection gone and the own http server closed. */
  #maybeFinishClose(): void {
    if (this.#state !== CLOSING || this.#open > 0 || !this.#ownServerClosed || this.#finishing) return
    this.#finishing = true
    this.#engine.close().then(
      () => {
        this.#state = CLOSED
        process.nextTick(() => this.emit('close'))
      },
      (err: unknown) => process.nextTick(() => this.emit('error', err)),
    )
  }
}

/**
 * What a 'headers' listener added to the 101: lines that were not there before, each checked. A
 * malformed line, or a change to the handshake's own lines (the engine writes those), is not sent
 * and a warning says why.
 */
function addedHeaders(own: readonly string[], headers: readonly unknown[]): string[] {
  const extra: string[] = []
  for (const line of headers) {
    if (typeof line === 'string' && own.includes(line)) continue
    const why = badHeaderLine(line)
    if (why === undefined) extra.push(line as string)
    else warn(`the 'headers' line ${JSON.stringify(line)} is not sent: ${why}`)
  }
  if (own.some((line) => !headers.includes(line))) warn("the handshake's own lines of 'headers' cannot be removed or changed: the engine writes them")
  return extra
}

function warn(message: string): void {
  process.emitWarning(`@rnode/ws/compat: ${message}`, { code: 'ERR_INVALID_HANDLER_RESULT' })
}

function refusal(status: number, message?: string): UpgradeResult {
  return { status, message: message ?? STATUS_CODES[status] ?? 'Upgrade refused' }
}
