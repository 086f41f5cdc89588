// Raw HTTP over TCP: upgrade requests no client library would send, and their answers.
import net from 'node:net'

/** Sends raw bytes over TCP and resolves with everything received until the peer closes. */
export function rawExchange(port: number, data: string | Buffer, timeoutMs = 5000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    const sock = net.connect(port, '127.0.0.1', () => sock.write(data))
    const timer = setTimeout(() => {
      sock.destroy()
      resolve(Buffer.concat(chunks))
    }, timeoutMs)
    sock.on('data', (c) => chunks.push(c))
    sock.on('error', (e) => {
      clearTimeout(timer)
      if (chunks.length) resolve(Buffer.concat(chunks))
      else reject(e)
    })
    sock.on('close', () => {
      clearTimeout(timer)
      resolve(Buffer.concat(chunks))
    })
  })
}

/** The HTTP status code at the start of a raw response. */
export function statusOf(response: Buffer): number {
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(response.toString('latin1'))
  return m ? Number(m[1]) : 0
}

/** A valid upgrade request for `path` with optional header overrides (null removes a header). */
export function upgradeRequest(path: string, overrides: Record<string, string | null> = {}, requestLine?: string): string {
  const headers: Record<string, string | null> = {
    Host: '127.0.0.1',
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
    'Sec-WebSocket-Version': '13',
    ...overrides,
  }
  const lines = [requestLine ?? `GET ${path} HTTP/1.1`]
  for (const [k, v] of Object.entries(headers)) if (v !== null) lines.push(`${k}: ${v}`)
  return lines.join('\r\n') + '\r\n\r\n'
}
