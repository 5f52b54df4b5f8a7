import anyTest, { type ExecutionContext, type TestFn } from 'ava'
import net from 'node:net'
import sinon from 'sinon'
import { SessionError } from '../../src/errors.js'
import { copyServers, flagsOf } from '../../src/stores/memcached-copies.js'
import { memcachedStore, type MemcachedStore, type MemcachedStoreOptions } from '../../src/stores/memcached.js'
import { WireClient } from '../../src/stores/memcached-wire.js'
import { destroy, save, tieSession, untie } from '../../src/tie.js'
import { startMemcached, type MemcachedServer } from '../helpers/memcached.js'
import { storeContract } from '../helpers/store-contract.js'

const test = anyTest as TestFn<unknown>
type T = ExecutionContext<unknown>

/** A deadline for tests that do not measure deadlines (a loaded 2-core machine). */
const PATIENT = 5000

// Three servers shared by the contract suite; the fault tests start their own.
let pool: MemcachedServer[] = []
test.before(async () => {
  pool = await Promise.all([startMemcached(), startMemcached(), startMemcached()])
})
test.after.always(async () => {
  await Promise.all(pool.map((server) => server.stop()))
})

storeContract({
  name: 'memcached store with replicas: 1',
  clock: 'real',
  create: async () => memcachedStore({ servers: pool.map((s) => s.address), replicas: 1, requestTimeout: PATIENT }),
  peer: async () => memcachedStore({ servers: pool.map((s) => s.address), replicas: 1, requestTimeout: PATIENT }),
  maxFlags: 3, // the other bits carry each copy's stamp
})

function open(t: T, options: MemcachedStoreOptions): MemcachedStore {
  const store = memcachedStore(options)
  t.teardown(() => store.close())
  return store
}

/** Two servers of our own, stopped in teardown, and the server order of `key`'s copies. */
async function twoServers(t: T, key: string): Promise<{ own: MemcachedServer; replica: MemcachedServer; servers: string[] }> {
  const started = await Promise.all([startMemcached(), startMemcached()])
  t.teardown(() => Promise.all(started.map((s) => s.stop())))
  const servers = started.map((s) => s.address)
  const [first] = copyServers(servers, 1)(key)
  const own = started.find((s) => s.address === first)!
  const replica = started.find((s) => s !== own)!
  return { own, replica, servers }
}

/** The flags and value a server holds for `key`, read with a raw `mg`, or undefined. */
async function rawCopy(server: MemcachedServer, key: string): Promise<{ flags: number; value: string } | undefined> {
  // `mn` after it: its MN says the reply is complete (the helper's raw() knows only text replies)
  const reply = await new Promise<string>((resolve, reject) => {
    const socket = net.connect(server.port, server.host)
    let text = ''
    socket.setEncoding('utf8')
    socket.setTimeout(2000, () => socket.destroy(new Error(`no reply from ${server.address}`)))
    socket.on('error', reject)
    socket.on('data', (chunk: string) => {
      text += chunk
      if (text.endsWith('MN\r\n')) {
        socket.destroy()
        resolve(text)
      }
    })
    socket.write(`mg ${key} f v\r\nmn\r\n`)
  })
  const m = /^VA \d+ f(\d+)\r\n(.*)\r\n/.exec(reply)
  return m ? { flags: Number(m[1]), value: m[2]! } : undefined
}

test('the copies of a key are its own server and the next distinct ones, for ketama and crc32', (t) => {
  const servers = ['127.0.0.1:1', '127.0.0.1:2', '127.0.0.1:3']
  const ketama = copyServers(servers, 2)
  for (let i = 0; i < 200; i++) {
    const list = ketama(`k${i}`)
    t.is(new Set(list).size, 3)
  }
  t.deepEqual(copyServers(servers, 1)('abc'), ketama('abc').slice(0, 2))
})

test('replicas is checked at the boundary', (t) => {
  const servers = ['127.0.0.1:1', '127.0.0.1:2']
  t.throws(() => memcachedStore({ servers, replicas: 2 }), { instanceOf: TypeError, message: /replicas.*0 to 1/ })
  t.throws(() => memcachedStore({ servers, replicas: 1.5 }), { instanceOf: TypeError, message: /replicas/ })
  t.throws(() => memcachedStore({ servers, replicas: 1, local: '127.0.0.1:3' }), { instanceOf: TypeError, message: /local/ })
  t.throws(() => memcachedStore({ servers: servers[0]!, replicas: 1 }), { instanceOf: TypeError, message: /replicas/ })
})

