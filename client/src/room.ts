import { Emitter } from './emitter'
import { withCode } from './errors'
import type { OutgoingMessage, RoomMessage } from './types'

/** What a room needs from its client. */
export interface RoomHost {
  joinRoom(roomId: string): Promise<Room>
  leaveRoom(roomId: string): Promise<void>
  sendToRoom(roomId: string, message: OutgoingMessage): Promise<void>
}

/** Events of a `Room`. */
export interface RoomEvents {
  joined: () => void
  left: () => void
  message: (message: RoomMessage) => void
}

/** A room the client joined (or is joining): send to it and keep its recent messages. */
export class Room extends Emitter<RoomEvents> {
  private readonly host: RoomHost
  private readonly roomId: string
  private joined = false
  private history: RoomMessage[] = []
  private maxHistorySize: number

  /** @internal rooms are made by the client */
  constructor(id: string, host: RoomHost, maxHistorySize: number) {
    super()
    this.roomId = id
    this.host = host
    this.maxHistorySize = maxHistorySize
  }

  /** The room id. */
  get id(): string {
    return this.roomId
  }

  getId(): string {
    return this.roomId
  }

  /** Joins (again); resolves on `room_joined`. */
  async join(): Promise<void> {
    await this.host.joinRoom(this.roomId)
  }

  /** Leaves; resolves on `room_left`. */
  leave(): Promise<void> {
    return this.host.leaveRoom(this.roomId)
  }

  /** Sends a message to everyone else in the room (queued while offline). */
  send(message: OutgoingMessage): Promise<void> {
    return this.host.sendToRoom(this.roomId, message)
  }

  /** Whether the server confirmed membership on the current connection. */
  isJoinedToRoom(): boolean {
    return this.joined
  }

  /** Sent and received messages, oldest first, at most `maxHistorySize`. */
  getMessageHistory(): RoomMessage[] {
    return this.history.slice()
  }

  clearMessageHistory(): void {
    this.history = []
  }

  setMaxHistorySize(size: number): void {
    if (!Number.isInteger(size) || size < 0) {
      throw withCode(new RangeError(`history size must be an integer >= 0, got ${size}`), 'ERR_INVALID_ARG')
    }
    this.maxHistorySize = size
    this.trim()
  }

  /** @internal */
  setJoined(joined: boolean): void {
    if (joined === this.joined) return
    this.joined = joined
    this.emit(joined ? 'joined' : 'left')
  }

  /** @internal records a message; `incoming` ones are also emitted as `message`. */
  record(message: RoomMessage, incoming: boolean): void {
    this.history.push(message)
    this.trim()
    if (incoming) this.emit('message', message)
  }

  private trim(): void {
    if (this.history.length > this.maxHistorySize) this.history.splice(0, this.history.length - this.maxHistorySize)
  }
}
