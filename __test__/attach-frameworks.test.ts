// The Express and Fastify examples: HTTP routes and WebSockets on one port, with GETs and
// WebSocket traffic interleaved on one keep-alive agent (the upgrade may reuse a socket that
// served GETs), and a clean exit on SIGTERM.
import { spawn, type ChildProcess } from 'node:child_process'
import http from 'node:http'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { nextMessage } from '../test-support/index'

/** Starts an example with PORT=0 and resolves with its port once it prints its address. */
function startExample(name: string): Promise<{ child: ChildProcess; port: number; exited: Promise<number | null> }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(__dirname, '..', 'examples', name)], {
      env: { ...process.env, PORT: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)))
    let out = ''
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`${name} did not start: ${out}`))
    }, 15_000)
    const onData = (d: Buffer): void => {
      out += String(d)
      const m = /:(\d+)\b.*WebSocket/.exec(out)
      if (m) {
        clearTimeout(timer)
        resolve({ child, port: Number(m[1]), exited })
      }
    }
    child.stdout.on('data', onData)
    child.stderr.on('data', onData)
  })
}

function get(agent: http.Agent, port: number, path: string): Promise<{ status: number; body: string; reused: boolean }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent }, (res) => {
      let body = ''
      res.on('data', (d) => (body += d))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, reused: req.reusedSocket }))
    })
    req.on('error', reject)
  })
}

/** Upgrades that went out on a socket the keep-alive agent had used for a GET before. */
let reusedUpgrades = 0

function open(url: string, agent: http.Agent): Promise<{ ws: WebSocket; welcome: { type: string; clientId: string } }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { agent })
    // ws keeps its upgrade request in `_req` until the upgrade; the agent says if it reused a socket.
    const request = (ws as unknown as { _req: http.ClientRequest })._req
    ws.once('open', () => {
      if (request.reusedSocket) reusedUpgrades++
    })
    ws.once('message', (m) => resolve({ ws, welcome: JSON.parse(String(m)) as { type: string; clientId: string } }))
    ws.once('error', reject)
  })
}

describe.each(['express.mjs', 'fastify.mjs'])('examples/%s', (name) => {
  it('serves GETs and WebSockets on one port, interleaved on one keep-alive agent', async () => {
    const { child, port, exited } = await startExample(name)
    try {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
      const first = await get(agent, port, '/api/time')
      expect(first.status).toBe(200)
      expect(typeof (JSON.parse(first.body) as { now: number }).now).toBe('number')
      // The agent's idle keep-alive socket carries the upgrade request (counted in reusedUpgrades).
      const a = await open(`ws://127.0.0.1:${port}/ws?clientId=a`, agent)
      expect(a.welcome).toEqual({ type: 'welcome', clientId: 'a' })
      const sockets: WebSocket[] = [a.ws]
      for (let round = 0; round < 5; round++) {
        const page = await get(agent, port, '/api/clients')
        expect(page.status).toBe(200)
        expect(JSON.parse(page.body)).toEqual({ connected: sockets.length })
        const b = await open(`ws://127.0.0.1:${port}/ws?clientId=b${round}`, agent)
        sockets.push(b.ws)
        for (const ws of sockets) {
          ws.send(`round ${round}`)
          expect(await nextMessage(ws)).toBe(`round ${round}`)
        }
        const again = await get(agent, port, '/api/time')
        expect(again.status).toBe(200)
      }
      // Upgrades on sockets that had served GETs were adopted like fresh ones.
      expect(reusedUpgrades).toBeGreaterThan(0)
      reusedUpgrades = 0
      const reused = await get(agent, port, '/api/time')
      const reusedAgain = await get(agent, port, '/api/time')
      expect(reusedAgain.reused || reused.reused).toBe(true)
      // Unknown HTTP route: the framework's own 404; unknown WebSocket path: 404 before the upgrade.
      expect((await get(agent, port, '/nope')).status).toBe(404)
      await expect(open(`ws://127.0.0.1:${port}/other`, new http.Agent())).rejects.toThrow(/404/)
      await Promise.all(sockets.map((ws) => new Promise((r) => {
        ws.once('close', r)
        ws.close()
      })))
      agent.destroy()
      child.kill('SIGTERM')
      expect(await exited).toBe(0)
    } finally {
      child.kill('SIGKILL')
    }
  }, 30_000)
})
