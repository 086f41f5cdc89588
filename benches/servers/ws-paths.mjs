// The benchmark paths on a `ws` server, however it was made: /echo, /sub (join the room), /pub,
// /room (join the room, nothing sent: the connection-storm scenarios).
export function servePaths(wss) {
  const room = new Set()
  wss.on('connection', (ws, req) => {
    if (req.url === '/sub') {
      room.add(ws)
      ws.on('close', () => room.delete(ws))
      ws.send('ok')
    } else if (req.url === '/room') {
      room.add(ws)
      ws.on('close', () => room.delete(ws))
    } else if (req.url === '/pub') {
      ws.on('message', (data, isBinary) => {
        for (const member of room) member.send(data, { binary: isBinary })
      })
    } else {
      ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }))
    }
  })
}
