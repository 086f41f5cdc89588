import { backoffDelay } from './backoff'
import { Emitter } from './emitter'
import { RNodeClientError, withCode } from './errors'
import { Room } from './room'
import type {
  ClientEvents,
  ClientOptions,
  ConnectionStatus,
  IncomingMessage,
  OutgoingMessage,
  PresenceMember,
  WebSocketConstructor,
  WebSocketLike,
} from './types'

type Frame = string | ArrayBuffer | ArrayBufferView
type Timer = ReturnType<typeof setTimeout>

/** A frame waiting for the connection (or for its room to be joined). */
interface Queued {
  frame: Frame
  original: OutgoingMessage
  roomId?: string
}

interface Waiter<T> {
  resolve: (value: T) => void
  reject: (error: RNodeClientError) => void
}

/** A protocol frame from the server (fields as the room protocol names them). */
interface ServerFrame {
  type?: unknown
  room_id?: unknown
  message?: unknown
  from_client_id?: unknown
  error?: unknown
  timestamp?: unknown
  request_id?: unknown
  token?: unknown
  recovered?: unknown
  rooms?: unknown
  epoch?: unknown
  offset?: unknown
  client_id?: unknown
  fields?: unknown
  members?: unknown
}

/** Where the client stands in a room's history on the server. */
interface Position {
  epoch: string
  offset: number
}

function toMember(m: unknown): PresenceMember {
  const f = (m ?? {}) as ServerFrame
  return { clientId: String(f.client_id ?? ''), fields: (f.fields ?? {}) as PresenceMember['fields'] }
}

const OPEN = 1
const DEFAULTS = {
  autoReconnect: true,
  maxReconnectAttempts: 10,
  reconnectDelay: 1000,
  maxReconnectDelay: 30000,
  reconnectJitter: 0.5,
  pingInterval: 30000,
  pongTimeout: 10000,
  requestTimeout: 10000,
  maxQueuedMessages: 100,
  maxHistorySize: 100,
  authParam: 'token',
  finalCloseCodes: [1008, 4401, 4403],
}
type Settings = typeof DEFAULTS & Pick<ClientOptions, 'auth'>

function isBinary(m: OutgoingMessage): m is ArrayBuffer | ArrayBufferView {
  return m instanceof ArrayBuffer || ArrayBuffer.isView(m)
}

function asText(m: OutgoingMessage): string {
  return typeof m === 'string' ? m : JSON.stringify(m)
}

/**
 * WebSocket client for `@rnode/ws`: rooms, reconnect with backoff and jitter, an offline queue,
 * a `ping`/`pong` heartbeat and token auth. Works with the browser's `WebSocket` or `ws`.
 */
export class RNodeWebSocketClient extends Emitter<ClientEvents> {
  private readonly url: string
  private readonly clientId: string
  private readonly o: Settings
  private readonly Socket: WebSocketConstructor
  private status: ConnectionStatus = 'disconnected'
  private ws: WebSocketLike | null = null
  /** Bumped whenever a socket is abandoned, so its late events are ignored. */
  private gen = 0
  private opened = false
  private lastError = ''
  private attempts = 0
  private seq = 0
  private rooms = new Map<string, Room>()
  private joinWaiters = new Map<string, Array<Waiter<Room>>>()
  private joinRequests = new Map<string, string>()
  private leaveWaiters = new Map<string, Array<Waiter<void>>>()
  private presenceWaiters = new Map<string, Array<Waiter<PresenceMember[]>>>()
  private rejoining = new Set<string>()
  private queue: Queued[] = []
  private connectWaiters: Array<Waiter<void>> = []
  private tokenSent: string | undefined
  private refusedToken: string | undefined
  private reconnectTimer: Timer | undefined
  private rejoinTimer: Timer | undefined
  private pingTimer: ReturnType<typeof setInterval> | undefined
  private pongTimer: Timer | undefined
  private lastPingAt = 0
  /** The server's session token (with `recovery` on the server), presented on reconnect. */
  private session: string | undefined
  /** Last offset seen per room with history. */
  private pos = new Map<string, Position>()
  /** Waiting for the `session` frame of a connection opened with a token. */
  private resuming = false
  private recoverRid = ''

