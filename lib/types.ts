import type { PeerCertificate, TlsOptions } from './tls'
import type { Server as HttpServer } from 'node:http'
import type { Server as HttpsServer } from 'node:https'
import type { CodedError } from './errors'
import type { Socket } from './socket'

/** The HTTP upgrade request as `onUpgrade` sees it. */
export interface UpgradeRequest {
  path: string
  /** Query parameters. */
  query: Record<string, string>
  /** Request headers, lower-case names. */
  headers: Record<string, string>
  remoteAddress: string
  remotePort: number
  /** Subprotocols the client offered, in its order. */
  protocols: string[]
  /** The client's TLS certificate, on a `tls` server with `requestCert`. */
  peerCertificate?: PeerCertificate
}

/**
 * A per-connection token bucket on inbound frames, applied in the engine before anything
 * reaches JavaScript. Data messages, built-in protocol messages, pings and pongs count.
 */
export interface RateLimitOptions {
  /** Messages per `interval`; 0 or absent: not limited. */
  messages?: number
  /** Payload bytes per `interval`; 0 or absent: not limited. */
  bytes?: number
  /** Interval in ms. Default 1 000. */
  interval?: number
  /** Over the limit: `'close'` closes with 1008 (default), `'drop'` drops the message and counts it. */
  policy?: 'close' | 'drop'
}

/** Per-path options: `server.websocket(path, handlers, options)`. */
export interface RouteOptions {
  /** This path's rate limit, replacing the server's `rateLimit`. */
  rateLimit?: RateLimitOptions
  /**
   * permessage-deflate on this path, replacing the server's `perMessageDeflate` (`false` turns
   * it off here). See docs/deflate.md.
   */
  perMessageDeflate?: boolean | PerMessageDeflateOptions
}

/** What `onUpgrade` may return: accept (optionally with a clientId and `socket.data`), or refuse. */
export type UpgradeResult =
  | void
  | boolean
  | { status: number; message?: string }
  | {
      clientId?: string
      data?: unknown
      protocol?: string
      /** Header lines added to the 101 (`'Set-Cookie: a=1'`); a malformed one refuses the upgrade (500). */
      headers?: string[]
    }

/** Anything a handler may return: nothing, or a promise whose rejection counts as a throw. */
export type HandlerResult = void | Promise<void>

/** Per-path handlers passed to `server.websocket(path, handlers)` (`'*'`: every path without its own). */
export interface WebSocketHandlers {
  /**
   * Runs before the 101 (authentication lives here). Return `false` to refuse with 401, or
   * `{ status, message }` for another status; `{ clientId?, data?, headers? }` (or nothing) to
   * accept, with `data` becoming `socket.data` and `headers` lines added to the 101 (each
   * `Name: value`, no CR/LF, not one of the handshake's own headers: else ERR_INVALID_HANDLER_RESULT).
   * A throw or rejection refuses with 500.
   */
  onUpgrade?: (req: UpgradeRequest) => UpgradeResult | Promise<UpgradeResult>
  /** A client completed the upgrade. */
  onConnect?: (socket: Socket) => HandlerResult
  /** A text (`string`) or binary (`Buffer`) message arrived. */
  onMessage?: (socket: Socket, message: string | Buffer) => HandlerResult
  /**
   * The connection is gone. `code` and `reason` are the peer's close frame when one came (1005
   * and `''` if it carried no code); else the code the engine failed the connection with (1002,
   * 1007, 1008, 1009, or 1006 with `'Idle timeout'`); else the close we sent and the peer never
   * answered (`socket.close()`, 1001 from `server.close()`); else 1006 (the TCP connection dropped).
   */
  onClose?: (socket: Socket, code: number, reason: string) => HandlerResult
  /**
   * A handler of this socket threw or its promise rejected: `error.code` is `'ERR_HANDLER_FAILED'`
   * and `error.cause` what was thrown. The connection is closed with 1011 (except for a refused
   * `onJoinRoom`, which only refuses the join). Protocol violations and limits are not errors
   * here: the engine closes the connection with a close code, which `onClose` reports.
   */
  onError?: (socket: Socket, error: CodedError) => HandlerResult
  /** The send buffer emptied after `send()` reported `'buffered'`. */
  onDrain?: (socket: Socket) => HandlerResult
  /**
   * A client asked to join a room (`join_room`). Return `false` (or throw, or reject) to refuse:
   * the client gets `room_join_error` with `denied`. Without this hook joins never reach JS.
   */
  onJoinRoom?: (socket: Socket, roomId: string) => boolean | void | Promise<boolean | void>
  /** The socket left a room (its own request, `socket.leaveRoom()` or `deleteRoom()`). */
  onLeaveRoom?: (socket: Socket, roomId: string) => HandlerResult
  /** The client sent a ping frame (the engine has already answered it with a pong). */
  onPing?: (socket: Socket, data: Buffer) => HandlerResult
  /** The client sent a pong frame (an answer to `socket.ping()` or to the server's heartbeat). */
  onPong?: (socket: Socket, data: Buffer) => HandlerResult
}

