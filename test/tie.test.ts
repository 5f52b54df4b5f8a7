import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import anyTest, { type TestFn } from 'ava'
import sinon from 'sinon'
import {
  SessionError,
  closeStores,
  destroy,
  fileStore,
  isTied,
  memoryStore,
  regenerate,
  reload,
  rich,
  save,
  snapshot,
  tieSession,
  untie,
  updateSession,
  type Store,
} from '../src/index.js'
import { runFixture } from './helpers/child.js'

interface Ctx {
  store: Store & { readonly size: number }
  writes: sinon.SinonSpy
}
const test = anyTest as TestFn<Ctx>

test.beforeEach((t) => {
  const store = memoryStore()
  t.context.store = store
  t.context.writes = sinon.spy(store, 'write')
})

/** Data as stored, read through a second handle on the same store, without its creation time (`_utime`, checked here). */
async function stored(store: Store, id: string): Promise<Record<string, unknown> | undefined> {
  const entry = await store.get(id)
  if (entry === undefined) return undefined
  const { _utime, ...data } = JSON.parse(String(entry.value))
  if (typeof _utime !== 'number' || Math.abs(_utime - Date.now() / 1000) > 3600)
    throw new Error(`_utime ${String(_utime)} is no creation time`)
  return data
}

const tick = () => new Promise((resolve) => setImmediate(resolve))

type Any = Record<string, any>

// --- tie: new, existing, ids ---------------------------------------------------------------

test('a new session gets a 32-hex id and is booked in the store at once', async (t) => {
  const s = await tieSession(undefined, { store: t.context.store })
  t.regex(s._session_id, /^[0-9a-f]{32}$/)
  t.deepEqual(await stored(t.context.store, s._session_id), { _session_id: s._session_id })
  t.is(t.context.writes.firstCall.args[2].mode, 'add')
  await untie(s)
})

test('null and empty string also create a session', async (t) => {
  for (const id of [null, '']) {
    const s = await tieSession(id, { store: t.context.store })
    t.regex(s._session_id, /^[0-9a-f]{32}$/)
  }
})

test('an existing id loads the stored data', async (t) => {
  const s = await tieSession<Any>(undefined, { store: t.context.store })
  s.name = 'dwho'
  await untie(s)
  const again = await tieSession<Any>(s._session_id, { store: t.context.store })
  t.is(again.name, 'dwho')
  t.is(again._session_id, s._session_id)
})

test('an unknown id is ERR_SESSION_NOT_FOUND', async (t) => {
  const err = await t.throwsAsync(tieSession('0123456789abcdef0123456789abcdef', { store: t.context.store }), {
    instanceOf: SessionError,
  })
  t.is(err!.code, 'ERR_SESSION_NOT_FOUND')
  t.regex(err!.message, /^tied-session: session 0123456789abcdef0123456789abcdef not found/)
})

test('create: true creates a session under a given id, booked with add', async (t) => {
  const id = 'genid-made-0123456789'
  const s = await tieSession<Any>(id, { store: t.context.store, create: true })
  t.is(s._session_id, id)
  t.deepEqual(await stored(t.context.store, id), { _session_id: id })
  t.is(t.context.writes.firstCall.args[2].mode, 'add')
  s.n = 1
  await untie(s)
  const again = await tieSession<Any>(id, { store: t.context.store })
  t.is(again.n, 1)
})

test('create: true never overwrites a stored session: ERR_CONFLICT, the data stays', async (t) => {
  const s = await tieSession<Any>(undefined, { store: t.context.store })
  s.uid = 'dwho'
  await untie(s)
  const err = await t.throwsAsync(tieSession(s._session_id, { store: t.context.store, create: true }), { instanceOf: SessionError })
  t.is(err!.code, 'ERR_CONFLICT')
  t.deepEqual(await stored(t.context.store, s._session_id), { _session_id: s._session_id, uid: 'dwho' })
})

test('create: true checks the id before any I/O, and refuses updateOnly', async (t) => {
  const err = await t.throwsAsync(tieSession('bad id!', { store: t.context.store, create: true }), { instanceOf: SessionError })
  t.is(err!.code, 'ERR_INVALID_ID')
  t.is(t.context.writes.callCount, 0)
  await t.throwsAsync(tieSession('abc', { store: t.context.store, create: true, updateOnly: true }), {
    instanceOf: TypeError,
    message: /create .* updateOnly/,
  })
  await t.throwsAsync(tieSession('abc', { store: t.context.store, create: 'yes' as any }), { instanceOf: TypeError, message: /create/ })
})

test("create: true with lock exclusive holds the new id's lock", async (t) => {
  const directory = mkdtempSync(join(tmpdir(), 'tied-create-'))
  const store = fileStore({ directory })
  t.teardown(async () => {
    await store.close()
    rmSync(directory, { recursive: true, force: true })
  })
  const s = await tieSession('made-elsewhere', { store, create: true, lock: 'exclusive', lockTimeout: 50 })
  const err = await t.throwsAsync(tieSession('made-elsewhere', { store, lock: 'exclusive', lockTimeout: 50 }), { instanceOf: SessionError })
  t.is(err!.code, 'ERR_LOCKED')
  await untie(s)
  await untie(await tieSession('made-elsewhere', { store, lock: 'exclusive', lockTimeout: 50 }))
})

test.serial('an expired id is ERR_SESSION_NOT_FOUND', async (t) => {
  const clock = sinon.useFakeTimers({ now: Date.now(), toFake: ['Date'] })
  t.teardown(() => clock.restore())
  const s = await tieSession(undefined, { store: t.context.store, expires: 60 })
  await untie(s)
  clock.tick(61_000)
  const err = await t.throwsAsync(tieSession(s._session_id, { store: t.context.store }))
  t.is((err as SessionError).code, 'ERR_SESSION_NOT_FOUND')
})

test('malformed ids are ERR_INVALID_ID before any I/O', async (t) => {
  const get = sinon.spy(t.context.store, 'get')
  for (const id of ['a b', 'a\r\nb', '../../etc/passwd', '  ', 'x'.repeat(129), 'naïve']) {
    const err = await t.throwsAsync(tieSession(id, { store: t.context.store }))
    t.is((err as SessionError).code, 'ERR_INVALID_ID', id)
  }
  t.is(get.callCount, 0)
  t.is(t.context.writes.callCount, 0)
})

