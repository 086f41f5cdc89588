// The server-side WebSocket of ws 8 (`ws.on('message', (data, isBinary) => ...)`) over our Socket.
import { EventEmitter } from 'node:events'
import { checkClose } from '../close-codes'
import { MAX_CONTROL_PAYLOAD, type Socket } from '../socket'
import type { SendStatus } from '../types'
import {
  addEventListener,
  getAttribute,
  removeEventListener,
  setAttribute,
  type EventListenerLike,
} from './event-target'
import { codedError, unsupported } from './unsupported'

/** How binary messages are handed to 'message' listeners (text always arrives as a Buffer). */
export type BinaryType = 'nodebuffer' | 'arraybuffer' | 'fragments' | 'blob'
const BINARY_TYPES: readonly string[] = ['nodebuffer', 'arraybuffer', 'fragments', 'blob']

const READY_STATES = ['CONNECTING', 'OPEN', 'CLOSING', 'CLOSED'] as const
const OPEN = 1
const CLOSING = 2
const CLOSED = 3

/** What `send()`, `ping()` and `pong()` take, as ws does (numbers become strings). */
export type WsData = string | number | Buffer | ArrayBuffer | ArrayBufferView | readonly number[] | undefined

/** Options of `send()`. */
export interface SendOptions {
  binary?: boolean
  /** Ignored: with permessage-deflate, the engine compresses every message from `threshold` bytes on. */
  compress?: boolean
  /** `false` (a fragment) is not supported. */
  fin?: boolean
  /** `true` (a masked server frame) is not supported. */
  mask?: boolean
}

type Callback = (err?: Error) => void

/** The server calls these; they are not part of ws's API. */
export const ATTACH = Symbol('attach')
export const RECEIVE = Symbol('receive')
export const CONTROL = Symbol('control')
export const DRAINED = Symbol('drained')
export const CLOSED_BY_ENGINE = Symbol('closed')
export const FAILED = Symbol('failed')

const EMPTY = Buffer.alloc(0)

function toBuffer(data: Exclude<WsData, string | number | undefined>): Buffer {
  if (Buffer.isBuffer(data)) return data
  if (data instanceof ArrayBuffer) return Buffer.from(data)
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength)
  if (Array.isArray(data)) return Buffer.from(data)
  if ((data as unknown) instanceof Blob) throw unsupported('sending a Blob', 'send() is synchronous here; send await blob.arrayBuffer()')
  throw codedError('ERR_INVALID_ARG_TYPE', 'data must be a string, a number, a Buffer, an ArrayBuffer or a view', TypeError)
}

function notOpen(state: number): Error {
  return new Error(`WebSocket is not open: readyState ${state} (${READY_STATES[state]})`)
}

/** The events of ws's server-side WebSocket, typed for listeners. */
export interface WebSocket {
  on(event: 'message', listener: (data: Buffer | ArrayBuffer | Buffer[] | Blob, isBinary: boolean) => void): this
  on(event: 'close', listener: (code: number, reason: Buffer) => void): this
  on(event: 'ping' | 'pong', listener: (data: Buffer) => void): this
  on(event: 'error', listener: (error: Error) => void): this
  on(event: string | symbol, listener: (...args: never[]) => void): this
  once(event: 'message', listener: (data: Buffer | ArrayBuffer | Buffer[] | Blob, isBinary: boolean) => void): this
  once(event: 'close', listener: (code: number, reason: Buffer) => void): this
  once(event: 'ping' | 'pong', listener: (data: Buffer) => void): this
  once(event: 'error', listener: (error: Error) => void): this
  once(event: string | symbol, listener: (...args: never[]) => void): this
}

// The interface above adds typed overloads to EventEmitter's on/once.
/** A connection as ws's server hands it to 'connection' listeners. */
export class WebSocket extends EventEmitter {
  static readonly CONNECTING = 0
  static readonly OPEN = 1
  static readonly CLOSING = 2
  static readonly CLOSED = 3
  readonly CONNECTING = 0
  readonly OPEN = 1
  readonly CLOSING = 2
  readonly CLOSED = 3

  #socket: Socket | undefined
  #state = OPEN
  #binaryType: BinaryType = 'nodebuffer'
  #paused = false
  #held: Array<string | Buffer> = []
  /** `send()` callbacks waiting for the send buffer to drain. */
  #waiting: Callback[] = []

