// ws's check of the Sec-WebSocket-Extensions header when permessage-deflate is on: a header it
// cannot parse, or a permessage-deflate offer with an unknown, repeated or bad parameter, gets
// 400 (the engine alone would decline such an offer and open the connection uncompressed).

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/

/** Splits `s` at `sep` where it is not inside a quoted string. */
function split(s: string, sep: string): string[] {
  const parts: string[] = []
  let start = 0
  let quoted = false
  for (let i = 0; i < s.length; i++) {
    const c = s[i]
    if (quoted && c === '\\') i++
    else if (c === '"') quoted = !quoted
    else if (c === sep && !quoted) {
      parts.push(s.slice(start, i))
      start = i + 1
    }
  }
  parts.push(s.slice(start))
  return parts
}

/** A window size as ws takes it: an integer 8-15. */
function windowBits(value: string): boolean {
  const n = Number(value)
  return value !== '' && Number.isInteger(n) && n >= 8 && n <= 15
}

/** Whether ws would take `name` (with `value`, undefined when it has none) in a permessage-deflate offer. */
function deflateParam(name: string, value: string | undefined): boolean {
  switch (name) {
    case 'client_max_window_bits':
      return value === undefined || windowBits(value)
    case 'server_max_window_bits':
      return value !== undefined && windowBits(value)
    case 'client_no_context_takeover':
    case 'server_no_context_takeover':
      return value === undefined
    default:
      return false
  }
}

/** Whether ws answers this Sec-WebSocket-Extensions value with 400. */
export function invalidExtensions(header: string): boolean {
  for (const element of split(header, ',')) {
    const [name = '', ...params] = split(element, ';').map((p) => p.trim())
    if (!TOKEN.test(name)) return true
    const seen = new Set<string>()
    for (const param of params) {
      const eq = param.indexOf('=')
      const key = (eq === -1 ? param : param.slice(0, eq)).trim()
      let value = eq === -1 ? undefined : param.slice(eq + 1).trim()
      if (value?.startsWith('"')) {
        if (value.length < 2 || !value.endsWith('"')) return true
        value = value.slice(1, -1).replace(/\\(.)/g, '$1')
      }
      if (!TOKEN.test(key) || (value !== undefined && !TOKEN.test(value))) return true
      if (name !== 'permessage-deflate') continue
      if (seen.has(key) || !deflateParam(key, value)) return true
      seen.add(key)
    }
  }
  return false
}