test('_session_id is read-only and cannot be deleted', async (t) => {
  const s = await tieSession<Any>(undefined, { store: t.context.store })
  const id = s._session_id
  t.throws(
    () => {
      ;(s as Any)._session_id = 'other'
    },
    { instanceOf: TypeError, message: /read-only/ },
  )
  t.throws(
    () => {
      delete (s as Any)._session_id
    },
    { instanceOf: TypeError },
  )
  t.is(s._session_id, id)
  t.false(Object.getOwnPropertyDescriptor(s, '_session_id')!.writable)
})

test('a stored value that is not valid data is ERR_CORRUPT', async (t) => {
  await t.context.store.write('corrupt1', '{not json', { ttl: 60, mode: 'set' })
  await t.context.store.write('corrupt2', '[1,2]', { ttl: 60, mode: 'set' })
  for (const id of ['corrupt1', 'corrupt2']) {
    const err = await t.throwsAsync(tieSession(id, { store: t.context.store }))
    t.is((err as SessionError).code, 'ERR_CORRUPT')
  }
})

// --- deep change tracking --------------------------------------------------------------------

test('nested writes, deletes and array methods all reach the store', async (t) => {
  const { store } = t.context
  const s = await tieSession<Any>(undefined, { store })
  s.a = { b: { c: 0 } }
  s.list = [3, 1, 2]
  s.cart = { items: [] }
  await save(s)
  const id = s._session_id
  const steps: Array<[string, () => void, (d: Any) => unknown, unknown]> = [
    ['a.b.c = 1', () => (s.a.b.c = 1), (d) => d.a.b.c, 1],
    ['push', () => s.list.push(4), (d) => d.list, [3, 1, 2, 4]],
    ['sort', () => s.list.sort(), (d) => d.list, [1, 2, 3, 4]],
    ['splice', () => s.list.splice(1, 2, 'x'), (d) => d.list, [1, 'x', 4]],
    ['Object.assign', () => Object.assign(s.cart, { total: 9, currency: 'EUR' }), (d) => d.cart, { items: [], total: 9, currency: 'EUR' }],
    ['nested push', () => s.cart.items.push({ sku: 42 }), (d) => d.cart.items, [{ sku: 42 }]],
    ['delete a.b', () => delete s.a.b, (d) => d.a, {}],
    ['length = 1', () => (s.list.length = 1), (d) => d.list, [1]],
  ]
  for (const [name, change, pick, expected] of steps) {
    change()
    await save(s)
    t.deepEqual(pick((await stored(store, id))!), expected, name)
  }
})

test('nested reads are tracked views; no proxy ever reaches the stored data', async (t) => {
  const s = await tieSession<Any>(undefined, { store: t.context.store })
  s.a = { b: { c: 1 } }
  t.is(s.a, s.a, 'the same view each time')
  t.is(s.a.b, s.a.b)
  s.b = s.a
  s.b.b.c = 2
  t.is(s.a.b.c, 1, 's.b = s.a stores a copy')
  s.list = [s.a, { x: s.a.b }]
  await save(s)
  const data = (await stored(t.context.store, s._session_id))!
  t.deepEqual(data.list, [{ b: { c: 1 } }, { x: { c: 1 } }])
  t.deepEqual(data.b, { b: { c: 2 } })
  t.notThrows(() => structuredClone(data))
})

test('every trap tells the truth', async (t) => {
  const s = await tieSession<Any>(undefined, { store: t.context.store })
  s.cart = { items: [{ sku: 1 }] }
  s.n = 1
  const id = s._session_id
  t.true('cart' in s)
  t.false('nothing' in s)
  t.true('_session_id' in s)
  const created = s._utime
  t.deepEqual(Object.keys(s), ['_session_id', '_utime', 'cart', 'n'])
  t.deepEqual({ ...s }, { _session_id: id, _utime: created, cart: { items: [{ sku: 1 }] }, n: 1 })
  t.is(JSON.stringify(s), JSON.stringify({ _session_id: id, _utime: created, cart: { items: [{ sku: 1 }] }, n: 1 }))
  t.deepEqual(Object.entries(s), [
    ['_session_id', id],
    ['_utime', created],
    ['cart', { items: [{ sku: 1 }] }],
    ['n', 1],
  ])
  t.deepEqual(
    structuredClone(snapshot(s)),
    { _session_id: id, _utime: created, cart: { items: [{ sku: 1 }] }, n: 1 },
    'snapshot is plain data',
  )
  t.deepEqual(Object.keys(s.cart), ['items'])
  t.deepEqual({ ...s.cart.items[0] }, { sku: 1 })
  t.true(Array.isArray(s.cart.items))
  t.is(s.cart.items.length, 1)
  t.deepEqual([...s.cart.items], [{ sku: 1 }])
  const keys: string[] = []
  for (const k in s) keys.push(k)
  t.deepEqual(keys, ['_session_id', '_utime', 'cart', 'n'])
  t.true(Object.hasOwn(s, 'n'))
})

test('a change made through a spread copy of a nested object is still saved', async (t) => {
  const s = await tieSession<Any>(undefined, { store: t.context.store })
  s.cart = { items: [] }
  await save(s)
  const copy = { ...s }
  copy.cart.items.push('shared, as in any shallow copy')
  await save(s)
  t.deepEqual((await stored(t.context.store, s._session_id))!.cart, { items: ['shared, as in any shallow copy'] })
})

test('a value the serializer cannot keep throws a TypeError naming the path, and nothing changes', async (t) => {
  const s = await tieSession<Any>(undefined, { store: t.context.store })
  s.cart = { items: [{ sku: 1 }, { sku: 2 }, { sku: 3 }] }
  await save(s)
  const before = JSON.stringify(s)
  const writes = t.context.writes.callCount
  t.throws(() => (s.cart.items[2].when = new Date()), { instanceOf: TypeError, message: /cart\.items\[2\]\.when/ })
  t.throws(() => (s.cart = { items: [1, 2, { when: new Date() }] }), { instanceOf: TypeError, message: /cart\.items\[2\]\.when/ })
  t.throws(() => (s.f = () => 1), { instanceOf: TypeError, message: / at f / })
  t.throws(() => s.cart.items.push(10n), { instanceOf: TypeError, message: /cart\.items\[3\]/ })
  t.throws(() => (s.n = Number.NaN), { instanceOf: TypeError })
  t.is(JSON.stringify(s), before)
  await save(s)
  t.is(t.context.writes.callCount, writes, 'nothing to write')
})

