// The addon never keeps the process alive after close(): a child process must exit by itself.
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'

const root = join(__dirname, '..')

function runChild(script: string, timeoutMs: number): Promise<{ code: number | null; out: string; ms: number }> {
  return new Promise((resolve) => {
    const started = Date.now()
    const child = spawn(process.execPath, ['-e', script], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (out += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('exit', (code) => {
      clearTimeout(timer)
      resolve({ code, out, ms: Date.now() - started })
    })
  })
}

describe('process lifetime', () => {
  it('a child that starts a server, echoes, and closes exits on its own within 5 s', async () => {
    const script = `
      const { WsServer } = require('./dist/index.js')
      const WebSocket = require('ws')
      ;(async () => {
        const server = new WsServer({ host: '127.0.0.1', port: 0 })
        server.websocket('/ws', { onMessage: (s, m) => s.send(m) })
        const { port } = await server.listen()
        const ws = new WebSocket('ws://127.0.0.1:' + port + '/ws')
        await new Promise((r) => ws.on('open', r))
        ws.send('ping')
        const reply = await new Promise((r) => ws.on('message', (m) => r(String(m))))
        console.log('reply=' + reply)
        await server.close()
        console.log('closed')
      })()
    `
    const { code, out, ms } = await runChild(script, 10_000)
    expect(out).toContain('reply=ping')
    expect(out).toContain('closed')
    expect(code).toBe(0)
    expect(ms).toBeLessThan(5000)
  })

  it('a listening server keeps the process alive until it is closed', async () => {
    const script = `
      const { WsServer } = require('./dist/index.js')
      const server = new WsServer({ host: '127.0.0.1', port: 0 })
      server.websocket('/ws', {})
      server.listen().then(() => {
        setTimeout(() => { console.log('still alive'); server.close() }, 500)
      })
    `
    const { code, out } = await runChild(script, 10_000)
    expect(out).toContain('still alive')
    expect(code).toBe(0)
  })
})
