// The `req` of 'connection', verifyClient, handleProtocols and 'headers' in port mode: the engine
// parsed the upgrade request in Rust, so the compat layer rebuilds an `http.IncomingMessage` from
// what it reports. Its `socket` is a plain object with the peer's address: the TCP socket itself
// belongs to the engine.
import { IncomingMessage } from 'node:http'
import { isIPv6, type Socket as NetSocket } from 'node:net'
import type { UpgradeRequest } from '../types'

/** What `req.socket` holds in port mode. */
export interface RequestPeer {
  remoteAddress: string
  remotePort: number
  remoteFamily: 'IPv4' | 'IPv6'
  encrypted: false
  authorized: false
  readable: false
}

/** An ended `IncomingMessage` (GET, HTTP/1.1) with the request's url and headers. */
export function upgradeRequest(r: UpgradeRequest): IncomingMessage {
  const peer: RequestPeer = {
    remoteAddress: r.remoteAddress,
    remotePort: r.remotePort,
    remoteFamily: isIPv6(r.remoteAddress) ? 'IPv6' : 'IPv4',
    encrypted: false,
    authorized: false,
    readable: false,
  }
  const req = new IncomingMessage(peer as unknown as NetSocket)
  req.method = 'GET'
  req.url = r.url
  req.httpVersion = '1.1'
  req.httpVersionMajor = 1
  req.httpVersionMinor = 1
  req.headers = { ...r.headers }
  req.rawHeaders = Object.entries(r.headers).flat()
  req.complete = true
  req.push(null)
  return req
}
