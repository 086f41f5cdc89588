// What `npm run bench` measures: the servers, and the scenarios with their load-generator flags.
import { join } from 'node:path'

/** Builds the server table; `benches` is the benches/ directory. */
export function servers(benches) {
  const bun = join(benches, 'node_modules/@oven/bun-linux-x64/bin/bun')
  return {
    ws: { label: 'ws', cmd: ['node', join(benches, 'servers/ws.mjs')] },
    uws: { label: 'uWebSockets.js', cmd: ['node', join(benches, 'servers/uws.mjs')] },
    bun: { label: 'Bun', cmd: [bun, join(benches, 'servers/bun.mjs')] },
    rnode: { label: 'rnode-ws', cmd: ['node', join(benches, 'servers/rnode.mjs')], ours: true },
    // benches/servers/ws.mjs unchanged but for its import: @rnode/ws/compat instead of ws.
    'rnode-compat': { label: 'rnode-ws/compat (ws API)', cmd: ['node', join(benches, 'servers/ws.mjs'), '--compat'], ours: true },
    // The same server with history on the broadcast room (issue 19).
    'rnode-history': { label: 'rnode-ws, room history on', cmd: ['node', join(benches, 'servers/rnode.mjs'), '--history'], ours: true },
    // Attach mode (issue 16): on a plain Node http server's port, fast path (descriptor
    // adoption) and forced slow path (loopback pump); on an https server (slow path, TLS in
    // Node); ws attached the same ways.
    'rnode-attach': { label: 'rnode-ws { server } (fast path)', cmd: ['node', join(benches, 'servers/rnode-attach.mjs')], ours: true },
    'rnode-attach-pump': { label: 'rnode-ws { server, adopt: false } (slow path)', cmd: ['node', join(benches, 'servers/rnode-attach.mjs'), '--pump'], ours: true },
    'ws-attach': { label: 'ws { server }', cmd: ['node', join(benches, 'servers/ws-attach.mjs')] },
    'rnode-https': { label: 'rnode-ws on https (slow path)', cmd: ['node', join(benches, 'servers/rnode-https.mjs')], ours: true },
    'ws-https': { label: 'ws on https', cmd: ['node', join(benches, 'servers/ws-https.mjs')] },
    // Two rnode-ws nodes sharing a room through a private redis-server the runner starts.
    'rnode-cluster': { label: 'rnode-ws, 2 nodes + Redis', cmd: ['node', join(benches, 'servers/rnode-cluster.mjs')], ours: true, cluster: { nodes: 2 } },
    // The same two nodes with the room's history in Redis (issue 19).
    'rnode-cluster-history': {
      label: 'rnode-ws, 2 nodes + Redis, room history on',
      cmd: ['node', join(benches, 'servers/rnode-cluster.mjs')],
      ours: true,
      cluster: { nodes: 2, env: { HISTORY: '1' } },
    },
    // Four nodes, 40 rooms, 10 per node: the one-channel layout and per-room channels.
    'rnode-cluster4-single': {
      label: "rnode-ws, 4 nodes, channels: 'single'",
      cmd: ['node', join(benches, 'servers/rnode-cluster.mjs')],
      ours: true,
      cluster: { nodes: 4, env: { ROOMS: '1', CHANNELS: 'single' } },
    },
    'rnode-cluster4-room': {
      label: "rnode-ws, 4 nodes, channels: 'room'",
      cmd: ['node', join(benches, 'servers/rnode-cluster.mjs')],
      ours: true,
      cluster: { nodes: 4, env: { ROOMS: '1', CHANNELS: 'room' } },
    },
  }
}

/** Competitors every scenario compares against, in table order. */
export const COMPETITORS = ['ws', 'uws', 'bun']

/**
 * Each scenario runs every listed server with the same load-generator flags. `variants` run the
 * same server with extra flags (ours in two shapes for broadcast). `rows` say which numbers of a
 * run go into the table: `metric` from the loadgen report, `better` direction. A scenario with
 * `baseline` compares our own runs with each other (its own table) instead of with competitors.
 */
