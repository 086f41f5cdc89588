// Loads the native engine: a local build during development, else the prebuilt platform package.
// The shape below mirrors the napi-generated `native-build/native.d.ts`; the tests exercise
// every member, so a drift shows up as a failing test rather than a silent mismatch.

/** Options understood by the engine (already validated by the facade). */
export interface NativeOptions {
  port?: number
  host?: string
  maxPayload?: number
  maxBackpressure?: number
  idleTimeout?: number
  pingInterval?: number
  handshakeTimeout?: number
  closeTimeout?: number
  backpressurePolicy?: string
}

/** One drained batch: STRIDE u32 per event, one string with every text piece, one buffer. */
export interface NativeBatch {
  header: Uint32Array
  text: string
  binary?: Buffer
}

/** Engine counters. */
export interface NativeStats {
  totalConnections: number
  messagesIn: number
  messagesOut: number
  bytesIn: number
  bytesOut: number
  droppedMessages: number
  wakeups: number
  batches: number
  events: number
}

/** The native server object. */
export interface NativeServer {
  addRoute(path: string): void
  listen(wake: (queued: number) => void): Promise<number>
  pollEvents(): NativeBatch
  sendText(conn: number, data: string): number
  sendBinary(conn: number, data: Uint8Array): number
  closeConnection(conn: number, code: number, reason: string): boolean
  bufferedAmount(conn: number): number
  shutdown(timeoutMs: number): Promise<void>
  dispose(): void
  stats(): NativeStats
}

/** What the addon exports. */
export interface NativeBinding {
  NativeServer: new (options?: NativeOptions) => NativeServer
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
  throw new Error(
    `@rnode/ws: no native engine for ${triple}. Install the package @rnode/ws-${triple} ` +
      `(npm installs it as an optional dependency), or build from source with \`npm run build:native\`.\n` +
      errors.join('\n'),
  )
}

export const native: NativeBinding = load()
