import { RNodeWebSocketClient } from './client'
import type { RNodeClientError } from './errors'
import type { ClientOptions, IncomingMessage } from './types'

/** A message as the callback style's `onMessage` sees it: direct or from a room. */
export interface WebSocketEvent {
  type: 'message' | 'room_message'
  data: IncomingMessage
  /** Set for room messages. */
  roomId?: string
  /** Set for room messages: the sender's clientId. */
  fromClientId?: string
  timestamp: number
}

/** Options of `createWebSocketClient()`: the client options plus the URL, id and callbacks. */
export interface CallbackClientOptions extends ClientOptions {
  url: string
  clientId?: string
  onConnect?: () => void
  onDisconnect?: (code: number, reason: string) => void
  onMessage?: (event: WebSocketEvent) => void
  onJoinRoom?: (roomId: string) => void
  onLeaveRoom?: (roomId: string) => void
  onRoomJoinError?: (roomId: string, error: RNodeClientError) => void
  onReconnecting?: (attempt: number, delay: number) => void
  onMaxReconnectAttemptsReached?: (attempts: number) => void
  onAuthSuccess?: () => void
  onAuthError?: (error: RNodeClientError) => void
  onError?: (error: RNodeClientError) => void
}

/** The callback style: `createWebSocketClient({ url, clientId, onConnect, onMessage, ... })`. */
export function createWebSocketClient(options: CallbackClientOptions): RNodeWebSocketClient {
  const { url, clientId, ...rest } = options
  const c = new RNodeWebSocketClient(url, clientId, rest)
  const o = options
  if (o.onConnect) c.on('connected', o.onConnect)
  if (o.onDisconnect) c.on('disconnected', o.onDisconnect)
  if (o.onJoinRoom) c.on('roomJoined', o.onJoinRoom)
  if (o.onLeaveRoom) c.on('roomLeft', o.onLeaveRoom)
  if (o.onRoomJoinError) c.on('roomJoinError', o.onRoomJoinError)
  if (o.onReconnecting) c.on('reconnecting', o.onReconnecting)
  if (o.onMaxReconnectAttemptsReached) c.on('maxReconnectAttemptsReached', o.onMaxReconnectAttemptsReached)
  if (o.onAuthSuccess) c.on('authSuccess', o.onAuthSuccess)
  if (o.onAuthError) c.on('authError', o.onAuthError)
  if (o.onError) c.on('error', o.onError)
  const onMessage = o.onMessage
  if (onMessage) {
    c.on('message', (data) => onMessage({ type: 'message', data, timestamp: Date.now() }))
    c.on('roomMessage', (roomId, data, fromClientId) =>
      onMessage({ type: 'room_message', data, roomId, fromClientId, timestamp: Date.now() }),
    )
  }
  return c
}
