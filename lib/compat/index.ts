// @rnode/ws/compat: ws 8's server API (WebSocketServer, WebSocket, createWebSocketStream) on our
// engine. See docs/migrating-from-ws.md for what differs.
import { createWebSocketStream } from './stream'
import { WebSocket } from './websocket'
import { WebSocketServer } from './websocket-server'

export { WebSocketServer, WebSocket, createWebSocketStream }
export { CloseEvent, ErrorEvent, MessageEvent, WsEvent as Event } from './event-target'
export { ERR_UNSUPPORTED_OPTION } from './unsupported'
export type { BinaryType, SendOptions, WsData } from './websocket'
export type { ResolvedOptions, ServerOptions, VerifyClient, VerifyClientInfo } from './websocket-server'
export type { WsPerMessageDeflateOptions } from './deflate'
/** ws's alias: `WebSocket.Server`-style code imports `Server`. */
export { WebSocketServer as Server }
