// ws's createWebSocketStream: a Duplex whose writes are messages and whose reads are the
// messages received, with backpressure both ways (pause()/resume() and send callbacks).
import { Duplex, type DuplexOptions } from 'node:stream'
import type { WebSocket } from './websocket'

/** Wraps a server-side WebSocket in a Duplex, as ws's `createWebSocketStream` does. */
export function createWebSocketStream(ws: WebSocket, options: DuplexOptions = {}): Duplex {
  let terminateOnDestroy = true
  const duplex = new Duplex({ ...options, autoDestroy: false, emitClose: false, objectMode: false, writableObjectMode: false })
  const emitClose = (): void => {
    duplex.emit('close')
  }

  ws.on('message', (message: Buffer, isBinary: boolean) => {
    const data = !isBinary && duplex.readableObjectMode ? message.toString() : message
    if (!duplex.push(data)) ws.pause()
  })
  ws.once('error', (err: Error) => {
    if (duplex.destroyed) return
    terminateOnDestroy = false
    duplex.destroy(err)
  })
  ws.once('close', () => {
    if (!duplex.destroyed) duplex.push(null)
  })

  duplex._destroy = (err, callback) => {
    if (ws.readyState === ws.CLOSED) {
      callback(err)
      process.nextTick(emitClose)
      return
    }
    let called = false
    ws.once('error', (e: Error) => {
      called = true
      callback(e)
    })
    ws.once('close', () => {
      if (!called) callback(err)
      process.nextTick(emitClose)
    })
    if (terminateOnDestroy) ws.terminate()
  }
  duplex._final = (callback) => {
    if (ws.readyState === ws.CLOSED) {
      callback()
      if (duplex.readableEnded) duplex.destroy()
      return
    }
    ws.once('close', () => callback())
    ws.close()
  }
  duplex._read = () => {
    if (ws.isPaused) ws.resume()
  }
  duplex._write = (chunk: Buffer, _encoding, callback) => {
    ws.send(chunk, callback)
  }
  duplex.on('end', function onEnd(this: Duplex) {
    if (!this.destroyed && this.writableFinished) this.destroy()
  })
  duplex.on('error', function onError(this: Duplex, err: Error) {
    this.removeListener('error', onError)
    this.destroy()
    // Without another listener, the error still throws.
    if (this.listenerCount('error') === 0) this.emit('error', err)
  })
  return duplex
}
