import { createHash } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import anyTest, { type ExecutionContext, type TestFn } from 'ava'
import Memcached from 'memcached'
import sinon from 'sinon'
import {
  destroy,
  destroySessions,
  fileStore,
  findSessions,
  md5Hex,
  memcachedStore,
  memoryStore,
  regenerate,
  save,
  tieSession,
  untie,
  updateSession,
  type SessionError,
  type Store,
  type TieOptions,
} from '../src/index.js'
import { runFixture } from './helpers/child.js'
import { useCommandLog } from './helpers/command-log.js'
import { startMemcached, type MemcachedServer } from './helpers/memcached.js'

const test = anyTest as TestFn<unknown>
type Any = Record<string, any>

let server: MemcachedServer | undefined
test.before(async () => {
  server = await startMemcached()
})
test.after.always(async () => {
  await server?.stop()
})

test('md5Hex hashes as Perl Digest::MD5 does: Latin-1 when it can, else UTF-8', (t) => {
  t.is(md5Hex('dwho'), '5efe8af397fc3577e05b483aca964f1b')
  t.is(md5Hex('josé'), createHash('md5').update(Buffer.from('josé', 'latin1')).digest('hex'))
  t.true(md5Hex('josé').startsWith('4dec29fd'))
  t.not(md5Hex('josé'), createHash('md5').update('josé', 'utf8').digest('hex'))
  t.is(md5Hex('日本'), createHash('md5').update('日本', 'utf8').digest('hex'))
  t.is(md5Hex(''), 'd41d8cd98f00b204e9800998ecf8427e')
})

interface Target {
  name: string
  /** a fresh store (and its cleanup) and the tie options that reach it from another process */
  open(t: ExecutionContext): { store: Store; child: string[]; peer: () => Store }
  clock: 'fake' | 'real'
}

const targets: Target[] = [
  {
    name: 'memory',
    clock: 'fake',
    open() {
      const store = memoryStore()
      return { store, child: [], peer: () => store }
    },
  },
  {
    name: 'file',
    clock: 'fake',
    open(t) {
      const directory = mkdtempSync(join(tmpdir(), 'tied-session-principal-'))
      t.teardown(() => rmSync(directory, { recursive: true, force: true }))
      return { store: fileStore({ directory }), child: ['file', directory], peer: () => fileStore({ directory }) }
    },
  },
  {
    name: 'memcached',
    clock: 'real',
    open(t) {
      const connect = () => {
        const store = memcachedStore({ servers: server!.address, requestTimeout: 5000 })
        t.teardown(() => store.close())
        return store
      }
      return { store: connect(), child: ['memcached', server!.address], peer: connect }
    },
  },
]

let users = 0
/** A user id no other test uses (memcached is shared by the tests of this file). */
const user = () => `user${users++}-${process.pid}-${Date.now().toString(36)}`

async function login(store: Store, uid: string, extra: TieOptions = {}): Promise<string> {
  const s = await tieSession<Any>(undefined, { store, principal: 'uid', ...extra })
  s.uid = uid
  await untie(s)
  return s._session_id
}

