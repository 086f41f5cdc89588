// A raw protocol client for the recovery tests: it records every frame it gets and knows its
// session token and its place in each room, without the client package's dedupe.
import WebSocket from 'ws'

export type Frame = Record<string, unknown>

/** A raw protocol client that records every frame it gets. */
export class Peer {
  frames: Frame[] = []
  texts: string[] = []
  token = ''
  closedAt = 0
  private waiters: Array<() => void> = []
  constructor(readonly ws: WebSocket) {
    ws.on('message', (data, isBinary) => {
      if (isBinary) return
      const text = data.toString()
      this.texts.push(text)
      try {
        const f = JSON.parse(text) as Frame
        this.frames.push(f)
        if (f.type === 'session') this.token = String(f.token)
      } catch {
        // application text
      }
      for (const w of this.waiters.splice(0)) w()
    })
    ws.on('close', () => void (this.closedAt = Date.now()))
    ws.on('error', () => undefined)
  }

  static async open(url: string): Promise<Peer> {
    const ws = new WebSocket(url)
    const peer = new Peer(ws)
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve())
      ws.once('error', reject)
    })
    return peer
  }

  async frame(match: (f: Frame) => boolean, timeoutMs = 5000): Promise<Frame> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const f = this.frames.find(match)
      if (f) return f
      if (Date.now() > deadline) throw new Error(`no matching frame; got ${JSON.stringify(this.frames.slice(-5))}`)
      await new Promise<void>((r) => {
        this.waiters.push(r)
        setTimeout(r, 50)
      })
    }
  }

  send(frame: Frame): void {
    this.ws.send(JSON.stringify(frame))
  }

  roomMessages(room: string): Frame[] {
    return this.frames.filter((f) => f.type === 'room_message' && f.room_id === room)
  }

  /** (epoch, last offset) in a room, from what arrived. */
  position(room: string): { epoch: string; offset: number } {
    const joined = this.frames.filter((f) => f.type === 'room_joined' && f.room_id === room).at(-1)!
    const last = this.roomMessages(room).at(-1)
    return { epoch: String(joined.epoch), offset: Number(last?.offset ?? joined.offset) }
  }
}

export function withSession(url: string, token: string, extra = ''): string {
  return `${url}?session=${token}${extra}`
}
