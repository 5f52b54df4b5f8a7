import anyTest, { type ExecutionContext, type TestFn } from 'ava'
import { spawn } from 'node:child_process'
import net from 'node:net'
import { rm, mkdtemp, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import Memcached from 'memcached'
import { SessionError, type SessionErrorCode } from '../../src/errors.js'
import { closeStores, sharedMemcachedStore } from '../../src/stores/memcached-shared.js'
import { memcachedStore, type MemcachedStore, type MemcachedStoreOptions } from '../../src/stores/memcached.js'
import type { Store } from '../../src/stores/store.js'
import { runFixture } from '../helpers/child.js'
import { useCommandLog } from '../helpers/command-log.js'
import { tieSession } from '../../src/tie.js'
import { freePort, startMemcached, useMemcached, type MemcachedServer } from '../helpers/memcached.js'
import { storeContract } from '../helpers/store-contract.js'

const test = anyTest as TestFn<unknown>
type T = ExecutionContext<unknown>

// One principal and one local server for the contract suites; other tests start their own.
let principal: MemcachedServer | undefined
let local: MemcachedServer | undefined
test.before(async () => {
  ;[principal, local] = await Promise.all([startMemcached(), startMemcached()])
})
test.after.always(async () => {
  await Promise.all([principal?.stop(), local?.stop()])
})

storeContract({
  name: 'memcached store',
  clock: 'real',
  create: async () => memcachedStore({ servers: principal!.address, requestTimeout: PATIENT }),
  peer: async () => memcachedStore({ servers: principal!.address, requestTimeout: PATIENT }),
})
storeContract({
  name: 'memcached store with local',
  clock: 'real',
  create: async () => memcachedStore({ servers: principal!.address, local: local!.address, requestTimeout: PATIENT }),
  peer: async () => memcachedStore({ servers: principal!.address, local: local!.address, requestTimeout: PATIENT }),
})

/** A store closed in the test's teardown. */
/** A deadline for tests that do not measure deadlines: on a loaded 2-core machine 1 s is not always enough. */
const PATIENT = 5000

function open(t: T, options: MemcachedStoreOptions): MemcachedStore {
  const store = memcachedStore(options)
  t.teardown(() => store.close())
  return store
}

async function rejects(t: T, promise: Promise<unknown>, code: SessionErrorCode): Promise<SessionError | undefined> {
  const err = await t.throwsAsync(promise, { instanceOf: SessionError })
  t.is(err?.code, code)
  return err
}

/** Milliseconds a promise takes to settle. */
async function timed(promise: Promise<unknown>): Promise<number> {
  const start = performance.now()
  await promise.catch(() => undefined)
  return performance.now() - start
}

const counter = (before: Record<string, string>, after: Record<string, string>, name: string) => Number(after[name]) - Number(before[name])
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const set = { ttl: 60, mode: 'set' } as const

/** key -> exp (Unix seconds, -1 = never), from the server's own metadump. */
async function expiries(server: MemcachedServer): Promise<Map<string, number>> {
  const dump = await server.raw('lru_crawler metadump hash\r\n') // 'all' misses recently read keys in about 7% of dumps
  return new Map([...dump.matchAll(/^key=(\S+) exp=(-?\d+)/gm)].map(([, k, exp]) => [decodeURIComponent(k!), Number(exp)]))
}

test('principal/local: a write goes to the principal and then to local; a read is served by local when the principal says the copy is current', async (t) => {
  const [p, l] = await Promise.all([useMemcached(t), useMemcached(t)])
  const store = open(t, { servers: p.address, local: l.address, localTtl: 5 })
  t.deepEqual(store.servers, [p.address])
  t.deepEqual(store.local, [l.address])
  t.is(await store.write('k', 'v1', set), 'stored')
  t.is(await p.raw('get k\r\n'), 'VALUE k 0 2\r\nv1\r\nEND\r\n')
  // write-through: the same bytes, the principal's cas in the flags' upper bits (the low two stay 0)
  const copy = /^VALUE k (\d+) 2\r\nv1\r\nEND\r\n$/.exec(await l.raw('get k\r\n'))
  t.truthy(copy, 'written through to local')
  t.is(Number(copy![1]) & 3, 0)
  const exp = (await expiries(l)).get('k')!
  // memcached's own clock ticks once a second and lags under load: a few seconds' slack
  const life = exp - Date.now() / 1000
  t.true(life > 0 && life <= 6, `the local copy lives localTtl (5) seconds, not 60: ${life}`)

  const [p0, l0] = await Promise.all([p.stats(), l.stats()])
  const first = await store.get('k')
  t.is(first?.value, 'v1')
  t.regex(first?.version ?? '', /^\d+$/, 'a checked local hit knows its version')
  const [p1, l1] = await Promise.all([p.stats(), l.stats()])
  t.is(counter(l0, l1, 'get_hits'), 1, 'served by local')
  t.is(counter(p0, p1, 'get_hits'), 1, 'one mg on the principal, to check the cas')
  t.is(await store.write('k', 'v2', { ttl: 60, mode: 'cas', version: first!.version! }), 'stored', "the version is the principal's")
})

test('principal/local: a consistent read goes to the principal only and carries its cas version', async (t) => {
  const [p, l] = await Promise.all([useMemcached(t), useMemcached(t)])
  const store = open(t, { servers: p.address, local: l.address })
  await store.write('k', 'v1', set)
  await store.get('k') // now in local
  const [p0, l0] = await Promise.all([p.stats(), l.stats()])
  const entry = await store.get('k', { consistent: true })
  const [p1, l1] = await Promise.all([p.stats(), l.stats()])
  t.is(entry?.value, 'v1')
  t.regex((await p.raw('gets k\r\n')).split('\r\n')[0]!, new RegExp(` ${entry!.version}$`))
  t.is(counter(p0, p1, 'cmd_get'), 1)
  t.is(counter(l0, l1, 'cmd_get'), 0)
  t.is(counter(l0, l1, 'cmd_set'), 0)
})

test('principal/local: writes rewrite the local copy; deletes and a touch of a vanished key drop it', async (t) => {
  const [p, l] = await Promise.all([useMemcached(t), useMemcached(t)])
  const store = open(t, { servers: p.address, local: l.address })
  await store.write('k', 'v1', set)
  await store.get('k')
  await store.write('k', 'v2', set)
  t.regex(await l.raw('get k\r\n'), /^VALUE k \d+ 2\r\nv2\r\n/, 'rewritten, not dropped')
  t.is((await store.get('k'))?.value, 'v2')
  t.true(await store.delete('k'))
  t.is(await l.raw('get k\r\n'), 'END\r\n')
  t.is(await store.get('k'), undefined)

  await store.write('t', 'x', set)
  await store.get('t')
  t.true(await store.touch('t', 120))
  t.regex(await l.raw('get t\r\n'), /^VALUE t /, 'a touch keeps the local copy')
  await p.raw('delete t\r\n') // gone at the principal (another host destroyed it)
  t.false(await store.touch('t', 120))
  t.is(await l.raw('get t\r\n'), 'END\r\n')
})

test('principal/local: a stale local copy is never served, and never makes a cas write succeed', async (t) => {
  const [p, l] = await Promise.all([useMemcached(t), useMemcached(t)])
  const here = open(t, { servers: p.address, local: l.address })
  const elsewhere = open(t, { servers: p.address })
  await here.write('s', 'v1', set)
  const old = (await here.get('s', { consistent: true }))!.version!
  await here.get('s') // in local
  const theirs = (await elsewhere.get('s'))!.version!
  t.is(await elsewhere.write('s', 'v2', { ttl: 60, mode: 'cas', version: theirs }), 'stored')
  t.regex(await l.raw('get s\r\n'), /\r\nv1\r\n/, 'local still holds the old copy')

  const read = await here.get('s')
  t.is(read?.value, 'v2', 'the old copy is not served: the principal moved on')
  t.not(read?.version, old)
  t.is(await here.write('s', 'mine', { ttl: 60, mode: 'cas' }), 'exists', 'no version: re-read first')
  t.is(await here.write('s', 'mine', { ttl: 60, mode: 'cas', version: old }), 'exists')
  t.is(await here.write('s', 'v3', { ttl: 60, mode: 'cas', version: read!.version! }), 'stored')
  t.is(await p.raw('get s\r\n'), 'VALUE s 0 2\r\nv3\r\nEND\r\n')
  t.is((await here.get('s'))?.value, 'v3')
})

test('principal/local: a local server that is down or stalled costs no error', async (t) => {
  const p = await useMemcached(t)
  // a long requestTimeout: any wait for a deadline would show
  const closed = open(t, { servers: p.address, local: `127.0.0.1:${await freePort()}`, requestTimeout: 5000 })
  const ms = await timed(
    (async () => {
      t.is(await closed.write('k', 'v', set), 'stored')
      t.is((await closed.get('k'))?.value, 'v')
      t.is((await closed.get('k'))?.value, 'v')
      t.true(await closed.touch('k', 60))
      t.true(await closed.delete('k'))
    })(),
  )
  t.true(ms < 4000, `a closed local port cost ${ms} ms`)

  const l = await useMemcached(t)
  const store = open(t, { servers: p.address, local: l.address, requestTimeout: 1000 })
  await store.write('k2', 'v', set)
  await store.get('k2')
  await l.stop()
  t.is((await store.get('k2'))?.value, 'v')
  t.is(await store.write('k2', 'w', set), 'stored')

  await l.restart()
  for (let i = 0; i < 30 && (await l.raw('get k2\r\n')) === 'END\r\n'; i++) {
    await store.get('k2') // the refusal after the outage ends within a second; then the read copies again
    await sleep(100)
  }
  t.regex(await l.raw('get k2\r\n'), /^VALUE k2 /)
  t.teardown(() => l.resume())
  await l.pause()
  const slow = await timed(store.get('k2').then((entry) => t.is(entry?.value, 'w')))
  t.true(slow >= 250 && slow < 2500, `a stalled local cost ${slow} ms`)
})

test('two principals: keys spread over both and each is found again', async (t) => {
  const [a, b] = await Promise.all([useMemcached(t), useMemcached(t)])
  const store = open(t, { servers: [a.address, b.address] })
  const keys = Array.from({ length: 200 }, (_, i) => `spread_${i}`)
  await Promise.all(keys.map((k) => store.write(k, `value of ${k}`, set)))
  const [sa, sb] = await Promise.all([a.stats(), b.stats()])
  t.true(Number(sa.curr_items) > 20 && Number(sb.curr_items) > 20, `${sa.curr_items} / ${sb.curr_items}`)
  t.is(Number(sa.curr_items) + Number(sb.curr_items), 200)
  const entries = await Promise.all(keys.map((k) => store.get(k)))
  t.deepEqual(
    entries.map((e) => e?.value),
    keys.map((k) => `value of ${k}`),
  )
  const listed: string[] = []
  for await (const k of store.keys!('spread_')) listed.push(k)
  t.is(listed.length, 200)
  // keys go where the npm memcached client sends them (same ketama hashring): both can share a pool
  const client = new Memcached([a.address, b.address], { retries: 0 })
  t.teardown(() => client.end())
  const seen: unknown[] = [] // one at a time: that client fails a burst on a cold pool
  for (const k of keys) seen.push(await new Promise((resolve) => client.get(k, (_err, value) => resolve(value))))
  t.deepEqual(
    seen,
    keys.map((k) => `value of ${k}`),
  )
})

/**
 * A TCP server on 127.0.0.1 for the test: `serve` gets each client and `upstream()`, which
 * connects to `target`. Every socket is destroyed and the server closed at the test's end.
 * Resolves the server's `host:port`.
 */
async function loopbackServer(
  t: T,
  target: MemcachedServer,
  serve: (client: net.Socket, upstream: () => net.Socket) => void,
): Promise<string> {
  const sockets = new Set<net.Socket>()
  const server = net.createServer((client) => {
    sockets.add(client)
    serve(client, () => {
      const upstream = net.connect(target.port, target.host)
      sockets.add(upstream)
      return upstream
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    for (const socket of sockets) socket.destroy()
    return new Promise<void>((resolve) => server.close(() => resolve()))
  })
  return `127.0.0.1:${(server.address() as net.AddressInfo).port}`
}

/** A loopback server in front of `target` that passes requests on and hands each reply back in pieces of `size` bytes, one per tick. */
function chopper(t: T, target: MemcachedServer, size: number): Promise<string> {
  return loopbackServer(t, target, (client, connect) => {
    const upstream = connect()
    client.setNoDelay(true)
    client.on('data', (chunk) => upstream.write(chunk))
    let queue = Promise.resolve()
    upstream.on('data', (chunk: Buffer) => {
      queue = queue.then(async () => {
        for (let at = 0; at < chunk.length; at += size) {
          client.write(chunk.subarray(at, at + size))
          await new Promise((resolve) => setImmediate(resolve))
        }
      })
    })
    for (const socket of [client, upstream]) socket.on('error', () => undefined).on('close', () => (client.destroy(), upstream.destroy()))
  })
}

test('replies cut at any byte (headers, values, line ends) are put together again', async (t) => {
  const p = await useMemcached(t)
  const values = ['{"a":"é€𝄞"}', 'x'.repeat(3000), '', 'END\r\nVALUE k 0 3\r\nabc\r\n']
  for (const size of [1, 2, 3, 7]) {
    const store = open(t, { servers: await chopper(t, p, size), requestTimeout: PATIENT })
    const written = await Promise.all(values.map((v, i) => store.write(`cut${i}`, v, set)))
    t.deepEqual(written, ['stored', 'stored', 'stored', 'stored'])
    const read = await Promise.all([...values.map((_, i) => store.get(`cut${i}`)), store.get('cut-missing')])
    t.deepEqual(
      read.map((e) => e?.value),
      [...values, undefined],
      `pieces of ${size} bytes`,
    )
    t.is(await store.write('cut0', 'next', { ttl: 60, mode: 'cas', version: read[0]!.version! }), 'stored')
  }
})

test('a server that answers out of step (ERROR): the calls in flight fail, the connection is dropped, and the next call reconnects', async (t) => {
  const p = await useMemcached(t)
  let broken = true
  const address = await loopbackServer(t, p, (client, upstream) => {
    // one ERROR per command line, as a server that understands none of them answers (the store's `mn` probe included)
    if (broken) client.on('data', (chunk: Buffer) => client.write('ERROR\r\n'.repeat(chunk.toString('latin1').split('\n').length - 1)))
    else client.pipe(upstream()).pipe(client)
  })
  const store = open(t, { servers: address, requestTimeout: PATIENT })
  const settled = await Promise.allSettled([store.get('a'), store.write('b', 'v', set), store.get('c')])
  for (const result of settled) t.is(result.status === 'rejected' && (result.reason as SessionError).code, 'ERR_STORE_UNAVAILABLE')
  t.regex(settled[0]!.status === 'rejected' ? (settled[0].reason as Error).message : '', /answered "ERROR", out of step/)
  broken = false
  t.is(await store.write('b', 'v', set), 'stored', 'a new connection')
  t.is((await store.get('b'))?.value, 'v')
})

test("a SERVER_ERROR (item over the server's -I) is ERR_STORE_UNAVAILABLE naming it, and the connection stays in step", async (t) => {
  const p = await useMemcached(t, { extraArgs: ['-I', '1k', '-o', 'slab_chunk_max=1024'] }) // largest item: 1 KB
  const store = open(t, { servers: p.address })
  t.is(await store.write('small', 'v', set), 'stored')
  const big = 'x'.repeat(4000)
  const [refused, next] = await Promise.allSettled([store.write('big', big, set), store.get('small')]) // pipelined together
  t.is(refused.status === 'rejected' && (refused.reason as SessionError).code, 'ERR_STORE_UNAVAILABLE')
  t.regex(refused.status === 'rejected' ? (refused.reason as Error).message : '', /SERVER_ERROR object too large.*item size \(-I\)/)
  t.is(next.status === 'fulfilled' && next.value?.value, 'v', 'the reply after the error is matched to its own request')
  t.is(await store.get('big'), undefined)
})

test('expiry: a ttl over 30 days is sent as a Unix time, and 0 never expires', async (t) => {
  const p = await useMemcached(t)
  const store = open(t, { servers: p.address })
  const fortyDays = 40 * 86_400
  await store.write('long', 'x', { ttl: fortyDays, mode: 'set' })
  await store.write('never', 'y', { ttl: 0, mode: 'set' })
  await store.write('touched', 'z', { ttl: 5, mode: 'set' })
  t.true(await store.touch('touched', fortyDays))
  t.is((await store.get('long'))?.value, 'x')
  t.is(await p.raw('get long\r\n'), 'VALUE long 0 1\r\nx\r\nEND\r\n')
  t.is((await store.get('touched'))?.value, 'z')
  const exp = await expiries(p)
  const expected = Date.now() / 1000 + fortyDays
  t.true(Math.abs(exp.get('long')! - expected) <= 5, `exp ${exp.get('long')} vs ${expected}`)
  t.true(Math.abs(exp.get('touched')! - expected) <= 5)
  t.is(exp.get('never'), -1)
})

test('keys and values are checked before anything is sent, so the server stays in service', async (t) => {
  const p = await useMemcached(t)
  const store = open(t, { servers: p.address })
  await store.write('kept', 'old', set)
  const before = await p.stats()
  const bad = ['a b', 'a\u0001b', 'a\u007fb', 'a\nb', 'a\u00a0b', 'x'.repeat(251), 'é'.repeat(126), '']
  for (const key of bad) {
    await rejects(t, store.get(key), 'ERR_INVALID_ID')
    await rejects(t, store.write(key, 'v', set), 'ERR_INVALID_ID')
    await rejects(t, store.delete(key), 'ERR_INVALID_ID')
    await rejects(t, store.touch(key, 60), 'ERR_INVALID_ID')
  }
  const tooLarge = await rejects(t, store.write('kept', 'x'.repeat(1_000_001), set), 'ERR_TOO_LARGE')
  t.regex(tooLarge?.message ?? '', /1000001 bytes/)
  // 333,334 chars of 3 bytes each are 1,000,002 bytes in UTF-8
  t.regex((await rejects(t, store.write('kept', '€'.repeat(333_334), set), 'ERR_TOO_LARGE'))?.message ?? '', /1000002 bytes/)
  const after = await p.stats()
  for (const stat of ['cmd_get', 'cmd_set', 'cmd_touch', 'delete_hits', 'delete_misses']) t.is(counter(before, after, stat), 0, stat)

  t.is((await store.get('kept'))?.value, 'old', 'the next call is served at once; the old value is intact')
  for (const key of ['x'.repeat(250), 'é'.repeat(125), 'ключ-сессии', 'a$b', "a$'b", 'a$$b', 'cas', '__proto__']) {
    t.is(await store.write(key, key, set), 'stored')
    t.is((await store.get(key))?.value, key)
  }
  t.is(await store.write('big', 'y'.repeat(1_000_000), set), 'stored')
  t.is((await store.get('big'))?.value.length, 1_000_000, 'a value of many packets is read back whole')
  // values are stored byte for byte: line breaks and all of Unicode
  const odd = 'line\r\nbreak\n\r\0 é € 𝄞 END\r\nVALUE x 0 1\r\n'
  t.is(await store.write('odd', odd, set), 'stored')
  t.is((await store.get('odd'))?.value, odd)
  t.is(await p.raw('get odd\r\n'), `VALUE odd 0 ${Buffer.byteLength(odd)}\r\n${odd}\r\nEND\r\n`)
  t.is(await store.write('newlines', '\n'.repeat(600_000), set), 'stored', 'a line feed is one byte')

  // an injected npm client garbles some keys and escapes line breaks: those are refused before anything is sent
  const client = new Memcached(p.address, { retries: 0 })
  t.teardown(() => client.end())
  const injected = open(t, { client })
  for (const key of ["a$'b", 'a$$b', 'cas', '__proto__']) await rejects(t, injected.get(key), 'ERR_INVALID_ID')
  // 600,000 line feeds are 1,200,000 bytes once that client has escaped them
  await rejects(t, injected.write('kept', '\n'.repeat(600_000), set), 'ERR_TOO_LARGE')
})

test("another client's flags: the store gives the bytes and flags as stored, never a crash", async (t) => {
  const [p, l] = await Promise.all([useMemcached(t), useMemcached(t)])
  const store = open(t, { servers: p.address })
  t.is(await p.raw('set badjson 2 0 5\r\n{{{{{\r\n'), 'STORED\r\n')
  t.is(await p.raw('set binary 4 0 3\r\nabc\r\n'), 'STORED\r\n')
  t.is(await p.raw('set number 8 0 2\r\n42\r\n'), 'STORED\r\n')
  for (const [key, flags, bytes] of [
    ['badjson', 2, '{{{{{'],
    ['binary', 4, 'abc'],
    ['number', 8, '42'],
  ] as const) {
    t.deepEqual(await store.get(key), { value: Buffer.from(bytes), flags, version: (await store.get(key))!.version! })
    t.like(await store.get(key, { consistent: true }), { value: Buffer.from(bytes), flags })
  }
  // a session cannot be read from them: flag 2 is gzip (this is not), flags 4 and 8 hold no JSON object
  for (const id of ['badjson', 'binary', 'number']) {
    const err = await t.throwsAsync(tieSession(id, { store }), { instanceOf: SessionError })
    t.is(err?.code, 'ERR_CORRUPT')
  }
  t.is(await store.write('badjson', 'fine', set), 'stored')
  t.is((await store.get('badjson'))?.value, 'fine')

  t.is(await p.raw('set plain 0 0 9\r\n{"a":"b"}\r\n'), 'STORED\r\n')
  t.is((await store.get('plain'))?.value, '{"a":"b"}')
  // another client's value with raw CRLFs: memcached frames it by its length, the client by lines
  t.is(await p.raw('set crlf 0 0 13\r\n{\r\n "a": 1\r\n}\r\n'), 'STORED\r\n')
  t.is((await store.get('crlf'))?.value, '{\r\n "a": 1\r\n}')
  t.is((await store.get('plain'))?.value, '{"a":"b"}')

  // a flagged item in local is skipped, and replaced by the principal's value
  const cached = open(t, { servers: p.address, local: l.address })
  t.is(await l.raw('set plain 2 0 5\r\n{{{{{\r\n'), 'STORED\r\n')
  t.is((await cached.get('plain'))?.value, '{"a":"b"}')
  t.like(await cached.get('plain'), { value: '{"a":"b"}' })
  t.regex(await l.raw('get plain\r\n'), /\r\n\{"a":"b"\}\r\n/, 'replaced in local')
})

test('64 concurrent operations on a brand-new store all succeed, pipelined on one connection per server', async (t) => {
  const p = await useMemcached(t)
  const fresh = open(t, { servers: p.address })
  const results = await Promise.all(Array.from({ length: 64 }, (_, i) => fresh.write(`burst_${i}`, String(i), set)))
  t.true(results.every((r) => r === 'stored'))
  const entries = await Promise.all(Array.from({ length: 64 }, (_, i) => open(t, { servers: p.address }).get(`burst_${i}`)))
  t.deepEqual(
    entries.map((e) => e?.value),
    Array.from({ length: 64 }, (_, i) => String(i)),
    '64 brand-new stores, one call each',
  )

  const before = await p.stats()
  const other = open(t, { servers: p.address })
  const many = await Promise.all(Array.from({ length: 500 }, (_, i) => other.get(`burst_${i % 64}`)))
  t.true(
    many.every((e, i) => e?.value === String(i % 64)),
    'each reply is matched to its own request',
  )
  const after = await p.stats()
  t.is(counter(before, after, 'total_connections'), 2, 'one connection for the burst of 500 calls, one for this stats call')
})

test('an unreachable server is ERR_STORE_UNAVAILABLE at once, naming the server', async (t) => {
  const port = await freePort()
  const store = open(t, { servers: `127.0.0.1:${port}`, requestTimeout: 5000 })
  for (const call of [() => store.get('k'), () => store.write('k', 'v', set), () => store.get('k'), () => store.delete('k')]) {
    const start = performance.now()
    const err = await rejects(t, call(), 'ERR_STORE_UNAVAILABLE')
    t.true(performance.now() - start < 2000, 'no wait for a deadline')
    t.true(err?.message.includes(`127.0.0.1:${port}`), err?.message)
    t.truthy(err?.cause)
  }
})

test('a connect that never completes fails within requestTimeout', async (t) => {
  // A stopped server with a listen backlog of 1: once two connections wait in its queue, the
  // kernel drops further SYNs, so a connect hangs, as to a host that never answers (on loopback).
  const p = await useMemcached(t, { extraArgs: ['-b', '1'] })
  t.teardown(() => p.resume())
  await p.pause()
  const queued = Array.from({ length: 2 }, () => net.connect(p.port, p.host))
  t.teardown(() => queued.forEach((socket) => socket.destroy()))
  await Promise.all(queued.map((socket) => new Promise((resolve) => socket.once('connect', resolve))))
  const store = open(t, { servers: p.address, requestTimeout: 300 })
  const start = performance.now()
  const err = await rejects(t, store.get('k'), 'ERR_STORE_UNAVAILABLE')
  const ms = performance.now() - start
  t.true(ms >= 290 && ms < 2000, `${ms} ms`)
  t.regex(err?.message ?? '', /no answer from memcached 127\.0\.0\.1:\d+ in 300 ms/)
  // an unreachable server is refused for a second: the next calls fail at once, not after 300 ms each
  for (let i = 0; i < 3; i++) {
    const again = await timed(rejects(t, store.get('k'), 'ERR_STORE_UNAVAILABLE'))
    t.true(again < 250, `call ${i} took ${again} ms`) // not another 300 ms wait
  }
})

test('a server at its connection limit: its words, and it is refused for a second instead of a reconnect per call', async (t) => {
  const p = await useMemcached(t, { extraArgs: ['-c', '30'] })
  const before = Number((await p.stats()).rejected_connections)
  let turnedAway = 0 // of the sockets that fill the server up
  const held = Array.from({ length: 40 }, () =>
    net
      .connect(p.port, p.host)
      .on('error', () => undefined)
      .on('data', (data) => void (String(data).startsWith('ERROR Too many open connections') && turnedAway++)),
  )
  t.teardown(() => held.forEach((socket) => socket.destroy()))
  // until the server has turned some away and then no more for 300 ms (at most 10 s: a loaded machine is slow to accept)
  for (let last = -1, i = 0; i < 34 && (turnedAway === 0 || turnedAway !== last); i++) {
    last = turnedAway
    await sleep(300)
  }
  t.true(turnedAway > 0, 'the server is full')
  const store = open(t, { servers: p.address, requestTimeout: PATIENT })
  const err = await rejects(t, store.get('k'), 'ERR_STORE_UNAVAILABLE')
  t.regex(err?.message ?? '', /answered "ERROR Too many open connections"; check its connection limit \(-c\)/)
  for (let i = 0; i < 10; i++) await rejects(t, store.get('k'), 'ERR_STORE_UNAVAILABLE')
  held.forEach((socket) => socket.destroy())
  await sleep(300)
  const rejected = Number((await p.stats()).rejected_connections) - before
  t.is(rejected, turnedAway + 1, 'the store tried to connect once, not once per call')
  await sleep(800)
  t.is(await store.write('k', 'v', set), 'stored', 'served again once connections are free and the second has passed')
})

test('a call whose reply came while the event loop was blocked past the deadline is answered, not timed out', async (t) => {
  const p = await useMemcached(t)
  const store = open(t, { servers: p.address, requestTimeout: 200 })
  await store.write('k', 'v', set)
  const pending = store.get('k')
  await new Promise((resolve) => process.nextTick(resolve)) // the request has left
  const until = performance.now() + 400
  while (performance.now() < until); // a blocked event loop, 2x the deadline
  t.is((await pending)?.value, 'v')
})

test('a principal killed during a run: calls fail fast, and the same store serves again once it is back', async (t) => {
  const p = await useMemcached(t)
  const store = open(t, { servers: p.address, requestTimeout: 5000 }) // fast failures must not come from the deadline
  await store.write('k', 'v', set)
  t.teardown(() => p.resume())
  await p.pause()
  const inFlight = Array.from({ length: 5 }, () => store.get('k'))
  await sleep(50)
  const killedAt = performance.now()
  await p.kill()
  const settled = await Promise.allSettled(inFlight)
  t.true(performance.now() - killedAt < 2000, 'calls in flight fail when their socket closes')
  for (const result of settled) t.is(result.status === 'rejected' && (result.reason as SessionError).code, 'ERR_STORE_UNAVAILABLE')
  for (let i = 0; i < 5; i++) {
    const ms = await timed(rejects(t, store.write('k', 'w', set), 'ERR_STORE_UNAVAILABLE'))
    t.true(ms < 2000, `call ${i} took ${ms} ms`)
  }
  await p.restart()
  const deadline = Date.now() + 5000
  let result: string | undefined
  while (result !== 'stored' && Date.now() < deadline) {
    result = await store.write('k', 'back', set).catch(() => undefined)
    if (result !== 'stored') await sleep(100)
  }
  t.is(result, 'stored')
  t.is((await store.get('k'))?.value, 'back')
})

test('a stalled server: a call fails after requestTimeout, the next ones at once, and it serves again soon after it resumes', async (t) => {
  const p = await useMemcached(t)
  const store = open(t, { servers: p.address, requestTimeout: 1000 })
  await store.write('k', 'v', set)
  t.teardown(() => p.resume())
  await p.pause()
  const start = performance.now()
  const err = await rejects(t, store.get('k'), 'ERR_STORE_UNAVAILABLE')
  const ms = performance.now() - start
  t.true(ms >= 980 && ms < 3000, `${ms} ms`)
  t.regex(err?.message ?? '', new RegExp(`no answer from memcached ${p.address} in 1000 ms`))
  // refused like a dead server for a second: each call fails at once instead of waiting 1000 ms
  const fast: number[] = []
  for (const call of [() => store.get('k'), () => store.write('k', 'w', set), () => store.touch('k', 60), () => store.delete('k')]) {
    const took = await timed(rejects(t, call(), 'ERR_STORE_UNAVAILABLE'))
    fast.push(Math.round(took))
    t.true(took < 500, `a call while refused took ${took} ms`)
  }
  t.log(`first call ${Math.round(ms)} ms; calls while refused: ${fast.join(', ')} ms`)
  p.resume()
  const resumed = performance.now()
  let value: string | undefined
  while (value === undefined && performance.now() - resumed < 1000 + 1000 + 1500) {
    const found = (await store.get('k').catch(() => undefined))?.value
    value = found === undefined ? undefined : String(found)
    if (value === undefined) await sleep(50)
  }
  t.is(value, 'v', 'served again within the refusal (1 s) + requestTimeout, with slack for a loaded machine')
  t.log(`served again ${Math.round(performance.now() - resumed)} ms after SIGCONT`)
})

/** Runs a script that uses the store; resolves the ms from its last line ("closed") to its exit. */
async function runScript(t: T, body: string): Promise<{ code: number | null; out: string; lingered: number }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'tied-session-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const storeUrl = pathToFileURL(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/stores/memcached.ts')).href
  const file = path.join(dir, 'script.mts')
  await writeFile(file, `import { memcachedStore } from ${JSON.stringify(storeUrl)}\n${body}\nconsole.log('closed')\n`)
  const child = spawn(process.execPath, ['--import', 'tsx', file], { stdio: ['ignore', 'pipe', 'pipe'] })
  const kill = setTimeout(() => child.kill('SIGKILL'), 15_000)
  t.teardown(() => clearTimeout(kill))
  let out = ''
  let closedAt = Number.NaN
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    out += chunk
    if (out.includes('closed\n') && Number.isNaN(closedAt)) closedAt = performance.now()
  })
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (out += chunk))
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve))
  return { code, out, lingered: performance.now() - closedAt }
}

