import { randomUUID } from 'node:crypto'
import { IncomingMessage } from 'node:http'
import { Duplex } from 'node:stream'
import { attach, detach, handOver, isAttachableServer, refuse, targetPath, type AttachableServer } from './attach'
import {
  EventKind,
  Hook,
  native,
  type NativeHistoryPage,
  type NativeOptions,
  type NativePresenceEntry,
  type NativeRateLimit,
  type NativeRoomInfo,
  type NativeServer,
} from './binding'
import { codedError, codedRangeError, codedTypeError, type CodedError } from './errors'
import { peerCertificate, toNativeCertKey, toNativeTls, withTlsErrors, type SecureContextOptions } from './tls'
import { checkRoomId, dataSavers, Socket, type ConnectionInfo, type RequestInfo } from './socket'
import { toNativeDeflate } from './deflate'
import type {
  BroadcastOptions,
  HistoryEntry,
  HistoryOptions,
  HistoryQuery,
  HistoryResult,
  ClusterStats,
  CloseOptions,
  JsonValue,
  Limits,
  PresenceMember,
  PresenceStats,
  RateLimitOptions,
  RouteOptions,
  UpgradeRequest,
  UpgradeResult,
  RoomInfo,
  RoomOptions,
  ScopeOptions,
  ServerOptions,
  ServerStats,
  WebSocketHandlers,
} from './types'

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
  'onPing',
  'onPong',
] as const
type HandlerName = (typeof HANDLER_NAMES)[number]

const DURATION_OPTIONS = ['idleTimeout', 'pingInterval', 'handshakeTimeout', 'closeTimeout'] as const
const SIZE_OPTIONS = ['maxPayload', 'maxBackpressure', 'maxInboundQueue'] as const
const MAX_U32 = 0xffffffff
/** Largest `backlog` (matches the engine's `MAX_BACKLOG`). */
const MAX_BACKLOG = 65_535
/** The route of every path without one of its own. */
const ANY_PATH = '*'

/**
 * `text.substring(start, end)` as a string of its own. V8 makes a longer substring a slice that
 * keeps the whole batch string alive (up to 120 KiB); room ids and close reasons are what a
 * handler is likely to keep, so they are copied. Flattening the concatenation copies it.
 */
function ownString(text: string, start: number, end: number): string {
  return (' ' + text.substring(start, end)).slice(1)
}

/** The keys `websocket(path, handlers, options)` takes. */
const ROUTE_OPTIONS = new Set<string>(['rateLimit', 'perMessageDeflate'])

/** A `TypeError` for a bad option. */
function badOption(message: string): CodedError<TypeError> {
  return codedTypeError('ERR_INVALID_OPTION', message)
}

/** A `TypeError` for a bad method argument. */
function badArg(message: string): CodedError<TypeError> {
  return codedTypeError('ERR_INVALID_ARG', message)
}

/** The integer option `name`, or `ERR_INVALID_OPTION`. */
function checkInteger(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw badOption(`${name} must be an integer, got ${typeof value === 'number' ? value : typeof value}`)
  }
  if (value < min || value > max) {
    throw codedRangeError('ERR_INVALID_OPTION', `${name} must be between ${min} and ${max}, got ${value}`)
  }
  return value
}

function checkStringList(name: string, value: unknown): string[] {
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string' && v.length > 0)) {
    throw badOption(`${name} must be an array of non-empty strings`)
  }
  return [...(value as string[])]
}

const CLIENT_ID = /^[A-Za-z0-9_.:-]{1,64}$/
/** Most messages one room's history may keep (native/config.rs MAX_HISTORY_SIZE). */
const MAX_HISTORY_SIZE = 1_000_000
/** Most messages `history()` returns per call (native/config.rs MAX_HISTORY_PAGE). */
const MAX_HISTORY_PAGE = 10_000
/** Largest offset: JSON numbers are exact up to 2^53. */
const MAX_OFFSET = Number.MAX_SAFE_INTEGER

/** An integer argument of a method: `ERR_INVALID_ARG` when it is not one, or out of range. */
function checkArg(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw badArg(`${name} must be an integer from ${min} to ${max}, got ${String(value)}`)
  }
  return value
}

/** A `history` option: `{ size, ttl, bytes? }`, each a positive integer. */
function checkHistory(name: string, value: unknown): { historySize: number; historyTtl: number; historyBytes?: number } {
  if (typeof value !== 'object' || value === null) {
    throw badOption(`${name} must be an object: { size, ttl, bytes? }`)
  }
  const h = value as Partial<Record<keyof HistoryOptions, unknown>>
  const out: { historySize: number; historyTtl: number; historyBytes?: number } = {
    historySize: checkInteger(`${name}.size`, h.size, 1, MAX_HISTORY_SIZE),
    historyTtl: checkInteger(`${name}.ttl`, h.ttl, 1, MAX_U32),
  }
  if (h.bytes !== undefined) out.historyBytes = checkInteger(`${name}.bytes`, h.bytes, 1, MAX_U32)
  return out
}

