// Reading callgrind's output: the instructions (Ir) of a dump in total and per object file
// (the engine's .node, the node binary, libc, JIT code as "???"), from the self costs.
import { readFileSync } from 'node:fs'

/**
 * `{ total, byObject: { path: Ir } }` of one callgrind output file (the format of
 * valgrind's docs/cl-format: `ob=` names the object of the following `fn=` blocks; a cost line
 * right after `calls=` is the callee's inclusive cost and is not counted again).
 */
export function instructionsByObject(file) {
  const names = new Map()
  const byObject = {}
  let object = '???'
  let afterCalls = false
  let total = null
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const c = line.charCodeAt(0)
    const isCost = (c >= 48 && c <= 57) || c === 43 || c === 45 || c === 42
    if (isCost) {
      if (afterCalls) afterCalls = false
      else {
        const ir = Number(line.slice(line.lastIndexOf(' ') + 1))
        if (Number.isFinite(ir)) byObject[object] = (byObject[object] ?? 0) + ir
      }
    } else if (line.startsWith('ob=')) object = compressed(names, line.slice(3))
    else if (line.startsWith('calls=')) afterCalls = true
    else if (line.startsWith('cob=')) compressed(names, line.slice(4))
    else if (line.startsWith('summary:') || line.startsWith('totals:')) total = Number(line.split(/\s+/)[1])
  }
  return { total, byObject }
}

/** Resolves callgrind's name compression: `(3) /path` defines id 3, a later `(3)` reuses it. */
function compressed(names, text) {
  const m = /^\((\d+)\)(?: (.*))?$/.exec(text)
  if (!m) return text
  if (m[2] !== undefined) names.set(m[1], m[2])
  return names.get(m[1]) ?? text
}

/** Sums `byObject` into the engine (.node), node itself, and everything else. */
export function splitByOwner(byObject) {
  const out = { engine: 0, node: 0, other: 0 }
  for (const [name, ir] of Object.entries(byObject)) {
    if (name.endsWith('.node')) out.engine += ir
    else if (/\/node$/.test(name)) out.node += ir
    else out.other += ir
  }
  return out
}