test('close: a script that used the store and closed it exits at once, after failures and stalls too', async (t) => {
  const [p, stalled] = await Promise.all([useMemcached(t), useMemcached(t)])
  const down = `127.0.0.1:${await freePort()}`
  t.teardown(() => stalled.resume())
  await stalled.pause()
  const scripts = {
    healthy: `const store = memcachedStore({ servers: '${p.address}' })
      await store.write('script', 'v', { ttl: 60, mode: 'set' })
      if ((await store.get('script'))?.value !== 'v') throw new Error('bad read')
      await store.close()`,
    'local down': `const store = memcachedStore({ servers: '${p.address}', local: '${down}' })
      await store.write('script2', 'v', { ttl: 60, mode: 'set' })
      await store.get('script2')
      await store.close()`,
    'principal down': `const store = memcachedStore({ servers: '${down}' })
      await store.get('x').catch(() => {})
      await store.close()`,
    stalled: `const store = memcachedStore({ servers: '${stalled.address}', requestTimeout: 200 })
      const start = performance.now()
      const pending = store.get('x').catch((err) => err.code)
      if (await pending !== 'ERR_STORE_UNAVAILABLE') throw new Error('expected a timeout')
      // nothing else in this process wakes the event loop: the deadline must come by itself
      if (performance.now() - start > 1500) throw new Error('the 200 ms deadline came after ' + (performance.now() - start) + ' ms')
      const late = store.get('y').catch((err) => err.code)
      await store.close()
      if (await late !== 'ERR_STORE_UNAVAILABLE') throw new Error('close should fail calls in flight')`,
    'never closed, idle': `const store = memcachedStore({ servers: '${p.address}' })
      await store.write('script3', 'v', { ttl: 60, mode: 'set' })`,
  }
  await Promise.all(
    Object.entries(scripts).map(async ([name, body]) => {
      const { code, out, lingered } = await runScript(t, body)
      t.is(code, 0, `${name}: ${out}`)
      t.true(lingered < 2000, `${name}: the process lived ${lingered} ms after its last line`)
    }),
  )
})

