// Builds what is missing before `npm start` / `npm test`: dependencies, the native engine
// (release mode) and the TypeScript facade. Each step runs only when its output is missing
// or older than its sources, so a second run costs nothing.
import { execSync } from 'node:child_process'
import { existsSync, readdirSync, statSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const run = (cmd) => execSync(cmd, { cwd: root, stdio: 'inherit' })

/** Newest modification time among files (recursively) at the given paths; 0 when none exist. */
function newest(...paths) {
  let t = 0
  for (const rel of paths) {
    const p = join(root, rel)
    if (!existsSync(p)) continue
    const s = statSync(p)
    if (!s.isDirectory()) t = Math.max(t, s.mtimeMs)
    else for (const name of readdirSync(p)) t = Math.max(t, newest(join(rel, name)))
  }
  return t
}

/** Oldest output among the given files; 0 when one is missing. */
function oldest(...paths) {
  let t = Infinity
  for (const rel of paths) {
    const p = join(root, rel)
    if (!existsSync(p)) return 0
    t = Math.min(t, statSync(p).mtimeMs)
  }
  return t
}

if (oldest('node_modules/.package-lock.json') < newest('package-lock.json')) {
  console.log('[bootstrap] installing dependencies: npm ci')
  run('npm ci --no-audit --no-fund')
}

const nodeFiles = existsSync(join(root, 'native-build'))
  ? readdirSync(join(root, 'native-build')).filter((f) => f.endsWith('.node')).map((f) => join('native-build', f))
  : []
if (nodeFiles.length === 0 || oldest(...nodeFiles) < newest('native', 'Cargo.toml', 'Cargo.lock', 'build.rs')) {
  console.log('[bootstrap] building the native engine (cargo, release mode)')
  run('npm run build:native')
}

if (oldest('dist/index.js') < newest('lib', 'tsconfig.json', 'tsconfig.build.json')) {
  console.log('[bootstrap] compiling the TypeScript facade')
  run('npm run build:ts')
}
