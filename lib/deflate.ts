import { codedRangeError, codedTypeError } from './errors'
import type { NativeDeflateOptions } from './binding'
import type { PerMessageDeflateOptions } from './types'

const MAX_U32 = 0xffffffff
const BOOLEANS = ['serverNoContextTakeover', 'clientNoContextTakeover'] as const
const RANGES = [
  ['threshold', 0, MAX_U32],
  ['serverMaxWindowBits', 8, 15],
  ['clientMaxWindowBits', 8, 15],
  ['memLevel', 1, 9],
  ['level', 0, 9],
] as const
const KNOWN = new Set<string>([...BOOLEANS, ...RANGES.map(([name]) => name)])

/**
 * `perMessageDeflate` (a server's or a path's) as the engine takes it: `undefined` when it is
 * not given, `{ enabled: false }` for `false`, `{}` for `true`. Throws `ERR_INVALID_OPTION`
 * naming the bad field.
 */
export function toNativeDeflate(
  value: boolean | PerMessageDeflateOptions | undefined,
  name = 'perMessageDeflate',
): NativeDeflateOptions | undefined {
  if (value === undefined) return undefined
  if (value === true) return {}
  if (value === false) return { enabled: false }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw codedTypeError('ERR_INVALID_OPTION', `${name} must be a boolean or an options object`)
  }
  const given = value as Record<string, unknown>
  for (const key of Object.keys(given)) {
    if (!KNOWN.has(key)) throw codedTypeError('ERR_INVALID_OPTION', `${name}.${key} is not an option`)
  }
  const out: NativeDeflateOptions = {}
  for (const key of BOOLEANS) {
    const v = given[key]
    if (v === undefined) continue
    if (typeof v !== 'boolean') throw codedTypeError('ERR_INVALID_OPTION', `${name}.${key} must be a boolean`)
    out[key] = v
  }
  for (const [key, min, max] of RANGES) {
    const v = given[key]
    if (v === undefined) continue
    if (typeof v !== 'number' || !Number.isInteger(v)) {
      throw codedTypeError('ERR_INVALID_OPTION', `${name}.${key} must be an integer`)
    }
    if (v < min || v > max) {
      throw codedRangeError('ERR_INVALID_OPTION', `${name}.${key} must be between ${min} and ${max}, got ${v}`)
    }
    out[key] = v
  }
  return out
}