test('a path names where an object was last reached; data made cyclic behind the tracker still gives a TypeError, not a stack overflow', async (t) => {
  const s = await tieSession<Any>(undefined, { store: t.context.store, autoSave: false })
  s.a = { list: [{ deep: {} }] }
  s.b = {}
  const deep = s.a.list[0].deep
  t.throws(() => (deep.when = new Date()), { instanceOf: TypeError, message: / at a\.list\[0\]\.deep\.when / })
  ;({ ...s }).a.list.unshift({ first: true }) // through a spread copy: the same element object moves to list[1]
  t.throws(() => (s.a.list[1].deep.when = new Date()), { instanceOf: TypeError, message: / at a\.list\[1\]\.deep\.when / })
  const raw: Any = {}
  s.b = raw // the caller's own object stays live
  raw.self = raw
  t.throws(() => (s.b.self.self.self.when = new Date()), { instanceOf: TypeError, message: /self\.self\.when/ })
  await t.throwsAsync(save(s), { instanceOf: TypeError }, 'the cycle itself cannot be saved')
})

test('array methods move the elements themselves, as plain arrays do: a view held from before still writes into the session', async (t) => {
  const s = await tieSession<Any>(undefined, { store: t.context.store, autoSave: false })
  s.items = [{ n: 1 }, { n: 2 }, { n: 3 }]
  const [one, two, three] = [s.items[0], s.items[1], s.items[2]]
  s.items.unshift({ n: 0 })
  one.n = 10 // now items[1]
  t.is(
    s.items.sort((a: Any, b: Any) => b.n - a.n),
    s.items,
    'sort returns the array (its view)',
  )
  two.n = 20
  t.is(s.items.reverse(), s.items)
  t.deepEqual(s.items.splice(2, 1, { n: 5 }, { n: 6 }), [{ n: 3 }])
  three.n = 30 // removed: like a plain array's removed element, it no longer belongs to it
  const expected = [{ n: 0 }, { n: 20 }, { n: 5 }, { n: 6 }, { n: 10 }]
  t.deepEqual(JSON.parse(JSON.stringify(s.items)), expected)
  await save(s)
  await reload(s)
  t.deepEqual(JSON.parse(JSON.stringify(s.items)), expected)

  // inserted values are checked first: a refused one leaves the array as it was
  const inserted = { n: 7 }
  s.items.push(inserted)
  inserted.n = 70
  t.is(s.items[5].n, 70, "an inserted object stays the caller's own: a write through it is a write to the session")
  await save(s)
  t.is(((await stored(t.context.store, s._session_id)) as Any).items[5].n, 70)
  const before = JSON.stringify(s.items)
  t.throws(() => s.items.unshift({ n: 1 }, new Date()), { instanceOf: TypeError, message: / at items\[1\] / })
  t.throws(() => s.items.splice(2, 0, 1n), { instanceOf: TypeError, message: / at items\[2\] / })
  t.is(JSON.stringify(s.items), before)

  // called on another array, a method is the plain one
  const other: number[] = []
  s.items.push.call(other, 1)
  t.deepEqual(other, [1])
  t.is(s.items.length, 6)
})

test('array methods that change nothing write nothing', async (t) => {
  const s = await tieSession<Any>(undefined, { store: t.context.store })
  s.empty = []
  s.one = [{ a: 1 }]
  await save(s)
  const writes = t.context.writes.callCount
  t.is(s.empty.pop(), undefined)
  t.is(s.empty.shift(), undefined)
  s.empty.push()
  s.one.sort()
  s.one.reverse()
  await save(s)
  t.is(t.context.writes.callCount, writes)
})

test('deleting an array element leaves null, as a reload shows it; pop, shift and splice are unchanged', async (t) => {
  const s = await tieSession<Any>(undefined, { store: t.context.store, autoSave: false })
  s.list = [1, 2, 3, 4, 5]
  delete s.list[1]
  t.deepEqual([...s.list], [1, null, 3, 4, 5])
  t.is(s.list.pop(), 5)
  t.is(s.list.shift(), 1)
  s.list.splice(0, 1)
  t.deepEqual([...s.list], [3, 4])
  await save(s)
  await reload(s)
  t.deepEqual([...s.list], [3, 4])
})

test('assigning undefined deletes the property', async (t) => {
  const s = await tieSession<Any>(undefined, { store: t.context.store })
  s.a = 1
  s.b = { c: 1, d: 2 }
  await save(s)
  s.a = undefined
  s.b.c = undefined
  t.false('a' in s)
  t.false('c' in s.b)
  await save(s)
  t.deepEqual(await stored(t.context.store, s._session_id), { _session_id: s._session_id, b: { d: 2 } })
})

// --- autoSave ----------------------------------------------------------------------------------

test('autoSave: one synchronous burst of writes is one store write', async (t) => {
  const s = await tieSession<Any>(undefined, { store: t.context.store })
  const after = t.context.writes.callCount
  s.a = 1
  s.b = { c: [1] }
  s.b.c.push(2)
  delete s.a
  s.d = 'x'
  await tick()
  await tick()
  t.is(t.context.writes.callCount, after + 1)
  t.deepEqual(await stored(t.context.store, s._session_id), { _session_id: s._session_id, b: { c: [1, 2] }, d: 'x' })
  await untie(s)
  t.is(t.context.writes.callCount, after + 1, 'untie of an unchanged session writes nothing')
})

