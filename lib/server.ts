import { randomUUID } from 'node:crypto'
import { native, type NativeOptions, type NativePresenceEntry, type NativeRoomInfo, type NativeServer } from './binding'
import { checkRoomId, Socket, type ConnectionInfo } from './socket'
import type {
  BroadcastOptions,
  ClusterStats,
  CloseOptions,
  JsonValue,
  Limits,
  PresenceMember,
  PresenceStats,
  UpgradeRequest,
  UpgradeResult,
  RoomInfo,
  RoomOptions,
  ScopeOptions,
  ServerOptions,
  ServerStats,
  WebSocketHandlers,
} from './types'

/** Event kinds in a native batch header (see native/events.rs). */
const enum Kind {
  Connect = 0,
  Text = 1,
  Binary = 2,
  Close = 3,
  Drain = 4,
  JoinRequest = 5,
  Leave = 6,
  Upgrade = 7,
  UpgradeFailed = 8,
}

/** Hook bits telling the engine which events to send (see native/engine.rs). */
const enum Hook {
  Message = 1,
  JoinRoom = 2,
  LeaveRoom = 4,
  Upgrade = 8,
}
/** u32 slots per event in a batch header. */
const STRIDE = 5
/** Events handled before the drain loop lets the Node event loop run. */
const MAX_EVENTS_PER_TURN = 16_384

const HANDLER_NAMES = [
  'onUpgrade',
  'onConnect',
  'onMessage',
  'onClose',
  'onError',
  'onDrain',
  'onJoinRoom',
  'onLeaveRoom',
] as const
type HandlerName = (typeof HANDLER_NAMES)[number]

const DURATION_OPTIONS = ['idleTimeout', 'pingInterval', 'handshakeTimeout', 'closeTimeout'] as const
const SIZE_OPTIONS = ['maxPayload', 'maxBackpressure', 'maxInboundQueue'] as const
const MAX_U32 = 0xffffffff

/**
 * `text.substring(start, end)` as a string of its own. V8 makes a longer substring a slice that
 * keeps the whole batch string alive (up to 120 KiB); room ids and close reasons are what a
 * handler is likely to keep, so they are copied. Flattening the concatenation copies it.
 */
function ownString(text: string, start: number, end: number): string {
  return (' ' + text.substring(start, end)).slice(1)
}

function checkInteger(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new TypeError(`${name} must be an integer, got ${typeof value === 'number' ? value : typeof value}`)
  }
  if (value < min || value > max) throw new RangeError(`${name} must be between ${min} and ${max}, got ${value}`)
  return value
}

function checkStringList(name: string, value: unknown): string[] {
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string' && v.length > 0)) {
    throw new TypeError(`${name} must be an array of non-empty strings`)
  }
  return [...(value as string[])]
}