test('an injected client is used as is, and close leaves it to its owner', async (t) => {
  const [p, l] = await Promise.all([useMemcached(t), useMemcached(t)])
  const client = new Memcached(p.address, { retries: 0 })
  const localClient = new Memcached(l.address, { retries: 0 })
  t.teardown(() => {
    client.end()
    localClient.end()
  })
  const store = memcachedStore({ client, localClient })
  t.deepEqual(store.servers, [p.address])
  t.is(await store.write('k', 'v1', { ttl: 60, mode: 'add' }), 'stored')
  t.is(await store.write('k', 'v1', { ttl: 60, mode: 'add' }), 'exists')
  const entry = await store.get('k')
  t.is(entry?.value, 'v1')
  t.is(await store.write('k', 'v2', { ttl: 60, mode: 'cas', version: entry!.version! }), 'stored')
  t.is((await store.get('k'))?.value, 'v2')
  // an injected client speaks no meta commands: a copy could not be checked, so none is made
  t.is(await l.raw('get k\r\n'), 'END\r\n', 'no copy in the injected local client')
  t.is(await store.write('nope', 'x', { ttl: 60, mode: 'replace' }), 'not_found')
  await store.close()
  const still = await new Promise((resolve) => client.get('k', (_err, value) => resolve(value)))
  t.is(still, 'v2', 'the injected client still works after close')
  await rejects(t, store.get('k'), 'ERR_STORE_UNAVAILABLE')
})

