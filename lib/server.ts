import { native, type NativeServer, type NativeOptions } from './binding'
import { Socket, type ConnectionInfo } from './socket'
import type { CloseOptions, ServerOptions, ServerStats, WebSocketHandlers } from './types'

/** Event kinds in a native batch header (see native/events.rs). */
const enum Kind {
  Connect = 0,
  Text = 1,
  Binary = 2,
  Close = 3,
  Drain = 4,
}
/** u32 slots per event in a batch header. */
const STRIDE = 5

const HANDLER_NAMES = ['onConnect', 'onMessage', 'onClose', 'onError', 'onDrain'] as const
type HandlerName = (typeof HANDLER_NAMES)[number]

const DURATION_OPTIONS = ['idleTimeout', 'pingInterval', 'handshakeTimeout', 'closeTimeout'] as const
const SIZE_OPTIONS = ['maxPayload', 'maxBackpressure'] as const
const MAX_U32 = 0xffffffff

function checkInteger(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new TypeError(`${name} must be an integer, got ${typeof value === 'number' ? value : typeof value}`)
  }
  if (value < min || value > max) throw new RangeError(`${name} must be between ${min} and ${max}, got ${value}`)
  return value
}

function toNativeOptions(input: number | ServerOptions | undefined): NativeOptions {
  if (input === undefined) return {}
  if (typeof input === 'number') return { port: checkInteger('port', input, 0, 65535) }
  if (typeof input !== 'object' || input === null) {
    throw new TypeError(`new WsServer() takes a port number or an options object, got ${input === null ? 'null' : typeof input}`)
  }
  const out: NativeOptions = {}
  if (input.port !== undefined) out.port = checkInteger('port', input.port, 0, 65535)
  if (input.host !== undefined) {
    if (typeof input.host !== 'string' || input.host.length === 0) throw new TypeError('host must be a non-empty string')
    out.host = input.host
  }
  for (const name of DURATION_OPTIONS) {
    if (input[name] !== undefined) out[name] = checkInteger(name, input[name], 1, MAX_U32)
  }
  for (const name of SIZE_OPTIONS) {
    if (input[name] !== undefined) out[name] = checkInteger(name, input[name], 1, MAX_U32)
  }
  if (input.backpressurePolicy !== undefined) {
    if (input.backpressurePolicy !== 'close' && input.backpressurePolicy !== 'drop') {
      throw new TypeError(`backpressurePolicy must be 'close' or 'drop', got ${String(input.backpressurePolicy)}`)
    }
    out.backpressurePolicy = input.backpressurePolicy
  }
  return out
}

function toError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value))
}

/** A WebSocket server whose sockets, framing and fan-out run in Rust. */
export class WsServer {
  readonly #native: NativeServer
  readonly #host: string
  readonly #routes = new Map<string, WebSocketHandlers>()
  readonly #sockets = new Map<number, Socket>()
  readonly #byId = new Map<string, Socket>()
  #state: 'idle' | 'listening' | 'closing' | 'closed' = 'idle'
  #port: number | undefined
  #closing: Promise<void> | undefined

  /** `new WsServer(3000)` or `new WsServer({ port, host, ...limits })`. */
  constructor(portOrOptions?: number | ServerOptions) {
    const options = toNativeOptions(portOrOptions)
    this.#host = options.host ?? '0.0.0.0'
    this.#native = new native.NativeServer(options)
  }

  /** The bound port once `listen()` resolved. */
  get port(): number | undefined {
    return this.#port
  }

  /** Registers handlers for WebSocket upgrades on `path` (exact match, e.g. `'/chat'`). */
  websocket(path: string, handlers: WebSocketHandlers = {}): this {
    if (typeof path !== 'string' || !path.startsWith('/')) {
      throw new TypeError(`websocket() path must be a string starting with '/', got ${JSON.stringify(path)}`)
    }
    if (typeof handlers !== 'object' || handlers === null) throw new TypeError('websocket() handlers must be an object')
    for (const name of HANDLER_NAMES) {
      const fn: unknown = handlers[name]
      if (fn !== undefined && typeof fn !== 'function') throw new TypeError(`${name} must be a function, got ${typeof fn}`)
    }
    this.#routes.set(path, { ...handlers })
    this.#native.addRoute(path)
    return this
  }

