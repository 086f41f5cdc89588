// The native binding: the loaded addon has every member lib/binding.ts declares, the
// hand-registered calls (`sendText`, `sendBinary`) answer wrong arguments with a dropped send,
// never a crash (in a child process, so the one server there has handle 0), and the enums
// shared with the engine match their committed declarations.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { native, type NativeBinding, type NativeServer } from '../lib/binding'
import { lastJsonLine, runChild } from '../test-support/index'

// Every member of the declared shapes, checked complete by the compiler: a member added to the
// interface and not here fails `tsc`, one missing from the addon fails the test.
const bindingMembers = {
  NativeServer: 'function', pollEvents: 'function', uncork: 'function', sendText: 'function', sendBinary: 'function',
  EventKind: 'object', JoinResult: 'object', Hook: 'object', checkTrustProxy: 'function', sendTextBytes: 'function',
} satisfies Record<keyof NativeBinding, 'function' | 'object'>
const serverMembers = {
  addRoute: 0, listen: 0, handle: 0, closeConnection: 0, bufferedAmount: 0, shutdown: 0, dispose: 0, stats: 0,
  roomCounts: 0, createRoom: 0, getRoom: 0, getAllRooms: 0, deleteRoom: 0, joinRoom: 0, leaveRoom: 0, roomsOf: 0,
  roomMembers: 0, sendToRoom: 0, broadcastText: 0, broadcastBinary: 0, sendManyText: 0, sendManyBinary: 0,
  setMetadata: 0, getMetadata: 0, resolveJoin: 0, forget: 0, resolveUpgrade: 0, heartbeat: 0, limits: 0, clusterStats: 0,
  adopt: 0, loopback: 0, attachId: 0, metrics: 0, sendControl: 0, terminate: 0, history: 0, sessionCount: 0,
  clusterHistory: 0, setSessionData: 0,
  presence: 0, clusterPresence: 0, setSecureContext: 0, addServerName: 0, removeServerName: 0,
} satisfies Record<keyof NativeServer, 0>

describe('the loaded addon', () => {
  it('exports every function and enum lib/binding.ts declares', () => {
    for (const [name, type] of Object.entries(bindingMembers)) expect(typeof native[name as keyof NativeBinding], name).toBe(type)
  })

  it('NativeServer has every method and property lib/binding.ts declares', () => {
    const server = new native.NativeServer({ host: '127.0.0.1', port: 0 })
    try {
      for (const name of Object.keys(serverMembers)) expect(name in server, name).toBe(true)
      expect(typeof server.handle).toBe('number')
    } finally {
      server.dispose()
    }
  })
})

describe('native send calls', () => {
  it('answer 2 (dropped) for wrong arguments and still send right ones', async () => {
    const script = `
      const { WsServer } = require('./dist/index.js')
      const { native } = require('./dist/binding.js')
      const WebSocket = require('ws')
      ;(async () => {
        let socket
        const server = new WsServer({ host: '127.0.0.1', port: 0 })
        server.websocket('/ws', { onConnect: (s) => { socket = s } })
        const { port } = await server.listen()
        const ws = new WebSocket('ws://127.0.0.1:' + port + '/ws')
        const got = []
        ws.on('message', (m, binary) => got.push(binary ? 'bin:' + [...m].join(',') : 'text:' + m))
        await new Promise((r) => ws.once('open', r))
        while (!socket) await new Promise((r) => setTimeout(r, 5))
        const c = socket.conn
        const statuses = [
          native.sendText(0, c, 42),
          native.sendText(0, c),
          native.sendText(0, c, { toString: () => 'x' }),
          native.sendText('0', c, 'x'),
          native.sendBinary(0, c, 'not bytes'),
          native.sendBinary(0, c, new Uint16Array(2)),
          native.sendBinary(0, c, new ArrayBuffer(2)),
          native.sendText(12345, c, 'x'),
          native.sendText(0, c, 'ok'),
          native.sendBinary(0, c, new Uint8Array([1, 2, 3]).subarray(1)),
        ]
        while (got.length < 2) await new Promise((r) => setTimeout(r, 5))
        await new Promise((r) => setTimeout(r, 100))
        console.log(JSON.stringify({ statuses, got }))
        ws.close()
        await server.close()
      })()
    `
    const { code, out } = await runChild(script, 15_000)
    expect(code, out).toBe(0)
    const r = lastJsonLine<{ statuses: number[]; got: string[] }>(out)
    expect(r.statuses).toEqual([2, 2, 2, 2, 2, 2, 2, 2, 0, 0])
    expect(r.got).toEqual(['text:ok', 'bin:2,3'])
  })
})

describe('shared enums', () => {
  // The facade compiles these to numbers from lib/native.d.ts; the engine has its own. A stale
  // committed native.d.ts (Rust enum changed, `npm run build:native` not rerun) fails here.
  it('the committed native.d.ts has the values the engine exports', () => {
    const dts = readFileSync(join(__dirname, '..', 'lib', 'native.d.ts'), 'utf8')
    for (const name of ['EventKind', 'JoinResult', 'Hook'] as const) {
      const body = new RegExp(`export declare const enum ${name} \\{([^}]*)\\}`).exec(dts)?.[1] ?? ''
      const declared = Object.fromEntries([...body.matchAll(/(\w+) = (\d+)/g)].map((m) => [m[1], Number(m[2])]))
      expect(Object.keys(declared).length).toBeGreaterThan(3)
      expect({ ...native[name] }).toEqual(declared)
    }
  })
})