test('autoSave: sessions changed in one tick each get their automatic write; one saved by hand is not written twice', async (t) => {
  const [one, two, three] = await Promise.all([1, 2, 3].map(() => tieSession<Any>(undefined, { store: t.context.store })))
  const after = t.context.writes.callCount
  one!.n = 1
  two!.n = 2
  three!.n = 3
  await save(two!) // its scheduled automatic save is cancelled: it was written here
  t.is(t.context.writes.callCount, after + 1)
  await tick()
  await tick()
  t.is(t.context.writes.callCount, after + 3, 'one and three were written by their automatic saves')
  for (const [s, n] of [
    [one, 1],
    [two, 2],
    [three, 3],
  ] as const)
    t.is((await stored(t.context.store, s!._session_id))!.n, n)
  one!.n = 10 // a change after its automatic save ran schedules another
  await tick()
  await tick()
  t.is(t.context.writes.callCount, after + 4)
  t.is((await stored(t.context.store, one!._session_id))!.n, 10)
  await Promise.all([one, two, three].map((s) => untie(s!)))
  t.is(t.context.writes.callCount, after + 4, 'nothing left to write at untie')
})

test('closeStores waits for an automatic save that started while an earlier one of the same session was running', async (t) => {
  const store = memoryStore()
  const write = store.write.bind(store)
  const slow = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
  store.write = async (key, value, opts) => {
    await slow(60)
    return write(key, value, opts)
  }
  const checkPhase = () => new Promise((resolve) => setImmediate(resolve))
  const s = await tieSession<Any>(undefined, { store })
  s.a = 1
  await checkPhase() // the first automatic save starts (60 ms)
  s.b = 2
  await checkPhase() // the second is scheduled and waits for the first
  await slow(80) // the first has ended, the second is writing
  await closeStores()
  const data = JSON.parse(String((await store.get(s._session_id))!.value)) as Any
  t.is(data.b, 2, 'the second automatic save had landed when closeStores returned')
  await untie(s)
})

test('autoSave: false writes only on save and untie', async (t) => {
  const s = await tieSession<Any>(undefined, { store: t.context.store, autoSave: false })
  const after = t.context.writes.callCount
  s.a = 1
  await tick()
  await tick()
  t.is(t.context.writes.callCount, after)
  await save(s)
  t.is(t.context.writes.callCount, after + 1)
  s.b = 2
  await untie(s)
  t.is(t.context.writes.callCount, after + 2)
  t.deepEqual(await stored(t.context.store, s._session_id), { _session_id: s._session_id, a: 1, b: 2 })
})

test('an unchanged session writes nothing, even after reads of nested data', async (t) => {
  const s0 = await tieSession<Any>(undefined, { store: t.context.store })
  s0.cart = { items: [{ sku: 1 }] }
  await untie(s0)
  const writes = t.context.writes.callCount
  const s = await tieSession<Any>(s0._session_id, { store: t.context.store })
  t.is(s.cart.items[0].sku, 1)
  void { ...s }
  s.cart.items[0].sku = 1 // same value
  await tick()
  await save(s)
  await untie(s)
  t.is(t.context.writes.callCount, writes)
})

test('a failed automatic flush is kept, given to onError and thrown by the next save', async (t) => {
  const failure = new SessionError('ERR_STORE_UNAVAILABLE', 'injected')
  const onError = sinon.spy()
  const unhandled = sinon.spy()
  process.on('unhandledRejection', unhandled)
  t.teardown(() => process.off('unhandledRejection', unhandled))
  const s = await tieSession<Any>(undefined, { store: t.context.store, onError })
  t.context.writes.restore()
  const write = sinon.stub(t.context.store, 'write').onFirstCall().rejects(failure)
  write.callThrough()
  s.a = 1
  await tick()
  await tick()
  t.is(onError.callCount, 1)
  t.is(onError.firstCall.args[0], failure)
  t.is(onError.firstCall.args[1], s)
  const err = await t.throwsAsync(save(s))
  t.is(err, failure)
  t.deepEqual(await stored(t.context.store, s._session_id), { _session_id: s._session_id, a: 1 }, 'the change was retried and kept')
  await t.notThrowsAsync(save(s), 'the error is thrown once')
  await new Promise((resolve) => setTimeout(resolve, 20))
  t.is(unhandled.callCount, 0)
})

test('a failed automatic flush is thrown by untie, which still releases', async (t) => {
  const failure = new SessionError('ERR_STORE_UNAVAILABLE', 'injected')
  const s = await tieSession<Any>(undefined, { store: t.context.store })
  t.context.writes.restore()
  sinon.stub(t.context.store, 'write').rejects(failure)
  s.a = 1
  await tick()
  await tick()
  t.is(await t.throwsAsync(untie(s)), failure)
  t.false(isTied(s))
})

test('await using unties the session', async (t) => {
  let id: string
  {
    await using s = await tieSession<Any>(undefined, { store: t.context.store, autoSave: false })
    s.greeting = 'hello'
    id = s._session_id
    t.true(isTied(s))
  }
  t.deepEqual(await stored(t.context.store, id), { _session_id: id, greeting: 'hello' })
})

test('writes after untie or destroy throw; untie is idempotent', async (t) => {
  const s = await tieSession<Any>(undefined, { store: t.context.store })
  await untie(s)
  await t.notThrowsAsync(untie(s))
  t.throws(() => (s.a = 1), { instanceOf: TypeError, message: /untied/ })
  t.false(isTied(s))
  t.false(isTied({}))
  await t.throwsAsync(save({} as never), { instanceOf: TypeError })
})

test('a write made while untie or destroy is in flight throws: it is not dropped silently when they end', async (t) => {
  const s = await tieSession<Any>(undefined, { store: t.context.store })
  const id = s._session_id
  s.a = 1
  const untying = untie(s)
  t.throws(() => (s.b = 2), { instanceOf: TypeError, message: /is being untied; tie it again/ })
  t.throws(() => delete s.a, { instanceOf: TypeError, message: /is being untied/ })
  await untying
  t.throws(() => (s.b = 2), { instanceOf: TypeError, message: /is untied/ })
  t.deepEqual(await stored(t.context.store, id), { _session_id: id, a: 1 })

  const d = await tieSession<Any>(id, { store: t.context.store })
  const destroying = destroy(d)
  t.throws(() => (d.c = 3), { instanceOf: TypeError, message: /is being destroyed/ })
  await destroying
  t.throws(() => (d.c = 3), { instanceOf: TypeError, message: /is destroyed/ })
  t.is(await stored(t.context.store, id), undefined)
})

// --- versions and concurrency -----------------------------------------------------------------

