import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import anyTest, { type ExecutionContext, type TestFn } from 'ava'
import sinon from 'sinon'
import {
  SessionError,
  fileStore,
  isSessionError,
  json,
  reload,
  rich,
  save,
  snapshot,
  tieSession,
  untie,
  type FileStore,
  type Serializer,
  type Tied,
  type TiedSession,
} from '../src/index.js'

type Any = any

interface Ctx {
  serializer: Serializer
  /** The handle the session under test is tied through. */
  a: FileStore
  /** Another handle on the same directory: fresh ties read back through it. */
  b: FileStore
  /** Every tie a test made, untied at teardown. */
  tied: TiedSession[]
}
const test = anyTest as TestFn<Ctx>

/** Two file-store handles on one temp directory, the serializer under test, and their cleanup. */
function setup(t: ExecutionContext<Ctx>, serializer: Serializer): void {
  const directory = mkdtempSync(join(tmpdir(), 'tied-session-tracker-'))
  const a = fileStore({ directory })
  const b = fileStore({ directory })
  Object.assign(t.context, { serializer, a, b, tied: [] })
  t.teardown(async () => {
    // harmless by construction: some tests leave a value that cannot be saved on purpose, and the
    // directory is removed right after; untying first keeps a late flush from re-creating it
    for (const s of t.context.tied) await untie(s).catch(() => undefined)
    await a.close()
    await b.close()
    rmSync(directory, { recursive: true, force: true })
  })
}

/** A tie through handle `a` (a new session without `id`), autoSave off unless asked. */
async function tie(t: ExecutionContext<Ctx>, id?: string, opts: { autoSave?: boolean; store?: FileStore } = {}): Promise<Tied<Any>> {
  const { serializer, a } = t.context
  const s = await tieSession<Any>(id, { store: opts.store ?? a, serializer, autoSave: opts.autoSave ?? false })
  t.context.tied.push(s)
  return s
}

/** A fresh tie of `s`'s session through the other store handle (left tied until teardown). */
function freshTie(t: ExecutionContext<Ctx>, s: TiedSession): Promise<Tied<Any>> {
  return tie(t, s._session_id, { store: t.context.b })
}

/** The data without its id and creation time. */
function plain(s: Tied<Any>): Any {
  const { _session_id: _id, _utime: _created, ...data } = snapshot(s)
  return data
}

/** What a fresh tie of `s`'s session through the other store handle holds, without its id. */
async function fresh(t: ExecutionContext<Ctx>, s: TiedSession): Promise<Any> {
  const other = await tieSession<Any>(s._session_id, { store: t.context.b, serializer: t.context.serializer })
  const data = plain(other)
  await untie(other)
  return data
}

const tick = () => new Promise<void>((resolve) => setImmediate(resolve))

class Widget {
  n = 1
}

/** A value the serializer cannot keep: JSON has no Date; rich keeps no class instances. */
const unstorable = (serializer: Serializer): unknown => (serializer === json ? new Date(0) : new Widget())

/** An array as a reader sees it: its elements (a hole spreads as undefined) and its own keys. */
const shape = (list: Any) => ({ items: [...list], keys: Object.keys(list) })

const full = { writable: true, enumerable: true, configurable: true }