/** `rateLimit` (server-wide or per path) checked and in the engine's shape. */
function toNativeRateLimit(name: string, value: unknown): NativeRateLimit {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw codedTypeError('ERR_INVALID_OPTION', `${name} must be an object: { messages?, bytes?, interval?, policy? }`)
  }
  const r = value as RateLimitOptions
  const out: NativeRateLimit = {}
  if (r.messages !== undefined) out.messages = checkInteger(`${name}.messages`, r.messages, 0, MAX_U32)
  if (r.bytes !== undefined) out.bytes = checkInteger(`${name}.bytes`, r.bytes, 0, MAX_U32)
  if (r.interval !== undefined) out.interval = checkInteger(`${name}.interval`, r.interval, 1, MAX_U32)
  if (r.policy !== undefined) {
    if (r.policy !== 'close' && r.policy !== 'drop') {
      throw codedTypeError('ERR_INVALID_OPTION', `${name}.policy must be 'close' or 'drop', got ${String(r.policy)}`)
    }
    out.policy = r.policy
  }
  if (!out.messages && !out.bytes) throw codedRangeError('ERR_INVALID_OPTION', `${name} must limit messages or bytes (a positive number)`)
  return out
}

/** An endpoint path (`metricsPath`, `healthPath`). */
function checkPath(name: string, value: unknown): string {
  if (typeof value !== 'string' || !/^\/[\x21-\x7e]*$/.test(value) || value.includes('?') || value.includes('#')) {
    throw codedTypeError('ERR_INVALID_OPTION', `${name} must be a path starting with '/' (no query), got ${JSON.stringify(value)}`)
  }
  return value
}

function checkBoolean(name: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw codedTypeError('ERR_INVALID_OPTION', `${name} must be a boolean`)
  return value
}

