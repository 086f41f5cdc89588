// The rollup outputs: every format loads and works, the IIFE stays under its size budget, the
// browser builds carry no Node-only import, and the published types have no `any`.
import { readFileSync, readdirSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import vm from 'node:vm'
import { gzipSync } from 'node:zlib'
import WebSocket from 'ws'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type * as ClientModule from '../src/index'
import { startServer, type Started } from '../../test-support/index'
import { ensureBuilt } from './harness'

const dist = join(__dirname, '..', 'dist')
const read = (f: string): string => readFileSync(join(dist, f), 'utf8')
const BUDGET = 5 * 1024

let s: Started
beforeAll(async () => {
  await ensureBuilt()
  s = await startServer({ onMessage: (socket, m) => void socket.send(m) })
}, 60_000)
afterAll(async () => {
  await s.server.close()
})

/** Runs a browser bundle in a fresh context with only `globalThis`: what a <script> tag does. */
function runScript(file: string): Record<string, unknown> {
  const context: Record<string, unknown> = {}
  vm.runInNewContext(read(file), vm.createContext(context))
  return context
}

describe('bundles', () => {
  it(`minified IIFE is under ${BUDGET} bytes gzipped`, () => {
    const gz = gzipSync(read('rnode-websocket.iife.min.js')).length
    expect(gz).toBeGreaterThan(1000) // it is the real bundle
    expect(gz).toBeLessThan(BUDGET)
  })

  it.each(['rnode-websocket.iife.js', 'rnode-websocket.iife.min.js', 'index.umd.js', 'index.umd.min.js'])(
    '%s defines the global RNodeWebSocket in a plain script context',
    (file) => {
      const g = runScript(file).RNodeWebSocket as Record<string, unknown>
      for (const name of ['RNodeWebSocketClient', 'createWebSocketClient', 'Room', 'RNodeClientError', 'backoffDelay']) {
        expect(typeof g[name]).toBe('function')
      }
    },
  )

  it('browser bundles import nothing from Node (no require, node:, events)', () => {
    for (const file of ['index.mjs', 'rnode-websocket.iife.js', 'index.umd.js']) {
      const code = read(file)
      expect(code).not.toMatch(/\brequire\(\s*['"]/)
      expect(code).not.toMatch(/^\s*(import|export)\b[^;]*\bfrom\s*['"]/m)
      expect(code).not.toMatch(/\bimport\(/)
      expect(code).not.toMatch(/['"](node:|events['"]|buffer['"])/)
    }
  })

  it('the CJS build connects to a real server and exchanges a message', async () => {
    const cjs = createRequire(__filename)(join(dist, 'index.cjs')) as typeof ClientModule
    const c = new cjs.RNodeWebSocketClient(s.url, 'cjs_user', { WebSocket })
    await c.connect()
    const echoed = new Promise<unknown>((r) => c.once('message', r))
    await c.send('from cjs')
    expect(await echoed).toBe('from cjs')
    c.disconnect()
  })

  it('the ESM build exports the same API', async () => {
    const esm = (await import(pathToFileURL(join(dist, 'index.mjs')).href)) as typeof ClientModule
    expect(Object.keys(esm).sort()).toEqual(
      ['RNodeClientError', 'RNodeWebSocketClient', 'Room', 'createWebSocketClient', 'Emitter', 'backoffDelay'].sort(),
    )
  })

  it('the declaration files exist and never say `any`', () => {
    const files = readdirSync(join(dist, 'types')).filter((f) => f.endsWith('.d.ts'))
    expect(files).toContain('index.d.ts')
    for (const f of files) {
      const code = readFileSync(join(dist, 'types', f), 'utf8').replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '')
      expect(code).not.toMatch(/\bany\b/)
    }
    expect(read('types/index.d.ts')).toMatch(/RNodeWebSocketClient/)
  })
})