for (const target of targets) {
  const { name } = target
  const timed = target.clock === 'fake' ? test.serial : test

  test(`${name}: the md5 key holds the latest session id as a plain string; the session gets uid_MD5`, async (t) => {
    const { store } = target.open(t)
    const uid = user()
    const first = await login(store, uid)
    const second = await login(store, uid)
    const digest = md5Hex(uid)
    t.is((await store.get(digest))?.value, second)
    const session = JSON.parse(String((await store.get(second))!.value))
    t.is(session.uid_MD5, digest)
    t.is(session.uid, uid)
    t.not(first, second)
  })

  test(`${name}: a user's sessions are all listed, newest first`, async (t) => {
    const { store } = target.open(t)
    const uid = user()
    const ids = []
    for (let i = 0; i < 3; i++) ids.push(await login(store, uid))
    t.deepEqual(await findSessions(uid, { store, principal: 'uid' }), ids.reverse())
    const list = JSON.parse(String((await store.get(`${md5Hex(uid)}:sessions`))!.value))
    t.is(list.length, 3)
    t.true(list.every((e: Any) => typeof e.exp === 'number' && e.exp > Date.now() / 1000))
  })

  test(`${name}: destroying one session keeps the others and repoints the latest key only if it named it`, async (t) => {
    const { store } = target.open(t)
    const uid = user()
    const [a, b, c] = [await login(store, uid), await login(store, uid), await login(store, uid)]
    await destroy(await tieSession(a!, { store, principal: 'uid' }))
    t.deepEqual(await findSessions(uid, { store, principal: 'uid' }), [c, b])
    t.is((await store.get(md5Hex(uid)))?.value, c, 'latest untouched: it named another session')
    await destroy(await tieSession(c!, { store, principal: 'uid' }))
    t.is((await store.get(md5Hex(uid)))?.value, b, 'latest repointed to the newest left')
    t.deepEqual(await findSessions(uid, { store, principal: 'uid' }), [b])
  })

  test(`${name}: changing the uid moves the entry`, async (t) => {
    const { store } = target.open(t)
    const [from, to] = [user(), user()]
    const id = await login(store, from)
    const s = await tieSession<Any>(id, { store, principal: 'uid' })
    s.uid = to
    await untie(s)
    t.deepEqual(await findSessions(from, { store, principal: 'uid' }), [])
    t.deepEqual(await findSessions(to, { store, principal: 'uid' }), [id])
    t.is(JSON.parse(String((await store.get(id))!.value)).uid_MD5, md5Hex(to))
    t.not((await store.get(md5Hex(from)))?.value, id)
    t.is((await store.get(md5Hex(to)))?.value, id)
  })

  test(`${name}: no uid, no index write; removing the uid removes the entry`, async (t) => {
    const { store } = target.open(t)
    const write = sinon.spy(store, 'write')
    const s = await tieSession<Any>(undefined, { store, principal: 'uid' })
    s.cart = [1]
    await save(s)
    t.true(write.getCalls().every((call) => call.args[0] === s._session_id))
    t.is(await store.get(md5Hex('')), undefined)
    const uid = user()
    s.uid = uid
    await save(s)
    t.deepEqual(await findSessions(uid, { store, principal: 'uid' }), [s._session_id])
    delete s.uid
    await untie(s)
    t.deepEqual(await findSessions(uid, { store, principal: 'uid' }), [])
    t.false('uid_MD5' in JSON.parse(String((await store.get(s._session_id))!.value)))
  })

  timed(`${name}: expired sessions are pruned from the list`, async (t) => {
    const { store } = target.open(t)
    let pass: (seconds: number) => Promise<void>
    if (target.clock === 'fake') {
      const clock = sinon.useFakeTimers({ now: Date.now(), toFake: ['Date'], shouldAdvanceTime: true })
      t.teardown(() => clock.restore())
      pass = async (seconds) => void clock.tick(seconds * 1000)
    } else pass = (seconds) => new Promise((resolve) => setTimeout(resolve, seconds * 1000))
    const uid = user()
    const short = await login(store, uid, { expires: 2 })
    const long = await login(store, uid, { expires: 600 })
    t.deepEqual(await findSessions(uid, { store, principal: 'uid' }), [long, short])
    await pass(3.2)
    t.deepEqual(await findSessions(uid, { store, principal: 'uid' }), [long])
    const list = JSON.parse(String((await store.get(`${md5Hex(uid)}:sessions`))!.value))
    t.deepEqual(
      list.map((e: Any) => e.id),
      [long],
      'the dead entry left the stored list too',
    )
  })

  test(`${name}: maxSessions destroys the user's oldest sessions`, async (t) => {
    const { store } = target.open(t)
    const uid = user()
    const ids = []
    for (let i = 0; i < 5; i++) ids.push(await login(store, uid, { maxSessions: 3 }))
    t.deepEqual(await findSessions(uid, { store, principal: 'uid' }), ids.slice(2).reverse())
    t.is(await store.get(ids[0]!), undefined)
    t.is(await store.get(ids[1]!), undefined)
    t.truthy(await store.get(ids[4]!))
  })

  test(`${name}: destroySessions logs the user out everywhere`, async (t) => {
    const { store, peer } = target.open(t)
    const uid = user()
    const other = user()
    const ids = [await login(store, uid), await login(store, uid), await login(store, uid)]
    const bystander = await login(store, other)
    // held by another process's store handle while the user is logged out
    const stillTied = await tieSession<Any>(ids[0]!, { store: peer(), principal: 'uid', autoSave: false })
    t.is(await destroySessions(uid, { store, principal: 'uid' }), 3)
    t.deepEqual(await findSessions(uid, { store, principal: 'uid' }), [])
    for (const id of ids) t.is(await store.get(id), undefined)
    stillTied.after = 'logout'
    t.is(((await t.throwsAsync(save(stillTied))) as SessionError).code, 'ERR_SESSION_NOT_FOUND')
    t.deepEqual(await findSessions(other, { store, principal: 'uid' }), [bystander])
    t.is(await destroySessions(uid, { store, principal: 'uid' }), 0)
  })

  test(`${name}: updateSession keeps the index in step`, async (t) => {
    const { store } = target.open(t)
    const uid = user()
    const s = await tieSession(undefined, { store, principal: 'uid' })
    await untie(s)
    await updateSession<Any>(s._session_id, (data) => void (data.uid = uid), { store, principal: 'uid' })
    t.deepEqual(await findSessions(uid, { store, principal: 'uid' }), [s._session_id])
    t.is(JSON.parse(String((await store.get(s._session_id))!.value)).uid_MD5, md5Hex(uid))
  })

  test(`${name}: a save reads the user's list along with its own write; a login that lands in between is kept`, async (t) => {
    const { store, peer } = target.open(t)
    const uid = user()
    const first = await login(store, uid)
    const s = await tieSession<Any>(undefined, { store, principal: 'uid' })
    s.uid = uid
    const gets = sinon.spy(store, 'get')
    const write = sinon.stub(store, 'write').callThrough()
    const listKey = `${md5Hex(uid)}:sessions`
    const listReads = () => gets.getCalls().filter((call) => call.args[0] === listKey).length
    let between: string | undefined
    let byLogin = 0
    write.withArgs(s._session_id).callsFake(async (...args) => {
      if (between === undefined) {
        const before = listReads()
        between = await login(peer(), uid) // after the list was read ahead, before it is updated
        byLogin = listReads() - before // the memory store's peer is the same store
      }
      return write.wrappedMethod.apply(store, args)
    })
    await untie(s)
    write.restore()
    t.is(listReads() - byLogin, 2, 'read ahead, then again after a refused cas')
    t.deepEqual((await findSessions(uid, { store, principal: 'uid' })).sort(), [first, between!, s._session_id].sort())
  })

  test(`${name}: the login pattern s.uid = x; regenerate(s) indexes the new id, and a changed uid moves`, async (t) => {
    const { store } = target.open(t)
    const [bob, alice] = [user(), user()]
    const s = await tieSession<Any>(undefined, { store, principal: 'uid' })
    const anonymous = s._session_id
    s.uid = bob
    const first = await regenerate(s)
    t.not(first, anonymous)
    t.is(JSON.parse(String((await store.get(first))!.value)).uid_MD5, md5Hex(bob), 'the stored session has uid_MD5')
    t.deepEqual(await findSessions(bob, { store, principal: 'uid' }), [first])
    t.is((await store.get(md5Hex(bob)))?.value, first, 'the latest-session key names the new id')
    t.is(await store.get(anonymous), undefined)

    s.uid = alice
    const second = await regenerate(s)
    t.deepEqual(await findSessions(bob, { store, principal: 'uid' }), [], "bob's list no longer names the session")
    t.deepEqual(await findSessions(alice, { store, principal: 'uid' }), [second])
    t.is((await store.get(md5Hex(alice)))?.value, second)
    t.not((await store.get(md5Hex(bob)))?.value, second)
    t.is(JSON.parse(String((await store.get(second))!.value)).uid_MD5, md5Hex(alice))

    const third = await regenerate(s) // same user: the new id takes the old one's place
    t.deepEqual(await findSessions(alice, { store, principal: 'uid' }), [third])
    t.is((await store.get(md5Hex(alice)))?.value, third)
    await untie(s)
  })

  test(`${name}: the index outlives every session it lists, without being rewritten on every request`, async (t) => {
    const { store } = target.open(t)
    const uid = user()
    const indexWrites = sinon.spy()
    const write = sinon.stub(store, 'write').callThrough()
    write.callsFake(async (...args) => {
      if (args[0].startsWith(md5Hex(uid))) indexWrites(args[0])
      return write.wrappedMethod.apply(store, args)
    })
    t.teardown(() => write.restore())
    // the case (expires 4; saves at 0 and 1.5 s; findSessions at 4.5 s) scaled by 1.5: memcached
    // counts whole seconds (a ttl of n lives n-1 to n s), and a loaded machine must not eat the margin
    const opts = { store, principal: 'uid', expires: 6 }
    const s = await tieSession<Any>(undefined, opts)
    s.uid = uid
    await untie(s) // 0 s: the login writes the index
    const atLogin = indexWrites.callCount
    t.true(atLogin >= 1)
    for (let i = 0; i < 3; i++) {
      // requests that write within half the ttl of the index write leave the index alone
      const r = await tieSession<Any>(s._session_id, opts)
      r.views = i
      await untie(r)
    }
    t.is(indexWrites.callCount, atLogin, 'three more requests, no index write')
    await new Promise((resolve) => setTimeout(resolve, 2500))
    const r = await tieSession<Any>(s._session_id, opts)
    r.views = 'at 2.5 s'
    await untie(r) // 2.5 s: the session now lives until 7.5-8.5 s
    await new Promise((resolve) => setTimeout(resolve, 4000))
    // 6.5 s: past the session's first ttl; the index written at 0 s must still list the session, which is alive
    t.truthy(await store.get(s._session_id), 'the session is alive')
    t.deepEqual(await findSessions(uid, { store, principal: 'uid' }), [s._session_id])
    t.is(await destroySessions(uid, { store, principal: 'uid' }), 1)
    t.is(await store.get(s._session_id), undefined)
  })

  test(`${name}: maxSessions 1: an older session that saves while a new login evicts it never evicts the newest login`, async (t) => {
    const { store, peer } = target.open(t)
    const uid = user()
    const opts = { store, principal: 'uid', maxSessions: 1, expires: 600 }
    const older = await login(store, uid, opts)
    // its index was written long ago (no sleeping: a loaded machine makes short TTLs flaky), so the
    // older session's next save refreshes the index
    const data = JSON.parse((await store.get(older))!.value as string)
    data._index_at -= 3600
    await store.write(older, JSON.stringify(data), { ttl: 600, mode: 'set' })
    const s = await tieSession<Any>(older, opts)
    s.n = 1
    let newest: string | undefined
    const write = sinon.stub(store, 'write').callThrough()
    write.withArgs(older).callsFake(async (...args) => {
      const result = await write.wrappedMethod.apply(store, args)
      // the older session's own write landed; a new login evicts it before it updates the index
      newest ??= await login(peer(), uid, { ...opts, store: peer() })
      return result
    })
    t.teardown(() => write.restore())
    await untie(s)
    write.restore()
    t.truthy(newest)
    t.deepEqual(await findSessions(uid, { store, principal: 'uid' }), [newest], 'only the newest login is listed')
    t.truthy(await store.get(newest!), 'the newest login is alive')
    t.is(await store.get(older), undefined, 'the older session is gone')
    t.is((await store.get(md5Hex(uid)))?.value, newest)
  })

  test(`${name}: the latest-session key is never taken for a session`, async (t) => {
    const { store } = target.open(t)
    const uid = user()
    await login(store, uid)
    const digest = md5Hex(uid)
    const err = await t.throwsAsync(tieSession(digest, { store }))
    t.is((err as SessionError).code, 'ERR_SESSION_NOT_FOUND')
    t.regex(err!.message, /user index/)
    t.truthy(await store.get(digest), 'nothing was deleted')
    await t.throwsAsync(
      updateSession(digest, () => undefined, { store }),
      { message: /not found/ },
    )
  })

  if (name !== 'memory') {
    test(`${name}: 20 concurrent logins of one user from two processes are all listed`, async (t) => {
      const { store, child } = target.open(t)
      const uid = user()
      const startAt = String(Date.now() + 1500)
      const workers = [0, 1].map(() => runFixture(t, 'principal-logins.ts', [...child, uid, '10', startAt], 30_000))
      const exits = await Promise.all(workers.map((w) => w.exited))
      for (const exit of exits) t.is(exit.code, 0, exit.stderr)
      const created = exits.flatMap((e) => e.stdout.trim().split('\n'))
      t.is(new Set(created).size, 20)
      t.deepEqual((await findSessions(uid, { store, principal: 'uid' })).sort(), created.sort())
    })
  }
}

