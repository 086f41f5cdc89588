import type { RNodeClientError } from './errors'

/**
 * A handler slot of a WebSocket (`onopen`, `onmessage`...). Declared as a method type so that
 * both the browser's `WebSocket` and `ws`'s class, whose event types differ, fit.
 */
type Handler<E> = { bivarianceHack(event: E): void }['bivarianceHack'] | null

/** What the client needs from a WebSocket object: the browser's, `ws`'s, or undici's. */
export interface WebSocketLike {
  readonly readyState: number
  binaryType: string
  onopen: Handler<unknown>
  onmessage: Handler<{ data: unknown }>
  onclose: Handler<{ code: number; reason: string }>
  onerror: Handler<{ message?: string; error?: unknown }>
  send(data: string | ArrayBuffer | ArrayBufferView): void
  close(code?: number, reason?: string): void
}

/** A WebSocket class, e.g. the global `WebSocket` or `import WebSocket from 'ws'`. */
export type WebSocketConstructor = new (url: string) => WebSocketLike

/** Connection state, as `getStatus()` reports it. */
export type ConnectionStatus = 'disconnected' | 'connecting' | 'connected' | 'reconnecting'

/** A frame the client can send: text, JSON-serialized object, or bytes. */
export type OutgoingMessage = string | object | ArrayBuffer | ArrayBufferView

/** An incoming application message: text, or bytes as an `ArrayBuffer`. */
export type IncomingMessage = string | ArrayBuffer

/** A token for the `auth` option: a value, or a function called before every (re)connect. */
export type AuthToken = string | (() => string | Promise<string>)

/** Options of `new RNodeWebSocketClient(url, clientId, options)`. Durations are milliseconds. */
export interface ClientOptions {
  /** Reconnect after a connection drops. Default `true`. */
  autoReconnect?: boolean
  /** Reconnect attempts in a row before giving up with `maxReconnectAttemptsReached`. Default 10. */
  maxReconnectAttempts?: number
  /** First reconnect delay; doubled per attempt. Default 1000. */
  reconnectDelay?: number
  /** Largest reconnect delay. Default 30 000. */
  maxReconnectDelay?: number
  /** Fraction (0..1) by which each delay is randomly lowered. Default 0.5. */
  reconnectJitter?: number
  /** Interval between `ping`s while connected; 0 turns the heartbeat off. Default 30 000. */
  pingInterval?: number
  /** How long to wait for the `pong`; then the connection is closed and reopened. Default 10 000. */
  pongTimeout?: number
  /** How long `joinRoom`/`leaveRoom` wait for the server's answer. Default 10 000. */
  requestTimeout?: number
  /** Messages kept while offline, delivered after the next connect; oldest dropped first. Default 100. */
  maxQueuedMessages?: number
  /** Messages kept per room by `Room.getMessageHistory()`. Default 100. */
  maxHistorySize?: number
  /** Token sent as the query parameter `authParam` on every (re)connect. */
  auth?: AuthToken
  /** Query parameter name for `auth`. Default `'token'`. */
  authParam?: string
  /** Close codes after which the client does not reconnect. Default [1008, 4401, 4403]. */
  finalCloseCodes?: number[]
  /** WebSocket class to use; defaults to the global `WebSocket` (browsers, Node >= 22). */
  WebSocket?: WebSocketConstructor
}

/** A message in a room, as kept in its history and passed to `onMessage`. */
export interface RoomMessage {
  roomId: string
  message: string
  fromClientId: string
  /** `Date.now()` when it was sent or received. */
  timestamp: number
}

/** A member connection of a room, as presence shows it. */
export interface PresenceMember {
  clientId: string
  /** The fields the server makes public (its `presence.fields`). */
  fields: Record<string, unknown>
}

/** Events of `RNodeWebSocketClient` and their listener arguments. */
export interface ClientEvents {
  /** Open, rooms rejoined and offline queue flushed. */
  connected: () => void
  /** The connection closed (`code` 1006 when it dropped). */
  disconnected: (code: number, reason: string) => void
  /** A reconnect is scheduled in `delay` ms. */
  reconnecting: (attempt: number, delay: number) => void
  /** The client stopped reconnecting. */
  maxReconnectAttemptsReached: (attempts: number) => void
  /** An application message (any frame that is not part of the room protocol). */
  message: (data: IncomingMessage) => void
  /** A room message from the server. */
  roomMessage: (roomId: string, message: string, fromClientId: string) => void
  roomJoined: (roomId: string) => void
  /** Another member joined a room with presence events. */
  presenceJoin: (roomId: string, member: PresenceMember) => void
  /** Another member left a room with presence events. */
  presenceLeave: (roomId: string, member: PresenceMember) => void
  roomLeft: (roomId: string) => void
  roomJoinError: (roomId: string, error: RNodeClientError) => void
  /** The server answered a `ping`; `latency` is the round trip in ms. */
  pong: (latency: number) => void
  /** A message was dropped from the full offline queue. */
  messageDropped: (message: OutgoingMessage) => void
  /** The upgrade succeeded with the `auth` token. */
  authSuccess: () => void
  /** The server refused the token; the client does not retry with the same token. */
  authError: (error: RNodeClientError) => void
  statusChange: (status: ConnectionStatus) => void
  /**
   * The server took this client's session back after a reconnect (server option `recovery`):
   * `rooms` got every message missed while away, each once and in order.
   */
  recovered: (rooms: string[]) => void
  /** A room's missed messages could not all be replayed (history trimmed or lost): resync it. */
  recoveryFailed: (roomId: string) => void
  error: (error: RNodeClientError) => void
}
