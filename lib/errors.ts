// The error vocabulary of @rnode/ws: every error the API throws, rejects with or hands to
// `onError` carries one of these codes as `.code`. docs/errors.md says where each arises and
// what to do about it. The engine's codes (native/error.rs) are the same strings.

/** What went wrong, as a value a caller can `switch` on (`err.code`). */
export type ErrorCode =
  /** An option of `new WsServer()` (or `close()`) has a wrong type or value. TypeError or RangeError. */
  | 'ERR_INVALID_OPTION'
  /** A method argument has a wrong type or value. TypeError. */
  | 'ERR_INVALID_ARG'
  /** A room id is not a string of 1-256 UTF-8 bytes. TypeError. */
  | 'ERR_INVALID_ROOM_ID'
  /** A close code an application may not send (not 1000-1003, 1007-1014, 3000-4999). RangeError. */
  | 'ERR_INVALID_CLOSE_CODE'
  /** A close reason that is not a string or longer than 123 UTF-8 bytes. RangeError. */
  | 'ERR_INVALID_CLOSE_REASON'
  /** `createRoom()` with the id of an existing room. */
  | 'ERR_ROOM_EXISTS'
  /** `listen()`: the port is taken (EADDRINUSE). */
  | 'ERR_ADDR_IN_USE'
  /** `listen()`: the host is not an address of this machine (EADDRNOTAVAIL). */
  | 'ERR_ADDR_NOT_AVAILABLE'
  /** `listen()`: binding failed for another reason (permissions, resources). */
  | 'ERR_LISTEN_FAILED'
  /** `listen()` a second time. */
  | 'ERR_ALREADY_LISTENING'
  /** A call that needs a listening server on one that is not listening (yet). */
  | 'ERR_NOT_LISTENING'
  /** `listen()` or `close()` on a server that is closing or closed. */
  | 'ERR_SERVER_CLOSED'
  /** Redis (the `cluster` option) could not be reached: refused, timed out, dropped. */
  | 'ERR_REDIS_UNREACHABLE'
  /** Redis answered with an error: authentication, ACL, a wrong key type. */
  | 'ERR_REDIS_REFUSED'
  /** `{ scope: 'cluster' }` on a server without the `cluster` option. */
  | 'ERR_NO_CLUSTER'
  /** A call on a socket whose connection is closed. */
  | 'ERR_SOCKET_CLOSED'
  /** `socket.sendToRoom()` to a room the socket is not in. */
  | 'ERR_NOT_IN_ROOM'
  /** A handler threw or its promise rejected; the cause is `error.cause`. Handed to `onError`. */
  | 'ERR_HANDLER_FAILED'
  /** `onUpgrade` or the protocol selector returned something it may not; the upgrade gets 500. */
  | 'ERR_INVALID_HANDLER_RESULT'
  /** No prebuilt engine for this platform and no local build. Thrown when the package loads. */
  | 'ERR_NATIVE_ENGINE_MISSING'
  /** `listen()` on a server in attach mode (`server` or `noServer`): the app's http server listens. */
  | 'ERR_ATTACHED'
  /** `handleUpgrade()` on a server that owns its port (made without `server` or `noServer`). */
  | 'ERR_NOT_ATTACHED'
  /** `handleUpgrade()` a second time with the same socket. */
  | 'ERR_UPGRADE_TAKEN'
  /** `handleUpgrade()` for a request Node already answered over HTTP. */
  | 'ERR_UPGRADE_ANSWERED'
  /** Attach mode could not take over the socket (descriptor duplication or the loopback hand-over). */
  | 'ERR_ATTACH_FAILED'
  /** A room id too long for the cluster envelope (65,535 bytes; room ids are 256 at most, so only a hand-built envelope). RangeError. */
  | 'ERR_CLUSTER_ROOM_TOO_LONG'
  /** An `except` list too long for the cluster envelope (2^32 - 1 ids). */
  | 'ERR_CLUSTER_EXCEPT_TOO_LONG'
  /** `emitter.broadcast()` after `emitter.close()`. */
  | 'ERR_EMITTER_CLOSED'
  /** A TLS certificate (`tls.cert`, `tls.ca`, `setSecureContext()`...) is not PEM X.509. TypeError. */
  | 'ERR_INVALID_CERT'
  /** A TLS private key is not PEM, not supported, or not the certificate's key. TypeError. */
  | 'ERR_INVALID_KEY'
  /** An encrypted TLS private key without `passphrase`, or with a wrong one. TypeError. */
  | 'ERR_BAD_PASSPHRASE'
  /** `setSecureContext()` / `addServerName()` / `removeServerName()` on a server without `tls`. */
  | 'ERR_NO_TLS'
  /** napi itself failed (the JS engine refused a value); not caused by the caller. */
  | 'ERR_INTERNAL'

/** An `Error` (or `TypeError`/`RangeError`) with its `code`. */
export type CodedError<E extends Error = Error> = E & { readonly code: ErrorCode }

function withCode<E extends Error>(error: E, code: ErrorCode): CodedError<E> {
  Object.defineProperty(error, 'code', { value: code, enumerable: true, configurable: true })
  return error as CodedError<E>
}

/** An `Error` carrying `code`; `cause` is the underlying error, if any. */
export function codedError(code: ErrorCode, message: string, cause?: unknown): CodedError {
  return withCode(cause === undefined ? new Error(message) : new Error(message, { cause }), code)
}

/** A `TypeError` (wrong type or malformed value) carrying `code`. */
export function codedTypeError(code: ErrorCode, message: string): CodedError<TypeError> {
  return withCode(new TypeError(message), code)
}

/** A `RangeError` (a number or size out of its range) carrying `code`. */
export function codedRangeError(code: ErrorCode, message: string): CodedError<RangeError> {
  return withCode(new RangeError(message), code)
}
