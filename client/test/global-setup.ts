// vitest globalSetup for client/test: builds the client bundles (tsc + rollup) when src/ is
// newer than dist/, so the bundle, size and browser tests always see the current source.
import { execFileSync } from 'node:child_process'
import { join } from 'node:path'

export default function setup(): void {
  execFileSync(process.execPath, [join(__dirname, '..', 'scripts', 'build.mjs'), '--if-stale'], { stdio: 'inherit' })
}