function toNativeOptions(input: number | ServerOptions | undefined): NativeOptions {
  if (input === undefined) return {}
  if (typeof input === 'number') return { port: checkInteger('port', input, 0, 65535) }
  if (typeof input !== 'object' || input === null) {
    throw badOption(`new WsServer() takes a port number or an options object, got ${input === null ? 'null' : typeof input}`)
  }
  const out: NativeOptions = {}
  if (input.port !== undefined) out.port = checkInteger('port', input.port, 0, 65535)
  if (input.host !== undefined) {
    if (typeof input.host !== 'string' || input.host.length === 0) throw badOption('host must be a non-empty string')
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
      throw badOption(`backpressurePolicy must be 'close' or 'drop', got ${String(input.backpressurePolicy)}`)
    }
    out.backpressurePolicy = input.backpressurePolicy
  }
  if (input.autoCreateRooms !== undefined) {
    if (typeof input.autoCreateRooms !== 'boolean') throw badOption('autoCreateRooms must be a boolean')
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
    if (typeof input.reusePort !== 'boolean') throw badOption('reusePort must be a boolean')
    out.reusePort = input.reusePort
  }
  if (input.backlog !== undefined) out.backlog = checkInteger('backlog', input.backlog, 1, MAX_BACKLOG)
  const deflate = toNativeDeflate(input.perMessageDeflate)
  if (deflate !== undefined) out.perMessageDeflate = deflate
  if (input.metricsPath !== undefined) out.metricsPath = checkPath('metricsPath', input.metricsPath)
  if (input.healthPath !== undefined) out.healthPath = checkPath('healthPath', input.healthPath)
  if (out.metricsPath !== undefined && out.metricsPath === out.healthPath) {
    throw codedTypeError('ERR_INVALID_OPTION', 'metricsPath and healthPath must differ')
  }
  if (input.trustProxy !== undefined) {
    const list = checkStringList('trustProxy', input.trustProxy)
    const bad = native.checkTrustProxy(list)
    if (bad !== null) {
      throw codedTypeError('ERR_INVALID_OPTION', `trustProxy entries must be IP addresses or CIDR ranges (network address/prefix), got ${JSON.stringify(bad)}`)
    }
    out.trustProxy = list
  }
  if (input.proxyHeader !== undefined) {
    if (input.proxyHeader !== 'x-forwarded-for' && input.proxyHeader !== 'forwarded') {
      throw codedTypeError('ERR_INVALID_OPTION', `proxyHeader must be 'x-forwarded-for' or 'forwarded', got ${String(input.proxyHeader)}`)
    }
    out.proxyHeader = input.proxyHeader
  }
  if (input.proxyProtocol !== undefined) out.proxyProtocol = checkBoolean('proxyProtocol', input.proxyProtocol)
  if (input.rateLimit !== undefined) out.rateLimit = toNativeRateLimit('rateLimit', input.rateLimit)
  if (input.presence !== undefined) {
    const p: unknown = input.presence
    if (typeof p !== 'object' || p === null) throw badOption('presence must be an object: { fields }')
    out.presenceFields = checkStringList('presence.fields', (p as { fields?: unknown }).fields ?? [])
  }
  if (input.cluster !== undefined) {
    const c: unknown = input.cluster
    if (typeof c !== 'object' || c === null) throw badOption('cluster must be an object: { redis, prefix? }')
    const { redis, prefix, channels, unsubscribeLinger, sharded } = c as {
      redis?: unknown
      sharded?: unknown
      prefix?: unknown
      channels?: unknown
      unsubscribeLinger?: unknown
    }
    const urls = Array.isArray(redis) ? (redis as unknown[]) : [redis]
    if (urls.length === 0 || urls.length > 64 || !urls.every((u) => typeof u === 'string' && /^rediss?:\/\//.test(u))) {
      throw badOption(`cluster.redis must be a redis:// URL or a list of 1-64 of them, got ${JSON.stringify(redis)}`)
    }
    out.clusterRedis = urls[0] as string
    out.clusterRedisNodes = urls as string[]
    if (sharded !== undefined) {
      if (typeof sharded !== 'boolean') throw badOption('cluster.sharded must be a boolean')
      out.clusterSharded = sharded
    }
    if (prefix !== undefined) {
      if (typeof prefix !== 'string' || !/^[A-Za-z0-9_.:-]{1,64}$/.test(prefix)) {
        throw badOption('cluster.prefix must be 1-64 characters of [A-Za-z0-9_.:-]')
      }
      out.clusterPrefix = prefix
    }
    if (channels !== undefined) {
      if (channels !== 'room' && channels !== 'single') {
        throw badOption(`cluster.channels must be 'room' or 'single', got ${JSON.stringify(channels)}`)
      }
      out.clusterChannels = channels
    }
    if (unsubscribeLinger !== undefined) {
      out.clusterUnsubscribeLinger = checkInteger('cluster.unsubscribeLinger', unsubscribeLinger, 0, MAX_U32)
    }
  }
  if (input.history !== undefined) Object.assign(out, checkHistory('history', input.history))
  if (input.recovery !== undefined) {
    const r: unknown = input.recovery
    if (typeof r !== 'object' || r === null) {
      throw badOption('recovery must be an object: { maxDisconnection? }')
    }
    out.recovery = true
    const { maxDisconnection } = r as { maxDisconnection?: unknown }
    if (maxDisconnection !== undefined) {
      out.recoveryMaxDisconnection = checkInteger('recovery.maxDisconnection', maxDisconnection, 1, MAX_U32)
    }
  }
  if (out.clusterSharded === true && (out.historySize !== undefined || out.recovery === true)) {
    // History and sessions use Lua scripts over several keys: one Redis, not a Redis Cluster.
    throw badOption('history and recovery need one Redis: they are not available with cluster.sharded')
  }
  if (input.tls !== undefined) out.tls = toNativeTls(input.tls)
  return out
}

/** `socket.data` as JSON for a session in Redis; undefined (kept as none) when it is not JSON. */
function sessionDataJson(data: unknown): string | undefined {
  try {
    return data === undefined ? undefined : JSON.stringify(data)
  } catch {
    return undefined
  }
}

function parseSessionData(json: string): unknown {
  try {
    return JSON.parse(json) as unknown
  } catch {
    return undefined
  }
}

/** A history page from the engine, as `history()` returns it. */
function toHistory(page: NativeHistoryPage): HistoryResult {
  const messages = page.frames.map((frame, i): HistoryEntry => {
    const f = JSON.parse(frame) as { offset: number; message: JsonValue; from_client_id?: string }
    const entry: HistoryEntry = { offset: f.offset, message: f.message, timestamp: new Date(page.times[i] ?? 0) }
    if (f.from_client_id !== undefined) entry.fromClientId = f.from_client_id
    return entry
  })
  return { epoch: page.epoch, offset: page.offset, messages }
}

/** How a server gets its connections: its own port, an http server's, or `handleUpgrade()`. */
type Mode = { kind: 'port' } | { kind: 'server'; server: AttachableServer } | { kind: 'noServer' }

const OWN_PORT_OPTIONS = ['port', 'host', 'reusePort', 'backlog', 'tls'] as const