const CLIENT_ID = /^[A-Za-z0-9_.:-]{1,64}$/

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
  if (input.autoCreateRooms !== undefined) {
    if (typeof input.autoCreateRooms !== 'boolean') throw new TypeError('autoCreateRooms must be a boolean')
    out.autoCreateRooms = input.autoCreateRooms
  }
  if (input.allowedOrigins !== undefined) out.allowedOrigins = checkStringList('allowedOrigins', input.allowedOrigins)
  if (input.maxConnections !== undefined) out.maxConnections = checkInteger('maxConnections', input.maxConnections, 1, MAX_U32)
  if (input.maxConnectionsPerIp !== undefined) {
    out.maxConnectionsPerIp = checkInteger('maxConnectionsPerIp', input.maxConnectionsPerIp, 1, MAX_U32)
  }
  if (input.protocols !== undefined && typeof input.protocols !== 'function') {
    out.protocols = checkStringList('protocols', input.protocols)
  }
  if (input.reusePort !== undefined) {
    if (typeof input.reusePort !== 'boolean') throw new TypeError('reusePort must be a boolean')
    out.reusePort = input.reusePort
  }
  if (input.presence !== undefined) {
    const p: unknown = input.presence
    if (typeof p !== 'object' || p === null) throw new TypeError('presence must be an object: { fields }')
    out.presenceFields = checkStringList('presence.fields', (p as { fields?: unknown }).fields ?? [])
  }
  if (input.cluster !== undefined) {
    const c: unknown = input.cluster
    if (typeof c !== 'object' || c === null) throw new TypeError('cluster must be an object: { redis, prefix? }')
    const { redis, prefix, channels, unsubscribeLinger, sharded } = c as {
      redis?: unknown
      sharded?: unknown
      prefix?: unknown
      channels?: unknown
      unsubscribeLinger?: unknown
    }
    const urls = Array.isArray(redis) ? (redis as unknown[]) : [redis]
    if (urls.length === 0 || urls.length > 64 || !urls.every((u) => typeof u === 'string' && /^rediss?:\/\//.test(u))) {
      throw new TypeError(`cluster.redis must be a redis:// URL or a list of 1-64 of them, got ${JSON.stringify(redis)}`)
    }
    out.clusterRedis = urls[0] as string
    out.clusterRedisNodes = urls as string[]
    if (sharded !== undefined) {
      if (typeof sharded !== 'boolean') throw new TypeError('cluster.sharded must be a boolean')
      out.clusterSharded = sharded
    }
    if (prefix !== undefined) {
      if (typeof prefix !== 'string' || !/^[A-Za-z0-9_.:-]{1,64}$/.test(prefix)) {
        throw new TypeError('cluster.prefix must be 1-64 characters of [A-Za-z0-9_.:-]')
      }
      out.clusterPrefix = prefix
    }
    if (channels !== undefined) {
      if (channels !== 'room' && channels !== 'single') {
        throw new TypeError(`cluster.channels must be 'room' or 'single', got ${JSON.stringify(channels)}`)
      }
      out.clusterChannels = channels
    }
    if (unsubscribeLinger !== undefined) {
      out.clusterUnsubscribeLinger = checkInteger('cluster.unsubscribeLinger', unsubscribeLinger, 0, MAX_U32)
    }
  }
  return out
}

function parseQuery(query: string): Record<string, string> {
  const out: Record<string, string> = Object.create(null) as Record<string, string>
  for (const [k, v] of new URLSearchParams(query)) out[k] = v
  return out
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** `except` as socket ids; ids of sockets on other cluster nodes are fine. */
function exceptIds(except: BroadcastOptions['except']): string[] {
  if (except === undefined) return []
  const list = typeof except === 'string' || except instanceof Socket ? [except] : except
  if (!Array.isArray(list)) throw new TypeError('except must be a socket id, a Socket, or a list of them')
  return list.map((item: unknown) => {
    const id = item instanceof Socket ? item.id : item
    if (typeof id !== 'string' || !UUID.test(id)) {
      throw new TypeError(`except items must be socket ids (UUIDs) or Socket objects, got ${JSON.stringify(id)}`)
    }
    return id
  })
}

function toRoomInfo(r: NativeRoomInfo): RoomInfo {
  const info: RoomInfo = {
    id: r.id,
    name: r.name,
    connectionsCount: r.connectionsCount,
    metadata: JSON.parse(r.metadata) as Record<string, JsonValue>,
    createdAt: new Date(r.createdAt),
  }
  if (r.description !== undefined && r.description !== null) info.description = r.description
  if (r.maxConnections !== undefined && r.maxConnections !== null) info.maxConnections = r.maxConnections
  return info
}

function toError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value))
}

/** A WebSocket server whose sockets, framing and fan-out run in Rust. */
export class WsServer {
  readonly #native: NativeServer
  /** The native server's handle for the per-message functions (read once: a getter is a native call). */
  readonly #handle: number
  readonly #host: string
  readonly #clustered: boolean
  readonly #routes = new Map<string, WebSocketHandlers>()
  readonly #sockets = new Map<number, Socket>()
  readonly #byId = new Map<string, Socket>()
  /** `socket.data` chosen by `onUpgrade`, until the connection's connect event arrives. */
  readonly #upgradeData = new Map<number, unknown>()
  readonly #selectProtocol: ((offered: string[], req: UpgradeRequest) => string | false) | undefined
  #state: 'idle' | 'listening' | 'closing' | 'closed' = 'idle'
  #port: number | undefined
  #closing: Promise<void> | undefined