test('memcached: index keys are byte for byte what Memorycached writes (raw client and raw protocol)', async (t) => {
  const store = memcachedStore({ servers: server!.address, requestTimeout: 5000 })
  t.teardown(() => store.close())
  const raw = new Memcached(server!.address, { retries: 0 })
  t.teardown(() => raw.end())
  const uid = 'dwho-' + user()
  const id = await login(store, uid)
  const digest = md5Hex(uid)
  const viaClient = await new Promise((resolve, reject) => raw.get(digest, (err, data) => (err ? reject(err) : resolve(data))))
  t.is(viaClient, id)
  // flag 0, exactly the 32 bytes of the id
  t.is(await server!.raw(`get ${digest}\r\n`), `VALUE ${digest} 0 32\r\n${id}\r\nEND\r\n`)
  const session = JSON.parse(
    await new Promise<string>((resolve, reject) => raw.get(id, (err, data) => (err ? reject(err) : resolve(data)))),
  )
  t.is(session.uid_MD5, digest)
})

test('findSessions and destroySessions take the same options as tieSession (servers, namespace)', async (t) => {
  const uid = user()
  const opts = { servers: server!.address, namespace: 'portal:', principal: 'uid' }
  const s = await tieSession<Any>(undefined, opts)
  s.uid = uid
  await untie(s)
  t.deepEqual(await findSessions(uid, opts), [s._session_id])
  t.deepEqual(await findSessions(uid, { servers: server!.address, principal: 'uid' }), [], 'another namespace is another index')
  t.is(await destroySessions(uid, opts), 1)
  await t.throwsAsync(findSessions('', opts), { instanceOf: TypeError })
})

