// Sliding expiry (rolling), the absolute lifetime (maxLifetime, from _utime), on real memcached
// and the file store. memcached counts TTLs in whole seconds: the waits are whole seconds, bounded.
import anyTest, { type ExecutionContext, type TestFn } from 'ava'
import sinon from 'sinon'
import {
  SessionError,
  closeStores,
  fileStore,
  findSessions,
  memcachedStore,
  save,
  tieSession,
  untie,
  updateSession,
  type Store,
  type TieOptions,
} from '../src/index.js'
import { useCommandLog } from './helpers/command-log.js'
import { useMemcached } from './helpers/memcached.js'
import { tempDir } from './helpers/temp-dir.js'

// the fake-clock test runs alone (serial tests run before the others): Date is global
const test = anyTest as TestFn<unknown>
type Any = Record<string, any>
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
/**
 * Waits for the start of the next second: `_utime` and TTLs count whole seconds, so a session
 * made late in a second has up to a second less to live than its test expects.
 */
const nextSecond = () => sleep(1000 - (Date.now() % 1000) + 20)

anyTest.after.always(() => closeStores())

const KINDS = ['memcached', 'file'] as const

async function storeOf(t: ExecutionContext, kind: (typeof KINDS)[number]): Promise<Store> {
  if (kind === 'file') {
    const store = fileStore({ directory: await tempDir(t, 'lifetime') })
    t.teardown(() => store.close())
    return store
  }
  const server = await useMemcached(t)
  const store = memcachedStore({ servers: [server.address] })
  t.teardown(() => store.close())
  return store
}

/** Ties `id`, reads it, and unties it without a change: a read-only request. */
async function readOnly(id: string, opts: TieOptions): Promise<void> {
  const s = await tieSession<Any>(id, opts)
  void s.n
  await untie(s)
}

const notFound = (err: unknown) => err instanceof SessionError && err.code === 'ERR_SESSION_NOT_FOUND'

for (const kind of KINDS) {
  // expires 3, not 2: memcached counts TTLs on a whole-second clock, so a TTL of 2 s ends 1-2 s
  // after it is set, and a read every 1.0x s raced that clock (it failed once in a full run)
  test(`${kind}: rolling: a session read once a second with expires 3 lives as long as it is read; left alone, it is gone within expires + 1 s`, async (t) => {
    const store = await storeOf(t, kind)
    const s = await tieSession<Any>(undefined, { store, expires: 3 })
    s.n = 1
    await untie(s)
    const id = s._session_id
    const rolling = { store, expires: 3, rolling: true }
    for (let i = 0; i < 7; i++) {
      await sleep(1000)
      await readOnly(id, rolling) // throws ERR_SESSION_NOT_FOUND if the TTL ran out
    }
    t.pass('alive after 7 s of read-only ties, 2.3 x expires')
    await sleep(4100)
    t.true(notFound(await t.throwsAsync(tieSession(id, rolling))), 'gone 4 s after the last read')
  })

  test(`${kind}: without rolling, reads do not extend a session: it is gone after expires`, async (t) => {
    const store = await storeOf(t, kind)
    const s = await tieSession<Any>(undefined, { store, expires: 2 })
    s.n = 1
    await untie(s)
    let lostAt: number | undefined
    for (let i = 1; i <= 4 && lostAt === undefined; i++) {
      await sleep(1000)
      await readOnly(s._session_id, { store, expires: 2 }).catch((err: unknown) => {
        if (!notFound(err)) throw err
        lostAt = i
      })
    }
    t.truthy(lostAt, 'read once a second, the session still expired')
    t.true(lostAt! <= 3)
  })

  test(`${kind}: maxLifetime ends a session whatever its activity, also under rolling; the store drops it then`, async (t) => {
    const store = await storeOf(t, kind)
    const opts = { store, expires: 60, rolling: true, maxLifetime: 3 }
    await nextSecond() // created at S + 0.02 s (_utime S), written with a TTL of 3 s
    const s = await tieSession<Any>(undefined, opts)
    s.n = 1
    await untie(s)
    t.is(typeof s._utime, 'number')
    const id = s._session_id
    await sleep(1000)
    await readOnly(id, opts) // at S + 1 s: a rolling tie must not push the end past S + 3 s
    await sleep(2100)
    t.true(notFound(await t.throwsAsync(tieSession(id, opts))), 'past maxLifetime: not found')
    t.is(await store.get(id), undefined, 'and gone from the store')
  })
}