function twoHandles(t: { teardown(fn: () => void): void }) {
  const directory = mkdtempSync(join(tmpdir(), 'tied-session-tie-'))
  t.teardown(() => rmSync(directory, { recursive: true, force: true }))
  const a = fileStore({ directory })
  const b = fileStore({ directory })
  return { a, b }
}

test('two ties of one session change different keys: both changes survive (file store, two handles)', async (t) => {
  const { a, b } = twoHandles(t)
  const first = await tieSession<Any>(undefined, { store: a })
  first.shared = 0
  await save(first)
  const one = await tieSession<Any>(first._session_id, { store: a, autoSave: false })
  const two = await tieSession<Any>(first._session_id, { store: b, autoSave: false })
  one.fromOne = 1
  two.fromTwo = 2
  await save(one)
  await save(two)
  const check = await tieSession<Any>(first._session_id, { store: b })
  t.deepEqual({ ...check }, { _session_id: first._session_id, _utime: first._utime, shared: 0, fromOne: 1, fromTwo: 2 })
  t.is(two.fromOne, 1, 'the second tie sees the first one after its merge')
})

test('two ties of one session change the same key: the last save wins', async (t) => {
  const { a, b } = twoHandles(t)
  const first = await tieSession<Any>(undefined, { store: a })
  first.color = 'red'
  await untie(first)
  const one = await tieSession<Any>(first._session_id, { store: a, autoSave: false })
  const two = await tieSession<Any>(first._session_id, { store: b, autoSave: false })
  one.color = 'green'
  two.color = 'blue'
  await save(one)
  await save(two)
  await reload(one)
  t.is(one.color, 'blue')
})

test('two ties push to one array and change different nested keys: a save merges both, in place', async (t) => {
  const { a, b } = twoHandles(t)
  const first = await tieSession<Any>(undefined, { store: a })
  first.cart = { items: ['base'], owner: { name: 'dwho', city: 'x' } }
  await untie(first)
  const one = await tieSession<Any>(first._session_id, { store: a, autoSave: false })
  const two = await tieSession<Any>(first._session_id, { store: b, autoSave: false })
  const items = one.cart.items
  items.push('one')
  one.cart.owner.name = 'Doctor'
  two.cart.items.push('two', 'three')
  two.cart.owner.city = 'Gallifrey'
  two.fresh = { list: [2] }
  one.fresh = { list: [1] }
  await save(two)
  await save(one)
  const expected = { items: ['base', 'two', 'three', 'one'], owner: { name: 'Doctor', city: 'Gallifrey' } }
  t.deepEqual((await stored(a, first._session_id))!.cart, expected)
  t.deepEqual((await stored(a, first._session_id))!.fresh, { list: [2, 1] }, 'a container both created is merged too')
  t.deepEqual(snapshot(one).cart, expected, 'the tie shows what it stored')
  items.push('later')
  await save(one)
  t.deepEqual(
    ((await stored(a, first._session_id))!.cart as { items: string[] }).items,
    ['base', 'two', 'three', 'one', 'later'],
    'a view held across the merge still writes',
  )
})

test("a removal from an array merges with the other tie's appends; a delete wins over a change", async (t) => {
  const { a, b } = twoHandles(t)
  const first = await tieSession<Any>(undefined, { store: a })
  first.list = [1, 2, 3]
  first.gone = { x: 1 }
  await untie(first)
  const one = await tieSession<Any>(first._session_id, { store: a, autoSave: false })
  const two = await tieSession<Any>(first._session_id, { store: b, autoSave: false })
  one.list.shift()
  one.gone.y = 2
  two.list.push(4)
  delete two.gone
  await save(one)
  await save(two)
  const data = (await stored(a, first._session_id))!
  t.deepEqual(data.list, [2, 3, 4])
  t.false('gone' in data, 'a delete wins over a change made to what it deleted')
})

for (const [when, wait] of [
  ['in the same tick (the base is the text the save wrote)', async () => undefined],
  ['after a check phase (the base is a copy taken at the change)', () => new Promise((resolve) => setImmediate(resolve))],
] as const) {
  test(`a merge after an earlier save of the same tie starts from what that save wrote: a change ${when}`, async (t) => {
    const store = memoryStore()
    const first = await tieSession<Any>(undefined, { store })
    first.list = [1]
    await untie(first)
    const one = await tieSession<Any>(first._session_id, { store, autoSave: false })
    const two = await tieSession<Any>(first._session_id, { store, autoSave: false })
    one.list.push(2)
    await save(one)
    two.list.push(3) // two's save merges with one's
    await save(two)
    await wait()
    one.list.push(4) // its base is [1, 2], what one's save wrote, not [1], what one read
    await save(one)
    t.deepEqual((await stored(store, first._session_id))!.list, [1, 2, 3, 4])
  })
}

test('a key first changed while a save is in flight merges from the text that save sent', async (t) => {
  const { a, b } = twoHandles(t)
  const first = await tieSession<Any>(undefined, { store: a })
  first.list = [1]
  first.other = { n: 0 }
  await untie(first)
  const one = await tieSession<Any>(first._session_id, { store: a, autoSave: false })
  const two = await tieSession<Any>(first._session_id, { store: b, autoSave: false })
  two.list.push('two')
  await save(two)
  one.other.n = 1
  const saving = save(one) // sent: one's cas meets two's write, re-reads and merges
  one.list.push('one')
  await saving
  await untie(one)
  const data = (await stored(a, first._session_id))!
  t.deepEqual(data.list, [1, 'two', 'one'])
  t.deepEqual(data.other, { n: 1 })
})

test('many concurrent saves of different keys on one session lose nothing', async (t) => {
  const { a, b } = twoHandles(t)
  const first = await tieSession<Any>(undefined, { store: a })
  await untie(first)
  const ties = await Promise.all(
    Array.from({ length: 8 }, (_, i) => tieSession<Any>(first._session_id, { store: i % 2 ? a : b, autoSave: false })),
  )
  ties.forEach((s, i) => (s[`k${i}`] = i))
  await Promise.all(ties.map((s) => save(s)))
  const check = await tieSession<Any>(first._session_id, { store: a })
  for (let i = 0; i < 8; i++) t.is(check[`k${i}`], i)
})