test('every copy is stamped in flags above the two bits Perl reads, and the stamp grows with each write', async (t) => {
  const key = 'stamped'
  const { own, replica, servers } = await twoServers(t, key)
  const store = open(t, { servers, replicas: 1, requestTimeout: PATIENT })
  t.is(await store.write(key, 'v1', { ttl: 60, mode: 'set', flags: 1 }), 'stored')
  t.deepEqual(await rawCopy(own, key), { flags: flagsOf(1, 1), value: 'v1' })
  t.deepEqual(await rawCopy(replica, key), { flags: flagsOf(1, 1), value: 'v1' })
  const read = await store.get(key)
  t.is(read?.flags, 1)
  t.is(await store.write(key, 'v2', { ttl: 60, mode: 'cas', version: read!.version!, flags: 1 }), 'stored')
  t.is((await rawCopy(own, key))!.flags & 3, 1) // Perl's bits unchanged
  t.is((await rawCopy(replica, key))!.flags, flagsOf(2, 1))
  await t.throwsAsync(store.write(key, 'v3', { ttl: 60, mode: 'set', flags: 8 }), {
    instanceOf: TypeError,
    message: /flags must be 0 to 3/,
  })
})

/** Writes `value` with client `flags` to `key` on `server` with a raw `ms` (another writer, as far as the store knows). */
async function rawSet(server: MemcachedServer, key: string, value: string, flags: number): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const socket = net.connect(server.port, server.host)
    socket.setTimeout(2000, () => socket.destroy(new Error(`no reply from ${server.address}`)))
    socket.on('error', reject)
    socket.on('data', (chunk: Buffer) => {
      socket.destroy()
      if (chunk.toString('latin1').startsWith('HD')) resolve()
      else reject(new Error(`ms answered ${chunk.toString('latin1')}`))
    })
    socket.write(`ms ${key} ${Buffer.byteLength(value)} F${flags} T60\r\n${value}\r\n`)
  })
}

test('a copy that loses the race to other writers a few times in a row is still written, and its server not marked suspect', async (t) => {
  const key = 'contended'
  const { own, replica, servers } = await twoServers(t, key)
  const store = open(t, { servers, replicas: 1, requestTimeout: PATIENT })
  await store.write(key, 'v1', { ttl: 60, mode: 'set' })
  const read = await store.get(key)
  // another writer changes the replica's copy (an older one: stamp 1) just before each of our
  // first 5 writes of it lands, so that each finds a new cas there
  let raced = 0
  const metaSet = WireClient.prototype.metaSet
  const stub = sinon.stub(WireClient.prototype, 'metaSet').callsFake(async function (this: WireClient, ...args) {
    if (this.servers[0] === replica.address && args[0] === key && args[2].cas !== undefined && raced < 5) {
      raced++
      await rawSet(replica, key, `theirs${raced}`, flagsOf(1, 0))
    }
    return metaSet.apply(this, args)
  })
  t.teardown(() => stub.restore())
  t.is(await store.write(key, 'v2', { ttl: 60, mode: 'cas', version: read!.version! }), 'stored')
  stub.restore()
  t.is(raced, 5)
  t.deepEqual(await rawCopy(replica, key), { flags: flagsOf(2, 0), value: 'v2' }, 'our copy landed on the replica')
  t.is(await rawCopy(own, `tied-session:suspect:${replica.address}`), undefined, 'no suspect marker for the replica')
})

test('read repair: a copy found only on a replica is served and written back to the restarted server', async (t) => {
  const key = 'repaired'
  const { own, replica, servers } = await twoServers(t, key)
  const store = open(t, { servers, replicas: 1, requestTimeout: PATIENT })
  await store.write(key, 'kept', { ttl: 60, mode: 'set' })
  await own.kill()
  await own.restart() // empty
  t.is(await rawCopy(own, key), undefined)
  const read = await store.get(key)
  t.is(read?.value, 'kept')
  t.deepEqual(await rawCopy(own, key), await rawCopy(replica, key)) // repaired, same stamp
  // the repaired copy is the authority again: a cas write at the read's version succeeds
  t.is(await store.write(key, 'next', { ttl: 60, mode: 'cas', version: read!.version! }), 'stored')
  t.is((await rawCopy(replica, key))?.value, 'next')
})

test('a node frozen while writes went to its replica comes back with old data and loses, also to a process started after', async (t) => {
  const key = 'frozen'
  const { own, replica, servers } = await twoServers(t, key)
  const requestTimeout = 300
  const store = open(t, { servers, replicas: 1, requestTimeout })
  await store.write(key, 'old', { ttl: 60, mode: 'set' })
  await own.pause()
  t.teardown(() => own.resume())
  // the first call waits out the deadline on the frozen server; then its replica takes the writes
  for (let i = 0; i < 3; i++) {
    const read = await store.get(key)
    t.is(await store.write(key, `new${i}`, { ttl: 60, mode: 'cas', version: read!.version! }), 'stored')
  }
  t.is((await rawCopy(replica, key))?.value, 'new2')
  own.resume()
  t.is((await rawCopy(own, key))?.value, 'old') // the old node answers again, with its old copy
  // a process that never saw the outage: its first read must not trust the old node's copy alone
  const fresh = open(t, { servers, replicas: 1, requestTimeout: PATIENT })
  t.is((await fresh.get(key))?.value, 'new2')
  t.is((await rawCopy(own, key))?.value, 'new2') // and repairs it
  await new Promise((resolve) => setTimeout(resolve, 1100)) // past the first store's refusal of the frozen server
  t.is((await store.get(key))?.value, 'new2')
})