  /**
   * Made by `WebSocketServer` (ws calls it as `new WebSocket(null, undefined, options)`, and so
   * does its `WebSocket` option with a subclass). A client (an address) is not supported here.
   */
  constructor(address: null = null, _protocols?: unknown, _options?: unknown) {
    super()
    if (address !== null) {
      throw unsupported('a client WebSocket', 'this is the server side; use the ws package or @rnode/websocket-client')
    }
  }

  /** @internal binds the engine's socket */
  [ATTACH](socket: Socket): void {
    this.#socket = socket
  }

  /** Our native `Socket`, for rooms (`joinRoom`, `sendToRoom`), `clientId`, metadata. */
  get native(): Socket {
    if (this.#socket === undefined) throw new Error('this WebSocket is not attached to a connection')
    return this.#socket
  }

  get readyState(): number {
    return this.#state
  }

  get binaryType(): BinaryType {
    return this.#binaryType
  }

  /** Unknown values are ignored, as ws does. */
  set binaryType(type: BinaryType) {
    if (BINARY_TYPES.includes(type)) this.#binaryType = type
  }

  get bufferedAmount(): number {
    return this.#state === OPEN && this.#socket !== undefined ? this.#socket.bufferedAmount : 0
  }

  /** The negotiated extensions' names, as ws shows them (`'permessage-deflate'` or ''). */
  get extensions(): string {
    const answer = this.#socket?.extensions ?? ''
    return answer === '' ? '' : answer.split(',').map((e) => e.split(';')[0]?.trim()).join()
  }

  get protocol(): string {
    return this.#socket?.protocol ?? ''
  }

  get isPaused(): boolean {
    return this.#paused
  }

  /** undefined on a server-side socket, as in ws. */
  get url(): string | undefined {
    return undefined
  }

  /** Sends a message: strings as text, bytes as binary, unless `options.binary` says otherwise. */
  send(data: WsData, options?: SendOptions | Callback, cb?: Callback): void {
    if (typeof options === 'function') {
      cb = options
      options = undefined
    }
    if (typeof data === 'number') data = String(data)
    const socket = this.#socket
    if (this.#state !== OPEN || socket === undefined) return this.#afterClose(cb)
    let binary: boolean | undefined
    if (options !== undefined) {
      if (options.fin === false) throw unsupported('send() with fin: false', 'the engine sends whole messages only')
      if (options.mask === true) throw unsupported('send() with mask: true', 'server frames are never masked')
      binary = options.binary
    }
    let status: SendStatus
    if (typeof data === 'string') {
      status = socket.send(binary === true ? Buffer.from(data) : data)
    } else {
      const bytes = data === undefined ? EMPTY : toBuffer(data)
      if (binary === false) {
        status = socket.sendText(bytes)
      } else {
        status = socket.send(bytes)
      }
    }
    if (cb !== undefined) this.#settle(status, cb)
  }

  /** Sends a ping (at most 125 bytes); `mask` must be false or absent on a server. */
  ping(data?: WsData | Callback, mask?: boolean | Callback, cb?: Callback): void {
    this.#control(false, data, mask, cb)
  }

  /** Sends a pong (at most 125 bytes). */
  pong(data?: WsData | Callback, mask?: boolean | Callback, cb?: Callback): void {
    this.#control(true, data, mask, cb)
  }

  /** Starts the close handshake; `reason` is a string or a Buffer of at most 123 bytes. */
  close(code?: number, reason?: string | Buffer): void {
    if (this.#state === CLOSED || this.#state === CLOSING) return
    const text = reason === undefined ? '' : typeof reason === 'string' ? reason : Buffer.from(reason).toString()
    checkClose(code ?? 1000, text)
    this.#state = CLOSING
    this.#socket?.close(code ?? 1000, text)
  }

  /** Drops the connection without a close handshake; 'close' follows with 1006. */
  terminate(): void {
    if (this.#state === CLOSED) return
    this.#state = CLOSING
    this.#socket?.terminate()
  }

  /** Holds incoming messages (in JS: the engine keeps reading) until `resume()`. */
  pause(): void {
    if (this.#state !== CLOSED) this.#paused = true
  }

  /** Delivers the messages held since `pause()`, then the new ones. */
  resume(): void {
    if (this.#state === CLOSED) return
    this.#paused = false
    while (!this.#paused && this.#held.length > 0) this[RECEIVE](this.#held.shift()!)
  }

  addEventListener(type: string, listener: EventListenerLike, options?: { once?: boolean }): void {
    addEventListener(this, type, listener, options)
  }

  removeEventListener(type: string, listener: EventListenerLike): void {
    removeEventListener(this, type, listener)
  }

  get onopen(): EventListenerLike | null {
    return getAttribute(this, 'open')
  }
  set onopen(handler: EventListenerLike | null) {
    setAttribute(this, 'open', handler)
  }
  get onmessage(): EventListenerLike | null {
    return getAttribute(this, 'message')
  }
  set onmessage(handler: EventListenerLike | null) {
    setAttribute(this, 'message', handler)
  }
  get onclose(): EventListenerLike | null {
    return getAttribute(this, 'close')
  }
  set onclose(handler: EventListenerLike | null) {
    setAttribute(this, 'close', handler)
  }
  get onerror(): EventListenerLike | null {
    return getAttribute(this, 'error')
  }
  set onerror(handler: EventListenerLike | null) {
    setAttribute(this, 'error', handler)
  }

  /** @internal a message from the engine: text as a Buffer, binary as `binaryType` says */
  [RECEIVE](message: string | Buffer): void {
    if (this.#paused) {
      this.#held.push(message)
      return
    }
    if (typeof message === 'string') {
      this.emit('message', Buffer.from(message), false)
      return
    }
    switch (this.#binaryType) {
      case 'nodebuffer':
        this.emit('message', message, true)
        break
      case 'arraybuffer':
        this.emit('message', message.buffer.slice(message.byteOffset, message.byteOffset + message.byteLength), true)
        break
      case 'fragments':
        this.emit('message', [message], true)
        break
      case 'blob':
        // Engine buffers are never shared, so `buffer` is a plain ArrayBuffer.
        this.emit('message', new Blob([new Uint8Array(message.buffer as ArrayBuffer, message.byteOffset, message.byteLength)]), true)
        break
    }
  }

  /** @internal a ping or pong frame from the peer */
  [CONTROL](pong: boolean, data: Buffer): void {
    this.emit(pong ? 'pong' : 'ping', data)
  }

  /** @internal the send buffer drained: the waiting `send()` callbacks run */
  [DRAINED](): void {
    const waiting = this.#waiting
    this.#waiting = []
    for (const cb of waiting) cb()
  }

  /** @internal the engine reports the connection gone */
  [CLOSED_BY_ENGINE](code: number, reason: string): void {
    this.#state = CLOSED
    this.#held = []
    const waiting = this.#waiting
    this.#waiting = []
    for (const cb of waiting) cb(notOpen(CLOSED))
    this.emit('close', code, Buffer.from(reason))
  }

  /**
   * @internal a listener threw (the facade has closed the connection with 1011): thrown again
   * outside the engine's event loop, an uncaught exception as a throwing listener is in ws
   */
  [FAILED](error: Error): void {
    process.nextTick(() => {
      throw error
    })
  }

  /** ws calls `send()`'s callback once the data is written; the engine writes it after this turn. */
  #settle(status: SendStatus, cb: Callback): void {
    if (status === 'sent') process.nextTick(cb)
    else if (status === 'buffered') this.#waiting.push(cb)
    else process.nextTick(cb, codedError('ERR_MESSAGE_DROPPED', 'the message was dropped: the send buffer is full'))
  }

  #control(pong: boolean, data: WsData | Callback, mask: boolean | Callback | undefined, cb: Callback | undefined): void {
    if (typeof data === 'function') {
      cb = data
      data = undefined
      mask = undefined
    } else if (typeof mask === 'function') {
      cb = mask
      mask = undefined
    }
    if (typeof data === 'number') data = String(data)
    const socket = this.#socket
    if (this.#state !== OPEN || socket === undefined) return this.#afterClose(cb)
    if (mask === true) throw unsupported(`${pong ? 'pong' : 'ping'}() with mask: true`, 'server frames are never masked')
    const bytes = data === undefined ? EMPTY : typeof data === 'string' ? Buffer.from(data) : toBuffer(data)
    if (bytes.length > MAX_CONTROL_PAYLOAD) throw new RangeError('The data size must not be greater than 125 bytes')
    const sent = pong ? socket.pong(bytes) : socket.ping(bytes)
    if (cb !== undefined) process.nextTick(cb, sent ? undefined : notOpen(CLOSING))
  }

  /** ws hands the error to the callback (and throws nothing) once the socket is not open. */
  #afterClose(cb: Callback | undefined): void {
    if (cb !== undefined) process.nextTick(cb, notOpen(this.#state))
  }
}