for (const serializer of [json, rich]) {
  const tag = `[${serializer.name}]`
  const bad = () => unstorable(serializer)

  // --- the traps, one by one, at the top and 2-3 levels deep ------------------------------------

  test(`get: values at the top and at depth; nested objects read as one view each, over the session's object ${tag}`, async (t) => {
    setup(t, serializer)
    const s = await tie(t)
    const raw: Any = { b: { c: 1, list: [{ d: 'x' }] } }
    s.n = 1
    s.a = raw
    t.is(s.n, 1)
    t.is(s.missing, undefined)
    t.is(s.a.b.c, 1)
    t.is(s.a.b.list[0].d, 'x')
    t.is(s.a.b.list.length, 1)
    t.is(s.a.b.list[7], undefined)
    t.is(s.a, s.a, 'the same view each time')
    t.is(s.a.b, s.a.b)
    t.is(s.a.b.list, s.a.b.list)
    t.is(s.a.b.list[0], s.a.b.list[0])
    t.not(s.a, raw, 'a view, not the raw object')
    t.not(s.a.b, raw.b)
    t.true(Array.isArray(s.a.b.list))
    t.deepEqual(
      s.a.b.list.map((e: Any) => e.d),
      ['x'],
    )
    t.is(typeof s[Symbol.asyncDispose], 'function')
    t.is((s as Any)[Symbol.iterator], undefined)
    s.a.b.list[0].d = 'y'
    t.is(raw.b.list[0].d, 'y', "the view is over the caller's adopted object")
    await save(s)
    t.deepEqual(await fresh(t, s), { n: 1, a: { b: { c: 1, list: [{ d: 'y' }] } } })
  })

  test(`set: assignments at the top and 2-3 levels deep show at once and are saved; the same value again writes nothing ${tag}`, async (t) => {
    setup(t, serializer)
    const s = await tie(t)
    const writes = sinon.spy(t.context.a, 'write')
    s.n = 1
    s.a = { b: { c: 0, list: [{ d: 0 }] } }
    s.a.x = 'two'
    s.a.b.c = 3
    s.a.b.list[0].d = 4
    s.a.b.list[1] = { d: 5 }
    s.a.b.obj = { deep: { deeper: true } }
    s.a.b.obj.deep.deeper = false
    const expected = { n: 1, a: { b: { c: 3, list: [{ d: 4 }, { d: 5 }], obj: { deep: { deeper: false } } }, x: 'two' } }
    t.deepEqual(plain(s), expected)
    t.is(writes.callCount, 0, 'autoSave: false writes only on save')
    t.deepEqual(await fresh(t, s), {}, 'nothing saved yet')
    await save(s)
    t.is(writes.callCount, 1)
    t.deepEqual(await fresh(t, s), expected)
    s.n = 1
    s.a.b.c = 3
    /* eslint-disable no-self-assign -- assigning a value its own view is the case under test */
    s.a = s.a
    s.a.b = s.a.b
    s.a.b.list[0] = s.a.b.list[0]
    /* eslint-enable no-self-assign */
    await save(s)
    t.is(writes.callCount, 1, 'the same values again: nothing to write')
    s.a.b.list[0].d = 6
    await save(s)
    t.is(writes.callCount, 2)
    t.is((await fresh(t, s)).a.b.list[0].d, 6)
  })

  test(`deleteProperty: at the top and at depth; an array element leaves null; deleting nothing writes nothing ${tag}`, async (t) => {
    setup(t, serializer)
    const s = await tie(t)
    s.top = 1
    s.a = { b: { c: 1, d: 2, list: [1, 2, 3], obj: { e: 1 } } }
    await save(s)
    const writes = sinon.spy(t.context.a, 'write')
    t.true(delete s.top)
    t.true(delete s.a.b.c)
    t.true(delete s.a.b.list[1])
    t.true(delete s.a.b.obj.e)
    t.false('top' in s)
    t.deepEqual(Object.keys(s.a.b), ['d', 'list', 'obj'])
    t.deepEqual(shape(s.a.b.list), { items: [1, null, 3], keys: ['0', '1', '2'] })
    await save(s)
    t.is(writes.callCount, 1)
    t.deepEqual(await fresh(t, s), { a: { b: { d: 2, list: [1, null, 3], obj: {} } } })
    t.true(delete s.nothing)
    t.true(delete s.a.nothing)
    t.true(delete s.a.b.obj.nothing)
    await save(s)
    t.is(writes.callCount, 1, 'deleting what is not there changes nothing')
    t.true(delete s.a.b)
    t.deepEqual(plain(s), { a: {} })
    await save(s)
    t.deepEqual(await fresh(t, s), { a: {} })
  })

  test(`has: \`in\` and Reflect.has at the top and at depth tell the truth ${tag}`, async (t) => {
    setup(t, serializer)
    const s = await tie(t)
    s.a = { b: { c: 0, list: [null] } }
    t.true('a' in s)
    t.true('_session_id' in s)
    t.false('missing' in s)
    t.true('b' in s.a)
    t.true('c' in s.a.b, 'a falsy value is there')
    t.false('z' in s.a.b)
    t.true(0 in s.a.b.list, 'a null element is there')
    t.false(1 in s.a.b.list)
    t.true('length' in s.a.b.list)
    t.true(Reflect.has(s.a.b, 'c'))
    t.true('toString' in s.a.b, "the prototype chain is a plain object's")
    delete s.a.b.c
    t.false('c' in s.a.b)
    s.a.b.z = 1
    t.true('z' in s.a.b)
    s.added = 1
    t.true('added' in s)
    await save(s)
    const other = await freshTie(t, s)
    t.false('c' in other.a.b)
    t.true('z' in other.a.b)
    t.true('added' in other)
  })

  test(`ownKeys: Object.keys, for...in and Reflect.ownKeys at the top and at depth, in order ${tag}`, async (t) => {
    setup(t, serializer)
    const s = await tie(t)
    s.z = 1
    s.a = { b: { y: 1, x: 2, list: ['p', 'q'] } }
    t.deepEqual(Object.keys(s), ['_session_id', '_utime', 'z', 'a'])
    t.deepEqual(Reflect.ownKeys(s), ['_session_id', '_utime', 'z', 'a'])
    t.deepEqual(Object.getOwnPropertySymbols(s), [])
    t.deepEqual(Object.keys(s.a), ['b'])
    t.deepEqual(Object.keys(s.a.b), ['y', 'x', 'list'])
    t.deepEqual(Reflect.ownKeys(s.a.b.list), ['0', '1', 'length'])
    const top: string[] = []
    for (const k in s) top.push(k)
    t.deepEqual(top, ['_session_id', '_utime', 'z', 'a'])
    const deep: string[] = []
    for (const k in s.a.b) deep.push(k)
    t.deepEqual(deep, ['y', 'x', 'list'])
    const indices: string[] = []
    for (const k in s.a.b.list) indices.push(k)
    t.deepEqual(indices, ['0', '1'])
    s.a.b.w = 3
    delete s.a.b.y
    s.a.b.list.push('r')
    t.deepEqual(Object.keys(s.a.b), ['x', 'list', 'w'])
    t.deepEqual(Reflect.ownKeys(s.a.b.list), ['0', '1', '2', 'length'])
    await save(s)
    const other = await freshTie(t, s)
    t.deepEqual(Object.keys(other), ['_session_id', '_utime', 'z', 'a'])
    t.deepEqual(Object.keys(other.a.b), ['x', 'list', 'w'])
    t.deepEqual([...other.a.b.list], ['p', 'q', 'r'])
  })

  test(`getOwnPropertyDescriptor: plain data descriptors whose values are the same views; writes through them are saved ${tag}`, async (t) => {
    setup(t, serializer)
    const s = await tie(t)
    s.n = 1
    s.a = { b: { c: 2, list: [{ d: 1 }] } }
    t.deepEqual(Object.getOwnPropertyDescriptor(s, 'n'), { value: 1, ...full })
    const da = Object.getOwnPropertyDescriptor(s, 'a')!
    t.is(da.value, s.a)
    t.true(da.writable && da.enumerable && da.configurable)
    t.is(Object.getOwnPropertyDescriptor(s.a, 'b')!.value, s.a.b)
    t.is(Object.getOwnPropertyDescriptor(s.a.b, 'list')!.value, s.a.b.list)
    t.is(Object.getOwnPropertyDescriptor(s.a.b.list, '0')!.value, s.a.b.list[0])
    t.deepEqual(Object.getOwnPropertyDescriptor(s.a.b, 'c'), { value: 2, ...full })
    t.deepEqual(Object.getOwnPropertyDescriptor(s.a.b.list, 'length'), { value: 1, writable: true, enumerable: false, configurable: false })
    t.is(Object.getOwnPropertyDescriptor(s, 'missing'), undefined)
    t.is(Object.getOwnPropertyDescriptor(s.a.b, 'missing'), undefined)
    t.deepEqual(Object.getOwnPropertyDescriptor(s, '_session_id'), {
      value: s._session_id,
      writable: false,
      enumerable: true,
      configurable: true,
    })
    Object.getOwnPropertyDescriptor(s.a, 'b')!.value.c = 3
    Object.getOwnPropertyDescriptor(s.a.b.list, '0')!.value.d = 2
    Object.getOwnPropertyDescriptor(s.a.b, 'list')!.value.push({ d: 3 })
    await save(s)
    t.deepEqual(await fresh(t, s), { n: 1, a: { b: { c: 3, list: [{ d: 2 }, { d: 3 }] } } })
  })

  test(`defineProperty: full attributes write like an assignment, others and accessors throw and change nothing; array length too ${tag}`, async (t) => {
    setup(t, serializer)
    const s = await tie(t)
    s.a = { b: { list: [1, 2, 3] } }
    await save(s)
    const writes = sinon.spy(t.context.a, 'write')
    for (const [where, obj] of [
      ['top', s],
      ['a.b', s.a.b],
    ] as const) {
      t.throws(() => Object.defineProperty(obj, 'x', { value: 1 }), { instanceOf: TypeError }, `${where}: attributes default to false`)
      t.throws(() => Object.defineProperty(obj, 'x', { value: 1, writable: true }), { instanceOf: TypeError }, where)
      t.throws(() => Object.defineProperty(obj, 'x', { value: 1, ...full, enumerable: false }), { instanceOf: TypeError }, where)
      t.throws(() => Object.defineProperty(obj, 'g', { get: () => 1, enumerable: true, configurable: true }), {
        instanceOf: TypeError,
        message: /accessor/,
      })
      t.false('x' in obj, where)
      t.false('g' in obj, where)
    }
    t.throws(() => Object.defineProperty(s.a.b.list, '0', { value: 9, writable: false }), { instanceOf: TypeError })
    t.is(s.a.b.list[0], 1)
    await save(s)
    t.is(writes.callCount, 0, 'a refused define changes nothing')
    t.deepEqual(await fresh(t, s), { a: { b: { list: [1, 2, 3] } } })

    Object.defineProperty(s, 'x', { value: 1, ...full })
    Object.defineProperty(s.a.b, 'y', { value: { z: 1 }, ...full })
    s.a.b.y.z = 2
    Object.defineProperty(s, 'x', { value: 2 }) // an existing property keeps its attributes
    Object.defineProperty(s.a.b.list, '1', { value: 20 })
    Object.defineProperty(s.a.b.list, 'length', { value: 2 })
    t.deepEqual(shape(s.a.b.list), { items: [1, 20], keys: ['0', '1'] })
    t.deepEqual(Object.getOwnPropertyDescriptor(s, 'x'), { value: 2, ...full })
    await save(s)
    t.is(writes.callCount, 1)
    t.deepEqual(await fresh(t, s), { a: { b: { list: [1, 20], y: { z: 2 } } }, x: 2 })

    Object.defineProperty(s.a.b.list, 'length', { value: 4 })
    t.deepEqual(shape(s.a.b.list), { items: [1, 20, null, null], keys: ['0', '1', '2', '3'] })
    t.throws(() => Object.defineProperty(s.a.b.list, 'length', { value: 1, enumerable: true }), { instanceOf: TypeError })
    t.throws(() => Object.defineProperty(s, 'x', { value: 3, writable: false }), { instanceOf: TypeError })
    t.is(s.x, 2)
    t.is(s.a.b.list.length, 4)
    await save(s)
    t.deepEqual(await fresh(t, s), { a: { b: { list: [1, 20, null, null], y: { z: 2 } } }, x: 2 })
  })

  test(`setPrototypeOf: refused with a TypeError on the session and on views at depth ${tag}`, async (t) => {
    setup(t, serializer)
    const s = await tie(t)
    s.a = { b: { list: [] } }
    await save(s)
    t.throws(() => Object.setPrototypeOf(s, null), { instanceOf: TypeError })
    t.throws(() => Object.setPrototypeOf(s, { evil: true }), { instanceOf: TypeError })
    t.throws(() => Object.setPrototypeOf(s.a, null), { instanceOf: TypeError })
    t.throws(() => Object.setPrototypeOf(s.a.b, { evil: true }), { instanceOf: TypeError })
    t.throws(() => Object.setPrototypeOf(s.a.b.list, {}), { instanceOf: TypeError })
    t.throws(() => Reflect.setPrototypeOf(s.a.b, null), { instanceOf: TypeError })
    t.is(Object.getPrototypeOf(s), Object.prototype)
    t.is(Object.getPrototypeOf(s.a.b), Object.prototype)
    t.is(Object.getPrototypeOf(s.a.b.list), Array.prototype)
    t.is(s.evil, undefined)
    s.a.b.ok = 1
    await save(s)
    t.deepEqual(await fresh(t, s), { a: { b: { list: [], ok: 1 } } })
  })

  test(`preventExtensions: freeze, seal and preventExtensions refused on the session and on views at depth ${tag}`, async (t) => {
    setup(t, serializer)
    const s = await tie(t)
    s.a = { b: { c: 1, list: [1] } }
    t.throws(() => Object.freeze(s), { instanceOf: TypeError })
    t.throws(() => Object.seal(s), { instanceOf: TypeError })
    t.throws(() => Object.preventExtensions(s), { instanceOf: TypeError })
    t.throws(() => Reflect.preventExtensions(s), { instanceOf: TypeError })
    t.throws(() => Object.seal(s.a), { instanceOf: TypeError })
    t.throws(() => Object.freeze(s.a.b), { instanceOf: TypeError })
    t.throws(() => Object.preventExtensions(s.a.b.list), { instanceOf: TypeError })
    t.true(Object.isExtensible(s))
    t.true(Object.isExtensible(s.a.b))
    t.false(Object.isFrozen(s.a.b.list))
    s.top = 1
    s.a.b.c = 2
    s.a.b.d = 3
    s.a.b.list.push(2)
    await save(s)
    t.deepEqual(await fresh(t, s), { a: { b: { c: 2, list: [1, 2], d: 3 } }, top: 1 })
  })

  // --- 1. views handed out by every trap are the tracked ones -----------------------------------

  test(`descriptors, spread, entries and Object.assign hand out the same tracked views: writes through them are saved ${tag}`, async (t) => {
    setup(t, serializer)
    const s = await tie(t)
    s.cart = { items: [] }
    s.n = 0
    const view = s.cart
    t.is(Object.getOwnPropertyDescriptor(s, 'cart')!.value, view)
    t.is((Object.getOwnPropertyDescriptors(s) as Any).cart.value, view)
    t.is({ ...s }.cart, view)
    t.is(Object.entries(s).find(([k]) => k === 'cart')![1], view)
    t.is(Object.assign({}, s).cart, view)
    Object.getOwnPropertyDescriptor(s, 'cart')!.value.n = 1
    ;(Object.getOwnPropertyDescriptors(s) as Any).cart.value.b = 2
    ;({ ...s }).cart.c = 3
    ;(Object.entries(s).find(([k]) => k === 'cart')![1] as Any).d = 4
    Object.assign({}, s).cart.e = 5
    ;({ ...s }).cart.items.push('x')
    Object.getOwnPropertyDescriptor(s, 'cart')!.value.items.push('y')
    await save(s)
    t.deepEqual(await fresh(t, s), { cart: { items: ['x', 'y'], n: 1, b: 2, c: 3, d: 4, e: 5 }, n: 0 })
  })

  test(`no state carries from one trap to the next: after key and descriptor lookups a bad push still throws naming its path ${tag}`, async (t) => {
    setup(t, serializer)
    const s = await tie(t)
    s.cart = { items: [1] }
    const view = s.cart
    const lookups: Array<[string, () => unknown]> = [
      ['Object.keys', () => Object.keys(s)],
      ['Reflect.ownKeys', () => Reflect.ownKeys(s)],
      ['getOwnPropertyDescriptor', () => Object.getOwnPropertyDescriptor(s, 'cart')],
      ['nested getOwnPropertyDescriptor', () => Object.getOwnPropertyDescriptor(s.cart, 'items')],
      ['getOwnPropertyDescriptors', () => Object.getOwnPropertyDescriptors(s)],
      ['Object.hasOwn', () => Object.hasOwn(s, 'cart')],
      ['in', () => 'cart' in s],
      ['spread', () => ({ ...s })],
      ['Object.entries', () => Object.entries(s)],
      ['JSON.stringify', () => JSON.stringify(s)],
    ]
    for (const [name, lookup] of lookups) {
      lookup()
      t.is(s.cart, view, `${name}: the next read is the view`)
      t.throws(() => s.cart.items.push(bad()), { instanceOf: TypeError, message: /cart\.items\[1\]/ }, name)
      t.deepEqual([...s.cart.items], [1], `${name}: the refused push changed nothing`)
    }
    Object.getOwnPropertyDescriptor(s, 'cart')
    s.cart.items.push(2)
    await save(s)
    t.deepEqual(await fresh(t, s), { cart: { items: [1, 2] } })
  })

  // --- 2. objects the caller assigns stay live ---------------------------------------------------

  test(`an assigned object stays live: \`const p = (s.prefs = {}); p.theme = 'dark'\` is saved, at the top and at depth ${tag}`, async (t) => {
    setup(t, serializer)
    const s = await tie(t)
    const p: Any = (s.prefs = {})
    p.theme = 'dark'
    const q: Any = (s.a = { b: {} }).b
    q.deep = { x: 1 }
    q.deep.x = 2
    const r: Any = (s.a.b.c = {})
    r.y = [1]
    r.y.push(2)
    t.is(s.prefs.theme, 'dark')
    t.deepEqual(plain(s), { prefs: { theme: 'dark' }, a: { b: { deep: { x: 2 }, c: { y: [1, 2] } } } })
    await save(s)
    t.deepEqual(await fresh(t, s), { prefs: { theme: 'dark' }, a: { b: { deep: { x: 2 }, c: { y: [1, 2] } } } })
    p.font = 'mono'
    r.y.push(3)
    await save(s)
    t.deepEqual(await fresh(t, s), { prefs: { theme: 'dark', font: 'mono' }, a: { b: { deep: { x: 2 }, c: { y: [1, 2, 3] } } } })
  })

  test(`an assigned array stays live: \`s.cart = items; items.push(7)\` is saved ${tag}`, async (t) => {
    setup(t, serializer)
    const s = await tie(t)
    const items = [1]
    s.cart = items
    items.push(7)
    t.deepEqual([...s.cart], [1, 7])
    await save(s)
    t.deepEqual(await fresh(t, s), { cart: [1, 7] })
  })

  test(`a push through the caller's array after an await and before untie is saved by untie ${tag}`, async (t) => {
    setup(t, serializer)
    const s = await tie(t)
    const items = [1]
    s.cart = items
    await save(s)
    await tick()
    items.push(7)
    await untie(s)
    t.deepEqual(await fresh(t, s), { cart: [1, 7] })

    // with autoSave: the automatic flush of the assignment runs before the push
    const auto = await tie(t, undefined, { autoSave: true })
    const list = [1]
    auto.cart = list
    await tick()
    list.push(8)
    await untie(auto)
    t.deepEqual(await fresh(t, auto), { cart: [1, 8] })
  })

  test(`\`(s.cart ??= []).push(42)\` and \`(s.cart ||= { items: [] }).items.push(1)\` are saved, at the top and at depth ${tag}`, async (t) => {
    setup(t, serializer)
    const s = await tie(t)
    ;(s.cart ??= []).push(42)
    ;(s.box ||= { items: [] }).items.push(1)
    ;(s.cart ??= []).push(43) // there now: the view
    ;(s.box ||= { items: [] }).items.push(2)
    s.a = { b: {} }
    ;(s.a.b.list ??= []).push('deep')
    ;(s.a.b.obj ||= { items: [] }).items.push('deeper')
    const expected = { cart: [42, 43], box: { items: [1, 2] }, a: { b: { list: ['deep'], obj: { items: ['deeper'] } } } }
    t.deepEqual(plain(s), expected)
    await save(s)
    t.deepEqual(await fresh(t, s), expected)
  })

  test(`a change through the caller's reference while a save is in flight is saved by the next untie ${tag}`, async (t) => {
    setup(t, serializer)
    const s = await tie(t)
    const items = [1]
    const obj: Any = { n: 0 }
    s.cart = items
    s.obj = obj
    const first = save(s)
    items.push(2)
    obj.n = 1
    s.view = 'through a trap'
    await first
    await untie(s)
    t.deepEqual(await fresh(t, s), { cart: [1, 2], obj: { n: 1 }, view: 'through a trap' })
  })

  test(`a change through the caller's reference made after the store write was sent is saved by the next untie ${tag}`, async (t) => {
    setup(t, serializer)
    const booked = await tie(t)
    await untie(booked)
    // a loaded session knows its version: its save sends the write at once, before save() returns
    const s = await tie(t, booked._session_id)
    const writes = sinon.spy(t.context.a, 'write')
    const items = [1]
    const obj: Any = { n: 0 }
    s.cart = items
    s.obj = obj
    const first = save(s)
    items.push(2)
    obj.n = 1
    await first
    t.deepEqual(
      serializer.parse(String(writes.firstCall.args[1])),
      { _session_id: s._session_id, _utime: s._utime, cart: [1], obj: { n: 0 } },
      'the changes came after the text was sent',
    )
    writes.restore()
    await untie(s)
    t.deepEqual(await fresh(t, s), { cart: [1, 2], obj: { n: 1 } })

    // a later save (which reads the version first): the change lands while the store is writing
    const again = await tie(t, booked._session_id)
    const list = [1]
    again.list = list
    await save(again)
    list.push(2)
    const write = t.context.a.write
    const during = sinon.stub(t.context.a, 'write').callsFake((...args) => {
      list.push(3)
      during.restore()
      return write.apply(t.context.a, args)
    })
    await save(again)
    t.true(during.calledOnce)
    t.deepEqual((serializer.parse(String(during.firstCall.args[1])) as Any).list, [1, 2], 'the change came after the text was taken')
    await untie(again)
    t.deepEqual((await fresh(t, again)).list, [1, 2, 3])
  })

  // --- 3. values the serializer cannot keep -----------------------------------------------------

  test(`an unstorable value written through a trap throws a TypeError naming its path, and nothing changes ${tag}`, async (t) => {
    setup(t, serializer)
    const s = await tie(t)
    s.cart = { items: [1] }
    s.a = { b: {} }
    await save(s)
    const writes = sinon.spy(t.context.a, 'write')
    t.throws(() => (s.when = bad()), { instanceOf: TypeError, message: / at when / })
    t.throws(() => (s.a.b.when = bad()), { instanceOf: TypeError, message: / at a\.b\.when / })
    t.throws(() => s.cart.items.push(bad()), { instanceOf: TypeError, message: / at cart\.items\[1\] / })
    t.throws(() => (s.cart.items[5] = bad()), { instanceOf: TypeError, message: / at cart\.items\[5\] / })
    t.throws(() => s.cart.items.unshift(0, bad()), { instanceOf: TypeError, message: / at cart\.items\[1\] / })
    t.throws(() => (s.a = { b: { c: [bad()] } }), { instanceOf: TypeError, message: / at a\.b\.c\[0\] / })
    t.throws(() => Object.defineProperty(s.a.b, 'd', { value: bad(), ...full }), { instanceOf: TypeError, message: / at a\.b\.d / })
    t.deepEqual(plain(s), { cart: { items: [1] }, a: { b: {} } })
    t.is(s.cart.items.length, 1)
    await save(s)
    t.is(writes.callCount, 0, 'nothing to write')
    s.a.b.ok = true
    await save(s)
    t.deepEqual(await fresh(t, s), { cart: { items: [1] }, a: { b: { ok: true } } })
  })

  test(`an unstorable value put through the caller's own reference makes the next save throw a TypeError naming its path; once fixed nothing is lost ${tag}`, async (t) => {
    setup(t, serializer)
    const s = await tie(t)
    const items: unknown[] = [1]
    const deep: Any = { x: {} }
    s.cart = items
    s.a = deep
    await save(s)
    items.push(bad())
    s.other = 1
    await t.throwsAsync(save(s), { instanceOf: TypeError, message: / at cart\[1\] / })
    items.pop()
    deep.x.y = bad()
    s.more = 2
    await t.throwsAsync(save(s), { instanceOf: TypeError, message: / at a\.x\.y / })
    delete deep.x.y
    deep.x.z = 3
    await save(s)
    t.deepEqual(await fresh(t, s), { cart: [1], a: { x: { z: 3 } }, other: 1, more: 2 })
    await t.notThrowsAsync(untie(s))
  })

  // --- 4. arrays have no holes ------------------------------------------------------------------

  /** `check` holds now, after a save in a fresh tie through the other handle, and after a reload. */
  async function agrees(t: ExecutionContext<Ctx>, s: Tied<Any>, check: (d: Any) => void): Promise<void> {
    check(s)
    await save(s)
    check(await freshTie(t, s))
    await reload(s)
    check(s)
  }

  test(`writing past an array's end fills null at once, as a reload and a fresh tie show it ${tag}`, async (t) => {
    setup(t, serializer)
    const s = await tie(t)
    s.list = [1]
    s.a = { b: { list: [1] } }
    s.list[3] = 4
    s.a.b.list[3] = 4
    await agrees(t, s, (d) => {
      t.deepEqual(shape(d.list), { items: [1, null, null, 4], keys: ['0', '1', '2', '3'] })
      t.deepEqual(shape(d.a.b.list), { items: [1, null, null, 4], keys: ['0', '1', '2', '3'] })
    })
  })

  test(`a longer length (set or defined) fills null, a shorter one truncates, as a reload and a fresh tie show it ${tag}`, async (t) => {
    setup(t, serializer)
    const s = await tie(t)
    s.list = [1]
    s.a = { b: { list: [1] } }
    s.list.length = 3
    s.a.b.list.length = 3
    await agrees(t, s, (d) => {
      t.deepEqual(shape(d.list), { items: [1, null, null], keys: ['0', '1', '2'] })
      t.deepEqual(shape(d.a.b.list), { items: [1, null, null], keys: ['0', '1', '2'] })
    })
    s.list = [1, 2, 3, 4]
    Object.defineProperty(s.list, 'length', { value: 2 })
    Object.defineProperty(s.a.b.list, 'length', { value: 2 })
    await agrees(t, s, (d) => {
      t.deepEqual(shape(d.list), { items: [1, 2], keys: ['0', '1'] })
      t.deepEqual(shape(d.a.b.list), { items: [1, null], keys: ['0', '1'] })
    })
    Object.defineProperty(s.a.b.list, 'length', { value: 4 })
    await agrees(t, s, (d) => t.deepEqual(shape(d.a.b.list), { items: [1, null, null, null], keys: ['0', '1', '2', '3'] }))
  })

  test(`a sparse array assigned shows null in its holes, and delete leaves null, as a reload and a fresh tie show it ${tag}`, async (t) => {
    setup(t, serializer)
    const s = await tie(t)
    // eslint-disable-next-line no-sparse-arrays
    const raw = [1, , 3]
    s.list = raw
    // eslint-disable-next-line no-sparse-arrays
    s.a = { b: { list: [1, , 3] } }
    t.true(1 in raw, "the caller's own array is normalized in place: it stays the session's")
    await agrees(t, s, (d) => {
      t.deepEqual(shape(d.list), { items: [1, null, 3], keys: ['0', '1', '2'] })
      t.deepEqual(shape(d.a.b.list), { items: [1, null, 3], keys: ['0', '1', '2'] })
    })
    delete s.list[0]
    delete s.a.b.list[2]
    await agrees(t, s, (d) => {
      t.deepEqual(shape(d.list), { items: [null, null, 3], keys: ['0', '1', '2'] })
      t.deepEqual(shape(d.a.b.list), { items: [1, null, null], keys: ['0', '1', '2'] })
    })
  })

  // --- 5. the id ---------------------------------------------------------------------------------

  test(`_session_id cannot be set, deleted or defined, and its descriptor says writable: false ${tag}`, async (t) => {
    setup(t, serializer)
    const s = await tie(t)
    const id = s._session_id
    t.throws(() => ((s as Any)._session_id = 'other'), { instanceOf: TypeError, message: /read-only/ })
    t.throws(() => delete (s as Any)._session_id, { instanceOf: TypeError })
    t.throws(() => Object.defineProperty(s, '_session_id', { value: 'other' }), { instanceOf: TypeError })
    t.throws(() => Object.defineProperty(s, '_session_id', { value: 'other', ...full }), { instanceOf: TypeError })
    t.throws(() => Object.defineProperty(s, '_session_id', { value: id }), { instanceOf: TypeError })
    t.throws(() => Reflect.deleteProperty(s, '_session_id'), { instanceOf: TypeError })
    t.is(s._session_id, id)
    t.false(Object.getOwnPropertyDescriptor(s, '_session_id')!.writable)
    t.true('_session_id' in s)
    await save(s)
    const other = await freshTie(t, s)
    t.is(other._session_id, id)
  })

  // --- 6. views across reload and merge -----------------------------------------------------------

  test(`a view held across reload keeps writing at its path while the stored data has the same kind of object there ${tag}`, async (t) => {
    setup(t, serializer)
    const s = await tie(t)
    s.cart = { items: ['a'], meta: { list: [{ n: 1 }] } }
    await save(s)
    const items = s.cart.items
    const deep = s.cart.meta.list[0]
    const other = await freshTie(t, s)
    other.cart.items.push('b')
    other.elsewhere = 1
    await save(other)
    await reload(s)
    t.is(s.cart.items, items, 'the same object, so the same view')
    t.deepEqual([...items], ['a', 'b'], 'showing the stored data')
    items.push('c')
    deep.n = 2
    t.deepEqual([...s.cart.items], ['a', 'b', 'c'])
    await save(s)
    t.deepEqual(await fresh(t, s), { cart: { items: ['a', 'b', 'c'], meta: { list: [{ n: 2 }] } }, elsewhere: 1 })
  })

  test(`after a reload, a view whose object another writer replaced or removed throws ERR_STALE_VIEW on write; reads still work ${tag}`, async (t) => {
    setup(t, serializer)
    const s = await tie(t)
    s.cart = { items: ['a'] }
    s.box = { inner: { n: 1 } }
    await save(s)
    const items = s.cart.items
    const box = s.box
    const other = await freshTie(t, s)
    other.cart.items = 'gone'
    delete other.box
    await save(other)
    await reload(s)
    t.is(s.cart.items, 'gone')
    const stale = { instanceOf: SessionError, code: 'ERR_STALE_VIEW' } as const
    t.throws(() => items.push('x'), stale)
    t.throws(() => (items[0] = 'x'), stale)
    t.throws(() => delete items[0], stale)
    t.throws(() => (items.length = 0), stale)
    t.throws(() => (box.n = 2), stale)
    t.throws(() => (box.inner.n = 2), stale, 'an object inside a removed one is stale too, though never read before')
    t.throws(() => Object.defineProperty(box, 'k', { value: 1, ...full }), stale)
    const err = t.throws(() => items.push('x'))
    t.true(isSessionError(err, 'ERR_STALE_VIEW'))
    t.deepEqual([...items], ['a'], 'reads show its last data')
    t.is(items.length, 1)
    t.is(box.inner.n, 1)
    t.deepEqual(Object.keys(box), ['inner'])
    await save(s)
    t.deepEqual(await fresh(t, s), { cart: { items: 'gone' } }, 'no stale write reached the store')
  })

  test(`after a merge, a view held by one tie keeps writing at its path and lands with the other writer's change ${tag}`, async (t) => {
    setup(t, serializer)
    const first = await tie(t)
    first.cart = { items: ['orig'] }
    first.other = 0
    await save(first)
    const A = await tie(t, first._session_id)
    const B = await freshTie(t, first)
    const v = A.cart.items
    B.cart.items.push('b')
    await save(B)
    A.other = 1
    await save(A) // a compare-and-swap conflict: A merges B's cart in place
    t.is(A.cart.items, v)
    t.deepEqual([...v], ['orig', 'b'])
    v.push(9)
    await save(A)
    t.deepEqual(await fresh(t, A), { cart: { items: ['orig', 'b', 9] }, other: 1 })
  })

  test(`after a merge, a view whose object the other writer replaced throws ERR_STALE_VIEW on write; reads still work ${tag}`, async (t) => {
    setup(t, serializer)
    const first = await tie(t)
    first.cart = { items: ['orig'] }
    await save(first)
    const A = await tie(t, first._session_id)
    const B = await freshTie(t, first)
    const v = A.cart.items
    B.cart.items = { not: 'an array' }
    await save(B)
    A.other = 1
    await save(A)
    t.deepEqual(plain(A).cart, { items: { not: 'an array' } })
    const err = t.throws(() => v.push(9))
    t.true(isSessionError(err, 'ERR_STALE_VIEW'), String(err))
    t.deepEqual([...v], ['orig'])
    await save(A)
    t.deepEqual(await fresh(t, A), { cart: { items: { not: 'an array' } }, other: 1 })
  })

  test(`\`s.cart = { ...s.cart, n: 1 }\` keeps the old nested objects: views taken before still write into the session ${tag}`, async (t) => {
    setup(t, serializer)
    const s = await tie(t)
    s.cart = { items: [1], meta: { k: 1 } }
    await save(s)
    const items = s.cart.items
    const meta = s.cart.meta
    s.cart = { ...s.cart, n: 1 }
    items.push(2)
    meta.k = 2
    t.is(s.cart.items, items)
    t.is(s.cart.meta, meta)
    t.deepEqual(plain(s), { cart: { items: [1, 2], meta: { k: 2 }, n: 1 } })
    await save(s)
    t.deepEqual(await fresh(t, s), { cart: { items: [1, 2], meta: { k: 2 }, n: 1 } })
  })

  // --- 7. after untie ----------------------------------------------------------------------------

  test(`writes after untie throw a TypeError, through the session and through views held at depth ${tag}`, async (t) => {
    setup(t, serializer)
    const s = await tie(t)
    s.n = 1
    s.a = { b: { list: [1] } }
    await save(s)
    const b = s.a.b
    const list = s.a.b.list
    await untie(s)
    t.throws(() => (s.n = 2), { instanceOf: TypeError, message: /untied/ })
    t.throws(() => delete s.n, { instanceOf: TypeError })
    t.throws(() => Object.defineProperty(s, 'x', { value: 1, ...full }), { instanceOf: TypeError })
    t.throws(() => (b.c = 1), { instanceOf: TypeError })
    t.throws(() => delete b.list, { instanceOf: TypeError })
    t.throws(() => list.push(2), { instanceOf: TypeError })
    t.throws(() => (list[0] = 2), { instanceOf: TypeError })
    t.throws(() => (list.length = 0), { instanceOf: TypeError })
    t.is(s.n, 1, 'reads still work')
    t.deepEqual([...list], [1])
    t.deepEqual(await fresh(t, s), { n: 1, a: { b: { list: [1] } } })
  })
}

