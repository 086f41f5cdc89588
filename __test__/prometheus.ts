// The exposition checked by a real parser: the official Python client's
// `text_string_to_metric_families`, from a venv (PROMETHEUS_PYTHON, or .venv-metrics, made here
// with pip when missing; .ci/run makes it up front).
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'

const root = join(__dirname, '..')
const VENV = join(root, '.venv-metrics')
/** The version the tests were written against. */
export const PROMETHEUS_CLIENT = 'prometheus-client==0.26.0'

export interface Family {
  type: string
  help: string
  samples: Array<[string, Record<string, string>, number | string]>
}

/** A Python that can import prometheus_client; made on first use. */
export function prometheusPython(): string {
  const given = process.env.PROMETHEUS_PYTHON
  if (given) return given
  const python = join(VENV, process.platform === 'win32' ? 'Scripts/python.exe' : 'bin/python')
  if (!existsSync(python)) execFileSync('python3', ['-m', 'venv', VENV], { stdio: 'inherit' })
  const probe = spawnSync(python, ['-c', 'import prometheus_client'])
  if (probe.status !== 0) {
    execFileSync(python, ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', PROMETHEUS_CLIENT], {
      stdio: 'inherit',
    })
  }
  return python
}

/** Parses an exposition; throws with the parser's message when it does not parse. */
export function parseExposition(text: string): Record<string, Family> {
  const result = spawnSync(prometheusPython(), [join(__dirname, 'fixtures', 'parse-metrics.py')], {
    input: text,
    encoding: 'utf8',
  })
  if (result.status !== 0) throw new Error(`exposition does not parse: ${result.stderr}`)
  return JSON.parse(result.stdout) as Record<string, Family>
}

/** The value of one sample (0 when the series is absent, as Prometheus treats a missing counter). */
export function sample(
  families: Record<string, Family>,
  family: string,
  name: string,
  labels: Record<string, string> = {},
): number {
  const f = families[family]
  if (!f) return 0
  const found = f.samples.find(
    ([n, l]) => n === name && Object.keys(labels).every((k) => l[k] === labels[k]) && Object.keys(l).length >= Object.keys(labels).length,
  )
  return found ? Number(found[2]) : 0
}