test('memcached with meta: findSessions reads no session value, only whether each exists (mg <id> s)', async (t) => {
  const log = await useCommandLog(t, server!)
  const store = memcachedStore({ servers: log.address, requestTimeout: 5000 })
  t.teardown(() => store.close())
  const uid = user()
  const opts = { store, principal: 'uid' }
  const ids: string[] = []
  for (let i = 0; i < 3; i++) {
    const s = await tieSession<Any>(undefined, opts)
    s.uid = uid
    s.pad = 'x'.repeat(50_000)
    await untie(s)
    ids.push(s._session_id)
  }
  log.clear()
  t.deepEqual(await findSessions(uid, opts), ids.reverse())
  const asked = log.lines().filter((line) => ids.some((id) => line.includes(id)))
  t.is(asked.length, 3, `each session looked at once, the latest too (the list names it): ${asked.join(' | ')}`)
  t.deepEqual(
    asked.filter((line) => !/^mg \S+ s$/.test(line)),
    [],
    'every look at a session is an mg with no v: no 50 KB value crosses the wire',
  )
})

test('an index value is no session, told by its size without reading other sessions: only 0- or 32-byte values are read', async (t) => {
  const log = await useCommandLog(t, server!)
  const store = memcachedStore({ servers: log.address, requestTimeout: 5000 })
  t.teardown(() => store.close())
  const opts = { store, principal: 'uid' }
  // Memorycached's md5_hex(uid) key names the latest session; here, keys that hold other things
  const [digestUser, tinyUser] = [user(), user()]
  const tinyId = 'tiny' + Date.now().toString(36)
  const tiny = JSON.stringify({ _session_id: tinyId }).padEnd(32, ' ') // a session of exactly 32 bytes
  t.is(Buffer.byteLength(tiny), 32)
  await store.write(tinyId, tiny, { ttl: 60, mode: 'set' })
  await store.write(md5Hex(tinyUser), tinyId, { ttl: 60, mode: 'set' })
  // the latest key names a key that holds an index value (another user's latest key: a session id)
  const other = md5Hex(user())
  await store.write(other, 'f'.repeat(32), { ttl: 60, mode: 'set' })
  await store.write(md5Hex(digestUser), other, { ttl: 60, mode: 'set' })
  log.clear()
  t.deepEqual(await findSessions(digestUser, opts), [], 'an index value is no session')
  t.deepEqual(await findSessions(tinyUser, opts), [tinyId], 'a 32-byte session is one')
  t.true(
    log.lines().some((line) => line === `gets ${other}` || line === `get ${other}`),
    'a 32-byte value is read to tell',
  )
})
