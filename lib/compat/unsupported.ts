// Errors for the parts of ws's API the engine does not provide: thrown, never ignored.

/** Code of every error thrown for an option or argument the engine does not support. */
export const ERR_UNSUPPORTED_OPTION = 'ERR_UNSUPPORTED_OPTION'

/** An error with a code, as ws and our facade throw them. */
export type CodedError = Error & { code: string }

/** A `TypeError`/`Error` carrying `code`. */
export function codedError(code: string, message: string, type: ErrorConstructor = Error): CodedError {
  const err = new type(message) as CodedError
  err.code = code
  return err
}

/** Thrown for `what` (an option, or an argument of a method) the engine does not support. */
export function unsupported(what: string, why: string): CodedError {
  return codedError(ERR_UNSUPPORTED_OPTION, `@rnode/ws/compat: ${what} is not supported: ${why}`)
}
