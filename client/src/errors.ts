/** What went wrong, as a value a caller can branch on. */
export type ClientErrorCode =
  /** The connection could not be opened or dropped while opening. */
  | 'CONNECTION_FAILED'
  /** No `pong` arrived within `pongTimeout`; the connection is closed and reopened. */
  | 'PONG_TIMEOUT'
  /** The server refused the upgrade (401/403) or closed with an auth close code. */
  | 'AUTH_FAILED'
  /** The server answered `room_join_error` (see `reason`: full, denied, not_found, invalid). */
  | 'ROOM_JOIN_FAILED'
  /** No answer within `requestTimeout`. */
  | 'TIMEOUT'
  /** `sendToRoom` to a room the client has not joined. */
  | 'NOT_JOINED'
  /** The server answered `{type:"error"}`. */
  | 'SERVER_ERROR'
  /** `disconnect()` was called, or the client gave up, while the operation waited. */
  | 'DISCONNECTED'
  /** `maxReconnectAttempts` reconnects failed. */
  | 'MAX_RECONNECT_ATTEMPTS'

/** Error raised or emitted by the client. */
export class RNodeClientError extends Error {
  /** Machine-readable cause. */
  readonly code: ClientErrorCode
  /** The room concerned, if any. */
  readonly roomId?: string
  /** The server's reason (`room_join_error.error`, `error.error`), if any. */
  readonly reason?: string
  /** The HTTP status of a refused upgrade, when the WebSocket implementation exposes it. */
  readonly status?: number
  /** The close code that ended the connection, if any. */
  readonly closeCode?: number

  constructor(
    code: ClientErrorCode,
    message: string,
    details: { roomId?: string; reason?: string; status?: number; closeCode?: number } = {},
  ) {
    super(message)
    this.name = 'RNodeClientError'
    this.code = code
    this.roomId = details.roomId
    this.reason = details.reason
    this.status = details.status
    this.closeCode = details.closeCode
  }
}