test('a session destroyed while tied is not resurrected by a later save', async (t) => {
  const { a, b } = twoHandles(t)
  const first = await tieSession<Any>(undefined, { store: a })
  first.x = 1
  await untie(first)
  const one = await tieSession<Any>(first._session_id, { store: a, autoSave: false })
  const two = await tieSession<Any>(first._session_id, { store: b, autoSave: false })
  await destroy(one)
  two.y = 2
  const err = await t.throwsAsync(save(two))
  t.is((err as SessionError).code, 'ERR_SESSION_NOT_FOUND')
  t.is(await a.get(first._session_id), undefined)
})

test.serial('a session that expired while tied is not resurrected', async (t) => {
  const clock = sinon.useFakeTimers({ now: Date.now(), toFake: ['Date'] })
  t.teardown(() => clock.restore())
  const s = await tieSession<Any>(undefined, { store: t.context.store, expires: 10, autoSave: false })
  clock.tick(11_000)
  s.late = true
  t.is(((await t.throwsAsync(save(s))) as SessionError).code, 'ERR_SESSION_NOT_FOUND')
  t.is(t.context.store.size, 0)
})

// --- updateOnly, expires -------------------------------------------------------------------

test('updateOnly: a new session is not written at tie, and never if unchanged', async (t) => {
  const s = await tieSession<Any>(undefined, { store: t.context.store, updateOnly: true })
  t.is(t.context.writes.callCount, 0)
  await save(s)
  await untie(s)
  t.is(t.context.writes.callCount, 0)
  t.is(await t.context.store.get(s._session_id), undefined)
})

test('updateOnly: the first save with a change writes the new session', async (t) => {
  const s = await tieSession<Any>(undefined, { store: t.context.store, updateOnly: true })
  s.user = 'dwho'
  await save(s)
  t.is(t.context.writes.callCount, 1)
  t.deepEqual(await stored(t.context.store, s._session_id), { _session_id: s._session_id, user: 'dwho' })
  s.more = 1
  await untie(s)
  t.deepEqual(await stored(t.context.store, s._session_id), { _session_id: s._session_id, user: 'dwho', more: 1 })
})

test('expires sets the ttl of every write; timeout is its alias; 0 is never', async (t) => {
  for (const [opts, ttl] of [
    [{ expires: 120 }, 120],
    [{ timeout: 300 }, 300],
    [{ expires: 0 }, 0],
    [{}, 86400],
    [{ expires: 60, timeout: 60 }, 60],
  ] as const) {
    t.context.writes.resetHistory()
    const s = await tieSession<Any>(undefined, { store: t.context.store, ...opts })
    s.x = 1
    await save(s)
    t.true(
      t.context.writes.getCalls().every((c) => c.args[2].ttl === ttl),
      JSON.stringify(opts),
    )
  }
})

test.serial('expires 0 never expires; a positive value does', async (t) => {
  const clock = sinon.useFakeTimers({ now: Date.now(), toFake: ['Date'] })
  t.teardown(() => clock.restore())
  const forever = await tieSession(undefined, { store: t.context.store, expires: 0 })
  const hour = await tieSession(undefined, { store: t.context.store, expires: 3600 })
  clock.tick(365 * 86400_000)
  t.truthy(await t.context.store.get(forever._session_id))
  t.is(await t.context.store.get(hour._session_id), undefined)
})

test('options are checked at the boundary with a TypeError naming the option', async (t) => {
  const bad: Array<[object, RegExp]> = [
    [{ expires: 60, timeout: 30 }, /expires .* timeout .* disagree/],
    [{ expires: -1 }, /expires/],
    [{ expires: 1.5 }, /expires/],
    [{ timeout: '60' }, /timeout/],
    [{ autoSave: 'yes' }, /autoSave/],
    [{ expire: 60 }, /unknown option "expire"/],
    [{ namespace: 'a b' }, /namespace/],
    [{ lock: 'shared' }, /lock/],
    [{ maxSessions: 2 }, /maxSessions needs principal/],
    [{ principal: '' }, /principal/],
  ]
  for (const [opts, message] of bad) {
    await t.throwsAsync(tieSession(undefined, { store: t.context.store, ...opts } as object), { instanceOf: TypeError, message })
  }
})

// --- destroy, regenerate, reload, namespace, rich ---------------------------------------------

test('destroy removes the session from the store now', async (t) => {
  const s = await tieSession<Any>(undefined, { store: t.context.store })
  s.a = 1
  await save(s)
  await destroy(s)
  t.is(await t.context.store.get(s._session_id), undefined)
  t.false(isTied(s))
  t.is(((await t.throwsAsync(tieSession(s._session_id, { store: t.context.store }))) as SessionError).code, 'ERR_SESSION_NOT_FOUND')
})

test('regenerate moves the data to a new id and deletes the old one', async (t) => {
  const s = await tieSession<Any>(undefined, { store: t.context.store })
  s.user = 'dwho'
  s.pending = [1]
  const old = s._session_id
  const id = await regenerate(s)
  t.not(id, old)
  t.is(s._session_id, id)
  t.is(await t.context.store.get(old), undefined)
  t.deepEqual(await stored(t.context.store, id), { _session_id: id, user: 'dwho', pending: [1] })
  s.after = true
  await untie(s)
  t.true((await stored(t.context.store, id))!.after)
})

test('a write made while regenerate is in flight throws; untie and save called meanwhile wait for it', async (t) => {
  const { store } = t.context
  t.context.writes.restore()
  for (const autoSave of [true, false]) {
    const s = await tieSession<Any>(undefined, { store, autoSave, lock: 'exclusive' })
    s.a = 1
    await save(s)
    const old = s._session_id
    // the booking of the new id is held until the writes below were tried
    let book!: () => void
    const booked = new Promise<void>((resolve) => (book = resolve))
    const add = sinon.stub(store, 'write').callsFake(async (...args) => {
      if (args[2].mode === 'add') await booked
      return add.wrappedMethod.apply(store, args)
    })
    t.teardown(() => add.restore())
    const regenerating = regenerate(s)
    await tick()
    t.throws(() => (s.b = 2), { instanceOf: TypeError, message: /is being regenerated; await regenerate\(s\) before changing it/ })
    const saving = save(s)
    const untying = untie(s)
    book()
    const id = await regenerating
    add.restore()
    await saving
    await untying
    t.deepEqual(await stored(store, id), { _session_id: id, a: 1 }, `autoSave ${autoSave}`)
    t.is(await store.get(old), undefined)
    t.true(await lockIsFree(store, id), 'untie waited for the new id, and released its lock')
    t.true(await lockIsFree(store, old))
  }
})