  /** Binds and starts accepting. Resolves with the bound port (useful with port 0). */
  async listen(): Promise<{ port: number; host: string }> {
    if (this.#state !== 'idle') throw new Error(`listen() called on a server that is ${this.#state}`)
    this.#state = 'listening'
    try {
      this.#port = await this.#native.listen(() => this.#drain())
    } catch (err) {
      this.#state = 'closed'
      throw err
    }
    return { port: this.#port, host: this.#host }
  }

  /**
   * Stops accepting, closes every connection with 1001 after flushing what was queued, and
   * resolves once they are closed (or dropped after `timeout` ms). The process may then exit.
   */
  close(options: CloseOptions = {}): Promise<void> {
    if (this.#closing) return this.#closing
    const timeout = options.timeout === undefined ? 5000 : checkInteger('timeout', options.timeout, 0, MAX_U32)
    const wasListening = this.#state === 'listening'
    this.#state = 'closing'
    this.#closing = (async () => {
      if (wasListening) {
        await this.#native.shutdown(timeout)
        this.#drain()
      }
      this.#native.dispose()
      this.#state = 'closed'
    })()
    return this.#closing
  }

  /** The open connection with this id, if any. */
  getConnection(id: string): Socket | undefined {
    return this.#byId.get(id)
  }

  /** Every open connection. */
  getConnections(): Socket[] {
    return [...this.#sockets.values()]
  }

  /** Connection, message and byte counters, and the batching debug figures. */
  getStats(): ServerStats {
    const s = this.#native.stats()
    return {
      totalConnections: s.totalConnections,
      messagesIn: s.messagesIn,
      messagesOut: s.messagesOut,
      bytesIn: s.bytesIn,
      bytesOut: s.bytesOut,
      droppedMessages: s.droppedMessages,
      batching: {
        wakeups: s.wakeups,
        batches: s.batches,
        events: s.events,
        eventsPerBatch: s.batches === 0 ? 0 : s.events / s.batches,
      },
    }
  }

  /** Runs every queued engine event through the handlers. Never throws. */
  #drain(): void {
    for (;;) {
      const batch = this.#native.pollEvents()
      const h = batch.header
      if (h.length === 0) return
      const text = batch.text
      const binary = batch.binary
      for (let i = 0; i < h.length; i += STRIDE) {
        const conn = h[i + 1]!
        const start = h[i + 2]!
        const end = h[i + 3]!
        switch (h[i] as Kind) {
          case Kind.Connect:
            this.#onConnect(conn, text.substring(start, end))
            break
          case Kind.Text: {
            const socket = this.#sockets.get(conn)
            if (socket) this.#call(socket, 'onMessage', text.substring(start, end))
            break
          }
          case Kind.Binary: {
            const socket = this.#sockets.get(conn)
            // A copy, so user code may keep it without pinning the whole batch buffer.
            if (socket && binary) this.#call(socket, 'onMessage', Buffer.from(binary.subarray(start, end)))
            else if (socket) this.#call(socket, 'onMessage', Buffer.alloc(0))
            break
          }
          case Kind.Close:
            this.#onClose(conn, h[i + 4]!, text.substring(start, end))
            break
          case Kind.Drain: {
            const socket = this.#sockets.get(conn)
            if (socket) this.#call(socket, 'onDrain')
            break
          }
        }
      }
    }
  }

  #onConnect(conn: number, infoJson: string): void {
    const info = JSON.parse(infoJson) as ConnectionInfo
    const socket = new Socket(this.#native, conn, info)
    this.#sockets.set(conn, socket)
    this.#byId.set(socket.id, socket)
    this.#call(socket, 'onConnect')
  }

  #onClose(conn: number, code: number, reason: string): void {
    const socket = this.#sockets.get(conn)
    if (!socket) return
    this.#sockets.delete(conn)
    this.#byId.delete(socket.id)
    socket.markClosed()
    this.#call(socket, 'onClose', code, reason)
  }

  /** Calls a handler; a throw or a rejected promise closes that connection with 1011. */
  #call(socket: Socket, name: HandlerName, ...args: unknown[]): void {
    const handler = this.#routes.get(socket.path)?.[name] as ((s: Socket, ...a: unknown[]) => unknown) | undefined
    if (!handler) return
    try {
      const result = handler(socket, ...args)
      if (result instanceof Promise) result.catch((err: unknown) => this.#fail(socket, name, err))
    } catch (err) {
      this.#fail(socket, name, err)
    }
  }

  #fail(socket: Socket, name: HandlerName, err: unknown): void {
    const error = toError(err)
    if (socket.isOpen) socket.close(1011, 'Internal server error')
    const onError = this.#routes.get(socket.path)?.onError
    if (onError && name !== 'onError') {
      try {
        const result = onError(socket, error)
        if (result instanceof Promise) result.catch((e: unknown) => console.error('[rnode-ws] onError rejected:', e))
      } catch (e) {
        console.error('[rnode-ws] onError threw:', e)
      }
    } else {
      console.error(`[rnode-ws] ${name} handler failed:`, error)
    }
  }
}
