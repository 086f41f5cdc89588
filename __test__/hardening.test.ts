// docs/hardening.md rows 12-25: bad frames over raw TCP close with the RFC code, and onClose
// reports that same code.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { closePayload, connect, encodeFrame, nextMessage, RawPeer, type Started, startServer, waitFor } from '../test-support/index'

const TEXT = 0x1
const BINARY = 0x2
const CONT = 0x0
const CLOSE = 0x8
const PING = 0x9

let s: Started
/** What onClose reported, by clientId. */
const closes = new Map<string, number>()
let peers = 0
beforeAll(async () => {
  s = await startServer(
    { onMessage: (socket, m) => void socket.send(m), onClose: (socket, code) => void closes.set(socket.clientId, code) },
    { maxPayload: 64 * 1024 },
  )
})
afterAll(async () => {
  await s.server.close({ timeout: 1000 })
})

/**
 * Opens a raw peer, sends the frames, and returns the close code the server answers with, after
 * checking that `onClose` reported the same code for that connection.
 */
async function closeCodeFor(...frames: Parameters<RawPeer['send']>[0][]): Promise<number | null> {
  const clientId = `violator-${++peers}`
  const peer = await RawPeer.connect(s.port, `/ws?clientId=${clientId}`)
  for (const f of frames) peer.send(f)
  const code = await peer.closeCode()
  await peer.waitEnd()
  await waitFor(() => closes.has(clientId), 3000, 'onClose')
  expect(closes.get(clientId)).toBe(code)
  return code
}

