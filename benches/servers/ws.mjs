// `ws` 8.x on Node: the baseline most Node users run. Paths: /echo, /sub (join the room), /pub.
import { WebSocketServer } from 'ws'
import { servePaths } from './ws-paths.mjs'

const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, maxPayload: 16 * 1024 * 1024 })
servePaths(wss)
wss.on('listening', () => console.log(`LISTENING ${wss.address().port}`))
