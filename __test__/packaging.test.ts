// The release machinery: workflow files parse and have the promised shape, and the platform
// packages under npm/ agree with the root package. actionlint, when on PATH, checks the rest.
import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { parse } from 'yaml'

const root = join(__dirname, '..')
const workflowsDir = join(root, '.github', 'workflows')
const readJson = (path: string) => JSON.parse(readFileSync(path, 'utf8'))

interface Step {
  uses?: string
  run?: string
  name?: string
}
interface Job {
  'runs-on'?: string
  uses?: string
  needs?: string | string[]
  steps?: Step[]
  strategy?: { matrix?: Record<string, unknown> & { include?: Record<string, string>[] } }
}
interface Workflow {
  name: string
  on: unknown
  jobs: Record<string, Job>
}

const workflowFiles = readdirSync(workflowsDir).filter((f) => /\.ya?ml$/.test(f))
const workflows: Record<string, Workflow> = Object.fromEntries(
  workflowFiles.map((f) => [f, parse(readFileSync(join(workflowsDir, f), 'utf8')) as Workflow]),
)
const runs = (job: Job) => (job.steps ?? []).map((s) => s.run ?? '').join('\n')

/** napi target triple -> npm/ directory, as napi-rs names them. */
const TARGETS: Record<string, string> = {
  'x86_64-unknown-linux-gnu': 'linux-x64-gnu',
  'x86_64-unknown-linux-musl': 'linux-x64-musl',
  'aarch64-unknown-linux-gnu': 'linux-arm64-gnu',
  'x86_64-apple-darwin': 'darwin-x64',
  'aarch64-apple-darwin': 'darwin-arm64',
  'x86_64-pc-windows-msvc': 'win32-x64-msvc',
}

describe('workflow files', () => {
  it('CI.yml and release.yml exist', () => {
    expect(workflowFiles).toEqual(expect.arrayContaining(['CI.yml', 'release.yml']))
  })

  it.each(workflowFiles)('%s: every job runs somewhere and has steps (or calls a workflow)', (file) => {
    const wf = workflows[file]
    expect(wf.name).toBeTruthy()
    expect(wf.on).toBeTruthy()
    expect(Object.keys(wf.jobs).length).toBeGreaterThan(0)
    for (const [id, job] of Object.entries(wf.jobs)) {
      if (job.uses) {
        expect(existsSync(join(root, job.uses)), `${file}/${id} calls ${job.uses}`).toBe(true)
        continue
      }
      expect(job['runs-on'], `${file}/${id} runs-on`).toBeTruthy()
      expect(job.steps?.length, `${file}/${id} steps`).toBeGreaterThan(0)
      for (const step of job.steps!) expect(Boolean(step.uses) !== Boolean(step.run), `${file}/${id}: a step either uses or runs`).toBe(true)
      const needs = [job.needs ?? []].flat()
      for (const need of needs) expect(Object.keys(wf.jobs), `${file}/${id} needs ${need}`).toContain(need)
    }
  })

  it('CI builds all six targets with the napi-rs cross tooling', () => {
    const build = workflows['CI.yml'].jobs.build
    const settings = build.strategy!.matrix!.settings as { host: string; target: string; flags: string }[]
    expect(settings.map((s) => s.target).sort()).toEqual(Object.keys(TARGETS).sort())
    const flags = Object.fromEntries(settings.map((s) => [s.target, s.flags]))
    expect(flags['x86_64-unknown-linux-musl']).toMatch(/--cross-compile|-x\b/)
    expect(flags['aarch64-unknown-linux-gnu']).toMatch(/--use-napi-cross/)
    expect(runs(build)).toMatch(/napi build .*--target \$\{\{ matrix\.settings\.target \}\}/)
    expect(build.steps!.some((s) => s.uses?.startsWith('actions/upload-artifact@'))).toBe(true)
  })

  it('CI tests on Linux, macOS and Windows with Node 20, 22 and 24', () => {
    const test = workflows['CI.yml'].jobs.test
    const matrix = test.strategy!.matrix!
    expect(matrix.os).toEqual(['ubuntu-latest', 'macos-latest', 'windows-latest'])
    expect((matrix.node as string[]).map(String)).toEqual(['20', '22', '24'])
    expect([test.needs].flat()).toContain('build')
    // each OS is told which built binary to download, and that binary is one CI builds
    for (const os of matrix.os as string[]) {
      const target = matrix.include!.find((i) => i.os === os)?.target
      expect(Object.keys(TARGETS), os).toContain(target)
    }
    expect(runs(test)).toContain('npm test')
    expect(runs(test)).toContain('npm run verify:package')
  })

  it('CI lints: cargo fmt, clippy with -D warnings, cargo test --lib, tsc --noEmit, npm test, verify:package', () => {
    const lint = runs(workflows['CI.yml'].jobs.lint)
    for (const cmd of [
      'cargo fmt --all --check',
      'cargo clippy --workspace --all-targets -- -D warnings',
      'cargo test --lib',
      'tsc --noEmit',
      'npm test',
      'npm run verify:package',
    ]) {
      expect(lint).toContain(cmd)
    }
  })

  it('release publishes platform packages, then the root package, with provenance; the client on its own tag', () => {
    const wf = workflows['release.yml']
    expect(JSON.stringify(wf.on)).toContain('v*')
    expect(wf.jobs.ci.uses).toBe('./.github/workflows/CI.yml')
    const publish = wf.jobs.publish
    expect([publish.needs].flat()).toContain('ci')
    const names = publish.steps!.map((s) => s.name ?? '')
    const platforms = names.findIndex((n) => /platform packages/i.test(n))
    const rootPkg = names.findIndex((n) => n === 'Publish @rnode/ws')
    expect(platforms).toBeGreaterThan(-1)
    expect(rootPkg).toBeGreaterThan(platforms)
    const script = runs(publish)
    expect(script.match(/npm publish[^\n]*--provenance/g)?.length).toBe(2)
    expect(script).toContain('--write-release-manifest')
    const client = runs(wf.jobs['publish-client'])
    expect(client).toMatch(/npm publish -w client[^\n]*--provenance/)
  })

  it('actionlint passes (when installed)', () => {
    const probe = spawnSync('actionlint', ['-version'])
    if (probe.error) return
    const r = spawnSync('actionlint', ['-no-color', '-oneline'], { cwd: root, encoding: 'utf8' })
    expect(r.stdout + r.stderr).toBe('')
    expect(r.status).toBe(0)
  })
})

