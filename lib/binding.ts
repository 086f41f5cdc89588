// Loads the native engine: a local build during development, else the prebuilt platform package.
// Its types are `native.d.ts`, which `npm run build:native` generates from the Rust `#[napi]`
// items (commit it when it changes; binding.test.ts fails on a stale one). Only `sendText` and
// `sendBinary` are declared here: the engine registers them by hand (native/handles.rs), so napi
// does not know them. The enums' values are read from the addon at runtime; tsc compiles their
// uses in the facade to the same numbers, from the declarations.

import { codedError } from './errors'
import type * as generated from './native'

/** Event kinds in a batch header (native/events.rs). */
export type EventKind = generated.EventKind
/** What `joinRoom` reports (native/rooms.rs). */
export type JoinResult = generated.JoinResult
/** Bits telling the engine which handlers a path has (native/engine.rs). */
export type Hook = generated.Hook
/** Options understood by the engine (already validated by the facade). */
export type NativeOptions = generated.NativeOptions
/** `perMessageDeflate` as the engine takes it (native/config.rs). */
export type NativeDeflateOptions = generated.NativeDeflateOptions
/** A room as the engine reports it. */
export type NativeRoomInfo = generated.RoomInfo
/** The `tls` option as the engine takes it (PEM text). */
export type NativeTls = generated.NativeTls
/** A certificate chain and key as the engine takes them (PEM text). */
export type NativeCertKey = generated.NativeCertKey
/** The native server object. */
export type NativeServer = generated.NativeServer
/** `rateLimit`, validated by the facade. */
export type NativeRateLimit = generated.RateLimitOptions
/** A member connection as presence shows it. */
export type NativePresenceEntry = generated.PresenceEntry
/** A history page as the engine returns it. */
export type NativeHistoryPage = generated.HistoryPage

/** What the addon exports. */
export interface NativeBinding {
  NativeServer: typeof generated.NativeServer
  EventKind: typeof generated.EventKind
  JoinResult: typeof generated.JoinResult
  Hook: typeof generated.Hook
  // Per-message calls are plain functions taking the server's handle: cheaper than methods.
  pollEvents: typeof generated.pollEvents
  uncork: typeof generated.uncork
  /** 0 sent, 1 buffered (over half of maxBackpressure), 2 dropped (also for a wrong argument). */
  sendText(handle: number, conn: number, data: string): number
  sendBinary(handle: number, conn: number, data: Uint8Array): number
  /** The first `trustProxy` entry that is not an address or CIDR range, or null. */
  checkTrustProxy(entries: string[]): string | null
  /** A text frame from UTF-8 bytes (invalid sequences are sent as U+FFFD). */
  sendTextBytes(handle: number, conn: number, data: Uint8Array): number
}

function platformTriple(): string {
  const { platform, arch } = process
  if (platform === 'linux') {
    const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined
    const libc = report?.header?.glibcVersionRuntime ? 'gnu' : 'musl'
    return `linux-${arch}-${libc}`
  }
  if (platform === 'win32') return `win32-${arch}-msvc`
  return `${platform}-${arch}`
}

function load(): NativeBinding {
  const triple = platformTriple()
  const errors: string[] = []
  const candidates = [`../native-build/rnode-ws.${triple}.node`, `@rnode/ws-${triple}`]
  for (const candidate of candidates) {
    try {
      return require(candidate) as NativeBinding
    } catch (err) {
      errors.push(`  ${candidate}: ${(err as Error).message.split('\n')[0]}`)
    }
  }
  throw codedError(
    'ERR_NATIVE_ENGINE_MISSING',
    `@rnode/ws: no native engine for ${triple}. Install the package @rnode/ws-${triple} ` +
      `(npm installs it as an optional dependency), or build from source with \`npm run build:native\`.\n` +
      errors.join('\n'),
  )
}

export const native: NativeBinding = load()
export const { EventKind, JoinResult, Hook } = native