  constructor(url: string, clientId?: string, options: ClientOptions = {}) {
    super()
    this.url = url
    this.clientId = clientId || `client_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 10)}`
    const o: Settings = { ...DEFAULTS }
    for (const key of Object.keys(options) as Array<keyof ClientOptions>) {
      if (options[key] !== undefined && key !== 'WebSocket') (o as Record<string, unknown>)[key] = options[key]
    }
    this.o = o
    const Socket = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket
    if (!Socket) {
      throw withCode(new TypeError("no WebSocket implementation: pass options.WebSocket (e.g. from 'ws')"), 'ERR_INVALID_OPTION')
    }
    this.Socket = Socket
  }

  getClientId(): string {
    return this.clientId
  }

  getStatus(): ConnectionStatus {
    return this.status
  }

  getRoom(roomId: string): Room | undefined {
    return this.rooms.get(roomId)
  }

  getAllRooms(): Room[] {
    return [...this.rooms.values()]
  }

  /** Messages waiting for the connection. */
  getQueuedMessageCount(): number {
    return this.queue.length
  }

  /**
   * Opens the connection. Resolves once connected (rooms rejoined, queue flushed), after as many
   * reconnect attempts as allowed; rejects when the client gives up or `disconnect()` is called.
   */
  connect(): Promise<void> {
    if (this.status === 'connected') return Promise.resolve()
    const p = new Promise<void>((resolve, reject) => this.connectWaiters.push({ resolve, reject }))
    if (this.status === 'disconnected') {
      this.attempts = 0
      this.refusedToken = undefined
      void this.open()
    }
    return p
  }

  /** Closes the connection on purpose: no reconnect; rooms are forgotten, queued messages kept. */
  disconnect(code = 1000, reason = 'client disconnect'): void {
    const ws = this.ws
    const wasOpen = this.opened
    this.abandon()
    if (ws) {
      try {
        ws.close(code, reason)
      } catch {
        ws.close()
      }
    }
    const err = new RNodeClientError('ERR_DISCONNECTED', 'disconnect() was called')
    for (const room of this.rooms.values()) room.setJoined(false)
    this.rooms.clear()
    this.pos.clear()
    this.session = undefined
    this.rejectAll(err)
    this.setStatus('disconnected')
    if (wasOpen) this.emit('disconnected', code, reason)
  }

  /** Joins a room; resolves on `room_joined`, rejects on `room_join_error` or after `requestTimeout`. */
  joinRoom(roomId: string): Promise<Room> {
    if (typeof roomId !== 'string' || roomId === '') {
      return Promise.reject(withCode(new TypeError('roomId must be a non-empty string'), 'ERR_INVALID_ROOM_ID'))
    }
    let room = this.rooms.get(roomId)
    if (room?.isJoinedToRoom()) return Promise.resolve(room)
    if (!room) {
      room = new Room(roomId, this, this.o.maxHistorySize)
      this.rooms.set(roomId, room)
      if (this.ws?.readyState === OPEN && this.opened) this.sendJoin(roomId)
    }
    return this.wait(this.joinWaiters, roomId, `join room ${roomId}`, () => {
      const r = this.rooms.get(roomId)
      if (r && !r.isJoinedToRoom() && !this.joinWaiters.get(roomId)?.length) this.forget(roomId)
    })
  }