test('memcached: a rolling tie near the end of its lifetime shortens the TTL: the item ends at maxLifetime without another tie', async (t) => {
  const server = await useMemcached(t)
  const opts = { servers: [server.address], expires: 60, rolling: true, maxLifetime: 2 }
  const s = await tieSession<Any>(undefined, opts)
  await untie(s)
  await readOnly(s._session_id, opts)
  await sleep(3100)
  t.is(await server.raw(`mg ${s._session_id} v\r\n`), 'EN\r\n', 'memcached dropped it by itself')
})

test('memcached >= 1.6: a rolling read-only tie is one command on the principal (mg … T), no separate touch', async (t) => {
  const server = await useMemcached(t)
  const log = await useCommandLog(t, server)
  const opts = { servers: [log.address], expires: 30, rolling: true }
  const s = await tieSession<Any>(undefined, opts)
  s.n = 1
  await untie(s)
  log.clear()
  await readOnly(s._session_id, opts)
  t.deepEqual(log.verbs(), ['mg'])
  const ttl = Number(/t(-?\d+)/.exec(await server.raw(`mg ${s._session_id} t\r\nmn\r\n`))?.[1])
  t.true(ttl > 25 && ttl <= 30, `TTL set to expires again: ${ttl}`)
})

test('memcached with local: a rolling tie served by local checks and touches with one small principal command', async (t) => {
  const [principal, local] = await Promise.all([useMemcached(t), useMemcached(t)])
  const log = await useCommandLog(t, principal)
  const opts = { servers: [log.address], local: [local.address], expires: 30, rolling: true }
  const s = await tieSession<Any>(undefined, opts)
  s.n = 1
  await untie(s)
  await readOnly(s._session_id, opts) // fills local
  log.clear()
  await readOnly(s._session_id, opts)
  t.deepEqual(log.verbs(), ['mg'], 'mg <key> c s T: no value, no touch')
})

test('rolling keeps the user index alive: findSessions still finds a session only read (never saved) for 3 x expires', async (t) => {
  const server = await useMemcached(t)
  const opts = { servers: [server.address], expires: 2, rolling: true, principal: 'uid' }
  const s = await tieSession<Any>(undefined, opts)
  s.uid = 'dwho'
  await untie(s)
  for (let i = 0; i < 6; i++) {
    await sleep(1000)
    await readOnly(s._session_id, opts)
  }
  t.deepEqual(await findSessions('dwho', opts), [s._session_id])
})

test('_utime: stamped at creation, read-only, kept by regenerate and updateSession; a session without one gets it at its first save under maxLifetime', async (t) => {
  const store = await storeOf(t, 'file')
  const before = Math.floor(Date.now() / 1000)
  const s = await tieSession<Any>(undefined, { store })
  const created = s._utime!
  t.true(created >= before && created <= before + 1)
  const writable = s as Any
  t.throws(() => (writable._utime = 1), { instanceOf: TypeError, message: /_utime .*read-only/ })
  t.throws(() => delete writable._utime, { instanceOf: TypeError })
  t.throws(() => Object.defineProperty(s, '_utime', { value: 1, writable: true, enumerable: true, configurable: true }), {
    instanceOf: TypeError,
  })
  await untie(s)
  const saved = await updateSession<Any>(s._session_id, (data) => ({ ...data, _utime: 5, n: 1 }), { store })
  t.is(saved._utime, s._utime, 'updateSession cannot change it')
  // a session written without _utime (an older version, another tool)
  await store.write('legacy0000000000000000000000000a', JSON.stringify({ _session_id: 'legacy0000000000000000000000000a', n: 1 }), {
    ttl: 60,
    mode: 'set',
  })
  const old = await tieSession<Any>('legacy0000000000000000000000000a', { store, maxLifetime: 100 })
  t.is(old._utime, undefined)
  old.n = 2
  await save(old)
  t.is(typeof old._utime, 'number')
  await untie(old)
})

test.serial('a save after maxLifetime passed while tied is ERR_SESSION_NOT_FOUND and writes nothing', async (t) => {
  const clock = sinon.useFakeTimers({ now: Date.now(), toFake: ['Date'] })
  t.teardown(() => clock.restore())
  const store = await storeOf(t, 'file')
  const s = await tieSession<Any>(undefined, { store, maxLifetime: 10, autoSave: false })
  await save(s)
  clock.tick(11_000)
  s.late = true
  t.true(notFound(await t.throwsAsync(save(s))))
  t.false('late' in JSON.parse(String((await store.get(s._session_id))?.value ?? '{}')))
})

test('options rolling and maxLifetime are checked', async (t) => {
  await t.throwsAsync(tieSession(undefined, { rolling: 'yes' as never }), { instanceOf: TypeError, message: /rolling/ })
  await t.throwsAsync(tieSession(undefined, { maxLifetime: -1 }), { instanceOf: TypeError, message: /maxLifetime/ })
})
