// ws's checks of an upgrade request handed to handleUpgrade() (server and noServer modes), with
// ws's answers, so an application sees the statuses, bodies and 'wsClientError' events it knows.
// The engine checks the request again when it is handed over.
import { STATUS_CODES, type IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { invalidExtensions } from './extensions'

/** Why a request is refused: status, body and extra headers, as ws answers it. */
export interface Refusal {
  status: number
  message?: string
  headers?: Record<string, string>
  /** ws hands it to 'wsClientError' listeners when there are any (all but the path check). */
  emit: boolean
}

const KEY = /^[+/0-9A-Za-z]{22}==$/
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/

/** ws refuses a Sec-WebSocket-Protocol header that is not a list of distinct tokens (the engine skips bad items). */
function validProtocols(header: string): boolean {
  const seen = new Set<string>()
  for (const item of header.split(',')) {
    const p = item.trim()
    if (!TOKEN.test(p) || seen.has(p)) return false
    seen.add(p)
  }
  return true
}

/**
 * The first of ws's checks that `req` fails (in ws's order), or undefined; `handled`:
 * shouldHandle's verdict; `deflate`: permessage-deflate is on.
 */
export function checkUpgrade(req: IncomingMessage, handled: boolean, deflate: boolean): Refusal | undefined {
  if (req.method !== 'GET') return { status: 405, message: 'Invalid HTTP method', emit: true }
  const upgrade = req.headers.upgrade
  if (upgrade === undefined || upgrade.toLowerCase() !== 'websocket') return { status: 400, message: 'Invalid Upgrade header', emit: true }
  const key = req.headers['sec-websocket-key']
  if (key === undefined || !KEY.test(key)) return { status: 400, message: 'Missing or invalid Sec-WebSocket-Key header', emit: true }
  const version = Number(req.headers['sec-websocket-version'])
  if (version !== 13 && version !== 8) {
    const headers = { 'Sec-WebSocket-Version': '13, 8' }
    return { status: 400, message: 'Missing or invalid Sec-WebSocket-Version header', headers, emit: true }
  }
  if (!handled) return { status: 400, emit: false }
  const protocols = req.headers['sec-websocket-protocol']
  if (protocols !== undefined && !validProtocols(protocols)) return { status: 400, message: 'Invalid Sec-WebSocket-Protocol header', emit: true }
  const extensions = req.headers['sec-websocket-extensions']
  if (deflate && extensions !== undefined && invalidExtensions(extensions)) {
    return { status: 400, message: 'Invalid or unacceptable Sec-WebSocket-Extensions header', emit: true }
  }
  return undefined
}

/** Writes an HTTP error response and closes the socket. */
export function abortHandshake(socket: Duplex, status: number, message?: string, headers: Record<string, string> = {}): void {
  const body = message ?? STATUS_CODES[status] ?? ''
  const all: Record<string, string | number> = { Connection: 'close', 'Content-Type': 'text/html', 'Content-Length': Buffer.byteLength(body), ...headers }
  socket.once('finish', () => socket.destroy())
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\n` +
      Object.entries(all)
        .map(([name, value]) => `${name}: ${value}`)
        .join('\r\n') +
      '\r\n\r\n' +
      body,
  )
}