  /** Leaves one room, or every room when `roomId` is omitted; resolves on `room_left`. */
  async leaveRoom(roomId?: string): Promise<void> {
    if (roomId === undefined) {
      await Promise.all([...this.rooms.keys()].map((id) => this.leaveRoom(id)))
      return
    }
    if (!this.rooms.has(roomId)) return
    this.forget(roomId)
    if (this.ws?.readyState !== OPEN || !this.opened) {
      this.emit('roomLeft', roomId)
      return
    }
    const p = this.wait(this.leaveWaiters, roomId, `leave room ${roomId}`)
    this.sendNow({ type: 'leave_room', room_id: roomId, request_id: `l${++this.seq}` })
    return p
  }

  /**
   * Who is in a joined room: each member connection's client id and the fields the server
   * makes public (on every node of a clustered server).
   */
  presence(roomId: string): Promise<PresenceMember[]> {
    if (!this.rooms.get(roomId)?.isJoinedToRoom() || this.ws?.readyState !== OPEN) {
      return Promise.reject(new RNodeClientError('ERR_NOT_JOINED', `not in room ${roomId}`, { roomId }))
    }
    const rid = `p${++this.seq}`
    const p = this.wait(this.presenceWaiters, rid, `presence of ${roomId}`)
    this.sendNow({ type: 'presence', room_id: roomId, request_id: rid })
    return p
  }

  /** Sends to a joined room (queued while offline or until the join is confirmed). */
  sendToRoom(roomId: string, message: OutgoingMessage): Promise<void> {
    const room = this.rooms.get(roomId)
    if (!room) return Promise.reject(new RNodeClientError('ERR_NOT_JOINED', `not in room ${roomId}`, { roomId }))
    if (isBinary(message)) return Promise.reject(withCode(new TypeError('room messages are text or JSON, not bytes'), 'ERR_INVALID_ARG'))
    const text = asText(message)
    room.record({ roomId, message: text, fromClientId: this.clientId, timestamp: Date.now() }, false)
    this.deliver({ frame: JSON.stringify({ type: 'room_message', room_id: roomId, message: text }), original: message, roomId })
    return Promise.resolve()
  }

  /**
   * Sends an application message (objects as JSON, bytes as a binary frame), or a room message
   * when `roomId` is given. Queued while offline.
   */
  send(message: OutgoingMessage, roomId?: string): Promise<void> {
    if (roomId !== undefined) return this.sendToRoom(roomId, message)
    this.deliver({ frame: isBinary(message) ? message : asText(message), original: message })
    return Promise.resolve()
  }

  // ---- connection lifecycle

  private async open(): Promise<void> {
    const gen = ++this.gen
    this.opened = false
    this.lastError = ''
    this.setStatus(this.attempts > 0 ? 'reconnecting' : 'connecting')
    let token: string | undefined
    try {
      const auth = this.o.auth
      token = typeof auth === 'function' ? await auth() : auth
    } catch (err) {
      if (gen !== this.gen) return
      this.emit('error', new RNodeClientError('ERR_AUTH_FAILED', `auth() failed: ${String(err)}`))
      return this.retry()
    }
    if (gen !== this.gen) return
    if (token !== undefined && token === this.refusedToken) {
      return this.stop(new RNodeClientError('ERR_AUTH_FAILED', 'the server refused this token; not retrying with it'))
    }
    this.tokenSent = token
    let ws: WebSocketLike
    try {
      const u = new URL(this.url)
      u.searchParams.set('clientId', this.clientId)
      if (token !== undefined) u.searchParams.set(this.o.authParam, token)
      if (this.session !== undefined) u.searchParams.set('session', this.session)
      ws = new this.Socket(u.toString())
    } catch (err) {
      return this.stop(new RNodeClientError('ERR_CONNECTION_FAILED', `cannot open ${this.url}: ${String(err)}`))
    }
    this.ws = ws
    ws.binaryType = 'arraybuffer'
    ws.onopen = () => gen === this.gen && this.onOpen()
    ws.onmessage = (ev) => gen === this.gen && this.onFrame(ev.data)
    ws.onerror = (ev) => {
      if (gen === this.gen) this.lastError = String(ev.message ?? (ev.error as Error | undefined)?.message ?? '')
    }
    ws.onclose = (ev) => gen === this.gen && this.onClosed(ev.code, ev.reason)
  }

