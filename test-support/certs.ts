// Throwaway TLS certificates for the native TLS suites, made with the openssl CLI in a temp
// directory for each run (no key is ever committed): a test CA, leaf certificates it signs
// (server or client, any names, expired), and an encrypted key.
import { execFileSync, spawnSync } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll } from 'vitest'

/** Whether the openssl CLI is there (Linux CI has it); without it the TLS suites skip. */
export const HAVE_OPENSSL = spawnSync('openssl', ['version']).status === 0

export interface Pair {
  cert: string
  key: string
}

export interface Leaf extends Pair {
  /** SHA-256 fingerprint as Node's X509Certificate spells it. */
  fingerprint256: string
}

export interface TestCa extends Pair {
  /** A certificate signed by this CA: `cn` and DNS `names` (plus IP 127.0.0.1 for servers). */
  leaf(cn: string, names?: string[], options?: { days?: number; client?: boolean }): Leaf
  /** A new key encrypted with `passphrase` (PKCS#8, AES-256-CBC) and a certificate for it. */
  encrypted(passphrase: string): Pair
  /** Removes the files. */
  dispose(): void
}

function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: 'ignore' })
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1']

export function makeCa(name = 'rnode test CA'): TestCa {
  const dir = mkdtempSync(join(tmpdir(), 'rnode-tls-'))
  const file = (f: string): string => join(dir, f)
  openssl(['req', '-x509', ...EC, '-nodes', '-days', '2', '-subj', `/CN=${name}`, '-keyout', file('ca.key'), '-out', file('ca.pem')])
  let serial = 0
  const sign = (csr: string, out: string, ext: string, days: number): void => {
    writeFileSync(file('ext'), ext)
    openssl(['x509', '-req', '-in', csr, '-CA', file('ca.pem'), '-CAkey', file('ca.key'), '-set_serial', String(++serial + 1000),
      '-days', String(days), '-extfile', file('ext'), '-out', out])
  }
  return {
    cert: readFileSync(file('ca.pem'), 'latin1'),
    key: readFileSync(file('ca.key'), 'latin1'),
    leaf(cn, names = ['localhost'], options = {}) {
      const n = ++serial
      openssl(['req', ...EC, '-nodes', '-subj', `/CN=${cn}/O=rnode tests`, '-keyout', file(`${n}.key`), '-out', file(`${n}.csr`)])
      const san = options.client ? '' : `subjectAltName=${[...names.map((d) => `DNS:${d}`), 'IP:127.0.0.1'].join(',')}\n`
      const usage = options.client ? 'extendedKeyUsage=clientAuth\n' : 'extendedKeyUsage=serverAuth\n'
      sign(file(`${n}.csr`), file(`${n}.pem`), san + usage, options.days ?? 1)
      const cert = readFileSync(file(`${n}.pem`), 'latin1')
      return { cert, key: readFileSync(file(`${n}.key`), 'latin1'), fingerprint256: new X509Certificate(cert).fingerprint256 }
    },
    encrypted(passphrase) {
      const n = ++serial
      openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-aes-256-cbc', '-pass', `pass:${passphrase}`,
        '-out', file(`${n}.key`)])
      openssl(['req', '-new', '-key', file(`${n}.key`), '-passin', `pass:${passphrase}`, '-subj', '/CN=encrypted', '-out', file(`${n}.csr`)])
      sign(file(`${n}.csr`), file(`${n}.pem`), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n', 1)
      return { cert: readFileSync(file(`${n}.pem`), 'latin1'), key: readFileSync(file(`${n}.key`), 'latin1') }
    },
    dispose() {
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** A test CA and a certificate for `localhost` from it, made before the suite, removed after. */
export function suiteCertificates(): { ca: TestCa; leaf: Leaf } {
  const out = {} as { ca: TestCa; leaf: Leaf }
  beforeAll(() => {
    if (!HAVE_OPENSSL) return
    out.ca = makeCa()
    out.leaf = out.ca.leaf('localhost')
  })
  afterAll(() => out.ca?.dispose())
  return out
}