/**
 * `perMessageDeflate` settings (RFC 7692). Every field is optional; see docs/deflate.md for the
 * memory each setting costs per connection.
 */
export interface PerMessageDeflateOptions {
  /** Messages shorter than this many bytes are sent uncompressed. Default 1024. */
  threshold?: number
  /** Compress every message afresh: no zlib stream per connection, and a broadcast is compressed once. Default false. */
  serverNoContextTakeover?: boolean
  /** Ask clients to compress every message afresh: no inflate stream per connection. Default false. */
  clientNoContextTakeover?: boolean
  /** Largest window the server compresses with, 8-15 bits. Default 15. */
  serverMaxWindowBits?: number
  /** Largest window clients may compress with, 8-15 bits (below 15 only when the client offers it). Default 15. */
  clientMaxWindowBits?: number
  /** zlib memLevel of the server's compressor, 1-9. Default 8. */
  memLevel?: number
  /** zlib compression level of the server's compressor, 0 (stored, no compression) to 9. Default 6. */
  level?: number
}

/** Options for `new WsServer(options)`. Durations are milliseconds, sizes bytes. */
export interface ServerOptions {
  /**
   * Attach mode: take WebSocket upgrades from this http or https server's port (its `upgrade`
   * event) instead of binding a port. Paths without a `websocket()` route are left to the
   * server's other `upgrade` listeners (404 when there is none). Not with `port`/`host`.
   */
  server?: HttpServer | HttpsServer
  /** Attach mode without a server: the application calls `handleUpgrade()` itself. */
  noServer?: boolean
  /**
   * Attach mode: take over plain TCP sockets' descriptors (Linux, macOS). `false` pumps every
   * connection's bytes through the engine instead, as for TLS sockets and on Windows. Default true.
   */
  adopt?: boolean
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
  /** Joining a room that does not exist creates it (removed again when empty). Default true. */
  autoCreateRooms?: boolean
  /**
   * Message bytes waiting for JavaScript (handlers busy or blocked) before every connection stops
   * reading until JS catches up; TCP flow control then slows the clients. Nothing is dropped.
   * Default 64 MiB.
   */
  maxInboundQueue?: number
  /** `Origin` values allowed to connect (exact, case-insensitive); others get 403. Default: any. */
  allowedOrigins?: string[]
  /**
   * Connections open or upgrading at once; more get 503 (on a `tls` port without
   * `metricsPath`/`healthPath`: a TLS alert, before the handshake). Default: unlimited.
   */
  maxConnections?: number
  /** Connections from one IP address at once; more get 429. Default: unlimited. */
  maxConnectionsPerIp?: number
  /**
   * Subprotocols: a list (the client's first offer found in it is chosen) or a selector called
   * with the client's offers that returns one of them, or `false` for none.
   */
  protocols?: string[] | ((offered: string[], req: UpgradeRequest) => string | false)
  /**
   * Let several processes listen on the same port (SO_REUSEPORT, Linux/macOS); the kernel
   * spreads new connections over them. Default false.
   */
  reusePort?: boolean
  /**
   * Length of the listening socket's accept queue: connections the kernel has set up and the
   * server has not taken yet, as in a reconnect storm. Past it the kernel drops new handshakes
   * (the client retries about a second later). The kernel caps it (`net.core.somaxconn` on
   * Linux). Default 4096; 1 to 65535.
   */
  backlog?: number
  /**
   * Scale-out: servers sharing a Redis deliver broadcasts and room messages to each other's
   * members. `listen()` rejects with `ERR_REDIS_UNREACHABLE` when Redis cannot be reached.
   */
  cluster?: ClusterOptions
  /**
   * permessage-deflate (RFC 7692) for every path (a path can override it): `true` for the
   * defaults, or settings. Default off. See docs/deflate.md.
   */
  perMessageDeflate?: boolean | PerMessageDeflateOptions
  /**
   * Native TLS on the own port (`wss://`): `{ cert, key, passphrase?, ca?, requestCert?,
   * serverNames? }`, PEM as Node's `tls` takes it. Not with `server`/`noServer` (the https
   * server does TLS there). See docs/tls.md.
   */
  tls?: TlsOptions
  /**
   * Presence: which metadata keys `server.presence()`, the clients' `presence` request and
   * presence events show. With `cluster`, setting it also keeps every member in Redis (with a
   * TTL each node refreshes), so `presence(room, { scope: 'cluster' })` sees every node.
   */
  presence?: PresenceOptions
  /** Serve `server.metrics()` (Prometheus text) on GET of this path on the engine's port. Default: off. */
  metricsPath?: string
  /** Answer GET of this path with health JSON: 200 while serving, 503 once `close()` began. Default: off. */
  healthPath?: string
  /**
   * Trusted proxies: addresses and CIDR ranges (`['10.0.0.0/8', '127.0.0.1', '::1']`). When the
   * peer is one of them, the client address is the rightmost address of `proxyHeader` that is
   * not; `maxConnectionsPerIp`, `onUpgrade` and `socket.remoteAddress` see it. Default: none.
   */
  trustProxy?: string[]
  /** The header trusted proxies set: `'x-forwarded-for'` (default) or `'forwarded'` (RFC 7239). */
  proxyHeader?: 'x-forwarded-for' | 'forwarded'
  /** Every connection starts with a PROXY protocol v1 or v2 header (HAProxy, AWS NLB); others are dropped. Default false. */
  proxyProtocol?: boolean
  /** Default per-connection rate limit for every path (see `RouteOptions`). Default: none. */
  rateLimit?: RateLimitOptions
  /**
   * History for every room that does not set its own in `createRoom` (rooms auto-created by a
   * join included): messages published to a room are kept, each with an `offset`. Default: off.
   */
  history?: HistoryOptions
  /**
   * Session recovery: a client that drops without a clean close gets its socket id, clientId,
   * rooms, `socket.data` and metadata back, and the room messages it missed, if it comes back
   * within `maxDisconnection` ms. Default: off. See docs/recovery.md.
   */
  recovery?: RecoveryOptions
}

