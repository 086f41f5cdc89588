// `npm run verify:package`: proves that a user gets a working server from the published
// tarballs alone, without compiling Rust. It packs the root package (with the manifest the
// release publishes, see releaseManifest) and this platform's
// package (with the engine built in native-build/), installs both into a fresh project
// outside the repository with cargo and rustc absent from PATH and no registry access
// (a private empty npm cache plus --offline: the other platforms' optional packages
// fail to resolve, which npm tolerates for optional dependencies), then echoes one
// message through `new WsServer(0)` with the `ws` client. Assumes
// `node scripts/bootstrap.mjs` has already built native-build/ and dist/.
import { execFileSync, spawnSync } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { delimiter, dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const started = Date.now()
const isWindows = process.platform === 'win32'

/** The napi platform suffix, detected the way lib/binding.ts does it. */
function platformTriple() {
  const { platform, arch } = process
  if (platform === 'linux') {
    const libc = process.report?.getReport()?.header?.glibcVersionRuntime ? 'gnu' : 'musl'
    return `linux-${arch}-${libc}`
  }
  if (platform === 'win32') return `win32-${arch}-msvc`
  return `${platform}-${arch}`
}

function fail(message) {
  console.error(`[verify:package] FAIL: ${message}`)
  process.exit(1)
}

function step(message) {
  console.log(`[verify:package] ${message}`)
}

/** How to run npm without relying on PATH: the npm-cli.js that runs this script, else the one beside node. */
function npmCommand() {
  const candidates = [
    process.env.npm_execpath,
    join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js'),
    join(dirname(process.execPath), 'node_modules', 'npm', 'bin', 'npm-cli.js'),
  ]
  const cli = candidates.find((p) => p && /npm-cli\.js$/.test(p) && existsSync(p))
  if (!cli) fail('cannot locate npm-cli.js (run this through `npm run verify:package`)')
  return [process.execPath, [cli]]
}

/** PATH without any directory that holds cargo or rustc. */
function pathWithoutRust() {
  const names = isWindows ? ['cargo.exe', 'rustc.exe'] : ['cargo', 'rustc']
  const key = Object.keys(process.env).find((k) => k.toUpperCase() === 'PATH') ?? 'PATH'
  const dirs = (process.env[key] ?? '').split(delimiter).filter(Boolean)
  const kept = dirs.filter((dir) => !names.some((n) => existsSync(join(dir, n))))
  return { key, value: kept.join(delimiter), removed: [...new Set(dirs.filter((d) => !kept.includes(d)))] }
}

/**
 * The root manifest as published: `optionalDependencies` on every `npm/<platform>` package at
 * the root's version. The release writes it (`--write-release-manifest`) just before publishing,
 * as napi-rs's pre-publish does: committed before those packages exist on the registry, the
 * entries would put package.json and package-lock.json out of sync and `npm ci` would refuse.
 */
function releaseManifest(pkg) {
  const optionalDependencies = {}
  for (const dir of readdirSync(join(root, 'npm')).sort()) {
    const file = join(root, 'npm', dir, 'package.json')
    if (existsSync(file)) optionalDependencies[JSON.parse(readFileSync(file, 'utf8')).name] = pkg.version
  }
  return { ...pkg, optionalDependencies }
}

if (process.argv.includes('--print-release-manifest')) {
  console.log(JSON.stringify(releaseManifest(JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))), null, 2))
  process.exit(0)
}
if (process.argv.includes('--write-release-manifest')) {
  const file = join(root, 'package.json')
  const manifest = releaseManifest(JSON.parse(readFileSync(file, 'utf8')))
  writeFileSync(file, JSON.stringify(manifest, null, 2) + '\n')
  console.log(`[verify:package] package.json: optionalDependencies ${JSON.stringify(manifest.optionalDependencies)}`)
  process.exit(0)
}

const triple = platformTriple()
const platformDir = join(root, 'npm', triple)
const binaryName = `rnode-ws.${triple}.node`
const built = join(root, 'native-build', binaryName)
if (!existsSync(join(platformDir, 'package.json'))) fail(`no platform package npm/${triple}/ for this machine`)
if (!existsSync(built)) fail(`${built} is missing: run \`node scripts/bootstrap.mjs\` first`)
if (!existsSync(join(root, 'dist', 'index.js'))) fail('dist/index.js is missing: run `node scripts/bootstrap.mjs` first')
const wsDir = join(root, 'node_modules', 'ws')
if (!existsSync(join(wsDir, 'package.json'))) fail('node_modules/ws is missing: run `npm ci` first')

