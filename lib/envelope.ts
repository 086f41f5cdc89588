// The cluster envelope, as native/cluster/envelope.rs reads it: the emitter writes the same
// bytes a node publishes.

import { codedRangeError, codedTypeError } from './errors'

/** Layout version (native `ENVELOPE_VERSION`). */
export const ENVELOPE_VERSION = 3

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

export interface EnvelopeFields {
  /** 16 bytes naming the sender; a node ignores envelopes with its own. */
  origin: Uint8Array
  /** When it was sent, milliseconds since the Unix epoch (nodes time the pub/sub lag from it). */
  sentAt: number
  payload: string | Uint8Array
  room?: string | undefined
  /** Socket ids (UUID strings) to skip. */
  except: readonly string[]
}

/**
 * Version (1 byte), origin (16), send time (u64 BE, microseconds since the Unix epoch), binary
 * flag, has-room flag, room length (u16 BE) + room,
 * except count (u32 BE) + 16 bytes each, payload (the rest).
 */
export function encodeEnvelope(e: EnvelopeFields): Buffer {
  const binary = typeof e.payload !== 'string'
  const payload = typeof e.payload === 'string' ? Buffer.from(e.payload, 'utf8') : Buffer.from(e.payload.buffer, e.payload.byteOffset, e.payload.byteLength)
  const room = Buffer.from(e.room ?? '', 'utf8')
  if (room.length > 0xffff) throw codedRangeError('ERR_CLUSTER_ROOM_TOO_LONG', 'room id longer than 65535 bytes')
  const out = Buffer.allocUnsafe(1 + 16 + 8 + 1 + 1 + 2 + room.length + 4 + e.except.length * 16 + payload.length)
  let at = out.writeUInt8(ENVELOPE_VERSION, 0)
  at += Buffer.from(e.origin.buffer, e.origin.byteOffset, 16).copy(out, at)
  at = out.writeBigUInt64BE(BigInt(Math.max(0, Math.floor(e.sentAt))) * 1000n, at)
  at = out.writeUInt8(binary ? 1 : 0, at)
  at = out.writeUInt8(e.room === undefined ? 0 : 1, at)
  at = out.writeUInt16BE(room.length, at)
  at += room.copy(out, at)
  at = out.writeUInt32BE(e.except.length, at)
  for (const id of e.except) {
    if (!UUID.test(id)) throw codedTypeError('ERR_INVALID_ARG', `except items must be socket ids (UUIDs), got ${JSON.stringify(id)}`)
    at += Buffer.from(id.replace(/-/g, ''), 'hex').copy(out, at)
  }
  payload.copy(out, at)
  return out
}
