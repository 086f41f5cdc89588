// A library written for ws runs unchanged on @rnode/ws/compat: graphql-ws's useServer with a small
// schema, driven by graphql-ws's own client over ws: a query, a subscription to its end, and
// one to a refused operation.
import type { AddressInfo } from 'node:net'
// graphql's CommonJS entry, the one graphql-ws (loaded by Node, not Vite) gets: one realm.
import { GraphQLInt, GraphQLNonNull, GraphQLObjectType, GraphQLSchema, GraphQLString } from 'graphql/index.js'
import { createClient, type Client } from 'graphql-ws'
import { useServer } from 'graphql-ws/use/ws'
import { afterEach, describe, expect, it } from 'vitest'
import WsClient, { type WebSocketServer as WsTypes } from 'ws'
import { WebSocketServer } from '../lib/compat/index'

/** graphql-ws is typed against @types/ws; the object is ours, unchanged at run time. */
const asWs = (wss: WebSocketServer): WsTypes => wss as unknown as WsTypes

const schema = new GraphQLSchema({
  query: new GraphQLObjectType({
    name: 'Query',
    fields: { hello: { type: GraphQLString, args: { name: { type: GraphQLString } }, resolve: (_root, args: { name?: string }) => `hello ${args.name ?? 'world'}` } },
  }),
  subscription: new GraphQLObjectType({
    name: 'Subscription',
    fields: {
      countdown: {
        type: new GraphQLNonNull(GraphQLInt),
        args: { from: { type: new GraphQLNonNull(GraphQLInt) } },
        subscribe: async function* (_root: unknown, args: { from: number }) {
          for (let i = args.from; i >= 0; i--) {
            await new Promise((r) => setTimeout(r, 2))
            yield { countdown: i }
          }
        },
      },
    },
  }),
})

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  await Promise.all(cleanups.splice(0).map((c) => c()))
})

async function serve(): Promise<{ client: Client; connected: string[] }> {
  const wss = await new Promise<WebSocketServer>((resolve) => {
    const s: WebSocketServer = new WebSocketServer({ port: 0, host: '127.0.0.1', path: '/graphql' }, () => resolve(s))
  })
  const connected: string[] = []
  const server = useServer(
    {
      schema,
      onConnect: (ctx) => {
        connected.push(String((ctx.connectionParams as { user?: string } | undefined)?.user))
        return ctx.connectionParams?.user !== 'mallory'
      },
    },
    asWs(wss),
  )
  const url = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}/graphql`
  const client = createClient({ url, webSocketImpl: WsClient, retryAttempts: 0, connectionParams: { user: 'alice' } })
  cleanups.push(async () => {
    await client.dispose()
    await server.dispose()
  })
  return { client, connected }
}

function run<T>(client: Client, query: string, variables?: Record<string, unknown>): Promise<T[]> {
  return new Promise((resolve, reject) => {
    const results: T[] = []
    client.subscribe<T>({ query, variables }, { next: (r) => results.push(r.data as T), error: reject, complete: () => resolve(results) })
  })
}

describe('graphql-ws on the compat server', () => {
  it('answers a query and streams a subscription to its end', async () => {
    const { client, connected } = await serve()
    expect(await run<{ hello: string }>(client, 'query ($n: String) { hello(name: $n) }', { n: 'rnode' })).toEqual([{ hello: 'hello rnode' }])
    const counts = await run<{ countdown: number }>(client, 'subscription { countdown(from: 4) }')
    expect(counts.map((c) => c.countdown)).toEqual([4, 3, 2, 1, 0])
    // The client is lazy: it connects per burst of operations, so once or twice here.
    expect(connected.length).toBeGreaterThan(0)
    expect(new Set(connected)).toEqual(new Set(['alice']))
  })

  it('negotiates the graphql-transport-ws subprotocol through handleProtocols', async () => {
    const { client } = await serve()
    const protocol = new Promise<string>((resolve) => client.on('connected', (socket) => resolve((socket as WsClient).protocol)))
    await run(client, '{ hello }')
    expect(await protocol).toBe('graphql-transport-ws')
  })

  it("closes with graphql-ws's 4403 when onConnect refuses", async () => {
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' })
    await new Promise((r) => wss.once('listening', r))
    const server = useServer({ schema, onConnect: () => false }, asWs(wss))
    const refused = createClient({ url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`, webSocketImpl: WsClient, retryAttempts: 0, lazy: false })
    const code = await new Promise<number>((resolve) => refused.on('closed', (event) => resolve((event as { code: number }).code)))
    expect(code).toBe(4403)
    await refused.dispose()
    await server.dispose()
    await new Promise((r) => wss.close(r))
  })
})