test('shared stores: one per configuration, closeStores closes them all', async (t) => {
  const p = await useMemcached(t)
  t.teardown(() => closeStores())
  const a = sharedMemcachedStore({ servers: [p.address] })
  t.is(sharedMemcachedStore({ servers: p.address }), a)
  const b = sharedMemcachedStore({ servers: p.address, requestTimeout: 500 })
  t.not(b, a)
  await a.write('shared', 'v', set)
  await a.close()
  const c = sharedMemcachedStore({ servers: p.address })
  t.not(c, a, 'a closed store is forgotten')
  t.is((await c.get('shared'))?.value, 'v')
  await closeStores()
  await rejects(t, b.get('shared'), 'ERR_STORE_UNAVAILABLE')
  await rejects(t, c.get('shared'), 'ERR_STORE_UNAVAILABLE')
  const d = sharedMemcachedStore({ servers: p.address })
  t.not(d, c)
  t.is((await d.get('shared'))?.value, 'v')
  const client = new Memcached(p.address, { retries: 0 })
  t.teardown(() => client.end())
  t.not(sharedMemcachedStore({ client }), sharedMemcachedStore({ client }), 'injected clients are not shared')
})

test('an IPv6 server is written "[address]:port"', async (t) => {
  const [p, l] = await Promise.all([1, 2].map(() => useMemcached(t, { extraArgs: ['-l', '::1'] }))) // also on the IPv6 loopback
  const store = open(t, { servers: `[::1]:${p!.port}`, local: `[::1]:${l!.port}` })
  t.deepEqual(store.servers, [`[::1]:${p!.port}`])
  t.is(await store.write('v6', 'yes', set), 'stored')
  t.is((await store.get('v6'))?.value, 'yes')
  t.is(await p!.raw('get v6\r\n'), 'VALUE v6 0 3\r\nyes\r\nEND\r\n', 'the principal, asked over IPv4')
  t.regex(await l!.raw('get v6\r\n'), /^VALUE v6 \d+ 3\r\nyes\r\nEND\r\n$/, 'written through to local')
  const listed: string[] = []
  for await (const key of store.keys!('v6')) listed.push(key)
  t.deepEqual(listed, ['v6'])
  const defaultPort = memcachedStore({ servers: '[::1]' })
  t.deepEqual(defaultPort.servers, ['[::1]:11211'])
  await defaultPort.close()
  t.throws(() => memcachedStore({ servers: '::1' }), { instanceOf: TypeError, message: /"\[address\]:port" for IPv6/ })
})

