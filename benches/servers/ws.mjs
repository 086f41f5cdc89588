// `ws` 8.x on Node: the baseline most Node users run. Paths: /echo, /sub (join the room), /pub.
// With --compat, the same code on @rnode/ws/compat: the migration is this one import.
import { servePaths } from './ws-paths.mjs'

const { WebSocketServer } = await import(process.argv.includes('--compat') ? '../../dist/compat/index.js' : 'ws')

const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, maxPayload: 16 * 1024 * 1024 })
servePaths(wss)
wss.on('listening', () => console.log(`LISTENING ${wss.address().port}`))
