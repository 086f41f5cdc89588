// `npm run test:ws`: ws's own server test file (test/websocket-server.test.js of the ws version
// in package-lock.json), unmodified, under mocha, against @rnode/ws/compat with ws's client on
// the other end. ws's files are not kept in this repository: they are downloaded from the ws
// repository at that version's tag into conformance/ws/.suite/ (or copied from WS_TEST_DIR, a
// directory holding the same files), next to shims that resolve the test's
// `require('..')` to ws's client with our WebSocketServer, and `../lib/sender`,
// `../lib/constants` to ws's own modules. Cases listed in skipped.json are skipped (each with
// its reason); any other failure fails the run.
import { execFileSync } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const root = join(here, '..', '..')
const suite = join(here, '.suite')
const version = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8')).packages['node_modules/ws'].version
const FILES = ['websocket-server.test.js', 'duplex-pair.js', 'fixtures/certificate.pem', 'fixtures/key.pem']

mkdirSync(join(suite, 'test', 'fixtures'), { recursive: true })
mkdirSync(join(suite, 'lib'), { recursive: true })
const stamp = join(suite, 'VERSION')
const source = process.env.WS_TEST_DIR
if (source || !existsSync(stamp) || readFileSync(stamp, 'utf8') !== version) {
  for (const file of FILES) {
    const target = join(suite, 'test', file)
    if (source) {
      copyFileSync(join(source, file), target)
    } else {
      const url = `https://raw.githubusercontent.com/websockets/ws/${version}/test/${file}`
      // Exit 3 (not 1) when the file cannot be obtained: .ci/run reports that apart from a failure.
      const res = await fetch(url, { signal: AbortSignal.timeout(15_000) }).catch((err) => err)
      if (!(res instanceof Response) || !res.ok) {
        console.error(`[test:ws] cannot obtain ${url}: ${res instanceof Response ? `HTTP ${res.status}` : res.message}`)
        process.exit(3)
      }
      writeFileSync(target, Buffer.from(await res.arrayBuffer()))
    }
  }
  writeFileSync(stamp, source ? `from ${source}` : version)
}

// The shims: ws's package is the client; its server is ours.
writeFileSync(
  join(suite, 'index.js'),
  "'use strict';\nconst WebSocket = require('ws');\nconst compat = require('../../../dist/compat');\n" +
    'WebSocket.Server = compat.WebSocketServer;\nWebSocket.WebSocketServer = compat.WebSocketServer;\n' +
    'module.exports = WebSocket;\n',
)
for (const name of ['sender', 'constants']) {
  // ws's package exports no subpaths: reach the file next to its index.
  writeFileSync(
    join(suite, 'lib', `${name}.js`),
    `'use strict';\nmodule.exports = require(require('path').join(require('path').dirname(require.resolve('ws')), 'lib', '${name}.js'));\n`,
  )
}

execFileSync('node', [join(root, 'scripts', 'bootstrap.mjs')], { cwd: root, stdio: 'inherit' })
const mocha = join(root, 'node_modules', 'mocha', 'bin', 'mocha.js')
try {
  execFileSync(
    process.execPath,
    [mocha, '--require', join(here, 'skip.cjs'), '--reporter', process.env.WS_REPORTER ?? 'spec', '--timeout', '10000', '--exit', 'test/websocket-server.test.js'],
    { cwd: suite, stdio: 'inherit' },
  )
} catch {
  process.exit(1)
}