test('options and arguments are checked: TypeErrors that name the option', (t) => {
  const bad: [unknown, RegExp][] = [
    [{}, /exactly one of `servers` and `client`/],
    [{ servers: [] }, /`servers` must name at least one/],
    [{ servers: 'a b:1' }, /`servers` takes "host:port"/],
    [{ servers: 'h:99999' }, /`servers` takes "host:port"/],
    [{ servers: 'h:1', local: 42 }, /`local` must be/],
    [{ servers: 'h:1', timeout: 5 }, /unknown memcachedStore option `timeout`/],
    [{ servers: 'h:1', localTtl: 0 }, /`localTtl` must be an integer/],
    [{ servers: 'h:1', localTtl: 1.5 }, /`localTtl`/],
    [{ servers: 'h:1', requestTimeout: -1 }, /`requestTimeout`/],
    [{ servers: 'h:1', maxValueBytes: '1' }, /`maxValueBytes`/],
    [{ servers: 'h:1', poolSize: 4 }, /unknown memcachedStore option `poolSize`/],
    [{ client: { get() {} } }, /`client` must be a memcached client; it lacks gets/],
    [{ servers: 'h:1', client: {} }, /exactly one/],
  ]
  for (const [options, message] of bad) t.throws(() => memcachedStore(options as MemcachedStoreOptions), { instanceOf: TypeError, message })
  const store = memcachedStore({ servers: 'localhost' })
  t.deepEqual(store.servers, ['localhost:11211'])
  return store.close()
})

