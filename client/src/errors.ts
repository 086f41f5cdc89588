/** What went wrong, as a value a caller can branch on (the server package uses the same `ERR_*` style). */
export type ClientErrorCode =
  /** The connection could not be opened or dropped while opening. */
  | 'ERR_CONNECTION_FAILED'
  /** No `pong` arrived within `pongTimeout`; the connection is closed and reopened. */
  | 'ERR_PONG_TIMEOUT'
  /** The server refused the upgrade (401/403) or closed with an auth close code. */
  | 'ERR_AUTH_FAILED'
  /** The server answered `room_join_error` (see `reason`: full, denied, not_found, invalid). */
  | 'ERR_ROOM_JOIN_FAILED'
  /** No answer within `requestTimeout`. */
  | 'ERR_TIMEOUT'
  /** `sendToRoom` to a room the client has not joined. */
  | 'ERR_NOT_JOINED'
  /** The server answered `{type:"error"}`. */
  | 'ERR_SERVER_ERROR'
  /** `disconnect()` was called, or the client gave up, while the operation waited. */
  | 'ERR_DISCONNECTED'
  /** `maxReconnectAttempts` reconnects failed. */
  | 'ERR_MAX_RECONNECT_ATTEMPTS'

/** Codes of the `TypeError`/`RangeError` thrown at once for a bad argument or option. */
export type ArgumentErrorCode =
  /** An option of the constructor is missing or wrong (no WebSocket implementation). */
  | 'ERR_INVALID_OPTION'
  /** A method argument has a wrong type or value. */
  | 'ERR_INVALID_ARG'
  /** A room id that is not a non-empty string. */
  | 'ERR_INVALID_ROOM_ID'

/** Gives a `TypeError`/`RangeError` its `code`. */
export function withCode<E extends Error>(error: E, code: ArgumentErrorCode): E & { readonly code: ArgumentErrorCode } {
  return Object.assign(error, { code })
}

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
