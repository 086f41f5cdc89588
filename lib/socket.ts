import { JoinResult, native as binding, type NativeServer } from './binding'
import { checkClose } from './close-codes'
import { codedError, codedRangeError, codedTypeError } from './errors'
import type { JsonValue, SendStatus, WebSocketHandlers } from './types'

const STATUS: readonly SendStatus[] = ['sent', 'buffered', 'dropped']

/** What the engine tells about a connection when it opens (the part every socket needs at once). */
export interface ConnectionInfo {
  id: string
  clientId: string
  path: string
  protocol: string
  /** Id of the `onUpgrade` request this connection came through (0: none). */
  upgrade: number
  /** Id of the attach-mode hand-over this connection came through (0: own port). */
  attach: number
  /** It took back a disconnected session (`recovery`). */
  recovered: boolean
  /** In a cluster, the resumed session's `socket.data` as JSON. */
  data?: string
}

/** Called when `socket.data` is assigned (a cluster with `recovery` saves it in Redis). */
export const dataSavers = new WeakMap<Socket, (data: unknown) => void>()

/** The upgrade request as the engine reports it; parsed from JSON the first time it is read. */
export interface RequestInfo {
  query: string
  remoteAddress: string
  remotePort: number
  headers: Record<string, string>
  /** The client certificate (base64 DER) on a TLS port with `requestCert`. */
  peerCertificate?: string
}

/** Largest ping/pong payload (RFC 6455 §5.5). */
export const MAX_CONTROL_PAYLOAD = 125
const EMPTY = new Uint8Array(0)

/** Longest room id in UTF-8 bytes (matches the engine). */
export const MAX_ROOM_ID_BYTES = 256

/** Throws `TypeError` with `ERR_INVALID_ROOM_ID` for a room id the engine would refuse. */
export function checkRoomId(roomId: unknown): asserts roomId is string {
  if (typeof roomId !== 'string') throw codedTypeError('ERR_INVALID_ROOM_ID', `room id must be a string, got ${typeof roomId}`)
  const bytes = Buffer.byteLength(roomId)
  if (bytes === 0 || bytes > MAX_ROOM_ID_BYTES) {
    throw codedTypeError('ERR_INVALID_ROOM_ID', `room id must be 1 to ${MAX_ROOM_ID_BYTES} bytes, got ${bytes}`)
  }
}

function closedError(socket: Socket): Error {
  return codedError('ERR_SOCKET_CLOSED', `socket ${socket.id} is closed`)
}

function describe(value: unknown): string {
  if (value === null) return 'null'
  if (typeof value === 'object') return (value as object).constructor?.name ?? 'object'
  return typeof value
}

/** One WebSocket connection as handlers see it. */
export class Socket {
  /** UUID of this connection. */
  readonly id: string
  /** The validated `clientId` query parameter, or a generated `client_xxxxxxxx`. */
  readonly clientId: string
  /** The request path (without the query). */
  readonly path: string
  /** The negotiated subprotocol, or '' when none. */
  readonly protocol: string
  /**
   * With `recovery`: this connection took back the session of one that dropped (same `id`,
   * `clientId`, `data` and metadata; its rooms are rejoined, missed messages replayed, when the
   * client sends `recover`).
   */
  readonly recovered: boolean
  #data: unknown = undefined
  /**
   * Application data: whatever you store here is visible to every handler. In a cluster with
   * `recovery` it is part of the session in Redis (as JSON): saved when `onConnect` returns and
   * whenever it is assigned; a change made in place (`socket.data.x = 1`) reaches Redis with
   * the next assignment.
   */
  get data(): unknown {
    return this.#data
  }

  set data(value: unknown) {
    this.#data = value
    dataSavers.get(this)?.(value)
  }
  /** @internal engine handle */
  readonly conn: number
  /** @internal the handlers of this socket's path */
  readonly handlers: WebSocketHandlers
  readonly #native: NativeServer
  readonly #handle: number
  /**
   * The upgrade request: its JSON text until a handler reads `headers`, `query` or the address
   * (most never do, and one string is smaller than the objects it describes), then parsed.
   */
  #request: string | RequestInfo
  #query: Readonly<Record<string, string>> | undefined
  #open = true