export function scenarios({ quick, benches }) {
  const connectN = quick ? 2000 : 10000
  return [
    {
      id: 'echo-32',
      loadgen: ['--mode', 'echo', '--path', '/echo', '--conns', '100', '--inflight', '64', '--size', '32'],
      runs: ['ws', 'uws', 'bun', 'rnode', 'rnode-compat'],
      variants: {
        rnode: { server: 'rnode', label: 'rnode-ws (native API)', short: 'rnode-ws' },
        'rnode-compat': { server: 'rnode-compat', label: 'rnode-ws/compat (ws API)', short: 'rnode-ws/compat' },
      },
      rows: [
        { id: 'echo-32-rate', title: 'echo, 100 conns, 32 B, 64 in flight (msgs/s)', metric: 'rate', better: 'higher', target: 'echo' },
        { id: 'echo-32-p99', title: 'echo 32 B, closed loop: p99 RTT (us)', metric: 'p99_us', better: 'lower' },
      ],
    },
    {
      id: 'echo-4k',
      loadgen: ['--mode', 'echo', '--path', '/echo', '--conns', '100', '--inflight', '10', '--size', '4096'],
      runs: ['ws', 'uws', 'bun', 'rnode'],
      rows: [
        { id: 'echo-4k-rate', title: 'echo, 100 conns, 4 KiB, 10 in flight (msgs/s)', metric: 'rate', better: 'higher', target: 'echo' },
        { id: 'echo-4k-p99', title: 'echo 4 KiB, closed loop: p99 RTT (us)', metric: 'p99_us', better: 'lower' },
      ],
    },
    {
      id: 'echo-paced',
      loadgen: ['--mode', 'echo', '--path', '/echo', '--conns', '100', '--inflight', '64', '--size', '32', '--rate', '50000'],
      runs: ['ws', 'uws', 'bun', 'rnode'],
      rows: [
        { id: 'echo-paced-p99', title: 'echo 32 B, 50k msgs/s offered to all: p99 RTT (us)', metric: 'p99_us', better: 'lower', target: 'p99' },
        { id: 'echo-paced-rate', title: 'echo 32 B, 50k msgs/s offered: achieved (msgs/s)', metric: 'rate', better: 'higher' },
      ],
    },
    {
      id: 'broadcast',
      loadgen: ['--mode', 'broadcast', '--sub-path', '/sub', '--pub-path', '/pub', '--conns', '1000', '--inflight', '32', '--size', '32'],
      runs: ['ws', 'uws', 'bun', 'rnode', 'rnode-native'],
      variants: {
        // Ours: subscribers join with the client protocol; `rnode` publishes through a JS
        // onMessage calling server.broadcast, `rnode-native` sends protocol room_message frames
        // that the engine fans out without JS.
        rnode: { server: 'rnode', label: 'rnode-ws (server.broadcast from JS)', short: 'rnode-ws, from JS', extra: ['--join-frame', '{"type":"join_room","room_id":"bench"}'] },
        'rnode-native': {
          server: 'rnode',
          label: 'rnode-ws (native room_message)',
          short: 'rnode-ws, native',
          extra: ['--join-frame', '{"type":"join_room","room_id":"bench"}', '--pub-path', '/sub', '--pub-room', 'bench'],
        },
      },
      rows: [
        { id: 'broadcast-rate', title: 'broadcast to 1,000 subscribers, 32 B, 32 in flight (deliveries/s)', metric: 'rate', better: 'higher', target: 'broadcast' },
        { id: 'broadcast-p99', title: 'broadcast: p99 delivery latency (us)', metric: 'p99_us', better: 'lower' },
      ],
    },
    {
      // Scale-out (issue 8): the broadcast above on one node, then on two nodes sharing a Redis
      // with the subscribers alternating between them (500 each) and the publisher on the first;
      // each message reaches the first node's members directly and the second's through Redis.
      id: 'cluster',
      loadgen: ['--mode', 'broadcast', '--sub-path', '/sub', '--pub-path', '/pub', '--conns', '1000', '--inflight', '32', '--size', '32'],
      runs: ['rnode', 'rnode-cluster'],
      baseline: 'rnode',
      variants: {
        rnode: { server: 'rnode', label: 'rnode-ws, 1 node', short: '1 node', extra: ['--join-frame', '{"type":"join_room","room_id":"bench"}'] },
        'rnode-cluster': { server: 'rnode-cluster', label: 'rnode-ws, 2 nodes + Redis', short: '2 nodes', extra: ['--join-frame', '{"type":"join_room","room_id":"bench"}'] },
      },
      rows: [
        { id: 'cluster-rate', title: 'broadcast to 1,000 subscribers (2 nodes: 500 on each), 32 B, 32 in flight, server.broadcast from JS (deliveries/s)', metric: 'rate', better: 'higher' },
        { id: 'cluster-p99', title: 'same: p99 delivery latency (us)', metric: 'p99_us', better: 'lower' },
      ],
    },
    ...attachScenarios(connectN, benches),
    {
      // History (issue 19): the broadcast above with the room keeping its last 1,000 messages;
      // each message is numbered and stored, and members get it wrapped as a room_message with
      // its offset (a longer frame than the bare 32 B).
      id: 'history',
      loadgen: ['--mode', 'broadcast', '--sub-path', '/sub', '--pub-path', '/pub', '--conns', '1000', '--inflight', '32', '--size', '32'],
      runs: ['rnode', 'rnode-history'],
      baseline: 'rnode',
      variants: {
        rnode: { server: 'rnode', label: 'rnode-ws, history off', short: 'history off', extra: ['--join-frame', '{"type":"join_room","room_id":"bench"}'] },
        'rnode-history': { server: 'rnode-history', label: 'rnode-ws, history on', short: 'history on', extra: ['--join-frame', '{"type":"join_room","room_id":"bench"}'] },
      },
      rows: [
        { id: 'history-rate', title: 'broadcast to 1,000 subscribers, 32 B, 32 in flight, server.broadcast from JS, room history off/on (deliveries/s)', metric: 'rate', better: 'higher' },
        { id: 'history-p99', title: 'same: p99 delivery latency (us)', metric: 'p99_us', better: 'lower' },
      ],
    },
    {
      // History in a cluster (issue 19): the two-node broadcast with the room's history in
      // Redis; every message goes through the Lua script and comes back to both nodes.
      id: 'cluster-history',
      group: 'cluster',
      loadgen: ['--mode', 'broadcast', '--sub-path', '/sub', '--pub-path', '/pub', '--conns', '1000', '--inflight', '32', '--size', '32'],
      runs: ['rnode-cluster', 'rnode-cluster-history'],
      baseline: 'rnode-cluster',
      variants: {
        'rnode-cluster': { server: 'rnode-cluster', label: 'rnode-ws, 2 nodes, history off', short: 'history off', extra: ['--join-frame', '{"type":"join_room","room_id":"bench"}'] },
        'rnode-cluster-history': { server: 'rnode-cluster-history', label: 'rnode-ws, 2 nodes, history on', short: 'history on', extra: ['--join-frame', '{"type":"join_room","room_id":"bench"}'] },
      },
      rows: [
        { id: 'cluster-history-rate', title: 'broadcast to 1,000 subscribers on 2 nodes, 32 B, 32 in flight, room history in Redis off/on (deliveries/s)', metric: 'rate', better: 'higher' },
        { id: 'cluster-history-p99', title: 'same: p99 delivery latency (us)', metric: 'p99_us', better: 'lower' },
      ],
    },
    {
      // Cluster at scale (issue 20): 4,000 subscribers in 40 rooms over four nodes, each node
      // with members in 10 rooms, one publisher (on the first node) to random rooms. The
      // single channel sends every node every message; per-room channels only its rooms'.
      id: 'cluster-rooms',
      group: 'cluster',
      loadgen: ['--mode', 'rooms', '--rooms', '40', '--sub-path', '/sub', '--pub-path', '/pub', '--conns', '4000', '--inflight', '64', '--size', '32'],
      runs: ['rnode-cluster4-single', 'rnode-cluster4-room'],
      baseline: 'rnode-cluster4-single',
      rows: [
        { id: 'cluster-rooms-rate', title: '4,000 subscribers, 40 rooms, 4 nodes, random rooms, 32 B, 64 in flight (deliveries/s)', metric: 'rate', better: 'higher' },
        { id: 'cluster-rooms-redis-in', title: 'same: Redis-to-node bytes per node per published message', metric: 'redis_in_per_pub', better: 'lower' },
        { id: 'cluster-rooms-p99', title: 'same: p99 delivery latency (us)', metric: 'p99_us', better: 'lower' },
      ],
    },
    {
      id: 'connect',
      loadgen: ['--mode', 'connect', '--path', '/echo', '--conns', String(connectN), '--concurrency', '64'],
      runs: ['ws', 'uws', 'bun', 'rnode'],
      rows: [
        { id: 'connect-rss', title: `${connectN.toLocaleString('en-US')} idle connections: server RSS per connection (bytes)`, metric: 'rss_per_conn', better: 'lower', target: 'rss' },
        { id: 'connect-rate', title: 'connections accepted per second', metric: 'rate', better: 'higher', target: 'connect' },
      ],
    },
    ...stormScenarios(connectN, benches),
  ]
}