test('write and touch arguments are checked before any I/O', async (t) => {
  const store: Store = open(t, { servers: `127.0.0.1:${await freePort()}` })
  await t.throwsAsync(store.write('k', 'v', { ttl: 1.5, mode: 'set' }), { instanceOf: TypeError, message: /ttl/ })
  await t.throwsAsync(store.write('k', 'v', { ttl: -1, mode: 'set' }), { instanceOf: TypeError })
  await t.throwsAsync(store.write('k', 'v', { ttl: 60, mode: 'upsert' as 'set' }), { instanceOf: TypeError, message: /mode/ })
  await t.throwsAsync(store.write('k', undefined as unknown as string, set), { instanceOf: TypeError })
  await t.throwsAsync(store.touch('k', Number.NaN), { instanceOf: TypeError })
})

// --- locks (Store.lock) ----------------------------------------------------------------------

test('lock: the lock of k is k:lock on the principal only, holding a random token, for ttl + 1 s; a release deletes it at once', async (t) => {
  const [p, l] = await Promise.all([useMemcached(t), useMemcached(t)])
  const store = open(t, { servers: p.address, local: l.address })
  await store.write('k', 'v', set)
  const release = await store.lock('k', { ttl: 5, wait: 0 })
  const now = Math.floor(Date.now() / 1000)
  t.regex(await p.raw('get k:lock\r\n'), /^VALUE k:lock 0 32\r\n[0-9a-f]{32}\r\nEND\r\n$/)
  t.is(await l.raw('get k:lock\r\n'), 'END\r\n', 'never on local')
  const exp = (await expiries(p)).get('k:lock')!
  // memcached's clock ticks once a second and lags under load: 1 s of slack below
  t.true(exp - now >= 4 && exp - now <= 7, `exp is now + ${exp - now} s`)
  const listed: string[] = []
  for await (const key of store.keys!()) listed.push(key)
  t.deepEqual(listed, ['k'], 'keys() leaves locks out')
  await release()
  t.is(await p.raw('get k:lock\r\n'), 'END\r\n')
  t.is((await store.get('k'))?.value, 'v')
  // deleted, not left as a tombstone: another holder gets it at once
  const start = performance.now()
  await (
    await store.lock('k', { ttl: 5, wait: 0 })
  )()
  t.true(performance.now() - start < 2000)
})

