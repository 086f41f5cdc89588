// Reconnect delays: the formula, and the client's actual timing with fake timers (the
// connection attempts themselves are real and refused by a closed port).
import { afterEach, describe, expect, it, vi } from 'vitest'
import WebSocket from 'ws'
import { RNodeWebSocketClient, backoffDelay, type WebSocketConstructor } from '../src/index'
import { closedPort } from '../../test-support/index'

afterEach(() => {
  vi.useRealTimers()
  vi.restoreAllMocks()
})

describe('backoffDelay', () => {
  const o = { reconnectDelay: 1000, maxReconnectDelay: 30000, reconnectJitter: 0 }
  it('doubles per attempt from reconnectDelay and stops at maxReconnectDelay', () => {
    expect([1, 2, 3, 4, 5, 6, 7].map((n) => backoffDelay(n, o))).toEqual([1000, 2000, 4000, 8000, 16000, 30000, 30000])
    expect(backoffDelay(100, o)).toBe(30000)
  })
  it('jitter lowers a delay by at most reconnectJitter of it', () => {
    const j = { ...o, reconnectJitter: 0.5 }
    expect(backoffDelay(3, j, () => 0)).toBe(4000)
    expect(backoffDelay(3, j, () => 0.5)).toBe(3000)
    expect(backoffDelay(3, j, () => 0.999999)).toBe(2000)
    const seen = new Set(Array.from({ length: 200 }, () => backoffDelay(3, j)))
    for (const d of seen) expect(d >= 2000 && d <= 4000).toBe(true)
    expect(seen.size).toBeGreaterThan(20) // it does vary between clients
  })
})

describe('reconnect timing (fake timers)', () => {
  it('waits exactly each backoff delay before the next attempt, then gives up', async () => {
    const port = await closedPort()
    let attempts = 0
    const Counting = class extends WebSocket {
      constructor(url: string) {
        super(url)
        attempts++
      }
    } as unknown as WebSocketConstructor
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval'] })
    vi.spyOn(Math, 'random').mockReturnValue(0.5)
    const c = new RNodeWebSocketClient(`ws://127.0.0.1:${port}/ws`, 'fake_timers', {
      WebSocket: Counting,
      reconnectDelay: 1000,
      maxReconnectDelay: 5000,
      reconnectJitter: 0.5,
      maxReconnectAttempts: 4,
    })
    // Listeners without timeouts: setTimeout is fake here; vitest's own test timeout still applies.
    const nextReconnecting = () => new Promise<[number, number]>((r) => c.once('reconnecting', (a, d) => r([a, d])))
    const gaveUp = new Promise<number>((r) => c.once('maxReconnectAttemptsReached', r))
    let scheduled = nextReconnecting()
    const done = c.connect().catch((e: { code: string }) => e.code)

    // Delay n is min(5000, 1000 * 2^(n-1)), lowered by 0.5 * random() = 25 %.
    const expected: Array<[number, number]> = [
      [1, 750],
      [2, 1500],
      [3, 3000],
      [4, 3750],
    ]
    for (const [n, delay] of expected) {
      expect(await scheduled).toEqual([n, delay]) // after the real refusal of connection n
      expect(attempts).toBe(n)
      await vi.advanceTimersByTimeAsync(delay - 1)
      expect(attempts).toBe(n) // not a millisecond early
      scheduled = nextReconnecting()
      await vi.advanceTimersByTimeAsync(1)
      expect(attempts).toBe(n + 1)
    }
    expect(await gaveUp).toBe(4)
    vi.useRealTimers()
    expect(await done).toBe('ERR_MAX_RECONNECT_ATTEMPTS')
    expect(attempts).toBe(5)
    expect(c.getStatus()).toBe('disconnected')
  })
})
