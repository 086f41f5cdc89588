// `ws` 8.x on Node: the baseline most Node users run. Paths: /echo, /sub (join the room), /pub.
// With --compat, the same code on @rnode/ws/compat: the migration is this one import.
import { servePaths } from './ws-paths.mjs'

const { WebSocketServer } = await import(process.argv.includes('--compat') ? '../../dist/compat/index.js' : 'ws')

// BENCH_DEFLATE (any value): permessage-deflate with its defaults.
const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: Boolean(process.env.BENCH_DEFLATE), maxPayload: 16 * 1024 * 1024 })
servePaths(wss)
wss.on('listening', () => console.log(`LISTENING ${wss.address().port}`))