test('lock: a release checks the token, so a holder whose lock expired leaves the new holder alone', async (t) => {
  const p = await useMemcached(t)
  const store = open(t, { servers: p.address })
  const release = await store.lock('k', { ttl: 5, wait: 0 })
  // the lock expired and another process took it: same key, another token
  await p.raw('set k:lock 0 60 32\r\n' + 'f'.repeat(32) + '\r\n')
  await release()
  t.is(await p.raw('get k:lock\r\n'), `VALUE k:lock 0 32\r\n${'f'.repeat(32)}\r\nEND\r\n`)
})

test('lock: a key whose lock key memcached cannot hold is ERR_INVALID_ID before anything is sent', async (t) => {
  const p = await useMemcached(t)
  const store = open(t, { servers: p.address })
  const before = await p.stats()
  for (const key of ['with space', 'a'.repeat(246), 'é'.repeat(123)])
    await rejects(t, store.lock(key, { ttl: 5, wait: 0 }), 'ERR_INVALID_ID')
  await (
    await store.lock('a'.repeat(245), { ttl: 5, wait: 0 })
  )() // 250 bytes with ":lock"
  const after = await p.stats()
  t.is(counter(before, after, 'cmd_set'), 1, 'only the add of the valid one (its release is mg + md)')
})

test('lock: a release removes only its own lock: mg + md C<cas> with meta, gets + cas at a past Unix time without; never a negative exptime', async (t) => {
  const p = await useMemcached(t)
  const log = await useCommandLog(t, p)
  for (const protocol of ['auto', 'text'] as const) {
    const store = open(t, { servers: log.address, protocol, requestTimeout: PATIENT })
    const key = `k-${protocol}`
    const release = await store.lock(key, { ttl: 5, wait: 0 })
    log.clear()
    await release()
    const [read, removed] = log.lines()
    if (protocol === 'auto') {
      t.regex(read ?? '', new RegExp(`^mg ${key}:lock v c$`))
      t.regex(removed ?? '', new RegExp(`^md ${key}:lock C\\d+$`))
    } else {
      t.is(read, `gets ${key}:lock`)
      t.regex(removed ?? '', new RegExp(`^cas ${key}:lock 0 2592001 8 \\d+$`), 'an exptime memcached reads as a Unix time in 1970')
    }
    t.is(await p.raw(`get ${key}:lock\r\n`), 'END\r\n', protocol)
    // free at once for the next holder
    await (
      await store.lock(key, { ttl: 5, wait: 0 })
    )()
    // a lock that expired and was taken by another (same key, another token) is left alone
    const late = await store.lock(key, { ttl: 5, wait: 0 })
    await p.raw(`set ${key}:lock 0 60 32\r\n${'f'.repeat(32)}\r\n`)
    await late()
    t.is(await p.raw(`get ${key}:lock\r\n`), `VALUE ${key}:lock 0 32\r\n${'f'.repeat(32)}\r\nEND\r\n`, protocol)
  }
})