/** Room history limits; a message past any of them pushes the oldest out. */
export interface HistoryOptions {
  /** Messages kept per room, 1 to 1 000 000. */
  size: number
  /** How long a message is kept, ms. */
  ttl: number
  /** Frame bytes kept per room. Default 1 MiB. */
  bytes?: number
}

/** `recovery` option of `new WsServer()`. */
export interface RecoveryOptions {
  /** How long a disconnected session is kept, ms. Default 120 000. */
  maxDisconnection?: number
}

/** Options for `server.history(roomId, options)`. */
export interface HistoryQuery {
  /** Only messages after this offset. Default: every kept message. */
  since?: number
  /** At most this many (the oldest first), up to 10 000. Default 10 000. */
  limit?: number
}

/** One kept message. */
export interface HistoryEntry {
  offset: number
  /** The message: JSON from `sendToRoom` or a client, the text of a `broadcast`. */
  message: JsonValue
  /** The sender's clientId; absent for `server.broadcast`. */
  fromClientId?: string
  /** When it was published. */
  timestamp: Date
}

/** A room's history as `server.history()` returns it. */
export interface HistoryResult {
  /** Names this room's sequence of offsets; a new epoch means older offsets mean nothing. */
  epoch: string
  /** Offset of the newest message published to the room (0: none yet). */
  offset: number
  messages: HistoryEntry[]
}

/** `cluster` option of `new WsServer()`. */
export interface ClusterOptions {
  /**
   * Redis URL, e.g. `redis://127.0.0.1:6379`; with `sharded`, a Redis Cluster's seed nodes
   * (one URL or a list).
   */
  redis: string | string[]
  /**
   * A Redis Cluster (Redis 7+): room channels use sharded pub/sub (`SSUBSCRIBE`/`SPUBLISH`), so
   * room traffic spreads over the shards; keys carry hash tags so no command crosses slots.
   * Default false.
   */
  sharded?: boolean
  /** Prefix of the Redis channel and keys; servers with the same prefix form one cluster. Default `'rnode'`. */
  prefix?: string
  /**
   * `'room'` (default): a Redis channel per room, which a node subscribes to while it has
   * members in the room, so a node receives only its own rooms' traffic. `'single'`: one
   * channel for everything, every node receives every message. All nodes of a cluster must
   * use the same value.
   */
  channels?: 'room' | 'single'
  /** Milliseconds a room channel stays subscribed after the node's last member left. Default 3000. */
  unsubscribeLinger?: number
}

