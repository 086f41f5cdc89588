// @rnode/ws/emitter: broadcasts into a cluster from a process that is not a WebSocket server
// (a cron job, an HTTP API, a worker). It publishes the envelopes the nodes publish, on the
// same channels, so members on every node receive them.
import { randomBytes } from 'node:crypto'
import { encodeEnvelope } from './envelope'
import { codedError, codedTypeError } from './errors'
import { RespConnection } from './resp'

export { RedisError } from './resp'

/** Options of `new Emitter()`. */
export interface EmitterOptions {
  /** Redis URL of the cluster (`redis://` or `rediss://`, with `user:password@` if needed). */
  redis: string
  /** The cluster's `prefix`. Default `'rnode'`. */
  prefix?: string
  /** The cluster's `channels` setting. Default `'room'`. */
  channels?: 'room' | 'single'
}

/** `emitter.broadcast()` options. */
export interface EmitterBroadcastOptions {
  /** Only this room's members; absent: every connection of every node. */
  room?: string
  /** Socket ids (UUIDs, on any node) to skip. */
  except?: string | readonly string[]
}

const PREFIX = /^[A-Za-z0-9_.:-]{1,64}$/
/** Longest room id, in bytes (native `MAX_ROOM_ID_BYTES`). */
const MAX_ROOM_ID_BYTES = 256

/** Publishes broadcasts and room messages to a cluster's nodes through Redis. */
export class Emitter {
  readonly #url: string
  readonly #prefix: string
  readonly #single: boolean
  /** Names this emitter as the envelopes' origin (no node has it, so every node delivers). */
  readonly #origin = randomBytes(16)
  #conn: RespConnection | undefined
  #closed = false

  constructor(options: EmitterOptions) {
    if (typeof options !== 'object' || options === null) throw codedTypeError('ERR_INVALID_OPTION', 'new Emitter() takes { redis, prefix?, channels? }')
    if (typeof options.redis !== 'string' || !/^rediss?:\/\//.test(options.redis)) {
      throw codedTypeError('ERR_INVALID_OPTION', `redis must be a redis:// URL, got ${JSON.stringify(options.redis)}`)
    }
    const prefix = options.prefix ?? 'rnode'
    if (typeof prefix !== 'string' || !PREFIX.test(prefix)) {
      throw codedTypeError('ERR_INVALID_OPTION', 'prefix must be 1-64 characters of [A-Za-z0-9_.:-]')
    }
    const channels = options.channels ?? 'room'
    if (channels !== 'room' && channels !== 'single') {
      throw codedTypeError('ERR_INVALID_OPTION', `channels must be 'room' or 'single', got ${JSON.stringify(channels)}`)
    }
    this.#url = options.redis
    this.#prefix = prefix
    this.#single = channels === 'single'
  }

  /**
   * Sends a message (text, or bytes as a binary message) to every member of `room` on every
   * node, or to every connection when no room is given, skipping `except`. Resolves with the
   * number of nodes Redis handed it to once Redis took it; messages from one emitter arrive in
   * the order they were sent.
   */
  async broadcast(message: string | Uint8Array, options: EmitterBroadcastOptions = {}): Promise<number> {
    if (this.#closed) throw codedError('ERR_EMITTER_CLOSED', 'the emitter is closed')
    if (typeof message !== 'string' && !(message instanceof Uint8Array)) {
      throw codedTypeError('ERR_INVALID_ARG', 'message must be a string or a Uint8Array')
    }
    const { room } = options
    if (room !== undefined && (typeof room !== 'string' || room.length === 0 || Buffer.byteLength(room) > MAX_ROOM_ID_BYTES)) {
      throw codedTypeError('ERR_INVALID_ROOM_ID', `room must be a non-empty string of at most ${MAX_ROOM_ID_BYTES} bytes`)
    }
    const except = options.except === undefined ? [] : typeof options.except === 'string' ? [options.except] : [...options.except]
    const envelope = encodeEnvelope({ origin: this.#origin, sentAt: Date.now(), payload: message, room, except })
    const channel = room !== undefined && !this.#single ? `${this.#prefix}:room:${room}` : `${this.#prefix}:broadcast`
    const conn = this.#connection()
    await conn.ready
    return (await conn.command(['PUBLISH', channel, envelope])) as number
  }

  /** Closes the Redis connection; later broadcasts reject with `ERR_EMITTER_CLOSED`. */
  async close(): Promise<void> {
    this.#closed = true
    await this.#conn?.close()
    this.#conn = undefined
  }

  /** The open connection, or a new one when there is none or it broke. */
  #connection(): RespConnection {
    if (!this.#conn || this.#conn.broken) this.#conn = new RespConnection(this.#url)
    return this.#conn
  }
}
