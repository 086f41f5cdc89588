/** Reconnect delay settings (milliseconds; `jitter` is a fraction 0..1). */
export interface BackoffOptions {
  reconnectDelay: number
  maxReconnectDelay: number
  reconnectJitter: number
}

/**
 * Delay before reconnect attempt `attempt` (1-based): `reconnectDelay * 2^(attempt-1)`, capped
 * at `maxReconnectDelay`, then lowered by up to `reconnectJitter` of itself so that many
 * clients dropped at once do not come back at the same instant. `random` returns [0, 1).
 */
export function backoffDelay(attempt: number, o: BackoffOptions, random: () => number = Math.random): number {
  const base = Math.min(o.maxReconnectDelay, o.reconnectDelay * 2 ** Math.max(0, attempt - 1))
  return Math.round(base * (1 - o.reconnectJitter * random()))
}