// --- what each serializer keeps -------------------------------------------------------------------

test('rich: Date, Map and Set at the top and at depth are kept, and changes made to them after a read are saved', async (t) => {
  setup(t, rich)
  const s = await tie(t)
  s.when = new Date(0)
  s.a = { b: { m: new Map<string, unknown>([['k', 0]]), set: new Set([1]), at: new Date(1) } }
  await save(s)
  s.m = new Map()
  s.m.set('k', 1)
  s.when.setTime(5)
  s.a.b.m.set('k2', 2)
  s.a.b.m.set('o', { x: 1 })
  s.a.b.set.add(2)
  s.a.b.at.setTime(7)
  t.true(s.when instanceof Date)
  t.true(s.a.b.m instanceof Map)
  await save(s)
  const expected = {
    when: new Date(5),
    a: {
      b: {
        m: new Map<string, unknown>([
          ['k', 0],
          ['k2', 2],
          ['o', { x: 1 }],
        ]),
        set: new Set([1, 2]),
        at: new Date(7),
      },
    },
    m: new Map([['k', 1]]),
  }
  t.deepEqual(await fresh(t, s), expected)

  // an object inside a Map is the session's own: a write to it is compared at the next save
  s.a.b.m.get('o').x = 2
  await save(s)
  t.deepEqual((await fresh(t, s)).a.b.m.get('o'), { x: 2 })

  // a Map read by a fresh tie (loaded, never assigned): `other.m.set('k', 1)` is saved
  const other = await freshTie(t, s)
  other.m.set('k3', 3)
  other.a.b.set.add(3)
  await untie(other)
  const data = await fresh(t, s)
  t.deepEqual(
    data.m,
    new Map([
      ['k', 1],
      ['k3', 3],
    ]),
  )
  t.deepEqual(data.a.b.set, new Set([1, 2, 3]))
})

test('json: Date, Map, Set, BigInt, NaN and functions are refused at the top and at depth with a TypeError naming the path', async (t) => {
  setup(t, json)
  const s = await tie(t)
  s.a = { b: { list: [] } }
  await save(s)
  const writes = sinon.spy(t.context.a, 'write')
  const values: Array<[string, () => unknown]> = [
    ['Date', () => new Date(0)],
    ['Map', () => new Map()],
    ['Set', () => new Set()],
    ['BigInt', () => 1n],
    ['NaN', () => Number.NaN],
    ['function', () => () => 1],
  ]
  for (const [name, make] of values) {
    t.throws(() => (s.x = make()), { instanceOf: TypeError, message: / at x / }, name)
    t.throws(() => (s.a.b.x = make()), { instanceOf: TypeError, message: / at a\.b\.x / }, name)
    t.throws(() => s.a.b.list.push(make()), { instanceOf: TypeError, message: / at a\.b\.list\[0\] / }, name)
    t.throws(() => (s.a = { b: { deep: [make()] } }), { instanceOf: TypeError, message: / at a\.b\.deep\[0\] / }, name)
  }
  await save(s)
  t.is(writes.callCount, 0)
  t.deepEqual(await fresh(t, s), { a: { b: { list: [] } } })
})