describe('protocol violations close with the RFC code', () => {
  it('row 12: an unmasked client frame -> 1002', async () => {
    expect(await closeCodeFor({ opcode: TEXT, payload: 'hi', mask: false })).toBe(1002)
  })

  it.each([1, 2, 4, 7])('row 13: RSV bits %i with no extension -> 1002', async (rsv) => {
    expect(await closeCodeFor({ opcode: TEXT, payload: 'hi', rsv })).toBe(1002)
  })

  it.each([3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf])('row 14: reserved opcode %i -> 1002', async (opcode) => {
    expect(await closeCodeFor({ opcode })).toBe(1002)
  })

  it('row 15: a control frame over 125 bytes -> 1002', async () => {
    expect(await closeCodeFor({ opcode: PING, payload: Buffer.alloc(126) })).toBe(1002)
  })

  it('row 16: a fragmented ping -> 1002', async () => {
    expect(await closeCodeFor({ opcode: PING, payload: 'a', fin: false })).toBe(1002)
  })

  it('row 17: a continuation with nothing to continue -> 1002', async () => {
    expect(await closeCodeFor({ opcode: CONT, payload: 'x' })).toBe(1002)
  })

  it('row 17: a new data frame in the middle of a fragmented message -> 1002', async () => {
    expect(await closeCodeFor({ opcode: TEXT, payload: 'a', fin: false }, { opcode: TEXT, payload: 'b' })).toBe(1002)
  })

  it('row 18: a 64-bit length with the top bit set -> 1002, refused from the header alone', async () => {
    // RFC 6455 §5.2: the most significant bit of a 64-bit length must be 0, so this is a protocol
    // error (1002), not an oversized message (1009). No payload follows the header.
    expect(await closeCodeFor({ opcode: BINARY, announce: 1n << 63n })).toBe(1002)
    // The largest valid length is over maxPayload: 1009, also from the header alone.
    expect(await closeCodeFor({ opcode: BINARY, announce: (1n << 63n) - 1n })).toBe(1009)
  })

  it('row 19: a header announcing more than maxPayload -> 1009 before any payload is sent', async () => {
    expect(await closeCodeFor({ opcode: BINARY, announce: 64 * 1024 + 1 })).toBe(1009)
  })

  it('row 20: fragments summing past maxPayload -> 1009', async () => {
    const part = Buffer.alloc(40 * 1024)
    expect(await closeCodeFor({ opcode: BINARY, payload: part, fin: false }, { opcode: CONT, payload: part })).toBe(1009)
  })

  it('a message of exactly maxPayload is accepted', async () => {
    const peer = await RawPeer.connect(s.port)
    peer.send({ opcode: BINARY, payload: Buffer.alloc(64 * 1024, 7) })
    const echo = await peer.nextFrame()
    expect(echo?.opcode).toBe(BINARY)
    expect(echo?.payload.length).toBe(64 * 1024)
    peer.destroy()
  })

  it('row 21: a message may have 1,024 empty fragments', async () => {
    const peer = await RawPeer.connect(s.port)
    peer.send({ opcode: TEXT, payload: '', fin: false })
    const empty = encodeFrame({ opcode: CONT, payload: '', fin: false })
    peer.send(Buffer.concat(Array.from({ length: 1023 }, () => empty)))
    peer.send({ opcode: CONT, payload: 'end', fin: true })
    const echo = await peer.nextFrame()
    expect(echo?.payload.toString()).toBe('end')
    peer.destroy()
  })

  it('row 21: endless empty fragments -> 1008, and other clients are served meanwhile', async () => {
    const other = await RawPeer.connect(s.port)
    const empty = encodeFrame({ opcode: CONT, payload: '', fin: false })
    const flood = Buffer.concat(Array.from({ length: 2000 }, () => empty))
    const code = await closeCodeFor({ opcode: TEXT, payload: '', fin: false }, flood)
    expect(code).toBe(1008)
    other.send({ opcode: TEXT, payload: 'still here' })
    expect((await other.nextFrame())?.payload.toString()).toBe('still here')
    other.destroy()
  })


  it('row 22: invalid UTF-8 in a text message -> 1007', async () => {
    expect(await closeCodeFor({ opcode: TEXT, payload: Buffer.from([0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80]) })).toBe(1007)
  })

  it('row 22: invalid UTF-8 split across fragments -> 1007', async () => {
    expect(
      await closeCodeFor({ opcode: TEXT, payload: Buffer.from([0x68, 0xc3]), fin: false }, { opcode: CONT, payload: Buffer.from([0x28]) }),
    ).toBe(1007)
  })

  it('valid UTF-8 split inside a code point across fragments is accepted', async () => {
    const peer = await RawPeer.connect(s.port)
    const bytes = Buffer.from('κόσμε')
    peer.send({ opcode: TEXT, payload: bytes.subarray(0, 3), fin: false })
    peer.send({ opcode: CONT, payload: bytes.subarray(3) })
    expect((await peer.nextFrame())?.payload.toString()).toBe('κόσμε')
    peer.destroy()
  })

  it('row 23: a close payload of 1 byte -> 1002', async () => {
    expect(await closeCodeFor({ opcode: CLOSE, payload: Buffer.from([0x03]) })).toBe(1002)
  })

  it('row 23: a close reason over 123 bytes -> 1002', async () => {
    expect(await closeCodeFor({ opcode: CLOSE, payload: closePayload(1000, 'x'.repeat(124)) })).toBe(1002)
  })

  it.each([0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535])(
    'row 24: close code %i -> 1002',
    async (code) => {
      expect(await closeCodeFor({ opcode: CLOSE, payload: closePayload(code) })).toBe(1002)
    },
  )

  it.each([1000, 1001, 1003, 1007, 1011, 3000, 4999])('valid close code %i is echoed', async (code) => {
    expect(await closeCodeFor({ opcode: CLOSE, payload: closePayload(code, 'ok') })).toBe(code)
  })

  it('row 25: invalid UTF-8 in a close reason -> 1007', async () => {
    expect(await closeCodeFor({ opcode: CLOSE, payload: closePayload(1000, Buffer.from([0xff, 0xfe])) })).toBe(1007)
  })

  it('the server survives all of the above and still echoes', async () => {
    const ws = await connect(s.url)
    const reply = nextMessage(ws)
    ws.send('alive')
    expect(await reply).toBe('alive')
    ws.close()
  })
})
