// Starting a server, waiting for its port, running the load generator: every wait bounded.
import { spawn } from 'node:child_process'
import { createServer } from 'node:net'

/** Prefix that pins a command to one CPU, or nothing when unpinned. */
export function pinned(cpu, cmd) {
  return cpu === null ? cmd : ['taskset', '-c', String(cpu), ...cmd]
}

/** Starts a server; resolves `{ child, port }` once it prints `LISTENING <port>`. */
export function startServer(cmd, { cwd, env, timeoutMs = 15000 } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd[0], cmd.slice(1), { cwd, env: env ? { ...process.env, ...env } : undefined, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`server did not listen within ${timeoutMs} ms: ${cmd.join(' ')}\n${err}`))
    }, timeoutMs)
    child.stdout.on('data', (d) => {
      out += d
      const m = /LISTENING (\d+)/.exec(out)
      if (m) {
        clearTimeout(timer)
        resolve({ child, port: Number(m[1]) })
      }
    })
    child.stderr.on('data', (d) => {
      if (err.length < 4000) err += d
    })
    child.on('error', (e) => {
      clearTimeout(timer)
      reject(e)
    })
    child.on('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`server exited (${code}) before listening: ${cmd.join(' ')}\n${err}`))
    })
  })
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })
}

/**
 * Starts a private redis-server (no persistence, loopback only) on a free port, run through
 * `prefix` (e.g. taskset); resolves `{ child, port }` once it accepts connections. Tries three
 * ports in case another process takes the free one first.
 */
export async function startRedis({ prefix = [], bin = 'redis-server', timeoutMs = 10000 } = {}) {
  let last
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort()
    const cmd = [...prefix, bin, '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no']
    try {
      return await new Promise((resolve, reject) => {
        const child = spawn(cmd[0], cmd.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] })
        let out = ''
        const timer = setTimeout(() => {
          child.kill('SIGKILL')
          reject(new Error(`redis-server not ready within ${timeoutMs} ms\n${out}`))
        }, timeoutMs)
        child.stdout.on('data', (d) => {
          if (out.length < 8000) out += d
          if (/Ready to accept connections/.test(out)) {
            clearTimeout(timer)
            resolve({ child, port })
          }
        })
        child.on('error', (e) => {
          clearTimeout(timer)
          reject(e)
        })
        child.on('exit', (code) => {
          clearTimeout(timer)
          reject(new Error(`redis-server exited (${code}) before it was ready:\n${out.slice(-1000)}`))
        })
      })
    } catch (e) {
      last = e
    }
  }
  throw last
}

/** Stops a server: SIGTERM, then SIGKILL after `graceMs`. */
export function stopServer(child, graceMs = 3000) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
    child.once('exit', () => {
      clearTimeout(timer)
      resolve()
    })
    child.kill('SIGTERM')
  })
}

/** Runs a command to completion (killed after `timeoutMs`); resolves `{ code, stdout, stderr }`. */
export function run(cmd, { cwd, timeoutMs }) {
  return new Promise((resolve) => {
    const child = spawn(cmd[0], cmd.slice(1), { cwd, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => {
      if (stderr.length < 4000) stderr += d
    })
    child.on('error', (e) => {
      clearTimeout(timer)
      resolve({ code: -1, stdout, stderr: String(e) })
    })
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

/** Sleeps `ms` milliseconds. */
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
