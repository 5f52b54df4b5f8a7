// Saves that copy unchanged members from the text this process last wrote (src/json-layout.ts):
// the text is always json.stringify's own, and a layout is only used for a text this process wrote.
import anyTest, { type TestFn } from 'ava'
import sinon from 'sinon'
import { closeStores, json, memoryStore, save, snapshot, tieSession, untie, updateSession } from '../src/index.js'
import { forget, knownText, memberwise, selfCheck, spliced, wrote } from '../src/json-layout.js'
import { useMemcached } from './helpers/memcached.js'

type Any = Record<string, any>
// serial: the tests spy on json.stringify and turn the self-check off, both process-wide
const test = (anyTest as TestFn<unknown>).serial
const write = (value: unknown) => json.stringify(value)

anyTest.afterEach.always(() => closeStores())

/** Data that tries the corners of JSON text: escapes, non-ASCII, integer-like keys, a __proto__ key, -0. */
function tricky(): Record<string, unknown> {
  const data: Record<string, unknown> = {
    _session_id: 'abc',
    b: 'Grüße, "quoted" \\ back\nslash',
    '10': 'ten',
    '2': [1, -0, 0.1, 1e21, -5e-7, true, false, null],
    'é"key': { nested: { deeper: ['😀', '\ud800', ''] } },
    empty: {},
    list: [],
  }
  Object.defineProperty(data, '__proto__', { value: { own: 1 }, writable: true, enumerable: true, configurable: true })
  return data
}

/** Turns the suite's self-check off for a test that counts json.stringify's calls (it adds a whole text per save). */
function uncheck(t: { teardown(fn: () => void): void }): void {
  selfCheck.on = false
  t.teardown(() => void (selfCheck.on = true))
}

test('memberwise writes the very text json.stringify gives, with where each member ends', (t) => {
  for (const data of [{}, { _session_id: 'x' }, tricky()]) {
    const made = memberwise(data, write)!
    t.is(made.text, json.stringify(data))
    t.deepEqual(made.layout.keys, Object.keys(data))
    made.layout.ends.forEach((end, i) => t.is(made.text[end], i === made.layout.ends.length - 1 ? '}' : ','))
  }
})

test('spliced: any set of changed keys gives json.stringify’s text; a key added, deleted or moved gives undefined', (t) => {
  const data = tricky()
  const { text, layout } = memberwise(data, write)!
  const keys = Object.keys(data)
  // every subset of keys changed (a value replaced under each), against the text laid out before
  for (let mask = 0; mask < 1 << keys.length; mask++) {
    const now = tricky()
    const changed = new Set(keys.filter((_, i) => mask & (1 << i)))
    // (defined, not assigned: a key keeps its place, and __proto__ stays data)
    for (const key of changed)
      Object.defineProperty(now, key, { value: { mask, key: `ü${key}` }, writable: true, enumerable: true, configurable: true })
    const made = spliced(text, layout, now, changed, write)!
    t.is(made.text, json.stringify(now), `changed: ${[...changed].join(', ')}`)
    t.deepEqual(made.layout, memberwise(now, write)!.layout)
  }
  const added = tricky()
  added.z = 1
  t.is(spliced(text, layout, added, new Set(['z']), write), undefined)
  const deleted = tricky()
  delete deleted.b
  t.is(spliced(text, layout, deleted, new Set(['b']), write), undefined)
  const moved = tricky()
  const b = moved.b
  delete moved.b
  moved.b = b
  t.is(spliced(text, layout, moved, new Set(['b']), write), undefined)
})

test('a member whose value has a toJSON of its own is never written alone (it would be given another key)', (t) => {
  const data = { _session_id: 'x', odd: { toJSON: (key: string) => `key:${key}` } }
  t.is(memberwise(data, write), undefined)
  const plain = { _session_id: 'x', odd: 1 }
  const laid = memberwise(plain, write)!
  t.is(spliced(laid.text, laid.layout, data, new Set(['odd']), write), undefined)
})

test('knownText: only the version this process wrote, at the same length, with members ending where the layout says', (t) => {
  const store = {}
  const { text, layout } = memberwise({ _session_id: 'x', a: 1, b: 'two' }, write)!
  t.is(knownText(store, 'k', text, '7'), undefined, 'nothing written yet')
  wrote(store, 'k', '7', text, layout)
  t.is(knownText(store, 'k', text, '7'), layout)
  t.is(knownText({}, 'k', text, '7'), undefined, 'another store')
  t.is(knownText(store, 'k', text, '8'), undefined, 'another version')
  t.is(knownText(store, 'k', text, undefined), undefined, 'no version')
  t.is(knownText(store, 'k', `${text} `, '7'), undefined, 'another length')
  t.is(knownText(store, 'k', text.replace('"a":1,', '"a":1 '), '7'), undefined, 'a member that does not end where it did')
  wrote(store, 'k', '8', text, undefined)
  t.is(knownText(store, 'k', text, '8'), 'ours', 'written whole: known to be ours, not laid out')
  wrote(store, 'k', undefined, text, layout)
  t.is(knownText(store, 'k', text, '8'), undefined, 'a write whose version is not told forgets the key')
  wrote(store, 'k', '9', text, layout)
  forget(store, 'k')
  t.is(knownText(store, 'k', text, '9'), undefined, 'forgotten')
})

