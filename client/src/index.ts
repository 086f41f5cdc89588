// @rnode/websocket-client: browser and Node client for @rnode/ws.
export { RNodeWebSocketClient } from './client'
export { createWebSocketClient } from './callbacks'
export { Room } from './room'
export { Emitter } from './emitter'
export { RNodeClientError } from './errors'
export { backoffDelay } from './backoff'
export type { CallbackClientOptions, WebSocketEvent } from './callbacks'
export type { ArgumentErrorCode, ClientErrorCode } from './errors'
export type { RoomEvents } from './room'
export type { BackoffOptions } from './backoff'
export type {
  AuthToken,
  ClientEvents,
  ClientOptions,
  ConnectionStatus,
  IncomingMessage,
  OutgoingMessage,
  PresenceMember,
  RoomMessage,
  WebSocketConstructor,
  WebSocketLike,
} from './types'
