// The `tls` option (native TLS on the server's own port): PEM certificates and keys as Node's
// `tls` module takes them, checked here and handed to the engine as text; the engine's TLS
// errors rethrown as TypeErrors with their codes; the client certificate as `onUpgrade` sees it.
import { X509Certificate } from 'node:crypto'
import type { NativeCertKey, NativeTls } from './binding'
import { codedTypeError, type ErrorCode } from './errors'

/** PEM text: a string, a Buffer, or a list of them (joined, as Node does). */
export type Pem = string | Buffer | Array<string | Buffer>

/** A certificate chain and its private key. */
export interface SecureContextOptions {
  /** PEM: the server's certificate first, then its intermediates. */
  cert: Pem
  /** PEM private key: PKCS#8, PKCS#1 (RSA), SEC1 (EC), or encrypted PKCS#8 with `passphrase`. */
  key: Pem
  /** Decrypts an `ENCRYPTED PRIVATE KEY`. */
  passphrase?: string
}

/** The `tls` option of `new WsServer()`. */
export interface TlsOptions extends SecureContextOptions {
  /** PEM certificates of the authorities client certificates must chain to (with `requestCert`). */
  ca?: Pem
  /** Ask every client for a certificate signed by `ca`; one without is refused. Default false. */
  requestCert?: boolean
  /** Certificates per SNI host name (`'a.example'`, or `'*.example'` for one label in front). */
  serverNames?: Record<string, SecureContextOptions>
}

/** The client's certificate (`requestCert`), as `onUpgrade` sees it. */
export interface PeerCertificate {
  /** Subject fields, e.g. `{ CN: 'alice', O: 'Example' }`. */
  subject: Record<string, string>
  issuer: Record<string, string>
  subjectAltName: string | undefined
  serialNumber: string
  validFrom: string
  validTo: string
  /** SHA-256 fingerprint, colon-separated hex. */
  fingerprint256: string
  /** The certificate, DER. */
  raw: Buffer
}

const TLS_CODES: ReadonlySet<string> = new Set<ErrorCode>(['ERR_INVALID_CERT', 'ERR_INVALID_KEY', 'ERR_BAD_PASSPHRASE'])

function pemText(value: unknown, name: string, code: ErrorCode): string {
  const one = (v: unknown): string => {
    if (typeof v === 'string') return v
    if (Buffer.isBuffer(v)) return v.toString('latin1')
    throw codedTypeError(code, `${name} must be PEM text: a string, a Buffer, or a list of them`)
  }
  const text = Array.isArray(value) ? value.map(one).join('\n') : one(value)
  if (text.length === 0) throw codedTypeError(code, `${name} must not be empty`)
  return text
}

/** A `{ cert, key, passphrase? }` argument for the engine; `code` is the caller's bad-input code. */
export function toNativeCertKey(value: unknown, name: string, code: ErrorCode): NativeCertKey {
  if (typeof value !== 'object' || value === null) throw codedTypeError(code, `${name} must be an object: { cert, key, passphrase? }`)
  const { cert, key, passphrase } = value as { cert?: unknown; key?: unknown; passphrase?: unknown }
  const out: NativeCertKey = { cert: pemText(cert, `${name}.cert`, code), key: pemText(key, `${name}.key`, code) }
  if (passphrase !== undefined) {
    if (typeof passphrase !== 'string') throw codedTypeError(code, `${name}.passphrase must be a string`)
    out.passphrase = passphrase
  }
  return out
}

/** The `tls` option, checked (types here; certificates and keys by the engine). */
export function toNativeTls(value: unknown): NativeTls {
  if (typeof value !== 'object' || value === null) throw codedTypeError('ERR_INVALID_OPTION', 'tls must be an object: { cert, key, ... }')
  const input = value as TlsOptions
  const out: NativeTls = { cert: toNativeCertKey(input, 'tls', 'ERR_INVALID_OPTION') }
  if (input.ca !== undefined) out.ca = pemText(input.ca, 'tls.ca', 'ERR_INVALID_OPTION')
  if (input.requestCert !== undefined) {
    if (typeof input.requestCert !== 'boolean') throw codedTypeError('ERR_INVALID_OPTION', 'tls.requestCert must be a boolean')
    if (input.requestCert && input.ca === undefined) throw codedTypeError('ERR_INVALID_OPTION', 'tls.requestCert needs tls.ca')
    out.requestCert = input.requestCert
  }
  if (input.serverNames !== undefined) {
    if (typeof input.serverNames !== 'object' || input.serverNames === null) {
      throw codedTypeError('ERR_INVALID_OPTION', 'tls.serverNames must be an object of host name -> { cert, key }')
    }
    out.serverNames = Object.entries(input.serverNames).map(([name, pair]) => ({
      name,
      cert: toNativeCertKey(pair, `tls.serverNames[${JSON.stringify(name)}]`, 'ERR_INVALID_OPTION'),
    }))
  }
  return out
}

/** Runs an engine call that takes certificates; its TLS errors become TypeErrors with their code. */
export function withTlsErrors<T>(call: () => T): T {
  try {
    return call()
  } catch (err) {
    const code = (err as { code?: unknown }).code
    if (typeof code === 'string' && TLS_CODES.has(code)) {
      const message = err instanceof Error ? err.message : String(err)
      throw codedTypeError(code as ErrorCode, message)
    }
    throw err
  }
}

/** `CN=a\nO=b` (Node's X509Certificate form) as `{ CN: 'a', O: 'b' }`. */
function names(text: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=')
    if (eq > 0) out[line.slice(0, eq)] = line.slice(eq + 1)
  }
  return out
}

/** The client certificate the engine passed (base64 DER), or undefined. */
export function peerCertificate(base64: string | undefined): PeerCertificate | undefined {
  if (base64 === undefined) return undefined
  const raw = Buffer.from(base64, 'base64')
  const x509 = new X509Certificate(raw)
  return {
    subject: names(x509.subject),
    issuer: names(x509.issuer),
    subjectAltName: x509.subjectAltName,
    serialNumber: x509.serialNumber,
    validFrom: x509.validFrom,
    validTo: x509.validTo,
    fingerprint256: x509.fingerprint256,
    raw,
  }
}