/** `{ scope: 'cluster' }` asks for counts over every node (a Promise, read from Redis). */
export interface ScopeOptions {
  scope: 'local' | 'cluster'
}

/** Counts over every node of a cluster. */
export interface ClusterStats {
  nodes: number
  totalConnections: number
  totalRooms: number
  connectionsByRoom: Record<string, number>
}

/** The limits in force (`server.limits`). */
export interface Limits {
  maxPayload: number
  maxBackpressure: number
  backpressurePolicy: 'close' | 'drop'
  idleTimeout: number
  pingInterval: number
  handshakeTimeout: number
  closeTimeout: number
  maxHeaderBytes: number
  maxHeaders: number
  maxConnections: number | undefined
  maxConnectionsPerIp: number | undefined
  maxInboundQueue: number
  /** The listen backlog asked for (the kernel may cap it lower). */
  backlog: number
  /** Time a `proxyProtocol` header may take to arrive (fixed; the handshake timeout when shorter). */
  proxyHeaderTimeout: number
  rateLimit: Required<RateLimitOptions> | undefined
}

/** JSON-compatible values, as room metadata and `room_message` payloads carry. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue }

/** Options for `server.createRoom(name, options)`. */
export interface RoomOptions {
  /** Room id; generated when absent. */
  id?: string
  description?: string
  /** Members allowed at once; joins past it get `room_join_error` with `full`. */
  maxConnections?: number
  metadata?: Record<string, JsonValue>
  /**
   * Members get `{ type: 'presence_join' | 'presence_leave', room_id, client_id, fields }`
   * frames when another member joins or leaves (on any node that created the room with this
   * option). Default false.
   */
  presenceEvents?: boolean
  /** Give this room a `rnode_ws_room_members{room}` gauge in `metrics()` (opt in: one series per room). Default false. */
  metrics?: boolean
  /** Keep this room's messages (overrides the server's `history` option). */
  history?: HistoryOptions
}

/** `presence` option of `new WsServer()`. */
export interface PresenceOptions {
  /** Metadata keys (`socket.setMetadata`) presence shows; the others stay private. */
  fields: string[]
}

/** One member connection as `server.presence()` shows it. */
export interface PresenceMember {
  clientId: string
  /** The member's public metadata fields (those it has). */
  fields: Record<string, JsonValue>
}

/** `server.presenceStats()`: member connections and distinct client ids. */
export interface PresenceStats {
  connections: number
  clients: number
}

/** A room as `getRoom()` reports it. */
export interface RoomInfo {
  id: string
  name: string
  description?: string
  maxConnections?: number
  connectionsCount: number
  metadata: Record<string, JsonValue>
  createdAt: Date
}

/** Options for `server.broadcast(message, options)`. */
export interface BroadcastOptions {
  /** Only this room's members. */
  room?: string
  /** Skip these sockets (ids or Socket objects). */
  except?: string | Socket | ReadonlyArray<string | Socket>
  /** Evaluated once per candidate socket, in JS; only sockets it accepts receive the message. */
  filter?: (socket: Socket) => boolean
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
  totalRooms: number
  connectionsByRoom: Record<string, number>
  /** Scale-out: envelopes received from other nodes, dropped while Redis was away, link state. */
  cluster?: {
    received: number
    dropped: number
    connected: boolean
    /** Pub/sub messages Redis sent this node (its own echoes included), and their bytes. */
    inboundMessages: number
    inboundBytes: number
    /** Room channels this node is subscribed to. */
    roomChannels: number
  }
  /** With `recovery`: disconnected sessions waiting for their client on this node. */
  sessions?: number
  /** Most message bytes that ever waited for JS at once (bounded by `maxInboundQueue`). */
  peakQueuedBytes: number
  /** Inbound messages over a `rateLimit` (dropped, or the one that closed its connection). */
  rateLimited: number
  /** Debug: how many events JS received per engine wake-up (batching at work). */
  batching: { wakeups: number; batches: number; events: number; eventsPerBatch: number }
}
