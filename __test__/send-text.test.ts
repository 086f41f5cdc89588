// socket.sendText(): a text frame from a string or from UTF-8 bytes, sent without a decode.
import { describe, expect, it } from 'vitest'
import type { Socket } from '../lib/index'
import { connect, serverPool } from '../test-support/index'

const start = serverPool()

describe('socket.sendText', () => {
  it('sends strings and UTF-8 bytes as text; invalid UTF-8 goes out as U+FFFD; other types throw', async () => {
    let resolve: (s: Socket) => void = () => undefined
    const opened = new Promise<Socket>((r) => (resolve = r))
    const { url } = await start({ onConnect: (s) => resolve(s) })
    const client = await connect(url)
    const socket = await opened
    const got = new Promise<Array<[string, boolean]>>((done) => {
      const out: Array<[string, boolean]> = []
      client.on('message', (d: Buffer, isBinary: boolean) => {
        out.push([d.toString(), isBinary])
        if (out.length === 4) done(out)
      })
    })
    expect(socket.sendText('plain')).toBe('sent')
    expect(socket.sendText(Buffer.from('héllo wörld'))).toBe('sent')
    expect(socket.sendText(new Uint8Array([0x61, 0xff, 0x62]))).toBe('sent')
    expect(socket.sendText(new Uint8Array(0))).toBe('sent')
    expect(await got).toEqual([
      ['plain', false],
      ['héllo wörld', false],
      ['a\ufffdb', false],
      ['', false],
    ])
    expect(() => socket.sendText(5 as unknown as string)).toThrow(TypeError)
    client.close()
  })
})
