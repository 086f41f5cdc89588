// Close codes and reasons an application may send (RFC 6455 §7.4, IANA registry).
import { codedRangeError, codedTypeError } from './errors'

/** Longest close reason in UTF-8 bytes: 125-byte control payload minus the 2-byte code. */
export const MAX_CLOSE_REASON_BYTES = 123

/** Whether `code` may be sent in a close frame by an application. */
export function isSendableCloseCode(code: number): boolean {
  if (!Number.isInteger(code)) return false
  if (code >= 3000 && code <= 4999) return true
  return code === 1000 || code === 1001 || code === 1002 || code === 1003 || (code >= 1007 && code <= 1014)
}

/**
 * Throws `TypeError`/`RangeError` with `ERR_INVALID_CLOSE_CODE` or `ERR_INVALID_CLOSE_REASON`
 * for a code or reason that must not go on the wire.
 */
export function checkClose(code: unknown, reason: unknown): void {
  if (typeof code !== 'number') {
    throw codedTypeError('ERR_INVALID_CLOSE_CODE', `close code must be a number, got ${typeof code}`)
  }
  if (!isSendableCloseCode(code)) {
    throw codedRangeError('ERR_INVALID_CLOSE_CODE', `invalid close code ${code}: use 1000-1003, 1007-1014 or 3000-4999`)
  }
  if (typeof reason !== 'string') {
    throw codedTypeError('ERR_INVALID_CLOSE_REASON', `close reason must be a string, got ${typeof reason}`)
  }
  const bytes = Buffer.byteLength(reason)
  if (bytes > MAX_CLOSE_REASON_BYTES) {
    throw codedRangeError('ERR_INVALID_CLOSE_REASON', `close reason is ${bytes} bytes; the limit is ${MAX_CLOSE_REASON_BYTES}`)
  }
}
