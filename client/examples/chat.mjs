// A chat example: a client joins `general-chat` and talks to a second client.
// Runs on its own: `node client/examples/chat.mjs` (starts a server on a free port, then exits).
import WebSocket from 'ws'
import { WsServer } from '../../dist/index.js'
import { RNodeWebSocketClient } from '../dist/index.mjs'

const server = new WsServer({ port: 0, host: '127.0.0.1' })
server.websocket('/ws', { onJoinRoom: (socket, roomId) => console.log(`server: ${socket.clientId} joins ${roomId}`) })
const { port } = await server.listen()
const url = `ws://127.0.0.1:${port}/ws`

const client = new RNodeWebSocketClient(url, 'chat_user_123', { autoReconnect: true, pingInterval: 30000, WebSocket })
const friend = new RNodeWebSocketClient(url, 'chat_friend', { WebSocket })

client.on('connected', () => console.log(`Connected to WebSocket server with clientId: ${client.getClientId()}`))
client.on('roomJoined', (roomId) => console.log(`Client ${client.getClientId()} joined room: ${roomId}`))
client.on('roomMessage', (roomId, message, fromClientId) => console.log(`[${roomId}] ${fromClientId}: ${message}`))
const replied = new Promise((resolve) => client.once('roomMessage', resolve))
friend.on('roomMessage', (roomId, message) => friend.sendToRoom(roomId, `got "${message}"`))

await Promise.all([client.connect(), friend.connect()])
await friend.joinRoom('general-chat')
await client.joinRoom('general-chat')
await client.sendToRoom('general-chat', 'Hello, everyone!')
await replied

client.disconnect()
friend.disconnect()
await server.close()