const JOIN = ['--join-frame', '{"type":"join_room","room_id":"bench"}']

/** Loopback source addresses the load generator spreads large runs over (127.0.0.1-N). */
const SOURCES = '8'

/**
 * Connection storms (issue 23). `connect-room`: N connections, 256 handshakes in flight, each
 * joined to a room by the server's connect handler (Bun and uWS.js `subscribe` in `open`), with
 * the handshake latency and the kernel's listen-queue counters. `storm`: N clients of our
 * client package dropped at once by an in-process server restart (ours only). `scale` (only
 * with `--only scale`): as many idle connections as the open-file limit allows, up to 100,000,
 * then a broadcast to all, with a fresh client probing the server throughout.
 */
function stormScenarios(connectN, benches) {
  return [
    {
      id: 'connect-room',
      loadgen: ['--mode', 'connect', '--path', '/room', '--conns', String(connectN), '--concurrency', '256', '--sources', SOURCES],
      runs: ['ws', 'uws', 'bun', 'rnode'],
      rows: [
        { id: 'connect-room-rate', title: 'connections/s, onConnect joins a room, 256 handshakes in flight', metric: 'rate', better: 'higher', target: 'storm' },
        { id: 'connect-room-p50', title: 'same: handshake p50 (us)', metric: 'p50_us', better: 'lower' },
        { id: 'connect-room-p99', title: 'same: handshake p99 (us)', metric: 'p99_us', better: 'lower', target: 'storm' },
        { id: 'connect-room-overflows', title: 'same: kernel ListenOverflows during the run', metric: 'listen_overflows', better: 'lower' },
        { id: 'connect-room-rss', title: `same, ${connectN.toLocaleString('en-US')} idle connections in one room: server RSS per connection (bytes)`, metric: 'rss_per_conn', better: 'lower' },
      ],
    },
    {
      id: 'storm',
      client: ['node', join(benches, 'harness/storm.mjs')],
      loadgen: ['--path', '/sub', '--conns', String(connectN)],
      runs: ['rnode'],
      solo: true,
      rows: [
        { id: 'storm-back', title: `${connectN.toLocaleString('en-US')} clients dropped by a restart: last one back and rejoined (ms)`, metric: 'back_ms', better: 'lower' },
        { id: 'storm-p99', title: 'same: p99 time back per client (us)', metric: 'p99_us', better: 'lower' },
        { id: 'storm-rejoined', title: 'same: clients whose room was rejoined', metric: 'rejoined', better: 'higher' },
        { id: 'storm-overflows', title: 'same: kernel ListenOverflows during the storm', metric: 'listen_overflows', better: 'lower' },
        { id: 'storm-rss', title: 'same: server RSS 1 s after / before the storm', metric: 'rss_after_ratio', better: 'lower' },
        { id: 'storm-rss-later', title: 'same: server RSS 6 s after / before the storm', metric: 'rss_later_ratio', better: 'lower' },
      ],
    },
    {
      id: 'scale',
      optIn: true,
      loadgen: ['--mode', 'broadcast', '--sub-path', '/room', '--pub-path', '/pub', '--conns', '100000', '--inflight', '4', '--size', '32', '--concurrency', '256', '--sources', '16', '--settle-ms', '2000'],
      runs: ['bun', 'rnode'],
      // Bun's /room sends nothing on open; the load generator waits for one message per subscriber.
      variants: { bun: { server: 'bun', extra: ['--sub-path', '/sub'] } },
      rows: [
        { id: 'scale-connect', title: 'idle connections, each in one room: seconds to open them all', metric: 'connect_seconds', better: 'lower' },
        { id: 'scale-rss', title: 'same: server RSS per connection (bytes)', metric: 'rss_per_conn', better: 'lower' },
        { id: 'scale-rate', title: 'same: broadcast to all, 32 B, 4 in flight (deliveries/s)', metric: 'rate', better: 'higher' },
        { id: 'scale-probe', title: 'same: slowest handshake of a fresh client during the run (ms)', metric: 'probe_worst_ms', better: 'lower' },
      ],
    },
  ]
}