test('destroy while a node is down does not come back with it (tombstone), from a fresh store too', async (t) => {
  const key = 'destroyed'
  const { own, replica, servers } = await twoServers(t, key)
  const store = open(t, { servers, replicas: 1, requestTimeout: 300 })
  await store.write(key, 'alive', { ttl: 60, mode: 'set' })
  await own.pause()
  t.teardown(() => own.resume())
  t.true(await store.delete(key))
  t.is(await store.get(key), undefined)
  const tomb = await rawCopy(replica, key)
  t.is(tomb?.value, '')
  t.truthy(tomb!.flags & 4)
  own.resume()
  t.is((await rawCopy(own, key))?.value, 'alive') // the stale copy is back
  const fresh = open(t, { servers, replicas: 1, requestTimeout: PATIENT })
  t.is(await fresh.get(key), undefined)
  t.is(await rawCopy(own, key), undefined) // dropped by the read
  t.false(await fresh.touch(key, 60))
  t.is(await fresh.write(key, 'again', { ttl: 60, mode: 'add' }), 'stored') // a tombstone is no key
  t.is((await fresh.get(key))?.value, 'again')
})

/** Three servers of their own (stopped in teardown) and a session with n = 1 tied on them with replicas: 1, with its own server; `s` is still tied. */
async function sessionOnThree(t: ExecutionContext<unknown>) {
  const started = await Promise.all([startMemcached(), startMemcached(), startMemcached()])
  t.teardown(() => Promise.all(started.map((m) => m.stop())))
  const servers = started.map((m) => m.address)
  const opts = { servers, replicas: 1, requestTimeout: 300 }
  const s = await tieSession<{ n?: number }>(undefined, opts)
  s.n = 1
  await save(s)
  const id = (s as { _session_id: string })._session_id
  const own = started.find((m) => m.address === copyServers(servers, 1)(id)[0])!
  return { servers, opts, s, id, own }
}

test('a session destroyed while its own server is down stays destroyed once the server is back', async (t) => {
  const { servers, opts, s, id, own } = await sessionOnThree(t)
  await untie(s)
  await own.pause()
  t.teardown(() => own.resume())
  const again = await tieSession<{ n?: number }>(id, opts)
  t.is(again.n, 1)
  await destroy(again)
  own.resume()
  const fresh = open(t, { servers, replicas: 1, requestTimeout: PATIENT })
  const err = await t.throwsAsync(tieSession(id, { store: fresh }), { instanceOf: SessionError })
  t.is(err?.code, 'ERR_SESSION_NOT_FOUND')
})

test('tie with replicas: a session outlives its own server being killed and restarted empty', async (t) => {
  const { opts, s, id, own } = await sessionOnThree(t)
  await own.kill()
  s.n = 2
  await untie(s)
  await own.restart()
  const again = await tieSession<{ n?: number }>(id, opts)
  t.is(again.n, 2)
  again.n = 3
  await untie(again)
  t.is((await tieSession<{ n?: number }>(id, opts)).n, 3)
})

test('replicas is refused, with a message that says why, by a server without meta commands (a proxy)', async (t) => {
  // a server that answers every line with ERROR, as a text-only proxy answers `mn`
  const fake = net.createServer((socket) => {
    socket.on('data', (chunk) => {
      for (const line of chunk.toString('latin1').split('\r\n').slice(0, -1)) if (line !== '') socket.write('ERROR\r\n')
    })
    socket.on('error', () => {})
  })
  await new Promise<void>((resolve) => fake.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => fake.close(() => resolve())))
  const [real] = await Promise.all([startMemcached()])
  t.teardown(() => real!.stop())
  const { port } = fake.address() as net.AddressInfo
  const store = open(t, { servers: [`127.0.0.1:${port}`, real!.address], replicas: 1, requestTimeout: PATIENT })
  const err = await t.throwsAsync(store.get('k'), { instanceOf: SessionError })
  t.is(err?.code, 'ERR_STORE_UNAVAILABLE')
  t.regex(err!.message, /does not speak the meta protocol, which replicas needs.*twemproxy.*replicas: 0/)
})
