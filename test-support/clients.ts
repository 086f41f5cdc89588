// `ws` clients and what they receive: open, next message(s), close.
import WebSocket from 'ws'

/** Opens a `ws` client and resolves once it is open. */
export function connect(url: string, options: WebSocket.ClientOptions = {}): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, options)
    ws.once('open', () => resolve(ws))
    ws.once('error', reject)
  })
}

/** Resolves with the next message (text as string, binary as Buffer). */
export function nextMessage(ws: WebSocket, timeoutMs = 5000): Promise<string | Buffer> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('timed out waiting for a message')), timeoutMs)
    ws.once('message', (data, isBinary) => {
      clearTimeout(timer)
      resolve(isBinary ? (data as Buffer) : data.toString())
    })
  })
}

/** Collects the next `n` messages (those `skip` accepts are left out and not counted). */
export function messages(
  ws: WebSocket,
  n: number,
  timeoutMs = 5000,
  skip: (text: string) => boolean = () => false,
): Promise<Array<string | Buffer>> {
  return new Promise((resolve, reject) => {
    const out: Array<string | Buffer> = []
    const timer = setTimeout(() => reject(new Error(`timed out: got ${out.length} of ${n} messages`)), timeoutMs)
    const onMessage = (data: WebSocket.RawData, isBinary: boolean): void => {
      if (!isBinary && skip(data.toString())) return
      out.push(isBinary ? (data as Buffer) : data.toString())
      if (out.length === n) {
        clearTimeout(timer)
        ws.off('message', onMessage)
        resolve(out)
      }
    }
    ws.on('message', onMessage)
  })
}

/** The `room_joined` notice a join sends, which may arrive at any point around other traffic. */
export const isRoomJoined = (text: string): boolean => text.startsWith('{') && text.includes('"type":"room_joined"')

/** Resolves with the close code and reason the client saw. */
export function closed(ws: WebSocket, timeoutMs = 8000): Promise<{ code: number; reason: string }> {
  return new Promise((resolve, reject) => {
    if (ws.readyState === WebSocket.CLOSED) return reject(new Error('already closed'))
    const timer = setTimeout(() => reject(new Error('timed out waiting for close')), timeoutMs)
    ws.once('close', (code, reason) => {
      clearTimeout(timer)
      resolve({ code, reason: reason.toString() })
    })
  })
}

/** Connects as `clientId` (the query parameter the server takes the client id from). */
export function connectAs(url: string, clientId: string): Promise<WebSocket> {
  return connect(`${url}?clientId=${encodeURIComponent(clientId)}`)
}

/** A frame of the built-in JSON room protocol. */
export type ProtocolFrame = Record<string, unknown>

/** Sends a protocol frame and resolves with the next message, parsed (the reply). */
export async function request(ws: WebSocket, frame: ProtocolFrame): Promise<ProtocolFrame> {
  const reply = nextMessage(ws)
  ws.send(JSON.stringify(frame))
  return JSON.parse((await reply) as string) as ProtocolFrame
}

/** Resolves true if a message arrives within `ms`, false otherwise. */
export function anyMessageWithin(ws: WebSocket, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      ws.off('message', on)
      resolve(false)
    }, ms)
    const on = (): void => {
      clearTimeout(t)
      resolve(true)
    }
    ws.once('message', on)
  })
}

/** The HTTP status a `ws` client sees when its upgrade is refused. */
export function refusedStatus(url: string, options: WebSocket.ClientOptions = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, options)
    ws.on('open', () => reject(new Error('unexpectedly upgraded')))
    ws.on('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0)
      ws.terminate()
    })
    ws.on('error', () => {})
  })
}

/** Collects every message a client receives. */
export function collect(ws: WebSocket): Array<string | Buffer> {
  const got: Array<string | Buffer> = []
  ws.on('message', (m, isBinary) => got.push(isBinary ? (m as Buffer) : String(m)))
  return got
}
