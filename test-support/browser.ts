// What a page in headless Chromium runs against a WebSocket server (the TLS suites).

/**
 * A script for `page.evaluate`: opens `url` (a JS expression), echoes a text and a binary
 * message, closes with 4005, and returns `{ text, bytes, code }`. A string, so the test's own
 * imports (ws's WebSocket) cannot shadow the browser's.
 */
export function browserEchoScript(url: string): string {
  return `(async () => {
    const ws = new WebSocket(${url})
    ws.binaryType = 'arraybuffer'
    const next = () => new Promise((resolve) => ws.addEventListener('message', (e) => resolve(e.data), { once: true }))
    await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject })
    ws.send('from the browser')
    const text = await next()
    ws.send(new Uint8Array([9, 8, 7]))
    const bytes = Array.from(new Uint8Array(await next()))
    const code = await new Promise((resolve) => { ws.onclose = (e) => resolve(e.code); ws.close(4005, 'done') })
    return { text, bytes, code }
  })()`
}

/** What `browserEchoScript` returns when every step worked. */
export const BROWSER_ECHO = { text: 'from the browser', bytes: [9, 8, 7], code: 4005 }
