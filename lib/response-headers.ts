// Header lines an application adds to the 101 (onUpgrade's `headers`, the compat 'headers'
// event): `Name: value`, checked here so a CR or LF from JS cannot split the response. The engine
// checks them again before writing.

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
// Visible ASCII, Latin-1 text, spaces and tabs: no CR, LF, NUL or other control character.
const VALUE = /^[\t\x20-\x7e\x80-\xff]*$/
/** The 101's own headers: the handshake sets them, an added line may not repeat them. */
const OWN = new Set(['upgrade', 'connection', 'sec-websocket-accept', 'sec-websocket-protocol', 'sec-websocket-extensions'])

/** Why `line` cannot go into the 101, or undefined when it can. */
export function badHeaderLine(line: unknown): string | undefined {
  if (typeof line !== 'string') return 'it is not a string'
  const colon = line.indexOf(':')
  if (colon === -1) return 'it has no colon (a header line is "Name: value")'
  const name = line.slice(0, colon)
  if (!TOKEN.test(name)) return `its name ${JSON.stringify(name)} is not an HTTP token`
  if (!VALUE.test(line.slice(colon + 1))) return 'its value holds a control character (CR, LF, NUL...)'
  if (OWN.has(name.toLowerCase())) return `${name} is set by the handshake itself`
  return undefined
}