test('lock: a principal that is down is ERR_STORE_UNAVAILABLE at once, not ERR_LOCKED; so is a release then', async (t) => {
  const down = open(t, { servers: `127.0.0.1:${await freePort()}` })
  t.true((await timed(rejects(t, down.lock('k', { ttl: 5, wait: 5000 }), 'ERR_STORE_UNAVAILABLE'))) < 2000)
  const p = await useMemcached(t)
  const store = open(t, { servers: p.address })
  const release = await store.lock('k', { ttl: 5, wait: 0 })
  await p.kill()
  await rejects(t, release(), 'ERR_STORE_UNAVAILABLE')
})

test('lock: a held lock never keeps the process alive (it ends by its ttl)', async (t) => {
  const p = await useMemcached(t)
  const exit = await runFixture(t, 'lock-exit.ts', ['memcached', p.address], 10_000).exited
  t.is(exit.code, 0, exit.stderr)
  t.is(exit.stdout, 'holding\n')
  t.regex(await p.raw('get held:lock\r\n'), /^VALUE held:lock 0 32\r\n/)
})

test("keys() on a server that refuses metadump (-X) fails at once with the server's reason", async (t) => {
  const p = await useMemcached(t, { extraArgs: ['-X'] })
  const store = open(t, { servers: p.address, requestTimeout: PATIENT })
  const started = performance.now()
  const listing = (async () => {
    for await (const key of store.keys!()) void key
  })()
  const err = await rejects(t, listing, 'ERR_STORE_UNAVAILABLE')
  t.regex(err?.message ?? '', /metadump not allowed/)
  t.true(performance.now() - started < 2000, 'not the request deadline')
})

test('keys() misses no live key: N keys written, some read, then 50 listings each find all N', async (t) => {
  const p = await useMemcached(t)
  const store = open(t, { servers: p.address, requestTimeout: PATIENT })
  const n = 300
  const keys = Array.from({ length: n }, (_, i) => `live_${i}`)
  await Promise.all(keys.map((k) => store.write(k, `value of ${k}`, set)))
  for (let round = 0; round < 50; round++) {
    // reads move items between memcached's LRUs: the walk of `metadump all` then misses some
    await Promise.all(keys.filter((_, i) => (i + round) % 3 === 0).map((k) => store.get(k)))
    const listed = new Set<string>()
    for await (const k of store.keys!('live_')) listed.add(k)
    t.is(listed.size, n, `listing ${round} found ${listed.size} of ${n}`)
    if (listed.size !== n) break
  }
})

test('keys() while other listings run: a BUSY crawler is waited for, and every listing is whole', async (t) => {
  const p = await useMemcached(t)
  const store = open(t, { servers: p.address, requestTimeout: PATIENT })
  await Promise.all(Array.from({ length: 2000 }, (_, i) => store.write(`busy_${i}`, 'x'.repeat(100), set)))
  const list = async () => {
    let count = 0
    for await (const k of store.keys!('busy_')) if (k) count++
    return count
  }
  t.deepEqual(await Promise.all(Array.from({ length: 6 }, list)), Array(6).fill(2000))
})