  /** `new WsServer(3000)` or `new WsServer({ port, host, ...limits })`. */
  constructor(portOrOptions?: number | ServerOptions) {
    const options = toNativeOptions(portOrOptions)
    this.#host = options.host ?? '0.0.0.0'
    this.#clustered = options.clusterRedis !== undefined
    const protocols = typeof portOrOptions === 'object' ? portOrOptions.protocols : undefined
    this.#selectProtocol = typeof protocols === 'function' ? protocols : undefined
    this.#native = new native.NativeServer(options)
    this.#handle = this.#native.handle
  }

  /** The limits in force, defaults filled in. */
  get limits(): Limits {
    const l = this.#native.limits()
    return {
      ...l,
      backpressurePolicy: l.backpressurePolicy === 'drop' ? 'drop' : 'close',
      maxConnections: l.maxConnections ?? undefined,
      maxConnectionsPerIp: l.maxConnectionsPerIp ?? undefined,
    }
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
    const hooks =
      (handlers.onMessage ? Hook.Message : 0) |
      (handlers.onJoinRoom ? Hook.JoinRoom : 0) |
      (handlers.onLeaveRoom ? Hook.LeaveRoom : 0) |
      (handlers.onUpgrade || this.#selectProtocol ? Hook.Upgrade : 0)
    this.#native.addRoute(path, hooks)
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

  /** Every open connection, or those in one room. */
  getConnections(roomId?: string): Socket[] {
    if (roomId === undefined) return [...this.#sockets.values()]
    checkRoomId(roomId)
    const out: Socket[] = []
    for (const conn of this.#native.roomMembers(roomId)) {
      const socket = this.#sockets.get(conn)
      if (socket) out.push(socket)
    }
    return out
  }

  /** Creates a room and returns its id (generated when `options.id` is absent). */
  createRoom(name: string, options: RoomOptions = {}): string {
    if (typeof name !== 'string') throw new TypeError(`createRoom() name must be a string, got ${typeof name}`)
    const id = options.id ?? randomUUID()
    checkRoomId(id)
    if (options.maxConnections !== undefined) checkInteger('maxConnections', options.maxConnections, 1, MAX_U32)
    if (options.description !== undefined && typeof options.description !== 'string') {
      throw new TypeError('description must be a string')
    }
    if (options.metadata !== undefined && (typeof options.metadata !== 'object' || options.metadata === null)) {
      throw new TypeError('metadata must be an object')
    }
    if (options.presenceEvents !== undefined && typeof options.presenceEvents !== 'boolean') {
      throw new TypeError('presenceEvents must be a boolean')
    }
    const created = this.#native.createRoom({
      presenceEvents: options.presenceEvents,
      id,
      name,
      description: options.description,
      maxConnections: options.maxConnections,
      metadata: options.metadata === undefined ? undefined : JSON.stringify(options.metadata),
    })
    if (!created) throw new Error(`a room with id ${JSON.stringify(id)} already exists`)
    return id
  }

  /**
   * A room's description and member count, or undefined. With `{ scope: 'cluster' }`, a Promise
   * whose `connectionsCount` sums every node (undefined when no node has the room).
   */
  getRoom(roomId: string, options?: { scope: 'local' }): RoomInfo | undefined
  getRoom(roomId: string, options: { scope: 'cluster' }): Promise<RoomInfo | undefined>
  getRoom(roomId: string, options?: ScopeOptions): RoomInfo | undefined | Promise<RoomInfo | undefined> {
    checkRoomId(roomId)
    const r = this.#native.getRoom(roomId)
    const local = r ? toRoomInfo(r) : undefined
    if (options?.scope !== 'cluster') return local
    return this.#native.clusterStats().then((c) => {
      const count = c.connectionsByRoom[roomId]
      if (count === undefined) return local
      const base: RoomInfo = local ?? { id: roomId, name: roomId, connectionsCount: 0, metadata: {}, createdAt: new Date() }
      return { ...base, connectionsCount: count }
    })
  }

  /** Every room. */
  getAllRooms(): RoomInfo[] {
    return this.#native.getAllRooms().map(toRoomInfo)
  }

  /** Deletes a room; its members get `room_left`. Returns whether it existed. */
  deleteRoom(roomId: string): boolean {
    checkRoomId(roomId)
    return this.#native.deleteRoom(roomId)
  }

  /**
   * Who is in a room: one entry per member connection, with its client id and the public
   * metadata fields (`presence.fields`). This node only, synchronously; with
   * `{ scope: 'cluster' }`, a Promise of the members on every node (needs `cluster` and, for
   * the other nodes' members, the `presence` option).
   */
  presence(roomId: string, options?: { scope: 'local' }): PresenceMember[]
  presence(roomId: string, options: { scope: 'cluster' }): Promise<PresenceMember[]>
  presence(roomId: string, options?: ScopeOptions): PresenceMember[] | Promise<PresenceMember[]> {
    checkRoomId(roomId)
    const toMember = (e: NativePresenceEntry): PresenceMember => ({
      clientId: e.clientId,
      fields: JSON.parse(e.fields) as Record<string, JsonValue>,
    })
    if (options?.scope !== 'cluster') return this.#native.presence(roomId).map(toMember)
    return this.#native.clusterPresence(roomId).then((list) => list.map(toMember))
  }

  /** Member connections and distinct client ids of a room (`{ scope: 'cluster' }`: every node). */
  presenceStats(roomId: string, options?: { scope: 'local' }): PresenceStats
  presenceStats(roomId: string, options: { scope: 'cluster' }): Promise<PresenceStats>
  presenceStats(roomId: string, options?: ScopeOptions): PresenceStats | Promise<PresenceStats> {
    const count = (members: PresenceMember[]): PresenceStats => ({
      connections: members.length,
      clients: new Set(members.map((m) => m.clientId)).size,
    })
    if (options?.scope !== 'cluster') return count(this.presence(roomId))
    return this.presence(roomId, { scope: 'cluster' }).then(count)
  }

  /**
   * Sends one message to a room or to everyone, skipping `except`. The engine serializes it once
   * and shares the bytes with every recipient. With `filter`, the predicate runs once per
   * candidate in JS and the chosen sockets go to the engine in one call. Returns the recipients.
   */
  broadcast(message: string | Buffer | Uint8Array | ArrayBuffer, options: BroadcastOptions = {}): number {
    const data = typeof message === 'string' || message instanceof Uint8Array ? message : undefined
    const bytes = message instanceof ArrayBuffer ? new Uint8Array(message) : data
    if (bytes === undefined) {
      throw new TypeError('broadcast() takes a string, Buffer, Uint8Array or ArrayBuffer')
    }
    if (options.room !== undefined) checkRoomId(options.room)
    const except = exceptIds(options.except)
    if (options.filter) {
      if (typeof options.filter !== 'function') throw new TypeError('filter must be a function')
      const candidates = options.room === undefined ? this.#sockets.values() : this.getConnections(options.room)
      const ids: number[] = []
      for (const socket of candidates) {
        if (!except.includes(socket.id) && options.filter(socket)) ids.push(socket.conn)
      }
      return typeof bytes === 'string' ? this.#native.sendManyText(ids, bytes) : this.#native.sendManyBinary(ids, bytes)
    }
    const room = options.room ?? null
    return typeof bytes === 'string'
      ? this.#native.broadcastText(bytes, room, except)
      : this.#native.broadcastBinary(bytes, room, except)
  }


  /**
   * Connection, room, message and byte counters and the batching debug figures of this server.
   * With `{ scope: 'cluster' }`, a Promise of the connection and room counts over every node
   * (each node reports every second; a crashed node's counts expire within 3.5 s).
   */
  getStats(options?: { scope: 'local' }): ServerStats
  getStats(options: { scope: 'cluster' }): Promise<ClusterStats>
  getStats(options?: ScopeOptions): ServerStats | Promise<ClusterStats> {
    if (options?.scope === 'cluster') {
      return this.#native.clusterStats().then((c) => ({
        nodes: c.nodes,
        totalConnections: c.totalConnections,
        totalRooms: Object.keys(c.connectionsByRoom).length,
        connectionsByRoom: c.connectionsByRoom,
      }))
    }
    const s = this.#native.stats()
    return {
      totalConnections: s.totalConnections,
      messagesIn: s.messagesIn,
      messagesOut: s.messagesOut,
      bytesIn: s.bytesIn,
      bytesOut: s.bytesOut,
      droppedMessages: s.droppedMessages,
      totalRooms: s.totalRooms,
      connectionsByRoom: this.#native.roomCounts(),
      peakQueuedBytes: s.peakQueuedBytes,
      ...(this.#clustered
        ? {
            cluster: {
              received: s.clusterReceived,
              dropped: s.clusterDropped,
              connected: s.clusterConnected,
              inboundMessages: s.clusterInboundMessages,
              inboundBytes: s.clusterInboundBytes,
              roomChannels: s.clusterRoomChannels,
            },
          }
        : {}),
      batching: {
        wakeups: s.wakeups,
        batches: s.batches,
        events: s.events,
        eventsPerBatch: s.batches === 0 ? 0 : s.events / s.batches,
      },
    }
  }

  /**
   * Runs queued engine events through the handlers. Never throws. After `MAX_EVENTS_PER_TURN`
   * events it yields to the Node event loop (timers, other I/O) and continues in `setImmediate`;
   * the engine does not wake JS again meanwhile, since the queue was not seen empty.
   */
  #drain(): void {
    let drained = false
    try {
      drained = this.#drainBatches()
    } finally {
      // Sends made by the handlers are corked per batch. The empty pollEvents() that ends a drain
      // has written them; when yielding to the event loop (or on a throw), write them now.
      if (!drained) native.uncork()
    }
  }

  /** True when it stopped at an empty batch, false when it yields to the event loop. */
  #drainBatches(): boolean {
    let handled = 0
    for (;;) {
      if (handled >= MAX_EVENTS_PER_TURN) {
        setImmediate(() => this.#drain())
        return false
      }
      const batch = native.pollEvents(this.#handle)
      const h = batch.header
      if (h.length === 0) return true
      handled += h.length / STRIDE
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
            if (socket !== undefined) this.#message(socket, text.substring(start, end))
            break
          }
          case Kind.Binary: {
            const socket = this.#sockets.get(conn)
            // A copy, so user code may keep it without pinning the whole batch buffer.
            if (socket !== undefined) {
              this.#message(socket, binary ? Buffer.from(binary.subarray(start, end)) : Buffer.alloc(0))
            }
            break
          }
          case Kind.Close:
            this.#onClose(conn, h[i + 4]!, ownString(text, start, end))
            break
          case Kind.Drain: {
            const socket = this.#sockets.get(conn)
            if (socket) this.#call(socket, 'onDrain')
            break
          }
          case Kind.JoinRequest:
            this.#onJoinRequest(conn, h[i + 4]!, ownString(text, start, end))
            break
          case Kind.Upgrade:
            this.#onUpgrade(h[i + 4]!, text.substring(start, end))
            break
          case Kind.UpgradeFailed:
            this.#upgradeData.delete(h[i + 4]!)
            break
          case Kind.Leave: {
            const socket = this.#sockets.get(conn)
            if (socket) this.#call(socket, 'onLeaveRoom', ownString(text, start, end))
            break
          }
        }
      }
    }
  }

  #onConnect(conn: number, infoJson: string): void {
    const info = JSON.parse(infoJson) as ConnectionInfo
    const socket = new Socket(this.#native, this.#handle, conn, info, this.#routes.get(info.path) ?? {})
    if (info.upgrade !== 0) {
      socket.data = this.#upgradeData.get(info.upgrade)
      this.#upgradeData.delete(info.upgrade)
    }
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
    this.#native.forget(conn)
  }

  /** An upgrade waits for `onUpgrade` and/or the subprotocol selector. */
  #onUpgrade(request: number, infoJson: string): void {
    const raw = JSON.parse(infoJson) as { path: string; query: string; headers: Record<string, string>; remoteAddress: string; protocols: string[] }
    const req: UpgradeRequest = {
      path: raw.path,
      query: parseQuery(raw.query),
      headers: raw.headers,
      remoteAddress: raw.remoteAddress,
      protocols: raw.protocols,
    }
    const hook = this.#routes.get(raw.path)?.onUpgrade
    const refuse = (status: number, message: string): void =>
      this.#native.resolveUpgrade(request, false, status, message, null, null)
    const decide = (result: UpgradeResult): void => {
      if (result === false) return refuse(401, 'Unauthorized')
      if (result !== undefined && typeof result !== 'boolean' && typeof result !== 'object') {
        throw new TypeError(`onUpgrade must return a boolean, an object or nothing, got ${typeof result}`)
      }
      const verdict = typeof result === 'object' && result !== null ? result : {}
      if ('status' in verdict) {
        const status = Number.isInteger(verdict.status) && verdict.status >= 400 && verdict.status <= 599 ? verdict.status : 403
        return refuse(status, typeof verdict.message === 'string' ? verdict.message : 'Upgrade refused')
      }
      if (verdict.clientId !== undefined && (typeof verdict.clientId !== 'string' || !CLIENT_ID.test(verdict.clientId))) {
        throw new TypeError('onUpgrade clientId must be 1-64 characters of [A-Za-z0-9_.:-]')
      }
      let protocol = typeof verdict.protocol === 'string' ? verdict.protocol : undefined
      if (protocol === undefined && this.#selectProtocol && req.protocols.length > 0) {
        const chosen = this.#selectProtocol(req.protocols, req)
        if (chosen !== false && !req.protocols.includes(chosen)) {
          throw new TypeError(`protocol selector returned ${JSON.stringify(chosen)}, which the client did not offer`)
        }
        protocol = chosen === false ? undefined : chosen
      }
      if ('data' in verdict) this.#upgradeData.set(request, verdict.data)
      this.#native.resolveUpgrade(request, true, 101, '', verdict.clientId ?? null, protocol ?? null)
    }
    const fail = (err: unknown): void => {
      this.#upgradeData.delete(request)
      refuse(500, 'Upgrade handler failed')
      console.error('[rnode-ws] onUpgrade failed:', err)
    }
    try {
      const result = hook ? hook(req) : undefined
      if (result instanceof Promise) {
        result.then((r) => {
          try {
            decide(r)
          } catch (err) {
            fail(err)
          }
        }, fail)
      } else {
        decide(result)
      }
    } catch (err) {
      fail(err)
    }
  }

  /** A client's `join_room` waits for `onJoinRoom`: false, a throw or a rejection refuse it. */
  #onJoinRequest(conn: number, request: number, roomId: string): void {
    const socket = this.#sockets.get(conn)
    const hook = socket && this.#routes.get(socket.path)?.onJoinRoom
    if (!socket || !hook) {
      this.#native.resolveJoin(request, false)
      return
    }
    const refuse = (err: unknown): void => {
      this.#native.resolveJoin(request, false)
      this.#report(socket, 'onJoinRoom', toError(err))
    }
    try {
      const verdict = hook(socket, roomId)
      if (verdict instanceof Promise) {
        verdict.then((v) => this.#native.resolveJoin(request, v !== false), refuse)
      } else {
        this.#native.resolveJoin(request, verdict !== false)
      }
    } catch (err) {
      refuse(err)
    }
  }

  /** The hot path: one message to `onMessage` (looked up once per connection, not per message). */
  #message(socket: Socket, message: string | Buffer): void {
    const handler = socket.handlers.onMessage
    if (handler === undefined) return
    try {
      const result = handler(socket, message)
      if (result instanceof Promise) result.catch((err: unknown) => this.#fail(socket, 'onMessage', err))
    } catch (err) {
      this.#fail(socket, 'onMessage', err)
    }
  }

  /** Calls a handler; a throw or a rejected promise closes that connection with 1011. */
  #call(socket: Socket, name: HandlerName, ...args: unknown[]): void {
    const handler = socket.handlers[name] as ((s: Socket, ...a: unknown[]) => unknown) | undefined
    if (!handler) return
    try {
      const result = handler(socket, ...args)
      if (result instanceof Promise) result.catch((err: unknown) => this.#fail(socket, name, err))
    } catch (err) {
      this.#fail(socket, name, err)
    }
  }

  #fail(socket: Socket, name: HandlerName, err: unknown): void {
    if (socket.isOpen) socket.close(1011, 'Internal server error')
    this.#report(socket, name, toError(err))
  }

  /** Hands an error to `onError`, or to stderr when there is none (or it is the one failing). */
  #report(socket: Socket, name: HandlerName, error: Error): void {
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
