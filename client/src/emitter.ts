/** Listener signatures by event name. */
export type EventMap<Events> = { [E in keyof Events]: (...args: never[]) => void }

type Listener = (...args: unknown[]) => void

/**
 * A small typed event emitter, so the browser build needs no Node `events`. A listener that
 * throws is reported on the console and does not stop the other listeners or the client.
 */
export class Emitter<Events extends EventMap<Events>> {
  private listeners: { [E in keyof Events]?: Array<Events[E]> } = {}

  /** Adds a listener. */
  on<E extends keyof Events>(event: E, listener: Events[E]): this {
    ;(this.listeners[event] ??= []).push(listener)
    return this
  }

  /** Adds a listener that runs at most once. */
  once<E extends keyof Events>(event: E, listener: Events[E]): this {
    const wrapped = ((...args: Parameters<Events[E]>) => {
      this.off(event, wrapped)
      ;(listener as unknown as Listener)(...args)
    }) as Events[E]
    return this.on(event, wrapped)
  }

  /** Removes a listener, or every listener of `event` when none is given. */
  off<E extends keyof Events>(event: E, listener?: Events[E]): this {
    const list = this.listeners[event]
    if (list) {
      if (listener) {
        const i = list.indexOf(listener)
        if (i >= 0) list.splice(i, 1)
      } else {
        list.length = 0
      }
    }
    return this
  }

  /** Calls every listener of `event`; returns whether there was one. */
  protected emit<E extends keyof Events>(event: E, ...args: Parameters<Events[E]>): boolean {
    const list = this.listeners[event]
    if (!list || list.length === 0) return false
    for (const listener of list.slice()) {
      try {
        ;(listener as unknown as Listener)(...args)
      } catch (err) {
        console.error(`[rnode-ws client] '${String(event)}' listener threw:`, err)
      }
    }
    return true
  }
}
