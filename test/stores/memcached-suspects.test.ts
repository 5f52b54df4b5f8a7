/**
 * Replicas without the second read (issue 16, read throughput): while no server of a key is
 * suspect, a read trusts the key's own server alone; a write that leaves a server without its copy
 * marks it (memcached-suspects.ts) before it is acknowledged, and from then on every process reads
 * every copy of that server's keys, also one whose last check predates the outage.
 */
import anyTest, { type ExecutionContext, type TestFn } from 'ava'
import { copyServers } from '../../src/stores/memcached-copies.js'
import { MARKER_PREFIX, MARKER_SLACK, SUSPECT_LEASE_MS } from '../../src/stores/memcached-suspects.js'
import { memcachedStore, type MemcachedStore, type MemcachedStoreOptions } from '../../src/stores/memcached.js'
import { useCommandLog, type CommandLog } from '../helpers/command-log.js'
import { rawCommand, startMemcached, type MemcachedServer } from '../helpers/memcached.js'

const test = anyTest as TestFn<unknown>
type T = ExecutionContext<unknown>

const PATIENT = 5000

function open(t: T, options: MemcachedStoreOptions): MemcachedStore {
  const store = memcachedStore(options)
  t.teardown(() => store.close())
  return store
}

/** Three servers of the test's own (stopped in teardown), each behind a command log: the store's servers are the logs' addresses. */
async function threeLogged(t: T): Promise<{ nodes: MemcachedServer[]; logs: CommandLog[]; servers: string[] }> {
  const nodes = await Promise.all([startMemcached(), startMemcached(), startMemcached()])
  t.teardown(() => Promise.all(nodes.map((n) => n.stop())))
  const logs = await Promise.all(nodes.map((n) => useCommandLog(t, n)))
  return { nodes, logs, servers: logs.map((l) => l.address) }
}

