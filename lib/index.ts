// @rnode/ws: a WebSocket server for Node.js whose engine is Rust.
export { WsServer } from './server'
export { Socket } from './socket'
export { isSendableCloseCode, MAX_CLOSE_REASON_BYTES } from './close-codes'
export type { CodedError, ErrorCode } from './errors'
export type { PeerCertificate, Pem, SecureContextOptions, TlsOptions } from './tls'
export type {
  CloseOptions,
  BroadcastOptions,
  ClusterOptions,
  ClusterStats,
  RateLimitOptions,
  RouteOptions,
  HandlerResult,
  JsonValue,
  Limits,
  PerMessageDeflateOptions,
  PresenceMember,
  PresenceOptions,
  PresenceStats,
  RoomInfo,
  RoomOptions,
  ScopeOptions,
  UpgradeRequest,
  UpgradeResult,
  SendStatus,
  ServerOptions,
  ServerStats,
  WebSocketHandlers,
} from './types'
