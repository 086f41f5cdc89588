// The DOM-style listener surface ws puts on its WebSocket: addEventListener/removeEventListener
// and the onopen/onmessage/onclose/onerror attributes, with the event objects ws passes.
import type { EventEmitter } from 'node:events'

/** What `addEventListener` hands a listener: `type` and the `target` socket. */
export class WsEvent {
  readonly type: string
  target: unknown = null
  constructor(type: string) {
    this.type = type
  }
}

/** A `message` event: text arrives as a string, binary as `binaryType` says. */
export class MessageEvent extends WsEvent {
  readonly data: unknown
  constructor(data: unknown) {
    super('message')
    this.data = data
  }
}

/** A `close` event: the code, the reason as a string, and whether the handshake completed. */
export class CloseEvent extends WsEvent {
  readonly code: number
  readonly reason: string
  readonly wasClean: boolean
  constructor(code: number, reason: string) {
    super('close')
    this.code = code
    this.reason = reason
    this.wasClean = code !== 1006
  }
}

/** An `error` event: the error and its message. */
export class ErrorEvent extends WsEvent {
  readonly error: unknown
  readonly message: string
  constructor(error: unknown) {
    super('error')
    this.error = error
    this.message = error instanceof Error ? error.message : String(error)
  }
}

/** A listener as the DOM allows it: a function, or an object with `handleEvent`. */
export type EventListenerLike = ((event: WsEvent) => void) | { handleEvent(event: WsEvent): void }

// Symbols, not a `listener` property: EventEmitter's listeners() unwraps any function that has one.
const LISTENER = Symbol('listener')
const ATTRIBUTE = Symbol('attribute')

/** The EventEmitter listener standing for a DOM-style one. */
interface Wrapped {
  (...args: unknown[]): void
  [LISTENER]: EventListenerLike
  [ATTRIBUTE]: boolean
}

type EventType = 'message' | 'close' | 'error' | 'open'

function makeEvent(type: EventType, args: unknown[]): WsEvent {
  switch (type) {
    case 'message': {
      const [data, isBinary] = args as [Buffer, boolean]
      return new MessageEvent(isBinary ? data : data.toString())
    }
    case 'close': {
      const [code, reason] = args as [number, Buffer]
      return new CloseEvent(code, reason.toString())
    }
    case 'error':
      return new ErrorEvent(args[0])
    case 'open':
      return new WsEvent('open')
  }
}

function isEventType(type: string): type is EventType {
  return type === 'message' || type === 'close' || type === 'error' || type === 'open'
}

function wrappers(target: EventEmitter, type: string): Wrapped[] {
  return target.listeners(type).filter((l): l is Wrapped => (l as Partial<Wrapped>)[LISTENER] !== undefined)
}

/** `target.addEventListener(type, listener, { once })` as ws has it: a listener is added once. */
export function addEventListener(
  target: EventEmitter,
  type: string,
  listener: EventListenerLike,
  options: { once?: boolean } = {},
  attribute = false,
): void {
  if (!isEventType(type)) return
  if (!attribute && wrappers(target, type).some((w) => w[LISTENER] === listener && !w[ATTRIBUTE])) return
  const wrapped = ((...args: unknown[]) => {
    const event = makeEvent(type, args)
    event.target = target
    if (typeof listener === 'function') listener.call(target, event)
    else listener.handleEvent(event)
  }) as Wrapped
  wrapped[LISTENER] = listener
  wrapped[ATTRIBUTE] = attribute
  if (options.once) target.once(type, wrapped)
  else target.on(type, wrapped)
}

/** Removes a listener `addEventListener` added (not the `on<type>` attribute's). */
export function removeEventListener(target: EventEmitter, type: string, listener: EventListenerLike): void {
  for (const w of wrappers(target, type)) {
    if (w[LISTENER] === listener && !w[ATTRIBUTE]) {
      target.removeListener(type, w)
      return
    }
  }
}

/** The `on<type>` attribute: its function, or null. */
export function getAttribute(target: EventEmitter, type: EventType): EventListenerLike | null {
  return wrappers(target, type).find((w) => w[ATTRIBUTE])?.[LISTENER] ?? null
}

/** Replaces the `on<type>` attribute; anything but a function clears it. */
export function setAttribute(target: EventEmitter, type: EventType, handler: unknown): void {
  const current = wrappers(target, type).find((w) => w[ATTRIBUTE])
  if (current) target.removeListener(type, current)
  if (typeof handler === 'function') addEventListener(target, type, handler as EventListenerLike, {}, true)
}
