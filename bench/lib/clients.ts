/**
 * The clients a tied-session cycle is compared with, each doing the same work on one ~1 KB
 * JSON session: read it, parse it, read 3 fields, change 1 nested field, serialize, write it.
 */
import { createRequire } from 'node:module'
import Memcached from 'memcached'
import { consume } from './measure.js'
import type { BenchSession } from './data.js'
import { FloorClient } from './floor-client.js'

const require = createRequire(import.meta.url)
const TTL = 86400

/** The work a request does on its session: 3 reads (one nested) and 1 nested write. */
export function touch(s: BenchSession, n: number): void {
  consume(s.uid)
  consume(s.email)
  consume(s.prefs.theme)
  s.cart.updated = n
}

export interface Client {
  /** Stores session text (flag 0, as tied-session stores it) under `key`. */
  seed(key: string, text: string): Promise<void>
  /** One cycle on `key`. */
  cycle(key: string, n: number): Promise<void>
  close(): Promise<void>
}

const callback =
  <T>(resolve: (v: T) => void, reject: (e: unknown) => void) =>
  (err: unknown, v: T) =>
    err ? reject(err) : resolve(v)

/** npm `memcached` (the client tied-session wraps), with its defaults: get + JSON.parse + JSON.stringify + set. */
export function rawClient(address: string): Client {
  const mc = new Memcached(address)
  const get = (key: string) => new Promise<unknown>((resolve, reject) => mc.get(key, callback(resolve, reject)))
  const set = (key: string, text: string) => new Promise<unknown>((resolve, reject) => mc.set(key, text, TTL, callback(resolve, reject)))
  return {
    seed: async (key, text) => void (await set(key, text)),
    async cycle(key, n) {
      const s = JSON.parse((await get(key)) as string) as BenchSession
      touch(s, n)
      await set(key, JSON.stringify(s))
    },
    close: async () => mc.end(),
  }
}

/** The floor: {@link FloorClient}, one pipelined socket, same JSON work. */
export async function floorClient(port: number): Promise<Client> {
  const c = await FloorClient.connect(port)
  return {
    seed: async (key, text) => void (await c.set(key, text, TTL)),
    async cycle(key, n) {
      const s = JSON.parse((await c.get(key))!) as BenchSession
      touch(s, n)
      await c.set(key, JSON.stringify(s), TTL)
    },
    close: async () => c.close(),
  }
}

interface MemjsClient {
  get(key: string): Promise<{ value: Buffer | null }>
  set(key: string, value: string, opts: { expires: number }): Promise<boolean>
  close(): void
}

/** memjs 1.3 (binary protocol), promise API. */
export function memjsClient(address: string): Client {
  const memjs = require('memjs') as { Client: { create(servers: string, opts: object): MemjsClient } }
  const c = memjs.Client.create(address, { expires: TTL, logger: { log: () => undefined } })
  return {
    seed: async (key, text) => void (await c.set(key, text, { expires: TTL })),
    async cycle(key, n) {
      const { value } = await c.get(key)
      const s = JSON.parse(value!.toString()) as BenchSession
      touch(s, n)
      await c.set(key, JSON.stringify(s), { expires: TTL })
    },
    close: async () => c.close(),
  }
}

type Cb = (err: unknown, v?: unknown) => void
interface ExpressStore {
  get(sid: string, cb: Cb): void
  set(sid: string, sess: object, cb: Cb): void
  client: { end(): void }
}

/**
 * connect-memcached 3 as an express-session store (`get` + `set`, what express-session calls
 * for a request that changed its session). It stores the object through the `memcached`
 * client's own JSON (flag 2), so seeds are written as objects, and sessions carry the
 * `cookie` field express-session adds (its `set` reads `cookie.maxAge`).
 */
export function connectMemcachedClient(address: string): Client {
  const session = require('express-session') as object
  const factory = require('connect-memcached') as (s: object) => new (opts: object) => ExpressStore
  const Store = factory(session)
  const store = new Store({ hosts: [address], ttl: TTL })
  const get = (sid: string) => new Promise<unknown>((resolve, reject) => store.get(sid, callback(resolve, reject)))
  const set = (sid: string, sess: object) => new Promise<unknown>((resolve, reject) => store.set(sid, sess, callback(resolve, reject)))
  const withCookie = (text: string) => ({
    cookie: { originalMaxAge: TTL * 1000, expires: null, httpOnly: true, path: '/' },
    ...(JSON.parse(text) as object),
  })
  return {
    seed: async (key, text) => void (await set(key, withCookie(text))),
    async cycle(key, n) {
      const s = (await get(key)) as BenchSession
      touch(s, n)
      await set(key, s)
    },
    close: async () => store.client.end(),
  }
}