function invalidOption(message: string): TypeError {
  return codedTypeError('ERR_INVALID_OPTION', message)
}

/** Reads `server`, `noServer` and `adopt`: the attach mode, if any, and whether to adopt. */
function toMode(input: number | ServerOptions | undefined): { mode: Mode; adopt: boolean } {
  if (typeof input !== 'object' || input === null) return { mode: { kind: 'port' }, adopt: true }
  const { server, noServer, adopt } = input as { server?: unknown; noServer?: unknown; adopt?: unknown }
  if (adopt !== undefined && typeof adopt !== 'boolean') throw invalidOption('adopt must be a boolean')
  if (noServer !== undefined && typeof noServer !== 'boolean') throw invalidOption('noServer must be a boolean')
  if (server !== undefined && !isAttachableServer(server)) {
    throw invalidOption('server must be an http.Server or https.Server')
  }
  const attached = server !== undefined || noServer === true
  if (server !== undefined && noServer === true) throw invalidOption('server and noServer cannot be used together')
  if (attached) {
    const clash = OWN_PORT_OPTIONS.find((name) => input[name] !== undefined)
    if (clash) throw invalidOption(`${clash} cannot be used with ${server !== undefined ? 'server' : 'noServer'}`)
  } else if (adopt !== undefined) {
    throw invalidOption('adopt only applies with server or noServer')
  }
  const mode: Mode = isAttachableServer(server) ? { kind: 'server', server } : noServer === true ? { kind: 'noServer' } : { kind: 'port' }
  return { mode, adopt: adopt ?? true }
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
  if (!Array.isArray(list)) throw badOption('except must be a socket id, a Socket, or a list of them')
  return list.map((item: unknown) => {
    const id = item instanceof Socket ? item.id : item
    if (typeof id !== 'string' || !UUID.test(id)) {
      throw badOption(`except items must be socket ids (UUIDs) or Socket objects, got ${JSON.stringify(id)}`)
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

/** What `onError` receives when handler `name` threw `thrown` (or its promise rejected with it). */
function handlerError(name: string, thrown: unknown): CodedError {
  const detail = thrown instanceof Error ? thrown.message : String(thrown)
  return codedError('ERR_HANDLER_FAILED', `${name} failed: ${detail}`, thrown)
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
  /** With `recovery`: `socket.data` of dropped sockets by socket id, until their session expires. */
  readonly #sessionData: Map<string, { data: unknown; expires: number }> | undefined
  readonly #maxDisconnection: number
  #nextSessionSweep = 0
  readonly #selectProtocol: ((offered: string[], req: UpgradeRequest) => string | false) | undefined
  #state: 'idle' | 'listening' | 'closing' | 'closed' = 'idle'
  #port: number | undefined
  #closing: Promise<void> | undefined
  readonly #mode: Mode
  readonly #adopt: boolean
  /** Sockets handed over by `handleUpgrade()`, so a second call on one is refused. */
  readonly #taken = new WeakSet<Duplex>()
  /** `handleUpgrade()` callbacks by attach id, until the connect or upgrade-failed event. */
  readonly #attaching = new Map<number, { req: IncomingMessage; cb: (socket: Socket, req: IncomingMessage) => void }>()

  /**
   * `new WsServer(3000)`, `new WsServer({ port, host, ...limits })`, or in attach mode
   * `new WsServer({ server: httpServer })` / `new WsServer({ noServer: true })`.
   */
  constructor(portOrOptions?: number | ServerOptions) {
    const { mode, adopt } = toMode(portOrOptions)
    const options = toNativeOptions(portOrOptions)
    this.#mode = mode
    this.#adopt = adopt
    this.#host = options.host ?? '0.0.0.0'
    this.#clustered = options.clusterRedis !== undefined
    const protocols = typeof portOrOptions === 'object' ? portOrOptions.protocols : undefined
    this.#selectProtocol = typeof protocols === 'function' ? protocols : undefined
    this.#maxDisconnection = options.recoveryMaxDisconnection ?? 120_000
    this.#sessionData = options.recovery === true ? new Map() : undefined
    this.#native = withTlsErrors(() => new native.NativeServer(options))
    this.#handle = this.#native.handle
    if (mode.kind !== 'port') this.#startAttached(mode)
  }

  /** Attach mode: events flow at once, without a port; `{ server }` joins that server's dispatcher. */
  #startAttached(mode: Mode): void {
    this.#state = 'listening'
    this.#native.listen(() => this.#drain(), false).catch((err: unknown) => {
      // Only the cluster link can fail here; upgrades are refused from now on.
      console.error('[rnode-ws] attach mode could not start:', err)
      void this.close()
    })
    if (mode.kind === 'server') attach(mode.server, this)
  }

  /** Whether `handleUpgrade()` would take this request: a `websocket()` route has its path. */
  shouldHandle(req: IncomingMessage): boolean {
    return this.#state === 'listening' && this.#mode.kind !== 'port' && this.#route(targetPath(req.url)) !== undefined
  }

  /**
   * Attach mode: hands an upgrade request from an http server's `upgrade` event to the engine,
   * which runs the same checks as on its own port and answers the 101 or the HTTP error itself.
   * `cb` runs once the connection is open, before the route's `onConnect`; a refused upgrade
   * never calls it. A socket that is already destroyed is ignored.
   */
  handleUpgrade(
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    cb?: (socket: Socket, req: IncomingMessage) => void,
  ): void {
    if (this.#mode.kind === 'port') {
      throw codedError('ERR_NOT_ATTACHED', 'handleUpgrade() needs a server made with { server } or { noServer: true }')
    }
    if (!(req instanceof IncomingMessage)) throw codedTypeError('ERR_INVALID_ARG', 'req must be an http.IncomingMessage')
    if (!(socket instanceof Duplex)) throw codedTypeError('ERR_INVALID_ARG', 'socket must be a Duplex stream')
    if (!Buffer.isBuffer(head)) throw codedTypeError('ERR_INVALID_ARG', 'head must be a Buffer')
    if (cb !== undefined && typeof cb !== 'function') throw codedTypeError('ERR_INVALID_ARG', 'cb must be a function')
    if (this.#taken.has(socket)) {
      throw codedError('ERR_UPGRADE_TAKEN', 'handleUpgrade() was already called with this socket')
    }
    if (socket.destroyed) return
    const response = (socket as { _httpMessage?: unknown })._httpMessage
    if (socket.writableEnded || response !== undefined && response !== null) {
      throw codedError('ERR_UPGRADE_ANSWERED', 'this request was already answered over HTTP')
    }
    this.#taken.add(socket)
    if (this.#state !== 'listening') return refuse(socket, 503, 'Server shutting down')
    const id = handOver(this.#native, req, socket, head, this.#adopt)
    if (cb && id !== 0) this.#attaching.set(id, { req, cb })
  }

  /** The limits in force, defaults filled in. */
  get limits(): Limits {
    const l = this.#native.limits()
    const r = l.rateLimit ?? undefined
    return {
      ...l,
      backpressurePolicy: l.backpressurePolicy === 'drop' ? 'drop' : 'close',
      maxConnections: l.maxConnections ?? undefined,
      maxConnectionsPerIp: l.maxConnectionsPerIp ?? undefined,
      rateLimit:
        r === undefined
          ? undefined
          : { messages: r.messages ?? 0, bytes: r.bytes ?? 0, interval: r.interval ?? 1000, policy: r.policy === 'drop' ? 'drop' : 'close' },
    }
  }

  /**
   * TLS servers: replaces the default certificate. Handshakes from now on use it; open
   * connections keep theirs. A bad certificate or key throws a TypeError (`ERR_INVALID_CERT`,
   * `ERR_INVALID_KEY`, `ERR_BAD_PASSPHRASE`) and the old certificate stays in force.
   */
  setSecureContext(options: SecureContextOptions): void {
    const pair = toNativeCertKey(options, 'setSecureContext()', 'ERR_INVALID_ARG')
    withTlsErrors(() => this.#native.setSecureContext(pair))
  }

  /** TLS servers: adds or replaces the certificate for SNI host `name` (or `'*.suffix'`). */
  addServerName(name: string, options: SecureContextOptions): void {
    if (typeof name !== 'string' || name.length === 0) throw badArg('addServerName() name must be a non-empty string')
    const pair = toNativeCertKey(options, 'addServerName()', 'ERR_INVALID_ARG')
    withTlsErrors(() => this.#native.addServerName(name, pair))
  }

  /** TLS servers: removes the certificate for SNI host `name`; false when it had none. */
  removeServerName(name: string): boolean {
    if (typeof name !== 'string' || name.length === 0) throw badArg('removeServerName() name must be a non-empty string')
    return this.#native.removeServerName(name)
  }

  /** The bound port once `listen()` resolved. */
  get port(): number | undefined {
    return this.#port
  }

  /**
   * Registers handlers for WebSocket upgrades on `path` (exact match, e.g. `'/chat'`; `'*'`
   * takes every path that has no route of its own); `options.rateLimit` and
   * `options.perMessageDeflate` replace the server's for this path's connections.
   */
  websocket(path: string, handlers: WebSocketHandlers = {}, options: RouteOptions = {}): this {
    if (typeof path !== 'string' || !(path.startsWith('/') || path === ANY_PATH)) {
      throw badArg(`websocket() path must be a string starting with '/' or '*', got ${JSON.stringify(path)}`)
    }
    if (typeof handlers !== 'object' || handlers === null) throw badArg('websocket() handlers must be an object')
    for (const name of HANDLER_NAMES) {
      const fn: unknown = handlers[name]
      if (fn !== undefined && typeof fn !== 'function') throw badArg(`${name} must be a function, got ${typeof fn}`)
    }
    if (typeof options !== 'object' || options === null) throw badOption('websocket() options must be an object')
    for (const key of Object.keys(options)) {
      if (!ROUTE_OPTIONS.has(key)) throw badOption(`websocket() options.${key} is not an option`)
    }
    const rateLimit = options.rateLimit === undefined ? null : toNativeRateLimit('rateLimit', options.rateLimit)
    const deflate = toNativeDeflate(options.perMessageDeflate) ?? null
    this.#routes.set(path, { ...handlers })
    const hooks =
      (handlers.onMessage ? Hook.Message : 0) |
      (handlers.onJoinRoom ? Hook.JoinRoom : 0) |
      (handlers.onLeaveRoom ? Hook.LeaveRoom : 0) |
      (handlers.onUpgrade || this.#selectProtocol ? Hook.Upgrade : 0) |
      (handlers.onPing || handlers.onPong ? Hook.Control : 0)
    this.#native.addRoute(path, hooks, rateLimit, deflate)
    return this
  }

  /**
   * Binds and starts accepting. Resolves with the bound port (useful with port 0). Rejects with
   * `ERR_ADDR_IN_USE`, `ERR_ADDR_NOT_AVAILABLE`, `ERR_LISTEN_FAILED`, `ERR_REDIS_UNREACHABLE`,
   * `ERR_REDIS_REFUSED`, `ERR_ALREADY_LISTENING` or `ERR_SERVER_CLOSED`.
   */
  async listen(): Promise<{ port: number; host: string }> {
    if (this.#mode.kind !== 'port') {
      throw codedError('ERR_ATTACHED', 'a server in attach mode (server or noServer) does not listen')
    }
    if (this.#state === 'listening') throw codedError('ERR_ALREADY_LISTENING', 'listen() was already called on this server')
    if (this.#state !== 'idle') throw codedError('ERR_SERVER_CLOSED', `listen() called on a server that is ${this.#state}`)
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
    if (this.#mode.kind === 'server') detach(this.#mode.server, this)
    this.#closing = (async () => {
      if (wasListening) {
        await this.#native.shutdown(timeout)
        this.#drain()
      }
      this.#native.dispose()
      this.#attaching.clear()
      this.#state = 'closed'
    })()
    return this.#closing
  }

  /**
   * This server's metrics in the Prometheus text exposition format (version 0.0.4): serve it
   * with content type `text/plain; version=0.0.4`, or let `metricsPath` do it.
   */
  metrics(): string {
    return this.#native.metrics()
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
    if (typeof name !== 'string') throw badArg(`createRoom() name must be a string, got ${typeof name}`)
    const id = options.id ?? randomUUID()
    checkRoomId(id)
    if (options.maxConnections !== undefined) checkInteger('maxConnections', options.maxConnections, 1, MAX_U32)
    if (options.description !== undefined && typeof options.description !== 'string') {
      throw badOption('description must be a string')
    }
    if (options.metadata !== undefined && (typeof options.metadata !== 'object' || options.metadata === null)) {
      throw badOption('metadata must be an object')
    }
    if (options.presenceEvents !== undefined && typeof options.presenceEvents !== 'boolean') {
      throw badOption('presenceEvents must be a boolean')
    }
    if (options.metrics !== undefined) checkBoolean('metrics', options.metrics)
    const history = options.history === undefined ? {} : checkHistory('history', options.history)
    const created = this.#native.createRoom({
      presenceEvents: options.presenceEvents,
      id,
      name,
      description: options.description,
      maxConnections: options.maxConnections,
      metadata: options.metadata === undefined ? undefined : JSON.stringify(options.metadata),
      metrics: options.metrics,
      ...history,
    })
    if (!created) throw codedError('ERR_ROOM_EXISTS', `a room with id ${JSON.stringify(id)} already exists`)
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

  /**
   * The kept messages of a room with history, oldest first: those after `since` (an offset), at
   * most `limit`. Undefined when the room does not exist or keeps no history. Direct sends
   * (`socket.send`) and binary broadcasts are never kept. In a cluster the history lives in
   * Redis: `{ scope: 'cluster' }` reads it there (a Promise, the same on every node); without it
   * you get this node's mirror, the messages it delivered lately.
   */
  history(roomId: string, options?: HistoryQuery & { scope?: 'local' }): HistoryResult | undefined
  history(roomId: string, options: HistoryQuery & { scope: 'cluster' }): Promise<HistoryResult | undefined>
  history(
    roomId: string,
    options: HistoryQuery & Partial<ScopeOptions> = {},
  ): HistoryResult | undefined | Promise<HistoryResult | undefined> {
    checkRoomId(roomId)
    if (typeof options !== 'object' || options === null) {
      throw badArg('history() options must be an object: { since?, limit?, scope? }')
    }
    const since = options.since === undefined ? null : checkArg('since', options.since, 0, MAX_OFFSET)
    const limit = options.limit === undefined ? null : checkArg('limit', options.limit, 1, MAX_HISTORY_PAGE)
    if (options.scope === 'cluster') {
      return this.#native.clusterHistory(roomId, since, limit).then((page) => (page ? toHistory(page) : undefined))
    }
    const page = this.#native.history(roomId, since, limit)
    return page ? toHistory(page) : undefined
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
      throw badArg('broadcast() takes a string, Buffer, Uint8Array or ArrayBuffer')
    }
    if (options.room !== undefined) checkRoomId(options.room)
    const except = exceptIds(options.except)
    if (options.filter) {
      if (typeof options.filter !== 'function') throw badOption('filter must be a function')
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
      rateLimited: s.rateLimited,
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
      ...(this.#sessionData ? { sessions: this.#native.sessionCount() } : {}),
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
        switch (h[i] as EventKind) {
          case EventKind.Connect:
            this.#onConnect(conn, text, start, end)
            break
          case EventKind.Text: {
            const socket = this.#sockets.get(conn)
            if (socket !== undefined) this.#message(socket, text.substring(start, end))
            break
          }
          case EventKind.Binary: {
            const socket = this.#sockets.get(conn)
            // A copy, so user code may keep it without pinning the whole batch buffer.
            if (socket !== undefined) {
              this.#message(socket, binary ? Buffer.from(binary.subarray(start, end)) : Buffer.alloc(0))
            }
            break
          }
          case EventKind.Close:
            this.#onClose(conn, h[i + 4]!, ownString(text, start, end))
            break
          case EventKind.Drain: {
            const socket = this.#sockets.get(conn)
            if (socket) this.#call(socket, 'onDrain')
            break
          }
          case EventKind.JoinRequest:
            this.#onJoinRequest(conn, h[i + 4]!, ownString(text, start, end))
            break
          case EventKind.Upgrade:
            this.#onUpgrade(h[i + 4]!, text.substring(start, end))
            break
          case EventKind.UpgradeFailed:
            this.#upgradeData.delete(h[i + 4]!)
            this.#attaching.delete(h[i + 4]!)
            break
          case EventKind.Leave: {
            const socket = this.#sockets.get(conn)
            if (socket) this.#call(socket, 'onLeaveRoom', ownString(text, start, end))
            break
          }
          case EventKind.Ping:
          case EventKind.Pong: {
            const socket = this.#sockets.get(conn)
            const data = Buffer.from(text.substring(start, end), 'hex')
            if (socket) this.#call(socket, h[i] === EventKind.Ping ? 'onPing' : 'onPong', data)
            break
          }
        }
      }
    }
  }

  /** The handlers of a path: its own route, else the `'*'` route. */
  #route(path: string): WebSocketHandlers | undefined {
    return this.#routes.get(path) ?? this.#routes.get(ANY_PATH)
  }

  /**
   * A new connection: `text` holds, from `start` to `end`, the socket's fields as JSON, a newline,
   * and the upgrade request as JSON, which the socket keeps (copied: a slice would keep the whole
   * batch string alive) and parses only if a handler reads it.
   */
  #onConnect(conn: number, text: string, start: number, end: number): void {
    const split = text.indexOf('\n', start)
    const info = JSON.parse(text.substring(start, split)) as ConnectionInfo
    const request = ownString(text, split + 1, end)
    const socket = new Socket(this.#native, this.#handle, conn, info, request, this.#route(info.path) ?? {})
    if (info.upgrade !== 0 && this.#upgradeData.has(info.upgrade)) {
      socket.data = this.#upgradeData.get(info.upgrade)
      this.#upgradeData.delete(info.upgrade)
    } else if (info.recovered && info.data !== undefined) {
      socket.data = parseSessionData(info.data)
    } else if (info.recovered && this.#sessionData) {
      socket.data = this.#sessionData.get(info.id)?.data
    }
    this.#sessionData?.delete(info.id)
    this.#sockets.set(conn, socket)
    this.#byId.set(socket.id, socket)
    const attaching = info.attach === 0 ? undefined : this.#attaching.get(info.attach)
    if (attaching) {
      this.#attaching.delete(info.attach)
      try {
        attaching.cb(socket, attaching.req)
      } catch (err) {
        this.#fail(socket, 'onConnect', err)
        return
      }
    }
    this.#call(socket, 'onConnect')
    if (this.#clustered && this.#sessionData) {
      // The session lives in Redis: socket.data goes with it, now and on every assignment.
      const save = (data: unknown): void => this.#native.setSessionData(conn, sessionDataJson(data))
      dataSavers.set(socket, save)
      if (socket.data !== undefined) save(socket.data)
    }
  }

  #onClose(conn: number, code: number, reason: string): void {
    const socket = this.#sockets.get(conn)
    if (!socket) return
    this.#sockets.delete(conn)
    this.#byId.delete(socket.id)
    socket.markClosed()
    this.#call(socket, 'onClose', code, reason)
    this.#native.forget(conn)
    if (this.#sessionData && !this.#clustered) this.#keepSessionData(socket, code)
  }

  /** The engine keeps a session unless the client closed cleanly; its `data` waits here. */
  #keepSessionData(socket: Socket, code: number): void {
    const store = this.#sessionData
    if (!store) return
    const now = Date.now()
    if (now >= this.#nextSessionSweep) {
      this.#nextSessionSweep = now + 1000
      for (const [id, kept] of store) if (kept.expires <= now) store.delete(id)
    }
    if (code !== 1000 && socket.data !== undefined) {
      store.set(socket.id, { data: socket.data, expires: now + this.#maxDisconnection })
    }
  }

  /** An upgrade waits for `onUpgrade` and/or the subprotocol selector. */
  #onUpgrade(request: number, infoJson: string): void {
    const split = infoJson.indexOf('\n')
    const raw = JSON.parse(infoJson.slice(0, split)) as { path: string; protocols: string[] }
    const asked = JSON.parse(infoJson.slice(split + 1)) as RequestInfo
    const req: UpgradeRequest = {
      path: raw.path,
      query: parseQuery(asked.query),
      headers: asked.headers,
      remoteAddress: asked.remoteAddress,
      remotePort: asked.remotePort,
      protocols: raw.protocols,
    }
    const peer = peerCertificate(asked.peerCertificate)
    if (peer) req.peerCertificate = peer
    const hook = this.#route(raw.path)?.onUpgrade
    const refuse = (status: number, message: string): void =>
      this.#native.resolveUpgrade(request, false, status, message, null, null)
    const decide = (result: UpgradeResult): void => {
      if (result === false) return refuse(401, 'Unauthorized')
      if (result !== undefined && typeof result !== 'boolean' && typeof result !== 'object') {
        throw codedTypeError('ERR_INVALID_HANDLER_RESULT', `onUpgrade must return a boolean, an object or nothing, got ${typeof result}`)
      }
      const verdict = typeof result === 'object' && result !== null ? result : {}
      if ('status' in verdict) {
        const status = Number.isInteger(verdict.status) && verdict.status >= 400 && verdict.status <= 599 ? verdict.status : 403
        return refuse(status, typeof verdict.message === 'string' ? verdict.message : 'Upgrade refused')
      }
      if (verdict.clientId !== undefined && (typeof verdict.clientId !== 'string' || !CLIENT_ID.test(verdict.clientId))) {
        throw codedTypeError('ERR_INVALID_HANDLER_RESULT', 'onUpgrade clientId must be 1-64 characters of [A-Za-z0-9_.:-]')
      }
      let protocol = typeof verdict.protocol === 'string' ? verdict.protocol : undefined
      if (protocol === undefined && this.#selectProtocol && req.protocols.length > 0) {
        const chosen = this.#selectProtocol(req.protocols, req)
        if (chosen !== false && !req.protocols.includes(chosen)) {
          throw codedTypeError('ERR_INVALID_HANDLER_RESULT', `protocol selector returned ${JSON.stringify(chosen)}, which the client did not offer`)
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
    const hook = socket && this.#route(socket.path)?.onJoinRoom
    if (!socket || !hook) {
      this.#native.resolveJoin(request, false)
      return
    }
    const refuse = (err: unknown): void => {
      this.#native.resolveJoin(request, false)
      this.#report(socket, 'onJoinRoom', handlerError('onJoinRoom', err))
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
    this.#report(socket, name, handlerError(name, err))
  }

  /** Hands an error to `onError`, or to stderr when there is none (or it is the one failing). */
  #report(socket: Socket, name: HandlerName, error: CodedError): void {
    const onError = this.#route(socket.path)?.onError
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
