// Builds the client: tsc (strict type check, .js + .d.ts), then rollup bundles the .js into
// ESM, CJS, UMD and IIFE (global `RNodeWebSocket`), the UMD and IIFE also minified.
// `node scripts/build.mjs --if-stale` skips the build when dist/ is newer than src/.
import { execFileSync } from 'node:child_process'
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { rollup } from 'rollup'
import terser from '@rollup/plugin-terser'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const require = createRequire(import.meta.url)

/** Outputs every build produces; the tests and package.json name them. */
export const OUTPUTS = [
  'dist/index.mjs',
  'dist/index.cjs',
  'dist/index.umd.js',
  'dist/index.umd.min.js',
  'dist/rnode-websocket.iife.js',
  'dist/rnode-websocket.iife.min.js',
  'dist/types/index.d.ts',
]

function newestSource(dir) {
  let t = 0
  for (const name of readdirSync(dir)) {
    const p = join(dir, name)
    const s = statSync(p)
    t = Math.max(t, s.isDirectory() ? newestSource(p) : s.mtimeMs)
  }
  return t
}

function isStale() {
  const sources = Math.max(newestSource(join(root, 'src')), statSync(join(root, 'scripts/build.mjs')).mtimeMs)
  return OUTPUTS.some((f) => !existsSync(join(root, f)) || statSync(join(root, f)).mtimeMs < sources)
}

export async function build() {
  rmSync(join(root, 'build'), { recursive: true, force: true })
  rmSync(join(root, 'dist'), { recursive: true, force: true })
  execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', join(root, 'tsconfig.json')], {
    stdio: 'inherit',
  })
  const bundle = await rollup({ input: join(root, 'build/js/index.js') })
  const min = terser({ ecma: 2020, compress: { passes: 2 } })
  const name = 'RNodeWebSocket'
  await bundle.write({ file: join(root, 'dist/index.mjs'), format: 'es' })
  await bundle.write({ file: join(root, 'dist/index.cjs'), format: 'cjs', exports: 'named' })
  await bundle.write({ file: join(root, 'dist/index.umd.js'), format: 'umd', name, exports: 'named' })
  await bundle.write({ file: join(root, 'dist/index.umd.min.js'), format: 'umd', name, exports: 'named', plugins: [min] })
  await bundle.write({ file: join(root, 'dist/rnode-websocket.iife.js'), format: 'iife', name, exports: 'named' })
  await bundle.write({
    file: join(root, 'dist/rnode-websocket.iife.min.js'),
    format: 'iife',
    name,
    exports: 'named',
    plugins: [min],
  })
  await bundle.close()
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (process.argv.includes('--if-stale') && !isStale()) {
    console.log('[client] build is up to date')
  } else {
    await build()
    console.log('[client] built', OUTPUTS.join(', '))
  }
}