/**
 * Attach mode (issue 16), each compared with a baseline run in its own table: the fast path
 * against our own port (echo, broadcast), connection rate against ws attached to the same kind
 * of http server, the forced slow path against the fast path, and the slow path on an https
 * server against ws on one (TLS needs the Node load generator, harness/tls-echo.mjs).
 */
function attachScenarios(connectN, benches) {
  const echo = (size, inflight) => ['--mode', 'echo', '--path', '/echo', '--conns', '100', '--inflight', String(inflight), '--size', String(size)]
  const own = { server: 'rnode', label: 'rnode-ws, own port' }
  return [
    ...[
      ['attach-echo-32', 32, 64, 'echo, 100 conns, 32 B, 64 in flight (msgs/s)'],
      ['attach-echo-4k', 4096, 10, 'echo, 100 conns, 4 KiB, 10 in flight (msgs/s)'],
    ].map(([id, size, inflight, title]) => ({
      id,
      loadgen: echo(size, inflight),
      runs: ['rnode', 'rnode-attach', 'rnode-attach-pump'],
      baseline: 'rnode',
      variants: { rnode: own },
      rows: [{ id: `${id}-rate`, title, metric: 'rate', better: 'higher' }],
    })),
    {
      id: 'attach-broadcast',
      loadgen: ['--mode', 'broadcast', '--sub-path', '/sub', '--pub-path', '/pub', '--conns', '1000', '--inflight', '32', '--size', '32'],
      runs: ['rnode', 'rnode-attach'],
      baseline: 'rnode',
      variants: { rnode: { ...own, extra: JOIN }, 'rnode-attach': { server: 'rnode-attach', label: 'rnode-ws { server } (fast path)', extra: JOIN } },
      rows: [{ id: 'attach-broadcast-rate', title: 'broadcast to 1,000 subscribers, 32 B, 32 in flight, from JS (deliveries/s)', metric: 'rate', better: 'higher' }],
    },
    {
      id: 'attach-connect',
      loadgen: ['--mode', 'connect', '--path', '/echo', '--conns', String(connectN), '--concurrency', '64'],
      runs: ['ws-attach', 'rnode-attach'],
      baseline: 'ws-attach',
      rows: [{ id: 'attach-connect-rate', title: 'connections accepted per second, both attached to a Node http server', metric: 'rate', better: 'higher' }],
    },
    {
      id: 'attach-https',
      client: ['node', join(benches, 'harness/tls-echo.mjs')],
      loadgen: echo(32, 10),
      runs: ['ws-https', 'rnode-https'],
      baseline: 'ws-https',
      rows: [
        { id: 'attach-https-rate', title: 'wss:// echo on an https server, 100 conns, 32 B, 10 in flight (msgs/s)', metric: 'rate', better: 'higher' },
        { id: 'attach-https-cpu', title: 'same: server CPU (cores)', metric: 'server_cpu', better: 'lower' },
      ],
    },
  ]
}