  private onOpen(): void {
    this.opened = true
    this.attempts = 0
    if (this.tokenSent !== undefined) this.emit('authSuccess')
    this.startHeartbeat()
    this.rejoining = new Set(this.rooms.keys())
    // With a session token, the server's `session` frame says whether it took the session back.
    this.resuming = this.session !== undefined
    this.session = undefined
    const gen = this.gen
    this.rejoinTimer = setTimeout(() => gen === this.gen && this.ready(), this.o.requestTimeout)
    if (!this.resuming) this.rejoin()
  }

  /** Joins every known room again (the session was not recovered). */
  private rejoin(failed = false): void {
    this.resuming = false
    for (const id of this.rejoining) {
      if (failed && this.pos.delete(id)) this.emit('recoveryFailed', id)
      this.sendJoin(id)
    }
    if (this.rejoining.size === 0) this.ready()
  }

  /** The server took the session back: it rejoins its rooms after replaying what was missed. */
  private recover(): void {
    const rooms: Record<string, Position> = {}
    for (const [id, p] of this.pos) if (this.rooms.has(id)) rooms[id] = p
    this.recoverRid = `r${++this.seq}`
    this.sendNow({ type: 'recover', rooms, request_id: this.recoverRid })
  }

  private onRecovered(result: Record<string, unknown>): void {
    const ok: string[] = []
    for (const id of Object.keys(result)) {
      if (result[id] === true) ok.push(id)
      else if (this.pos.delete(id)) this.emit('recoveryFailed', id)
    }
    // Rooms this client knows that the session did not have are joined as usual.
    for (const id of this.rejoining) if (!(id in result)) this.sendJoin(id)
    this.resuming = false
    this.emit('recovered', ok)
    if (this.rejoining.size === 0) this.ready()
  }

  /** Open and rooms settled: flush the queue, then tell the application. */
  private ready(): void {
    clearTimeout(this.rejoinTimer)
    this.rejoining.clear()
    if (this.status === 'connected') return
    this.setStatus('connected')
    this.flush()
    this.emit('connected')
    const waiters = this.connectWaiters
    this.connectWaiters = []
    for (const w of waiters) w.resolve()
  }

  private onClosed(code: number, reason: string): void {
    const wasOpen = this.opened
    this.abandon()
    for (const room of this.rooms.values()) room.setJoined(false)
    const status = /\b(40[13])\b/.exec(this.lastError)
    const httpStatus = !wasOpen && status ? Number(status[1]) : undefined
    const token = this.tokenSent
    const authRefused =
      httpStatus !== undefined || code === 4401 || code === 4403 || (code === 1008 && token !== undefined)
    if (wasOpen) {
      this.setStatus('disconnected')
      this.emit('disconnected', code, reason)
    }
    if (authRefused) {
      this.refusedToken = token
      const err = new RNodeClientError('ERR_AUTH_FAILED', `the server refused the connection (${httpStatus ?? code})`, {
        status: httpStatus,
        closeCode: code,
      })
      this.emit('authError', err)
      // A token function may produce a new token: try once more, `open()` stops on the same one.
      if (typeof this.o.auth === 'function' && this.o.autoReconnect) return this.retry()
      return this.stop(err)
    }
    const detail = { closeCode: code, reason }
    if (!wasOpen) {
      this.emit('error', new RNodeClientError('ERR_CONNECTION_FAILED', `connection failed (${this.lastError || code})`, detail))
    }
    if (this.o.finalCloseCodes.includes(code)) {
      return this.stop(new RNodeClientError('ERR_DISCONNECTED', `the server closed the connection for good (${code})`, detail))
    }
    if (!this.o.autoReconnect) {
      return this.stop(new RNodeClientError(wasOpen ? 'ERR_DISCONNECTED' : 'ERR_CONNECTION_FAILED', `connection closed (${code})`, detail))
    }
    this.retry()
  }