  /** @internal sockets are made by the server */
  constructor(
    native: NativeServer,
    handle: number,
    conn: number,
    info: ConnectionInfo,
    request: string,
    handlers: WebSocketHandlers,
  ) {
    this.#native = native
    this.#handle = handle
    this.conn = conn
    this.handlers = handlers
    this.id = info.id
    this.clientId = info.clientId
    this.path = info.path
    this.protocol = info.protocol
    this.recovered = info.recovered === true
    this.#request = request
  }

  #parsed(): RequestInfo {
    if (typeof this.#request === 'string') {
      const request = JSON.parse(this.#request) as RequestInfo
      Object.freeze(request.headers)
      this.#request = request
    }
    return this.#request
  }

  /** The peer's IP address. */
  get remoteAddress(): string {
    return this.#parsed().remoteAddress
  }

  /** The peer's TCP port. */
  get remotePort(): number {
    return this.#parsed().remotePort
  }

  /** Request headers of the upgrade, lower-case names (repeated headers joined with ', '). */
  get headers(): Readonly<Record<string, string>> {
    return this.#parsed().headers
  }

  /** Query parameters of the upgrade request (parsed on first use). */
  get query(): Readonly<Record<string, string>> {
    if (this.#query === undefined) {
      const query: Record<string, string> = Object.create(null) as Record<string, string>
      for (const [k, v] of new URLSearchParams(this.#parsed().query)) query[k] = v
      this.#query = Object.freeze(query)
    }
    return this.#query
  }

  /** Whether the connection is still open (false once `onClose` has run). */
  get isOpen(): boolean {
    return this.#open
  }

  /** Bytes accepted by `send()` and not yet written to the network. */
  get bufferedAmount(): number {
    return this.#open ? this.#native.bufferedAmount(this.conn) : 0
  }

  /**
   * Queues a message: `string` goes as a text frame, bytes as a binary frame. Synchronous.
   * Returns `'sent'`, `'buffered'` (accepted, but over half the send buffer: wait for `onDrain`)
   * or `'dropped'` (closed, or the send buffer is full).
   */
  send(data: string | Buffer | Uint8Array | ArrayBuffer): SendStatus {
    const handle = this.#handle
    if (typeof data === 'string') return STATUS[binding.sendText(handle, this.conn, data)] ?? 'dropped'
    if (data instanceof Uint8Array) return STATUS[binding.sendBinary(handle, this.conn, data)] ?? 'dropped'
    if (data instanceof ArrayBuffer) {
      return STATUS[binding.sendBinary(handle, this.conn, new Uint8Array(data))] ?? 'dropped'
    }
    throw codedTypeError('ERR_INVALID_ARG', `socket.send() takes a string, Buffer, Uint8Array or ArrayBuffer, got ${describe(data)}`)
  }

  /**
   * Queues a text frame from a string, or from bytes holding UTF-8 (sent as they are, without
   * a decode; invalid sequences go out as U+FFFD). Returns what `send()` returns.
   */
  sendText(data: string | Uint8Array): SendStatus {
    if (typeof data === 'string') return STATUS[binding.sendText(this.#handle, this.conn, data)] ?? 'dropped'
    if (data instanceof Uint8Array) return STATUS[binding.sendTextBytes(this.#handle, this.conn, data)] ?? 'dropped'
    throw codedTypeError('ERR_INVALID_ARG', `socket.sendText() takes a string or a Uint8Array, got ${describe(data)}`)
  }

  /**
   * Starts the close handshake (nothing happens once closed). Throws `ERR_INVALID_CLOSE_CODE` /
   * `ERR_INVALID_CLOSE_REASON` for a code an application may not send or a reason over 123 bytes.
   */
  close(code = 1000, reason = ''): void {
    checkClose(code, reason)
    if (this.#open) this.#native.closeConnection(this.conn, code, reason)
  }

  /**
   * Sends a ping frame (at most 125 bytes of payload); the client's pong reaches `onPong`.
   * Returns false when the connection is closed or closing.
   */
  ping(data: string | Uint8Array = EMPTY): boolean {
    return this.#control(false, data)
  }

  /** Sends an unsolicited pong frame (at most 125 bytes). False when closed or closing. */
  pong(data: string | Uint8Array = EMPTY): boolean {
    return this.#control(true, data)
  }

  /** Drops the connection at once, without a close handshake; `onClose` sees 1006. */
  terminate(): void {
    if (this.#open) this.#native.terminate(this.conn)
  }

  #control(pong: boolean, data: string | Uint8Array): boolean {
    const bytes = typeof data === 'string' ? Buffer.from(data) : data
    if (!(bytes instanceof Uint8Array)) {
      throw codedTypeError('ERR_INVALID_ARG', `${pong ? 'pong' : 'ping'}() takes a string or bytes, got ${describe(data)}`)
    }
    if (bytes.length > MAX_CONTROL_PAYLOAD) {
      throw codedRangeError('ERR_INVALID_ARG', `control frame payload is ${bytes.length} bytes; the limit is ${MAX_CONTROL_PAYLOAD}`)
    }
    return this.#open && this.#native.sendControl(this.conn, pong, bytes)
  }

  /** When the client last sent a heartbeat (a ping frame or a built-in `ping` message). */
  get lastPing(): Date | undefined {
    const t = this.#native.heartbeat(this.conn)[0]
    return t === undefined ? undefined : new Date(t)
  }

  /** When the client last answered a server ping with a pong. */
  get lastPong(): Date | undefined {
    const t = this.#native.heartbeat(this.conn)[1]
    return t === undefined ? undefined : new Date(t)
  }

  /** Rooms this socket is in. */
  get rooms(): string[] {
    return this.#open ? this.#native.roomsOf(this.conn) : []
  }

  /**
   * Joins a room (created when missing, unless `autoCreateRooms: false`); the client is told
   * with `room_joined`. Returns false when the room is full, missing, or the socket is closed.
   */
  joinRoom(roomId: string): boolean {
    checkRoomId(roomId)
    const result = this.#native.joinRoom(this.conn, roomId)
    return result === JoinResult.Joined || result === JoinResult.Already
  }

  /** Leaves one room, or every room without an argument. Returns whether it left any. */
  leaveRoom(roomId?: string): boolean {
    if (roomId !== undefined) checkRoomId(roomId)
    return this.#native.leaveRoom(this.conn, roomId ?? null) > 0
  }

  /**
   * Sends a `room_message` (with this socket's `clientId` as `from_client_id`) to the room's other
   * members. Returns how many received it; throws `ERR_NOT_IN_ROOM` if this socket is not in the
   * room, `ERR_SOCKET_CLOSED` once it is closed.
   */
  sendToRoom(roomId: string, message: JsonValue): number {
    checkRoomId(roomId)
    const json = JSON.stringify(message)
    if (json === undefined) throw codedTypeError('ERR_INVALID_ARG', 'sendToRoom() message must be JSON-serializable')
    if (!this.#open) throw closedError(this)
    return this.#native.sendToRoom(this.conn, roomId, json)
  }

  /**
   * Stores a JSON-serializable value under `key`, natively; `undefined` removes it. Throws
   * `ERR_SOCKET_CLOSED` once the socket is closed (values stored before stay readable).
   */
  setMetadata(key: string, value: JsonValue | undefined): void {
    if (typeof key !== 'string') throw codedTypeError('ERR_INVALID_ARG', `metadata key must be a string, got ${typeof key}`)
    const json = value === undefined ? null : JSON.stringify(value)
    if (json === undefined) throw codedTypeError('ERR_INVALID_ARG', 'metadata value must be JSON-serializable')
    if (!this.#open) throw closedError(this)
    this.#native.setMetadata(this.conn, key, json)
  }

  /** The value stored under `key`, or undefined. */
  getMetadata<T extends JsonValue = JsonValue>(key: string): T | undefined {
    const json = this.#native.getMetadata(this.conn, key)
    return json === null || json === undefined ? undefined : (JSON.parse(json) as T)
  }

  /** @internal called by the server when the engine reports the close */
  markClosed(): void {
    this.#open = false
  }
}
