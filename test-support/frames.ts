// A raw WebSocket peer over TCP for input no well-behaved client can send.
import { randomBytes } from 'node:crypto'
import net from 'node:net'
import tls from 'node:tls'

export interface FrameSpec {
  opcode: number
  payload?: Buffer | string
  fin?: boolean
  rsv?: number
  mask?: boolean
  /** Announce this length instead of the payload's (for oversized-header tests). */
  announce?: bigint | number
}

/** Encodes one frame as a client would (masked unless `mask: false`). */
export function encodeFrame(spec: FrameSpec): Buffer {
  const payload = typeof spec.payload === 'string' ? Buffer.from(spec.payload) : (spec.payload ?? Buffer.alloc(0))
  const fin = spec.fin ?? true
  const mask = spec.mask ?? true
  const len = BigInt(spec.announce ?? payload.length)
  const head: number[] = [(fin ? 0x80 : 0) | ((spec.rsv ?? 0) << 4) | spec.opcode]
  const maskBit = mask ? 0x80 : 0
  let ext = Buffer.alloc(0)
  if (len < 126n) head.push(maskBit | Number(len))
  else if (len < 65536n) {
    head.push(maskBit | 126)
    ext = Buffer.alloc(2)
    ext.writeUInt16BE(Number(len))
  } else {
    head.push(maskBit | 127)
    ext = Buffer.alloc(8)
    ext.writeBigUInt64BE(len)
  }
  if (!mask) return Buffer.concat([Buffer.from(head), ext, payload])
  const key = randomBytes(4)
  const masked = Buffer.from(payload)
  for (let i = 0; i < masked.length; i++) masked[i] = masked[i]! ^ key[i & 3]!
  return Buffer.concat([Buffer.from(head), ext, key, masked])
}

/** A close frame payload: code (2 bytes) + reason. */
export function closePayload(code: number, reason: Buffer | string = ''): Buffer {
  const b = Buffer.alloc(2)
  b.writeUInt16BE(code)
  return Buffer.concat([b, typeof reason === 'string' ? Buffer.from(reason) : reason])
}

export interface ServerFrame {
  opcode: number
  fin: boolean
  payload: Buffer
}

/** A raw client after a successful upgrade: write bytes, read the server's frames. */
export class RawPeer {
  readonly socket: net.Socket
  #buf = Buffer.alloc(0)
  #frames: ServerFrame[] = []
  #waiters: Array<() => void> = []
  ended = false

  private constructor(socket: net.Socket, rest: Buffer) {
    this.socket = socket
    socket.on('data', (d) => this.#feed(d))
    socket.on('close', () => {
      this.ended = true
      this.#wake()
    })
    socket.on('error', () => {})
    this.#feed(rest)
  }

  /** Connects and upgrades (over TLS with `secure`); `pause` leaves the socket unread afterwards (slow consumer). */
  static connect(port: number, path = '/ws', secure?: tls.ConnectionOptions): Promise<RawPeer> {
    return new Promise((resolve, reject) => {
      // `secure`: over TLS (a server with the `tls` option), with these client options.
      const socket = secure ? tls.connect({ port, host: '127.0.0.1', ...secure }) : net.connect(port, '127.0.0.1')
      let head = Buffer.alloc(0)
      const onData = (d: Buffer): void => {
        head = Buffer.concat([head, d])
        const end = head.indexOf('\r\n\r\n')
        if (end < 0) return
        socket.off('data', onData)
        const status = head.subarray(0, end).toString('latin1')
        if (!status.startsWith('HTTP/1.1 101')) {
          socket.destroy()
          reject(new Error(`upgrade refused: ${status.split('\r\n')[0]}`))
          return
        }
        resolve(new RawPeer(socket, head.subarray(end + 4)))
      }
      socket.on('data', onData)
      socket.on('error', reject)
      socket.write(
        `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      )
    })
  }

  send(frame: FrameSpec | Buffer): void {
    this.socket.write(Buffer.isBuffer(frame) ? frame : encodeFrame(frame))
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w()
  }

  #feed(d: Buffer): void {
    this.#buf = Buffer.concat([this.#buf, d])
    for (;;) {
      if (this.#buf.length < 2) break
      const b0 = this.#buf[0]!
      const b1 = this.#buf[1]!
      let len = b1 & 0x7f
      let off = 2
      if (len === 126) {
        if (this.#buf.length < 4) break
        len = this.#buf.readUInt16BE(2)
        off = 4
      } else if (len === 127) {
        if (this.#buf.length < 10) break
        len = Number(this.#buf.readBigUInt64BE(2))
        off = 10
      }
      if (this.#buf.length < off + len) break
      this.#frames.push({ opcode: b0 & 0x0f, fin: (b0 & 0x80) !== 0, payload: this.#buf.subarray(off, off + len) })
      this.#buf = this.#buf.subarray(off + len)
    }
    this.#wake()
  }

  /** Next frame from the server (skipping pings unless asked), or null once the TCP closed. */
  async nextFrame(timeoutMs = 5000, skipPings = true): Promise<ServerFrame | null> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      while (this.#frames.length) {
        const f = this.#frames.shift()!
        if (skipPings && f.opcode === 0x9) continue
        return f
      }
      if (this.ended) return null
      const left = deadline - Date.now()
      if (left <= 0) throw new Error('timed out waiting for a frame')
      await new Promise<void>((r) => {
        const t = setTimeout(r, left)
        this.#waiters.push(() => {
          clearTimeout(t)
          r()
        })
      })
    }
  }

  /** Reads frames until a close frame; returns its code (or null if the TCP closed without one). */
  async closeCode(timeoutMs = 5000): Promise<number | null> {
    for (;;) {
      const f = await this.nextFrame(timeoutMs)
      if (f === null) return null
      if (f.opcode === 0x8) return f.payload.length >= 2 ? f.payload.readUInt16BE(0) : 1005
    }
  }

  /** Resolves once the server has closed the TCP connection. */
  async waitEnd(timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (!this.ended) {
      if (Date.now() > deadline) throw new Error('timed out waiting for the server to drop the connection')
      await new Promise((r) => setTimeout(r, 10))
    }
  }

  destroy(): void {
    this.socket.destroy()
  }
}
