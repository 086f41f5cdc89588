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

/** Collects the next `n` messages. */
export function messages(ws: WebSocket, n: number, timeoutMs = 5000): Promise<Array<string | Buffer>> {
  return new Promise((resolve, reject) => {
    const out: Array<string | Buffer> = []
    const timer = setTimeout(() => reject(new Error(`timed out: got ${out.length} of ${n} messages`)), timeoutMs)
    const onMessage = (data: WebSocket.RawData, isBinary: boolean): void => {
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
