// ws's `perMessageDeflate` server option mapped onto the engine's: what means the same is passed on,
// zlib tuning with no effect on what is sent is accepted, and the rest throws ERR_UNSUPPORTED_OPTION.
import type { PerMessageDeflateOptions } from '../types'
import { unsupported } from './unsupported'

/** ws's `perMessageDeflate` object (ws 8's `PerMessageDeflateOptions`). */
export interface WsPerMessageDeflateOptions {
  serverNoContextTakeover?: boolean
  clientNoContextTakeover?: boolean
  /** 8-15; `true` is the default (15). `false` (decline offers naming it) is not supported. */
  serverMaxWindowBits?: number | boolean
  /** 8-15; `true` and `false` are the default (the client's window, 15 at most). */
  clientMaxWindowBits?: number | boolean
  /** `memLevel` and `level` are passed on (`level: -1` is zlib's default, 6); `chunkSize` is accepted and has no effect. */
  zlibDeflateOptions?: Record<string, unknown>
  /** Only `chunkSize`, which has no effect. */
  zlibInflateOptions?: Record<string, unknown>
  threshold?: number
  /** Accepted, no effect: the engine has no zlib call queue to bound. */
  concurrencyLimit?: number
}

/** zlib's Z_DEFAULT_COMPRESSION, which is level 6. */
const Z_DEFAULT_COMPRESSION = -1
const TOP = new Set(['serverNoContextTakeover', 'clientNoContextTakeover', 'serverMaxWindowBits', 'clientMaxWindowBits', 'zlibDeflateOptions', 'zlibInflateOptions', 'threshold', 'concurrencyLimit'])
/** zlib buffer sizes: they change how zlib is called, not the bytes sent. */
const NO_EFFECT = new Set(['chunkSize'])

function checkZlib(name: string, given: unknown, allowed: ReadonlySet<string>): Record<string, unknown> {
  if (given === undefined) return {}
  if (typeof given !== 'object' || given === null) throw unsupported(`perMessageDeflate.${name}: ${String(given)}`, 'it must be an object')
  for (const key of Object.keys(given)) {
    if (!allowed.has(key) && !NO_EFFECT.has(key)) {
      throw unsupported(`perMessageDeflate.${name}.${key}`, 'the engine sets this zlib option itself')
    }
  }
  return given as Record<string, unknown>
}

/**
 * The engine's `perMessageDeflate` for ws's: `false` (ws's default) stays off. Bad values the
 * engine knows (a window of 16, a memLevel of 0) throw its own ERR_INVALID_OPTION when the
 * server is made.
 */
export function fromWsDeflate(value: unknown): boolean | PerMessageDeflateOptions {
  if (value === undefined || value === false) return false
  if (value === true) return true
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw unsupported(`perMessageDeflate: ${String(value)}`, 'it must be a boolean or an options object')
  }
  const ws = value as Record<string, unknown>
  for (const key of Object.keys(ws)) {
    if (!TOP.has(key)) throw unsupported(`perMessageDeflate.${key}`, 'ws has no such option')
  }
  const out: PerMessageDeflateOptions = {}
  if (ws.threshold !== undefined) out.threshold = ws.threshold as number
  if (ws.serverNoContextTakeover !== undefined) out.serverNoContextTakeover = ws.serverNoContextTakeover as boolean
  if (ws.clientNoContextTakeover !== undefined) out.clientNoContextTakeover = ws.clientNoContextTakeover as boolean
  const serverBits = ws.serverMaxWindowBits
  if (serverBits === false) {
    throw unsupported('perMessageDeflate.serverMaxWindowBits: false', 'the engine accepts an offer naming server_max_window_bits')
  }
  if (serverBits !== undefined && serverBits !== true) out.serverMaxWindowBits = serverBits as number
  const clientBits = ws.clientMaxWindowBits
  if (clientBits !== undefined && typeof clientBits !== 'boolean') out.clientMaxWindowBits = clientBits as number
  const deflate = checkZlib('zlibDeflateOptions', ws.zlibDeflateOptions, new Set(['memLevel', 'level']))
  if (deflate.level !== undefined) out.level = deflate.level === Z_DEFAULT_COMPRESSION ? 6 : (deflate.level as number)
  if (deflate.memLevel !== undefined) out.memLevel = deflate.memLevel as number
  checkZlib('zlibInflateOptions', ws.zlibInflateOptions, new Set())
  return out
}
