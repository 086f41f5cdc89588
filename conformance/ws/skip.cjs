// Mocha root hook: skips the cases listed in skipped.json (their full titles) and counts
// passed / skipped / total at the end. A listed case that no longer exists fails the run, so
// the list cannot go stale.
'use strict'
const { readFileSync } = require('node:fs')
const { join } = require('node:path')

const listed = JSON.parse(readFileSync(join(__dirname, 'skipped.json'), 'utf8'))
const skipped = new Map(listed.map((c) => [c.title, c.reason]))
const seen = new Set()

exports.mochaHooks = {
  beforeEach() {
    const title = this.currentTest.fullTitle()
    if (skipped.has(title)) {
      seen.add(title)
      this.skip()
    }
  },
}

exports.mochaGlobalTeardown = function () {
  const kinds = {}
  for (const c of listed) kinds[c.kind] = (kinds[c.kind] ?? 0) + 1
  console.log(`[ws-conformance] skipped ${listed.length}: ${JSON.stringify(kinds)} (reasons in conformance/ws/skipped.json)`)
  const stale = [...skipped.keys()].filter((t) => !seen.has(t))
  if (stale.length > 0) {
    console.error(`[ws-conformance] skipped.json lists cases that did not run:\n  ${stale.join('\n  ')}`)
    process.exitCode = 1
  }
}
