// Loads the native engine: a local build during development, else the prebuilt platform package.
// The shape below mirrors the napi-generated `native-build/native.d.ts`, plus `sendText` and
// `sendBinary`, which the engine registers by hand (native/fast.rs) and so are not in that file;
// the tests exercise every member, so a drift shows up as a failing test rather than a silent
// mismatch.

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
  autoCreateRooms?: boolean
  allowedOrigins?: string[]
  maxConnections?: number
  maxConnectionsPerIp?: number
  protocols?: string[]
  reusePort?: boolean
  maxInboundQueue?: number
  clusterRedis?: string
  clusterPrefix?: string
  clusterRedisNodes?: string[]
  clusterSharded?: boolean
  clusterChannels?: string
  clusterUnsubscribeLinger?: number
  presenceFields?: string[]
}

/** Counts over every node of a cluster. */
export interface NativeClusterStats {
  nodes: number
  totalConnections: number
  connectionsByRoom: Record<string, number>
}

/** The limits in force. */
export interface NativeLimits {
  maxPayload: number
  maxBackpressure: number
  backpressurePolicy: string
  idleTimeout: number
  pingInterval: number
  handshakeTimeout: number
  closeTimeout: number
  maxHeaderBytes: number
  maxHeaders: number
  maxConnections?: number | null
  maxConnectionsPerIp?: number | null
  maxInboundQueue: number
}

/** A room as `createRoom` describes it. */
export interface NativeRoomSpec {
  id: string
  name: string
  description?: string
  maxConnections?: number
  /** JSON text */
  metadata?: string
  presenceEvents?: boolean
}

/** A member connection as presence shows it. */
export interface NativePresenceEntry {
  clientId: string
  /** JSON object text */
  fields: string
}

/** A room as the engine reports it. */
export interface NativeRoomInfo {
  id: string
  name: string
  description?: string
  maxConnections?: number
  connectionsCount: number
  /** JSON text */
  metadata: string
  createdAt: number
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
  totalRooms: number
  peakQueuedBytes: number
  clusterReceived: number
  clusterDropped: number
  clusterConnected: boolean
  clusterInboundMessages: number
  clusterInboundBytes: number
  clusterRoomChannels: number
}

/** The native server object. */
export interface NativeServer {
  addRoute(path: string, hooks: number): void
  listen(wake: (queued: number) => void): Promise<number>
  /** This server's handle for the per-message functions of `NativeBinding`. */
  readonly handle: number
  closeConnection(conn: number, code: number, reason: string): boolean
  bufferedAmount(conn: number): number
  shutdown(timeoutMs: number): Promise<void>
  dispose(): void
  stats(): NativeStats
  roomCounts(): Record<string, number>
  createRoom(spec: NativeRoomSpec): boolean
  getRoom(id: string): NativeRoomInfo | null
  getAllRooms(): NativeRoomInfo[]
  deleteRoom(id: string): boolean
  joinRoom(conn: number, id: string): string
  leaveRoom(conn: number, id?: string | null): number
  roomsOf(conn: number): string[]
  roomMembers(id: string): number[]
  sendToRoom(conn: number, room: string, messageJson: string): number
  broadcastText(text: string, room?: string | null, except?: string[] | null): number
  broadcastBinary(data: Uint8Array, room?: string | null, except?: string[] | null): number
  sendManyText(ids: number[], text: string): number
  sendManyBinary(ids: number[], data: Uint8Array): number
  setMetadata(conn: number, key: string, json?: string | null): boolean
  getMetadata(conn: number, key: string): string | null
  resolveJoin(request: number, allowed: boolean): void
  forget(conn: number): void
  resolveUpgrade(request: number, accept: boolean, status: number, message: string, clientId?: string | null, protocol?: string | null): void
  heartbeat(conn: number): number[]
  limits(): NativeLimits
  clusterStats(): Promise<NativeClusterStats>
  presence(room: string): NativePresenceEntry[]
  clusterPresence(room: string): Promise<NativePresenceEntry[]>
}

/** What the addon exports. */
export interface NativeBinding {
  NativeServer: new (options?: NativeOptions) => NativeServer
  // Per-message calls are plain functions taking the server's handle: cheaper than methods.
  /** Takes queued events; sends made until the next call (or `uncork`) are corked. */
  pollEvents(handle: number): NativeBatch
  /** Writes every send corked since the last `pollEvents`. */
  uncork(): void
  /** 0 sent, 1 buffered (over half of maxBackpressure), 2 dropped (also for a wrong argument). */
  sendText(handle: number, conn: number, data: string): number
  sendBinary(handle: number, conn: number, data: Uint8Array): number
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