test('on memcached, a session saved again copies its unchanged members: the third save writes only what changed', async (t) => {
  const server = await useMemcached(t)
  const opts = { servers: server.address, expires: 600 }
  uncheck(t)
  const stringify = sinon.spy(json, 'stringify')
  t.teardown(() => stringify.restore())
  const created = await tieSession<Any>(undefined, opts)
  const id = created._session_id
  created.profile = { name: 'Ada', langs: ['en', 'fr'] }
  created.visits = 0
  await untie(created)
  const written: Array<{ whole: number; profile: number }> = []
  for (let visit = 1; visit <= 3; visit++) {
    stringify.resetHistory()
    const s = await tieSession<Any>(id, opts)
    s.visits = visit
    await untie(s)
    const args = stringify.getCalls().map((call) => call.args[0] as Any)
    written.push({
      whole: args.filter((arg) => typeof arg === 'object' && arg !== null && Object.hasOwn(arg, '_session_id')).length,
      profile: args.filter((arg) => arg?.name === 'Ada').length,
    })
    const stored = (await server.raw(`get ${id}\r\n`)).split('\r\n')[1]!
    t.is(stored, JSON.stringify({ _session_id: id, _utime: s._utime, profile: { name: 'Ada', langs: ['en', 'fr'] }, visits: visit }))
  }
  // its text was written whole by this process (at creation): member by member (to learn the
  // layout), then copied: the profile is not written again
  t.deepEqual(written, [
    { whole: 0, profile: 1 },
    { whole: 0, profile: 0 },
    { whole: 0, profile: 0 },
  ])
})

test('on memcached, a text another writer changed is never spliced: their change is kept', async (t) => {
  const server = await useMemcached(t)
  const opts = { servers: server.address, expires: 600 }
  const created = await tieSession<Any>(undefined, opts)
  const id = created._session_id
  created.a = 1
  created.b = 1
  await untie(created)
  for (let n = 2; n <= 3; n++) {
    const s = await tieSession<Any>(id, opts)
    s.a = n
    await untie(s)
  }
  // another writer: same members, same length, another version
  await updateSession<Any>(id, (data) => void (data.b = 9), opts)
  const s = await tieSession<Any>(id, opts)
  s.a = 4
  await untie(s)
  const read = await tieSession<Any>(id, opts)
  t.like(snapshot(read), { a: 4, b: 9 })
  await untie(read)
})

/** A small seeded generator (mulberry32), so that a failure replays. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

/** json.stringify's text, made without it (JSON, every non-ASCII character escaped). */
const canonical = (value: unknown) =>
  JSON.stringify(value).replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)

test('random changes through the proxy, saved again and again: the stored text is always json.stringify of the data', async (t) => {
  const store = memoryStore()
  uncheck(t)
  const stringify = sinon.spy(json, 'stringify')
  t.teardown(() => stringify.restore())
  const next = random(20261202)
  const pick = <T>(list: readonly T[]): T => list[Math.floor(next() * list.length)]!
  const keys = ['a', 'b', '7', 'ünï', '__proto__', 'cart', 'list'] as const
  const values = () => pick<unknown>([1, -0, 'x', 'Grüße 😀', null, true, { n: next() }, [1, { deep: ['é'] }], {}])
  const s0 = await tieSession<Any>(undefined, { store })
  const id = s0._session_id
  await untie(s0)
  let steps = 0
  let saved = 0
  for (let tie = 0; tie < 60; tie++) {
    const s = await tieSession<Any>(id, { store })
    const saves = 1 + Math.floor(next() * 3)
    for (let k = 0; k < saves; k++) {
      const ops = Math.floor(next() * 4)
      for (let op = 0; op < ops; op++, steps++) {
        const key = pick(keys)
        const r = next()
        // (a read of an absent __proto__ is Object.prototype: only own values are changed in place)
        const own = Object.hasOwn(s, key) ? (s[key] as unknown) : undefined
        if (r < 0.45) s[key] = values()
        else if (r < 0.6) delete s[key]
        else if (r < 0.75 && typeof own === 'object' && own !== null && !Array.isArray(own)) (own as Any).n = next()
        else if (r < 0.85 && Array.isArray(own)) own.push(values())
        else if (r < 0.95 && own !== undefined)
          s[key] = own // the same value again: no change
        else {
          const mine = { adopted: next() } // the caller's own object: changes to it pass no trap
          s[key] = mine
          mine.adopted = -1
        }
      }
      await save(s)
      const stored = (await store.get(id))!.value
      t.is(stored, canonical(snapshot(s)), `tie ${tie}, save ${k}`)
      saved++
    }
    await untie(s)
  }
  t.true(steps > 100)
  // the saves that wrote the whole data out: the first of each key set, not every one
  const wholes = stringify.getCalls().filter((call) => {
    const arg = call.args[0]
    return typeof arg === 'object' && arg !== null && Object.hasOwn(arg, '_session_id')
  })
  t.true(wholes.length < saved / 2, `${wholes.length} whole texts for ${saved} saves`)
})
