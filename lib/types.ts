import type { Socket } from './socket'

/** Anything a handler may return: nothing, or a promise whose rejection counts as a throw. */
export type HandlerResult = void | Promise<void>

/** Per-path handlers passed to `server.websocket(path, handlers)`. */
export interface WebSocketHandlers {
  /** A client completed the upgrade. */
  onConnect?: (socket: Socket) => HandlerResult
  /** A text (`string`) or binary (`Buffer`) message arrived. */
  onMessage?: (socket: Socket, message: string | Buffer) => HandlerResult
  /** The connection is gone; `code` is the peer's close code, 1005 without one, 1006 if it dropped. */
  onClose?: (socket: Socket, code: number, reason: string) => HandlerResult
  /** A handler threw (the connection is closed with 1011) or the engine reports a problem. */
  onError?: (socket: Socket, error: Error) => HandlerResult
  /** The send buffer emptied after `send()` reported `'buffered'`. */
  onDrain?: (socket: Socket) => HandlerResult
}

/** Options for `new WsServer(options)`. Durations are milliseconds, sizes bytes. */
export interface ServerOptions {
  /** TCP port; 0 picks a free one (see `listen()`'s result). Default 0. */
  port?: number
  /** Interface to bind. Default `'0.0.0.0'`. */
  host?: string
  /** Largest inbound message, also for fragment sums; larger ones close with 1009. Default 1 MiB. */
  maxPayload?: number
  /** Per-connection send buffer limit. Default 1 MiB. */
  maxBackpressure?: number
  /** What happens when a send would exceed `maxBackpressure`: close with 1008, or drop the message. */
  backpressurePolicy?: 'close' | 'drop'
  /** Close peers silent for this long. Default 120 000. */
  idleTimeout?: number
  /** Interval between server pings. Default 30 000. */
  pingInterval?: number
  /** Time allowed for the HTTP upgrade request. Default 10 000. */
  handshakeTimeout?: number
  /** Time we wait for the peer's answer to our close frame. Default 5 000. */
  closeTimeout?: number
}

/** Result of `socket.send()`. */
export type SendStatus = 'sent' | 'buffered' | 'dropped'

/** Options for `server.close()`. */
export interface CloseOptions {
  /** How long to wait for close handshakes before dropping what is left. Default 5 000. */
  timeout?: number
}

/** Counters from `server.getStats()`. */
export interface ServerStats {
  totalConnections: number
  messagesIn: number
  messagesOut: number
  bytesIn: number
  bytesOut: number
  droppedMessages: number
  /** Debug: how many events JS received per engine wake-up (batching at work). */
  batching: { wakeups: number; batches: number; events: number; eventsPerBatch: number }
}