test('reload reads the store again and drops unsaved changes', async (t) => {
  const s = await tieSession<Any>(undefined, { store: t.context.store, autoSave: false })
  s.a = 1
  await save(s)
  const other = await tieSession<Any>(s._session_id, { store: t.context.store })
  other.b = 2
  await untie(other)
  s.unsaved = true
  await reload(s)
  t.deepEqual({ ...s }, { _session_id: s._session_id, _utime: s._utime, a: 1, b: 2 })
})

test('a write made while reload is in flight throws (the reload would drop it); writes work again once it is done', async (t) => {
  const { store } = t.context
  const s = await tieSession<Any>(undefined, { store })
  s.a = 1
  await save(s)
  const reloading = reload(s)
  t.throws(() => (s.b = 2), { instanceOf: TypeError, message: /is being reloaded; await reload\(s\) before changing it/ })
  const untying = untie(s)
  await reloading
  await untying
  t.throws(() => (s.c = 3), { instanceOf: TypeError, message: /is untied/ }, 'an untie called meanwhile still refuses writes')

  const again = await tieSession<Any>(s._session_id, { store, autoSave: false })
  again.pending = true
  await reload(again)
  t.is(again.pending, undefined, 'a change made before reload was called is dropped, as documented')
  again.after = 1
  await untie(again)
  t.deepEqual(await stored(store, s._session_id), { _session_id: s._session_id, a: 1, after: 1 })
})

test('namespace prefixes every key', async (t) => {
  const s = await tieSession<Any>(undefined, { store: t.context.store, namespace: 'app1:' })
  s.a = 1
  await untie(s)
  t.truthy(await t.context.store.get(`app1:${s._session_id}`))
  t.is(await t.context.store.get(s._session_id), undefined)
  await t.throwsAsync(tieSession(s._session_id, { store: t.context.store }))
  t.is((await tieSession<Any>(s._session_id, { store: t.context.store, namespace: 'app1:' })).a, 1)
})

test('the rich serializer keeps Dates, Maps, Sets and BigInts in a session, and tracks their changes', async (t) => {
  const s = await tieSession<Any>(undefined, { store: t.context.store, serializer: rich })
  s.when = new Date('2026-01-02T03:04:05.000Z')
  s.seen = new Set(['home'])
  s.counts = new Map([['a', 1n]])
  s.list = [undefined, Number.NaN, -0, Infinity]
  await untie(s)
  const again = await tieSession<Any>(s._session_id, { store: t.context.store, serializer: rich })
  t.deepEqual(again.when, new Date('2026-01-02T03:04:05.000Z'))
  t.deepEqual(again.seen, new Set(['home']))
  t.is(again.counts.get('a'), 1n)
  t.true(Object.is(again.list[2], -0))
  again.seen.add('cart') // a Set is handed out as is and compared at the next save
  await untie(again)
  const third = await tieSession<Any>(s._session_id, { store: t.context.store, serializer: rich })
  t.deepEqual(third.seen, new Set(['home', 'cart']))
})

test('json is the default serializer: stored text is plain JSON', async (t) => {
  const s = await tieSession<Any>(undefined, { store: t.context.store })
  s.a = { b: [1, 'x', null, true] }
  await untie(s)
  t.is(
    (await t.context.store.get(s._session_id))!.value,
    JSON.stringify({ _session_id: s._session_id, _utime: s._utime, a: { b: [1, 'x', null, true] } }),
  )
})

// --- the embedded default --------------------------------------------------------------------

test('without store or servers, sessions live in the file store and a script exits at once', async (t) => {
  const child = runFixture(t, 'default-store.ts', [], 15_000)
  const started = Date.now()
  const exit = await child.exited
  t.is(exit.code, 0, exit.stderr)
  t.false(exit.timedOut)
  const [id, value] = exit.stdout.trim().split(' ')
  t.regex(id!, /^[0-9a-f]{32}$/)
  t.is(value, '42')
  t.true(Date.now() - started < 10_000)
  const again = await tieSession<Any>(id!)
  t.is(again.cart.items[0], 42)
  await destroy(again)
})

// --- lock: 'exclusive' ---------------------------------------------------------------------------

/** True when nobody holds the session's lock: a lock with no wait succeeds (and is released). */
async function lockIsFree(store: Store, key: string): Promise<boolean> {
  try {
    const release = await store.lock!(key, { ttl: 5, wait: 0 })
    await release()
    return true
  } catch {
    return false
  }
}

test('lock: exclusive holds the session from tie to untie; another tie waits, then gets ERR_LOCKED', async (t) => {
  const { store } = t.context
  const first = await tieSession<Any>(undefined, { store, lock: 'exclusive' })
  const id = first._session_id
  const started = Date.now()
  const err = await t.throwsAsync(tieSession(id, { store, lock: 'exclusive', lockTimeout: 150 }))
  t.is((err as SessionError).code, 'ERR_LOCKED')
  t.true(Date.now() - started >= 140)
  const waiting = tieSession<Any>(id, { store, lock: 'exclusive', lockTimeout: 5000 })
  first.n = 1
  await untie(first)
  const second = await waiting
  t.is(second.n, 1, 'the waiter read what the holder wrote')
  t.false(await lockIsFree(store, id))
  await untie(second)
  t.true(await lockIsFree(store, id))
})

test('lock: released by await using, by destroy, and by an untie whose save fails (which still throws)', async (t) => {
  const { store } = t.context
  let id: string
  {
    await using s = await tieSession<Any>(undefined, { store, lock: 'exclusive' })
    id = s._session_id
    t.false(await lockIsFree(store, id))
  }
  t.true(await lockIsFree(store, id))

  const d = await tieSession<Any>(id, { store, lock: 'exclusive' })
  await destroy(d)
  t.true(await lockIsFree(store, id))

  const s = await tieSession<Any>(undefined, { store, lock: 'exclusive', autoSave: false })
  t.context.writes.restore()
  const failure = new SessionError('ERR_STORE_UNAVAILABLE', 'injected')
  sinon.stub(store, 'write').rejects(failure)
  s.x = 1
  t.is(await t.throwsAsync(untie(s)), failure)
  t.true(await lockIsFree(store, s._session_id))
})

