// `ws` 8.x on Node: the baseline most Node users run. Paths: /echo, /sub (join the room), /pub.
// With --compat, the same code on @rnode/ws/compat: the migration is this one import.
const { WebSocketServer } = await import(process.argv.includes('--compat') ? '../../dist/compat/index.js' : 'ws')

const room = new Set()
const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, maxPayload: 16 * 1024 * 1024 })

wss.on('connection', (ws, req) => {
  if (req.url === '/sub') {
    room.add(ws)
    ws.on('close', () => room.delete(ws))
    ws.send('ok')
  } else if (req.url === '/pub') {
    ws.on('message', (data, isBinary) => {
      for (const member of room) member.send(data, { binary: isBinary })
    })
  } else {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }))
  }
})
wss.on('listening', () => console.log(`LISTENING ${wss.address().port}`))