/** A key whose copies (replicas: 1) are on servers `first` and then `second` of `servers`. */
function keyOn(servers: string[], first: number, second: number): string {
  const copies = copyServers(servers, 1)
  for (let i = 0; i < 10_000; i++) {
    const [a, b] = copies(`k${i}`)
    if (a === servers[first] && b === servers[second]) return `k${i}`
  }
  throw new Error('no such key')
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
/** The mg commands a log saw for `key`. */
const reads = (log: CommandLog, key: string) => log.lines().filter((line) => line.startsWith(`mg ${key} `)).length

test('with no server suspect, a read asks the key own server alone: one mg, none to its replica', async (t) => {
  const { logs, servers } = await threeLogged(t)
  const key = keyOn(servers, 0, 1)
  const store = open(t, { servers, replicas: 1, requestTimeout: PATIENT })
  await store.write(key, 'v1', { ttl: 60, mode: 'set' })
  t.is((await store.get(key))?.value, 'v1') // the first read of a process asks every copy, and starts a check
  await sleep(100)
  for (const log of logs) log.clear()
  t.is((await store.get(key))?.value, 'v1')
  t.is(reads(logs[0]!, key), 1)
  t.is(reads(logs[1]!, key), 0, 'the replica is not asked')
  // the check is one get of every server's marker, to every server
  t.true(logs.every((log) => log.lines().every((line) => line.startsWith('get ') || line.startsWith(`mg ${key} `))))
})

test('a cas write after a trusted read still reaches the replica, at the cas it asked for alongside the write', async (t) => {
  const { nodes, logs, servers } = await threeLogged(t)
  const key = keyOn(servers, 0, 1)
  const store = open(t, { servers, replicas: 1, requestTimeout: PATIENT })
  await store.write(key, 'v1', { ttl: 60, mode: 'set' })
  await store.get(key)
  await sleep(100)
  for (const log of logs) log.clear()
  const read = await store.get(key)
  t.regex(read!.version!, /\?/) // the replica's cas unknown: it was not asked
  t.is(await store.write(key, 'v2', { ttl: 60, mode: 'cas', version: read!.version! }), 'stored')
  t.deepEqual(
    logs[1]!
      .lines()
      .filter((line) => line.includes(` ${key} `) || line.startsWith(`mg ${key}`) || line.startsWith(`ms ${key}`))
      .map((l) => l.split(' ')[0]),
    ['mg', 'ms'],
  )
  t.regex(await rawCommand(nodes[1]!.port, `get ${key}\r\n`), /\r\nv2\r\n/)
  // a second writer at the same (now old) version loses
  t.is(await store.write(key, 'v3', { ttl: 60, mode: 'cas', version: read!.version! }), 'exists')
})

test('a write that misses a copy marks its server on the others, waits the lease, and every read then asks every copy', async (t) => {
  const { nodes, logs, servers } = await threeLogged(t)
  const key = keyOn(servers, 0, 1)
  const store = open(t, { servers, replicas: 1, requestTimeout: 300 })
  await store.write(key, 'old', { ttl: 60, mode: 'set' })
  await nodes[1]!.pause() // the replica
  t.teardown(() => nodes[1]!.resume())
  const read = await store.get(key)
  const begun = performance.now()
  t.is(await store.write(key, 'new', { ttl: 60, mode: 'cas', version: read!.version! }), 'stored')
  t.true(performance.now() - begun >= SUSPECT_LEASE_MS - 5, 'acknowledged only once every current check can see the marker')
  // the marker of the replica: on both other servers, outliving the write
  for (const node of [nodes[0]!, nodes[2]!]) {
    const reply = await rawCommand(node.port, `mg ${MARKER_PREFIX}${servers[1]} t\r\n`)
    const ttl = Number(/ t(\d+)/.exec(reply)?.[1])
    t.true(ttl > 60 && ttl <= 60 + MARKER_SLACK + 1, reply)
  }
  nodes[1]!.resume()
  // a store that saw none of it: its first check finds the marker, and its reads ask both copies
  const fresh = open(t, { servers, replicas: 1, requestTimeout: PATIENT })
  t.is((await fresh.get(key))?.value, 'new')
  await sleep(100)
  for (const log of logs) log.clear()
  t.is((await fresh.get(key))?.value, 'new')
  t.is(reads(logs[0]!, key), 1)
  t.is(reads(logs[1]!, key), 1, 'the suspect replica is asked (and was repaired)')
  t.regex(await rawCommand(nodes[1]!.port, `get ${key}\r\n`), /\r\nnew\r\n/)
  const listed: string[] = []
  for await (const k of fresh.keys!()) listed.push(k)
  t.deepEqual(listed, [key], 'a marker is no session: keys() leaves it out')
})

test('a process that kept reading other keys through the outage does not trust the old node once the write is acknowledged', async (t) => {
  const { nodes, servers } = await threeLogged(t)
  const key = keyOn(servers, 0, 1) // its own server will be frozen
  const other = keyOn(servers, 1, 2) // never on the frozen server
  const reader = open(t, { servers, replicas: 1, requestTimeout: 300 })
  const writer = open(t, { servers, replicas: 1, requestTimeout: 300 })
  await writer.write(key, 'old', { ttl: 60, mode: 'set' })
  await writer.write(other, 'x', { ttl: 60, mode: 'set' })
  t.is((await reader.get(key))?.value, 'old')
  await nodes[0]!.pause()
  t.teardown(() => nodes[0]!.resume())
  let reading = true
  const loop = (async () => {
    // keeps the reader's checks going (they fail on the frozen server: nothing is trusted then)
    for (let i = 0; reading && i < 500; i++) {
      await reader.get(other).catch(() => undefined) // on a loaded machine even a live server can miss a 300 ms deadline
      await sleep(10)
    }
  })()
  const read = await writer.get(key)
  t.is(read?.value, 'old')
  t.is(await writer.write(key, 'new', { ttl: 60, mode: 'cas', version: read!.version! }), 'stored')
  nodes[0]!.resume()
  t.regex(await rawCommand(nodes[0]!.port, `get ${key}\r\n`), /\r\nold\r\n/) // back, with its old copy
  t.is((await reader.get(key))?.value, 'new')
  reading = false
  await loop
})

test('a check that was clean just before the outage is not trusted after the write is acknowledged (the lease)', async (t) => {
  const { nodes, servers } = await threeLogged(t)
  const key = keyOn(servers, 0, 1) // its own server will be frozen
  const reader = open(t, { servers, replicas: 1, requestTimeout: 300 })
  const writer = open(t, { servers, replicas: 1, requestTimeout: 300 })
  await writer.write(key, 'old', { ttl: 60, mode: 'set' })
  await reader.get(key) // starts the reader's first check
  await sleep(SUSPECT_LEASE_MS / 2 + 50)
  t.is((await reader.get(key))?.value, 'old') // trusted, and starts a new check: clean, just before the freeze
  await sleep(20)
  await nodes[0]!.pause()
  t.teardown(() => nodes[0]!.resume())
  // the writer waits out its read's deadline on the frozen server, writes the replica, marks the frozen one
  const read = await writer.get(key)
  t.is(await writer.write(key, 'new', { ttl: 60, mode: 'cas', version: read!.version! }), 'stored')
  nodes[0]!.resume()
  t.regex(await rawCommand(nodes[0]!.port, `get ${key}\r\n`), /\r\nold\r\n/) // back, with its old copy
  // without the writer's wait, the reader's clean check would still be current here, and it would read 'old'
  t.is((await reader.get(key))?.value, 'new')
})

test('a write to the next copy, past a key own server this process saw fail, marks that server before it writes', async (t) => {
  const { nodes, logs, servers } = await threeLogged(t)
  const key = keyOn(servers, 0, 1)
  const store = open(t, { servers, replicas: 1, requestTimeout: 300 })
  await store.write(key, 'old', { ttl: 60, mode: 'set' })
  await nodes[0]!.pause()
  t.teardown(() => nodes[0]!.resume())
  const read = await store.get(key) // waits out the deadline on the frozen server: served by the replica
  for (const log of logs) log.clear()
  t.is(await store.write(key, 'new', { ttl: 60, mode: 'cas', version: read!.version! }), 'stored')
  // on the replica, now the authority: first the marker of the frozen server, then the write
  const order = logs[1]!.lines().map((line) => line.split(' ').slice(0, 2).join(' '))
  const marked = order.indexOf(`ms ${MARKER_PREFIX}${servers[0]}`)
  const written = order.findIndex((line) => line === `ms ${key}`)
  t.true(marked >= 0 && written > marked, order.join(' | '))
})

test('a marker is never made shorter: a write with a short TTL that misses the server leaves a longer marker as it is', async (t) => {
  const { nodes, servers } = await threeLogged(t)
  const long = keyOn(servers, 0, 1)
  const short = keyOn(servers, 2, 1)
  const a = open(t, { servers, replicas: 1, requestTimeout: 300 })
  const b = open(t, { servers, replicas: 1, requestTimeout: 300 })
  await a.write(long, 'x', { ttl: 600, mode: 'set' })
  await b.write(short, 'y', { ttl: 5, mode: 'set' })
  await nodes[1]!.pause() // the replica of both keys
  t.teardown(() => nodes[1]!.resume())
  t.is(await a.write(long, 'x2', { ttl: 600, mode: 'set' }), 'stored') // marks it for 600 + MARKER_SLACK
  t.is(await b.write(short, 'y2', { ttl: 5, mode: 'set' }), 'stored') // would mark it for 5 + MARKER_SLACK
  for (const node of [nodes[0]!, nodes[2]!]) {
    const reply = await rawCommand(node.port, `mg ${MARKER_PREFIX}${servers[1]} t\r\n`)
    t.true(Number(/ t(\d+)/.exec(reply)?.[1]) > 600, reply)
  }
})