test('lock: a tie that fails after taking the lock does not keep it', async (t) => {
  const { store } = t.context
  const missing = '0123456789abcdef0123456789abcdef'
  t.is(((await t.throwsAsync(tieSession(missing, { store, lock: 'exclusive' }))) as SessionError).code, 'ERR_SESSION_NOT_FOUND')
  t.true(await lockIsFree(store, missing))
  await store.write('corrupt', '{', { ttl: 60, mode: 'set' })
  t.is(((await t.throwsAsync(tieSession('corrupt', { store, lock: 'exclusive' }))) as SessionError).code, 'ERR_CORRUPT')
  t.true(await lockIsFree(store, 'corrupt'))
})

test('lock: regenerate moves the lock to the new id', async (t) => {
  const { store } = t.context
  const s = await tieSession<Any>(undefined, { store, lock: 'exclusive' })
  const old = s._session_id
  const id = await regenerate(s)
  t.true(await lockIsFree(store, old))
  t.false(await lockIsFree(store, id))
  await untie(s)
  t.true(await lockIsFree(store, id))
})

test('lock: a store without lock() is a TypeError at tie', async (t) => {
  const { lock: _lock, ...rest } = memoryStore()
  const store = rest as Store
  await t.throwsAsync(tieSession(undefined, { store, lock: 'exclusive' }), { instanceOf: TypeError, message: /lock/ })
})

test('lock: untie throws the save error even when releasing the lock fails too (both, save first)', async (t) => {
  const { store } = t.context
  const saveError = new SessionError('ERR_STORE_UNAVAILABLE', 'injected: the write')
  const releaseError = new SessionError('ERR_STORE_UNAVAILABLE', 'injected: the release')
  const lock = store.lock!.bind(store)
  sinon.stub(store, 'lock').callsFake(async (...args) => {
    const release = await lock(...args)
    return async () => {
      await release()
      throw releaseError
    }
  })
  const s = await tieSession<Any>(undefined, { store, lock: 'exclusive', autoSave: false })
  t.context.writes.restore()
  sinon.stub(store, 'write').rejects(saveError)
  s.x = 1
  const err = await t.throwsAsync(untie(s), { instanceOf: AggregateError })
  t.deepEqual((err as AggregateError).errors, [saveError, releaseError])
  t.false(isTied(s))
})

test('lock: a new session whose lock cannot be taken leaves no session behind', async (t) => {
  const { store } = t.context
  const lockError = new SessionError('ERR_LOCKED', 'injected: no lock')
  sinon.stub(store, 'lock').rejects(lockError)
  t.is(await t.throwsAsync(tieSession(undefined, { store, lock: 'exclusive' })), lockError)
  t.is(store.size, 0, 'no orphan session')
  t.is(t.context.writes.callCount, 0)
})

// --- deep data ------------------------------------------------------------------------------

/** An object nested `levels` deep: { d: { d: ... {} } }. */
function nested(levels: number): Any {
  let value: Any = {}
  for (let i = 1; i < levels; i++) value = { d: value }
  return value
}

test('deep data is refused at the door: a value nested past MAX_DEPTH is a TypeError naming the path, and nothing changes', async (t) => {
  const s = await tieSession<Any>(undefined, { store: t.context.store, autoSave: false })
  s.ok = 1
  t.throws(() => (s.deep = nested(5000)), { instanceOf: TypeError, message: /deep(\.d)+ is nested deeper than 100 levels/ })
  t.false('deep' in s)
  s.fine = nested(100) // levels 1..100: the most a session keeps
  t.throws(() => (s.fine = { d: nested(100) }), { instanceOf: TypeError })
  // built in steps through views: the step past the limit throws, the steps before it stay
  let view = s.fine
  let steps = 0
  const grow = () => {
    for (let i = 0; i < 20_000; i++) {
      while (view.d !== undefined) view = view.d
      view.d = {}
      steps++
    }
  }
  t.throws(grow, { instanceOf: TypeError, message: /nested deeper than 100 levels/ })
  t.is(steps, 0, 'fine was already 100 levels deep')
  s.other = 'still saved'
  await save(s)
  const saved = (await stored(t.context.store, s._session_id)) as Any
  t.is(saved.other, 'still saved')
  t.is(saved.ok, 1)
})

test('deep data built through your own reference makes the save throw a TypeError naming the path; other keys are saved once it is fixed', async (t) => {
  const s = await tieSession<Any>(undefined, { store: t.context.store, autoSave: false })
  const mine: Any = {}
  s.mine = mine
  let at = mine
  for (let i = 0; i < 20_000; i++) at = at.d = {}
  s.other = 1
  await t.throwsAsync(save(s), { instanceOf: TypeError, message: /mine(\.d)+ is nested deeper than 100 levels/ })
  delete mine.d
  await save(s)
  t.like(await stored(t.context.store, s._session_id), { mine: {}, other: 1 })
})

test('a stored session nested deeper than MAX_DEPTH is ERR_CORRUPT on tie, and updateSession refuses to write one', async (t) => {
  const { store } = t.context
  const s = await tieSession<Any>(undefined, { store })
  await untie(s)
  // saved again by this process, which then knows its text (a text it wrote is not counted again)
  for (let n = 0; n < 3; n++) {
    const again = await tieSession<Any>(s._session_id, { store })
    again.n = n
    await untie(again)
  }
  const deep = `{"deep":${'{"d":'.repeat(20_000)}{}${'}'.repeat(20_000)}}` // JSON.stringify itself overflows here
  await store.write(s._session_id, deep, { ttl: 60, mode: 'set' })
  t.is(((await t.throwsAsync(tieSession(s._session_id, { store }))) as SessionError).code, 'ERR_CORRUPT')
  const ok = await tieSession<Any>(undefined, { store })
  await untie(ok)
  await t.throwsAsync(
    updateSession<Any>(ok._session_id, (data) => void (data.deep = nested(200)), { store }),
    { instanceOf: TypeError, message: /nested deeper/ },
  )
  t.false('deep' in ((await stored(store, ok._session_id)) as Any))
})
