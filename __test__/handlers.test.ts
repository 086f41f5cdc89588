// User handlers that throw or reject: only their connection pays (docs/hardening.md row 31).
import { describe, expect, it } from 'vitest'
import type { WebSocketHandlers } from '../lib/index'
import { closed, connect, echo, nextMessage, serverPool, sleep, type Started } from '../test-support/index'

const start = serverPool(1000)
const echoServer = (extra: WebSocketHandlers = {}): Promise<Started> => start({ onMessage: echo, ...extra })

describe('handler errors', () => {
  it('row 31: a throwing handler closes only that connection with 1011 and reaches onError as ERR_HANDLER_FAILED', async () => {
    const errors: unknown[] = []
    const thrown = new Error('handler exploded')
    const { url } = await echoServer({
      onMessage: (socket, msg) => {
        if (msg === 'boom') throw thrown
        socket.send(msg)
      },
      onError: (_s, err) => void errors.push(err),
    })
    const victim = await connect(url)
    const bystander = await connect(url)
    const c = closed(victim)
    victim.send('boom')
    expect((await c).code).toBe(1011)
    expect(errors).toHaveLength(1)
    expect(errors[0]).toMatchObject({ code: 'ERR_HANDLER_FAILED', cause: thrown })
    const reply = nextMessage(bystander)
    bystander.send('still fine')
    expect(await reply).toBe('still fine')
    bystander.close()
  })

  it('row 31: a rejected promise counts as a throw', async () => {
    const errors: unknown[] = []
    const { url } = await echoServer({
      onMessage: async () => {
        await sleep(5)
        throw 'async failure'
      },
      onError: (_s, err) => void errors.push(err),
    })
    const ws = await connect(url)
    const c = closed(ws)
    ws.send('x')
    expect((await c).code).toBe(1011)
    expect(errors).toEqual([expect.objectContaining({ code: 'ERR_HANDLER_FAILED', cause: 'async failure' })])
  })
})
