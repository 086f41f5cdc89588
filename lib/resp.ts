// A Redis connection that is just enough for the emitter: commands out, one-line replies in
// (`+OK`, `-ERR ...`, `:1`), in order. The `redis` package would bring a client with its own
// reconnect and pub/sub machinery for the sake of one PUBLISH; this keeps `@rnode/ws/emitter`
// free of dependencies.
import net from 'node:net'
import tls from 'node:tls'
import type { ErrorCode } from './errors'

/** An error Redis answered (`ERR_REDIS_REFUSED`), a broken connection (`ERR_REDIS_UNREACHABLE`) or a bad URL. */
export class RedisError extends Error {
  constructor(
    message: string,
    readonly code: Extract<ErrorCode, 'ERR_REDIS_REFUSED' | 'ERR_REDIS_UNREACHABLE' | 'ERR_INVALID_OPTION'>,
  ) {
    super(message)
    this.name = 'RedisError'
  }
}

type Reply = string | number

interface Pending {
  resolve(value: Reply): void
  reject(err: Error): void
}

/** Longest reply line accepted (the emitter only ever gets short ones). */
const MAX_LINE = 64 * 1024

function encodeCommand(args: ReadonlyArray<string | Buffer>): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)]
  for (const a of args) {
    const b = typeof a === 'string' ? Buffer.from(a, 'utf8') : a
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n'))
  }
  return Buffer.concat(parts)
}

export class RespConnection {
  readonly #socket: net.Socket
  readonly #pending: Pending[] = []
  #buffer: Buffer = Buffer.alloc(0)
  #error: Error | undefined
  readonly ready: Promise<void>

  constructor(url: string) {
    let parsed: URL
    try {
      parsed = new URL(url)
    } catch {
      throw new RedisError(`not a Redis URL: ${JSON.stringify(url)}`, 'ERR_INVALID_OPTION')
    }
    if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
      throw new RedisError(`not a redis:// or rediss:// URL: ${JSON.stringify(url)}`, 'ERR_INVALID_OPTION')
    }
    const host = parsed.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1'
    const port = Number(parsed.port || 6379)
    const secure = parsed.protocol === 'rediss:'
    this.#socket = secure ? tls.connect({ host, port, servername: host }) : net.connect({ host, port })
    this.#socket.setNoDelay(true)
    this.ready = new Promise<void>((resolve, reject) => {
      this.#socket.once(secure ? 'secureConnect' : 'connect', () => resolve())
      this.#socket.once('error', (err) => reject(new RedisError(`cannot reach Redis at ${host}:${port}: ${err.message}`, 'ERR_REDIS_UNREACHABLE')))
    }).then(async () => {
      const password = decodeURIComponent(parsed.password)
      const user = decodeURIComponent(parsed.username)
      if (password !== '') await this.command(user !== '' ? ['AUTH', user, password] : ['AUTH', password])
    })
    this.ready.catch(() => {})
    this.#socket.on('data', (chunk: Buffer) => this.#read(chunk))
    this.#socket.on('error', (err) => this.#fail(new RedisError(`Redis connection failed: ${err.message}`, 'ERR_REDIS_UNREACHABLE')))
    this.#socket.on('close', () => this.#fail(new RedisError('Redis connection closed', 'ERR_REDIS_UNREACHABLE')))
  }

  /** Whether the connection broke (a new one is needed). */
  get broken(): boolean {
    return this.#error !== undefined
  }

  /** Sends one command; resolves with its one-line reply. */
  command(args: ReadonlyArray<string | Buffer>): Promise<Reply> {
    if (this.#error) return Promise.reject(this.#error)
    return new Promise((resolve, reject) => {
      this.#pending.push({ resolve, reject })
      this.#socket.write(encodeCommand(args))
    })
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      if (this.#socket.destroyed) return resolve()
      this.#socket.once('close', () => resolve())
      this.#socket.end()
    })
  }

  #fail(err: Error): void {
    if (this.#error) return
    this.#error = err
    for (const p of this.#pending.splice(0)) p.reject(err)
    this.#socket.destroy()
  }

  #read(chunk: Buffer): void {
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk])
    for (;;) {
      const end = this.#buffer.indexOf('\r\n')
      if (end < 0) {
        if (this.#buffer.length > MAX_LINE) this.#fail(new RedisError('Redis reply line too long', 'ERR_REDIS_UNREACHABLE'))
        return
      }
      const line = this.#buffer.toString('utf8', 1, end)
      const kind = this.#buffer[0]
      this.#buffer = this.#buffer.subarray(end + 2)
      const pending = this.#pending.shift()
      if (!pending) return this.#fail(new RedisError('reply without a command', 'ERR_REDIS_UNREACHABLE'))
      if (kind === 0x2b /* + */) pending.resolve(line)
      else if (kind === 0x3a /* : */) pending.resolve(Number(line))
      else if (kind === 0x2d /* - */) pending.reject(new RedisError(line, 'ERR_REDIS_REFUSED'))
      else return this.#fail(new RedisError(`unexpected Redis reply type ${String.fromCharCode(kind ?? 0)}`, 'ERR_REDIS_UNREACHABLE'))
    }
  }
}