  /** Schedules the next reconnect, or gives up after `maxReconnectAttempts`. */
  private retry(): void {
    if (!this.o.autoReconnect) return this.stop(new RNodeClientError('ERR_CONNECTION_FAILED', 'connection failed'))
    if (this.attempts >= this.o.maxReconnectAttempts) {
      this.emit('maxReconnectAttemptsReached', this.attempts)
      return this.stop(new RNodeClientError('ERR_MAX_RECONNECT_ATTEMPTS', `gave up after ${this.attempts} reconnect attempts`))
    }
    const attempt = ++this.attempts
    const delay = backoffDelay(attempt, this.o)
    this.setStatus('reconnecting')
    this.emit('reconnecting', attempt, delay)
    this.reconnectTimer = setTimeout(() => void this.open(), delay)
  }

  /** Gives up: rejects whoever waits for the connection; rooms stay for a later `connect()`. */
  private stop(err: RNodeClientError): void {
    this.abandon()
    this.setStatus('disconnected')
    this.rejectAll(err)
  }

  /** Detaches from the current socket and stops every timer. */
  private abandon(): void {
    this.gen++
    const ws = this.ws
    this.ws = null
    this.opened = false
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null
      // Closing a socket that is still connecting reports an error: swallow it.
      ws.onerror = () => undefined
    }
    // Membership ends with the connection: a pending leave is done.
    for (const list of this.leaveWaiters.values()) for (const w of list) w.resolve()
    this.leaveWaiters.clear()
    this.joinRequests.clear()
    clearTimeout(this.reconnectTimer)
    clearTimeout(this.rejoinTimer)
    this.stopHeartbeat()
  }

  private rejectAll(err: RNodeClientError): void {
    for (const map of [this.joinWaiters, this.presenceWaiters] as Array<Map<string, Array<Waiter<never>>>>) {
      for (const list of map.values()) for (const w of list) w.reject(err)
      map.clear()
    }
    const waiters = this.connectWaiters
    this.connectWaiters = []
    for (const w of waiters) w.reject(err)
  }

  private setStatus(status: ConnectionStatus): void {
    if (status === this.status) return
    this.status = status
    this.emit('statusChange', status)
  }

  // ---- heartbeat

  private startHeartbeat(): void {
    this.stopHeartbeat()
    if (this.o.pingInterval > 0) this.pingTimer = setInterval(() => this.ping(), this.o.pingInterval)
  }

  private stopHeartbeat(): void {
    clearInterval(this.pingTimer)
    clearTimeout(this.pongTimer)
    this.pongTimer = undefined
  }

  private ping(): void {
    if (this.pongTimer !== undefined) return
    this.lastPingAt = Date.now()
    this.sendNow({ type: 'ping', timestamp: this.lastPingAt })
    this.pongTimer = setTimeout(() => {
      const ws = this.ws
      this.emit('error', new RNodeClientError('ERR_PONG_TIMEOUT', `no pong within ${this.o.pongTimeout} ms`))
      this.abandon()
      if (ws) {
        const terminate = (ws as { terminate?: () => void }).terminate
        if (typeof terminate === 'function') terminate.call(ws)
        else ws.close(4000, 'pong timeout')
      }
      this.onClosedAbandoned(1006, 'pong timeout')
    }, this.o.pongTimeout)
  }

  /** Like a close event for a socket already abandoned (heartbeat failure). */
  private onClosedAbandoned(code: number, reason: string): void {
    for (const room of this.rooms.values()) room.setJoined(false)
    this.setStatus('disconnected')
    this.emit('disconnected', code, reason)
    this.retry()
  }

  // ---- frames

  private sendNow(frame: Frame | object): void {
    const ws = this.ws
    if (!ws || ws.readyState !== OPEN) return
    ws.send(typeof frame === 'string' || isBinary(frame) ? frame : JSON.stringify(frame))
  }

  private sendJoin(roomId: string): void {
    const rid = `j${++this.seq}`
    this.joinRequests.set(rid, roomId)
    this.sendNow({ type: 'join_room', room_id: roomId, request_id: rid })
  }

  private deliver(q: Queued): void {
    const room = q.roomId === undefined ? undefined : this.rooms.get(q.roomId)
    if (this.status === 'connected' && (q.roomId === undefined || room?.isJoinedToRoom())) {
      this.sendNow(q.frame)
      return
    }
    this.queue.push(q)
    if (this.queue.length > this.o.maxQueuedMessages) this.emit('messageDropped', this.queue.shift()!.original)
  }

  /** Sends queued frames whose room (if any) is joined, in order; keeps the others. */
  private flush(): void {
    const keep: Queued[] = []
    for (const q of this.queue) {
      if (this.status !== 'connected' || (q.roomId !== undefined && !this.rooms.get(q.roomId)?.isJoinedToRoom())) keep.push(q)
      else this.sendNow(q.frame)
    }
    this.queue = keep
  }

  private dropQueued(roomId: string): void {
    this.queue = this.queue.filter((q) => {
      if (q.roomId !== roomId) return true
      this.emit('messageDropped', q.original)
      return false
    })
  }

  private onFrame(data: unknown): void {
    if (typeof data !== 'string') {
      const bytes: IncomingMessage | undefined =
        data instanceof ArrayBuffer
          ? data
          : ArrayBuffer.isView(data)
            ? (data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) as ArrayBuffer)
            : undefined
      if (bytes) this.emit('message', bytes)
      return
    }
    let f: ServerFrame | undefined
    if (data.charCodeAt(0) === 123 && data.includes('"type"')) {
      try {
        f = JSON.parse(data) as ServerFrame
      } catch {
        f = undefined
      }
    }
    const roomId = typeof f?.room_id === 'string' ? f.room_id : ''
    switch (f?.type) {
      case 'room_joined': {
        if (typeof f.request_id === 'string') this.joinRequests.delete(f.request_id)
        const p = this.pos.get(roomId)
        // A recovered room's missed messages follow: keep the position they continue from.
        if (typeof f.epoch === 'string' && typeof f.offset === 'number' && !(f.recovered === true && p?.epoch === f.epoch)) {
          this.pos.set(roomId, { epoch: f.epoch, offset: f.offset })
        }
        return this.onJoined(roomId)
      }
      case 'session':
        this.session = String(f.token)
        if (!this.resuming) return
        return f.recovered === true ? this.recover() : this.rejoin(true)
      case 'recovered':
        return this.onRecovered(typeof f.rooms === 'object' && f.rooms !== null ? (f.rooms as Record<string, unknown>) : {})
      case 'room_join_error':
        return this.onJoinError(roomId, String(f.error), f.request_id)
      case 'room_left':
        return this.onLeft(roomId)
      case 'room_message': {
        const p = this.pos.get(roomId)
        if (p && typeof f.offset === 'number') {
          // Seen already (replayed after a recovery, say): drop it.
          if (f.offset <= p.offset) return
          p.offset = f.offset
        }
        const message = typeof f.message === 'string' ? f.message : JSON.stringify(f.message)
        const from = String(f.from_client_id ?? '')
        this.rooms.get(roomId)?.record({ roomId, message, fromClientId: from, timestamp: Date.now() }, true)
        this.emit('roomMessage', roomId, message, from)
        return
      }
      case 'presence':
        return this.settle(this.presenceWaiters, String(f.request_id), (w) =>
          w.resolve(Array.isArray(f.members) ? f.members.map(toMember) : []),
        )
      case 'presence_join':
      case 'presence_leave':
        this.emit(f.type === 'presence_join' ? 'presenceJoin' : 'presenceLeave', roomId, toMember(f))
        return
      case 'pong':
        clearTimeout(this.pongTimer)
        this.pongTimer = undefined
        this.emit('pong', Date.now() - (typeof f.timestamp === 'number' ? f.timestamp : this.lastPingAt))
        return
      case 'error': {
        const rid = typeof f.request_id === 'string' ? f.request_id : ''
        const joining = this.joinRequests.get(rid)
        if (joining !== undefined) return this.onJoinError(joining, String(f.error), rid)
        if (rid !== '' && rid === this.recoverRid) return this.rejoin(true)
        if (this.presenceWaiters.has(rid)) {
          const e = new RNodeClientError('ERR_SERVER_ERROR', `server error: ${String(f.error)}`, { reason: String(f.error) })
          return this.settle(this.presenceWaiters, rid, (w) => w.reject(e))
        }
        this.emit('error', new RNodeClientError('ERR_SERVER_ERROR', `server error: ${String(f.error)}`, { reason: String(f.error) }))
        return
      }
      default:
        this.emit('message', data)
    }
  }

  private onJoined(roomId: string): void {
    const room = this.rooms.get(roomId)
    if (!room) return
    room.setJoined(true)
    this.settle(this.joinWaiters, roomId, (w) => w.resolve(room))
    this.emit('roomJoined', roomId)
    this.flush()
    this.rejoined(roomId)
  }

  private onJoinError(roomId: string, reason: string, requestId: unknown): void {
    if (typeof requestId === 'string') this.joinRequests.delete(requestId)
    const err = new RNodeClientError('ERR_ROOM_JOIN_FAILED', `cannot join room ${roomId}: ${reason}`, { roomId, reason })
    if (this.rooms.has(roomId)) this.forget(roomId, err)
    this.emit('roomJoinError', roomId, err)
    this.rejoined(roomId)
  }

  private onLeft(roomId: string): void {
    // Unasked (the server removed us) when the room is still known.
    if (this.rooms.has(roomId)) this.forget(roomId)
    this.settle(this.leaveWaiters, roomId, (w) => w.resolve())
    this.emit('roomLeft', roomId)
  }

  private rejoined(roomId: string): void {
    if (this.rejoining.delete(roomId) && this.rejoining.size === 0) this.ready()
  }

  /** Removes a room: pending joins fail, its queued messages are dropped. */
  private forget(roomId: string, err?: RNodeClientError): void {
    const room = this.rooms.get(roomId)
    this.rooms.delete(roomId)
    this.pos.delete(roomId)
    room?.setJoined(false)
    const e = err ?? new RNodeClientError('ERR_NOT_JOINED', `left room ${roomId} before joining`, { roomId })
    this.settle(this.joinWaiters, roomId, (w) => w.reject(e))
    this.dropQueued(roomId)
  }

  private wait<T>(map: Map<string, Array<Waiter<T>>>, key: string, what: string, onTimeout?: () => void): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const list = map.get(key) ?? []
      map.set(key, list)
      const w: Waiter<T> = {
        resolve: (v) => {
          clearTimeout(timer)
          resolve(v)
        },
        reject: (e) => {
          clearTimeout(timer)
          reject(e)
        },
      }
      const timer = setTimeout(() => {
        const i = list.indexOf(w)
        if (i >= 0) list.splice(i, 1)
        reject(new RNodeClientError('ERR_TIMEOUT', `${what}: no answer within ${this.o.requestTimeout} ms`, { roomId: key }))
        onTimeout?.()
      }, this.o.requestTimeout)
      list.push(w)
    })
  }

  private settle<T>(map: Map<string, Array<Waiter<T>>>, key: string, fn: (w: Waiter<T>) => void): void {
    const list = map.get(key)
    map.delete(key)
    if (list) for (const w of list) fn(w)
  }
}
