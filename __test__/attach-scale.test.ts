// Attach mode under load: descriptors return to their baseline after many connect/close
// cycles, many connections at once, and the process exits by itself with the http server.
import { readdirSync } from 'node:fs'
import http from 'node:http'
import type net from 'node:net'
import { describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { WsServer } from '../lib/index'
import { lastJsonLine, runChild, waitFor } from '../test-support/index'

const openDescriptors = (): number => readdirSync('/proc/self/fd').length

async function attachedEcho(adopt: boolean): Promise<{ port: number; server: WsServer; stop: () => Promise<void> }> {
  const httpServer = http.createServer()
  const server = new WsServer({ server: httpServer, adopt })
  server.websocket('/ws', { onMessage: (s, m) => void s.send(m) })
  await new Promise<void>((r) => httpServer.listen(0, '127.0.0.1', r))
  const port = (httpServer.address() as net.AddressInfo).port
  return {
    port,
    server,
    stop: async () => {
      await server.close({ timeout: 1000 })
      httpServer.closeAllConnections()
      await new Promise((r) => httpServer.close(r))
    },
  }
}

/** Opens a client, exchanges one message, closes it and waits for the close. */
function cycle(url: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url)
    ws.once('open', () => ws.send('x'))
    ws.once('message', () => ws.close())
    ws.once('close', () => resolve())
    ws.once('error', reject)
  })
}

/** Runs `total` cycles, `parallel` at a time, stopping at `deadline`; returns how many ran. */
async function cycles(url: string, total: number, parallel: number, deadline: number): Promise<number> {
  let started = 0
  const worker = async (): Promise<void> => {
    while (started < total && Date.now() < deadline) {
      started++
      await cycle(url)
    }
  }
  await Promise.all(Array.from({ length: parallel }, worker))
  return started
}

const describeLinux = process.platform === 'linux' ? describe : describe.skip

describeLinux('descriptors', () => {
  for (const [adopt, total] of [
    [true, 10_000],
    [false, 2_000],
  ] as const) {
    it(`return to baseline after ${total} connect/close cycles (adopt: ${adopt})`, async () => {
      const { port, server, stop } = await attachedEcho(adopt)
      const url = `ws://127.0.0.1:${port}/ws`
      await cycles(url, 50, 10, Date.now() + 10_000)
      await waitFor(() => server.getConnections().length === 0)
      const baseline = openDescriptors()
      const ran = await cycles(url, total, 25, Date.now() + 90_000)
      expect(ran).toBe(total)
      await waitFor(() => server.getConnections().length === 0, 10_000, 'every connection closed')
      // Client and server sides close asynchronously; allow them a moment to settle.
      await waitFor(() => openDescriptors() <= baseline + 2, 10_000, `descriptors back to ${baseline}`)
      await stop()
    }, 120_000)
  }
})

describe('1,000 connections at once through { server }', () => {
  it('all open, each echoes, broadcast reaches all', async () => {
    const { port, server, stop } = await attachedEcho(true)
    const url = `ws://127.0.0.1:${port}/ws`
    const clients: WebSocket[] = []
    for (let i = 0; i < 1000; i += 100) {
      const batch = await Promise.all(
        Array.from({ length: 100 }, () => new Promise<WebSocket>((resolve, reject) => {
          const ws = new WebSocket(url)
          ws.once('open', () => resolve(ws))
          ws.once('error', reject)
        })),
      )
      clients.push(...batch)
    }
    await waitFor(() => server.getConnections().length === 1000, 10_000, '1000 server sockets')
    const echoes = await Promise.all(
      clients.map((ws, i) => new Promise<string>((resolve) => {
        ws.once('message', (m) => resolve(String(m)))
        ws.send(`n${i}`)
      })),
    )
    expect(echoes.every((m, i) => m === `n${i}`)).toBe(true)
    const got = Promise.all(clients.map((ws) => new Promise<string>((resolve) => ws.once('message', (m) => resolve(String(m))))))
    expect(server.broadcast('all')).toBe(1000)
    expect((await got).every((m) => m === 'all')).toBe(true)
    await Promise.all(clients.map((ws) => new Promise((r) => {
      ws.once('close', r)
      ws.close()
    })))
    await stop()
  }, 60_000)
})

describe('process exit', () => {
  it('exits by itself once the app closes its http server, without server.close()', async () => {
    const script = `
      const http = require('node:http')
      const WebSocket = require('ws')
      const { WsServer } = require('./dist/index.js')
      const httpServer = http.createServer()
      const server = new WsServer({ server: httpServer })
      server.websocket('/ws', { onMessage: (s, m) => s.send(m) })
      httpServer.listen(0, '127.0.0.1', () => {
        const ws = new WebSocket('ws://127.0.0.1:' + httpServer.address().port + '/ws')
        ws.on('open', () => ws.send('ping'))
        ws.on('message', (m) => {
          ws.close()
          ws.on('close', () => {
            httpServer.close()
            console.log(JSON.stringify({ echoed: String(m) }))
          })
        })
      })
    `
    const { code, out, ms } = await runChild(script, 15_000)
    expect(code).toBe(0)
    expect(lastJsonLine<{ echoed: string }>(out)).toEqual({ echoed: 'ping' })
    expect(ms).toBeLessThan(10_000)
  })
})