describe('platform packages', () => {
  const rootPkg = readJson(join(root, 'package.json'))
  const dirs = readdirSync(join(root, 'npm')).sort()

  it('npm/ has one package per napi target, and napi.targets lists exactly the six', () => {
    expect([...rootPkg.napi.targets].sort()).toEqual(Object.keys(TARGETS).sort())
    expect(dirs).toEqual(Object.values(TARGETS).sort())
  })

  it.each(Object.entries(TARGETS))('%s -> npm/%s follows the napi-rs v3 conventions', (_target, dir) => {
    const pkg = readJson(join(root, 'npm', dir, 'package.json'))
    const binary = `${rootPkg.napi.binaryName}.${dir}.node`
    const [os, cpu, abi] = dir.split('-')
    expect(pkg.name).toBe(`${rootPkg.napi.packageName}-${dir}`)
    expect(pkg.version).toBe(rootPkg.version)
    expect(pkg.os).toEqual([os])
    expect(pkg.cpu).toEqual([cpu])
    expect(pkg.main).toBe(binary)
    expect(pkg.files).toEqual([binary])
    if (abi === 'gnu') expect(pkg.libc).toEqual(['glibc'])
    else if (abi === 'musl') expect(pkg.libc).toEqual(['musl'])
    else expect(pkg.libc).toBeUndefined()
    expect(pkg.license).toBe(rootPkg.license)
    expect(pkg.engines).toEqual(rootPkg.engines)
    expect(pkg.publishConfig?.access).toBe('public')
  })

  it('the published root manifest depends optionally on every platform package at the same version', () => {
    // verify-package.mjs --write-release-manifest is what release.yml runs before publishing.
    const script = readFileSync(join(root, 'scripts', 'verify-package.mjs'), 'utf8')
    expect(script).toContain('--write-release-manifest')
    const expected = Object.fromEntries(dirs.map((d) => [`${rootPkg.napi.packageName}-${d}`, rootPkg.version]))
    // Committed entries, if any, must agree too (they can be, once the packages are published).
    if (rootPkg.optionalDependencies) expect(rootPkg.optionalDependencies).toEqual(expected)
    const r = spawnSync(process.execPath, [join(root, 'scripts', 'verify-package.mjs'), '--print-release-manifest'], {
      encoding: 'utf8',
    })
    expect(r.status, r.stderr).toBe(0)
    expect(JSON.parse(r.stdout).optionalDependencies).toEqual(expected)
  })

  it('the root package ships only the compiled facade', () => {
    expect(rootPkg.files).toEqual(['dist/'])
    expect(rootPkg.main.startsWith('dist/')).toBe(true)
  })
})