const rootPkg = releaseManifest(JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')))
const platformPkg = JSON.parse(readFileSync(join(platformDir, 'package.json'), 'utf8'))
if (platformPkg.version !== rootPkg.version) {
  fail(`npm/${triple} is version ${platformPkg.version}, the root package ${rootPkg.version}`)
}

const [npmNode, npmArgs] = npmCommand()
const work = mkdtempSync(join(tmpdir(), 'rnode-ws-verify-'))
const tarballs = join(work, 'tarballs')
const app = join(work, 'app')
const stage = join(work, 'root-package')
mkdirSync(tarballs)
mkdirSync(app)
mkdirSync(stage)
const stripped = pathWithoutRust()
const env = { ...process.env, [stripped.key]: stripped.value }
for (const k of Object.keys(env)) if (k.startsWith('npm_') || k === 'INIT_CWD') delete env[k]
env.npm_config_cache = join(work, 'npm-cache')
env.npm_config_update_notifier = 'false'

/** Runs npm in `cwd` with the Rust-free PATH; returns stdout, fails loudly with npm's output. */
function npm(cwd, args) {
  const r = spawnSync(npmNode, [...npmArgs, ...args], { cwd, env, encoding: 'utf8', timeout: 120_000 })
  if (r.status !== 0) {
    fail(`npm ${args.join(' ')} (in ${cwd}) exited ${r.status ?? r.signal}\n${r.stdout}\n${r.stderr}`)
  }
  return r.stdout
}

/** `npm pack` of a directory into the tarball folder; returns npm's description of the tarball. */
function pack(dir) {
  const [info] = JSON.parse(npm(dir, ['pack', '--json', '--ignore-scripts', '--pack-destination', tarballs]))
  info.path = join(tarballs, info.filename)
  info.bytes = statSync(info.path).size
  return info
}

// Runs inside the temporary project: only the installed packages are reachable from there.
const SMOKE = String.raw`
const assert = require('node:assert/strict')
const { WsServer } = require('@rnode/ws')
const WebSocket = require('ws')

const engine = require.resolve('@rnode/ws-${triple}')
assert.ok(!require('node:path').relative(process.cwd(), engine).startsWith('..'), 'engine resolved outside the project: ' + engine)

// The ws-compatible API is a subpath export of the same tarball.
assert.equal(typeof require('@rnode/ws/compat').WebSocketServer, 'function', '@rnode/ws/compat did not load')

const manifest = require('@rnode/ws/package.json')
assert.equal(manifest.optionalDependencies?.['@rnode/ws-${triple}'], manifest.version, 'published manifest lacks the platform package')

async function main() {
  const server = new WsServer(0)
  server.websocket('/echo', { onMessage: (socket, message) => socket.send(message) })
  const { port } = await server.listen()
  assert.ok(port > 0, 'listen() gave no port')
  const ws = new WebSocket('ws://127.0.0.1:' + port + '/echo')
  const reply = await new Promise((resolve, reject) => {
    ws.once('open', () => ws.send('hello from the tarball'))
    ws.once('message', (data, isBinary) => resolve(isBinary ? data : String(data)))
    ws.once('error', reject)
    setTimeout(() => reject(new Error('no echo within 5 s')), 5000).unref()
  })
  assert.equal(reply, 'hello from the tarball')
  const code = await new Promise((resolve) => { ws.once('close', resolve); ws.close(1000) })
  assert.equal(code, 1000)
  await server.close()
  console.log('[smoke] @rnode/ws ' + manifest.version + ' on ${triple}: echoed over port ' + port + ', closed 1000 (engine ' + engine + ')')
}
main().then(
  // The addon must not keep the process alive after close(): exit on our own only if it does.
  () => { setTimeout(() => { console.error('[smoke] process still alive 5 s after close()'); process.exit(3) }, 5000).unref() },
  (err) => { console.error(err); process.exit(1) },
)
`

let ok = false
try {
  const cargo = spawnSync(isWindows ? 'cargo.exe' : 'cargo', ['--version'], { env })
  if (!cargo.error) fail('cargo is still reachable on the stripped PATH')
  step(`PATH without Rust (removed: ${stripped.removed.join(', ') || 'nothing, none on PATH'})`)

  // The root package is packed from a copy of exactly what npm would ship, with the release manifest.
  const [listing] = JSON.parse(npm(root, ['pack', '--dry-run', '--json', '--ignore-scripts']))
  for (const { path } of listing.files) {
    if (path === 'package.json') continue
    mkdirSync(dirname(join(stage, path)), { recursive: true })
    copyFileSync(join(root, path), join(stage, path))
  }
  writeFileSync(join(stage, 'package.json'), JSON.stringify(rootPkg, null, 2) + '\n')
  copyFileSync(built, join(platformDir, binaryName))
  const rootTgz = pack(stage)
  const platformTgz = pack(platformDir)
  const wsTgz = pack(wsDir)
  const shipped = rootTgz.files.map((f) => f.path)
  const unwanted = shipped.filter((p) => /^(native|target|native-build|__test__|benches|client|scripts|npm)\/|\.rs$|\.node$|^Cargo\./.test(p))
  if (unwanted.length) fail(`root tarball ships files users do not need: ${unwanted.join(', ')}`)
  if (!shipped.includes('dist/index.js')) fail('root tarball lacks dist/index.js')
  // dist/binding.d.ts imports the engine's generated declarations.
  if (!shipped.includes('dist/native.d.ts')) fail('root tarball lacks dist/native.d.ts')
  if (!platformTgz.files.some((f) => f.path === binaryName)) fail(`${platformTgz.filename} lacks ${binaryName}`)

  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'rnode-ws-verify', private: true }, null, 2))
  npm(app, [
    'install', '--offline', '--no-audit', '--no-fund', '--ignore-scripts', '--loglevel=error',
    rootTgz.path, platformTgz.path, wsTgz.path,
  ])

  writeFileSync(join(app, 'smoke.cjs'), SMOKE)
  const run = spawnSync(process.execPath, ['smoke.cjs'], { cwd: app, env, encoding: 'utf8', timeout: 30_000 })
  process.stdout.write(run.stdout)
  if (run.status !== 0) fail(`smoke test exited ${run.status ?? run.signal}\n${run.stderr}`)

  console.log('[verify:package] tarballs:')
  for (const t of [rootTgz, platformTgz]) {
    console.log(`  ${t.filename.padEnd(40)} ${(t.bytes / 1024).toFixed(1).padStart(8)} KiB packed, ` +
      `${(t.unpackedSize / 1024).toFixed(1).padStart(8)} KiB unpacked, ${t.entryCount} files`)
  }
  ok = true
} finally {
  rmSync(join(platformDir, binaryName), { force: true })
  rmSync(work, { recursive: true, force: true })
}
if (ok) step(`OK in ${((Date.now() - started) / 1000).toFixed(1)} s`)
