import test from 'ava'
import { ABSENT, merge3 } from '../src/merge.js'
import { StoredText, copyJson } from '../src/merge-bases.js'

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b)
const merge = (base: unknown, ours: unknown, theirs: unknown) => merge3(base, ours, theirs, same)

test('a side that left a value as it was takes the other side', (t) => {
  t.is(merge(1, 1, 2), 2)
  t.is(merge(1, 3, 1), 3)
  t.is(merge(1, 3, 2), 3, 'both changed a scalar: ours')
  t.is(merge(ABSENT, ABSENT, 2), 2)
  t.is(merge(1, ABSENT, 1), ABSENT, 'ours deleted, theirs untouched')
  t.is(merge(1, 1, ABSENT), ABSENT, 'theirs deleted, ours untouched')
  t.is(merge(1, ABSENT, 2), ABSENT, 'ours deleted what theirs changed: the delete')
  t.deepEqual(merge({ a: 1 }, { a: 1 }, { a: 1, b: 2 }), { a: 1, b: 2 })
})

test('objects both changed are merged key by key, recursively', (t) => {
  t.deepEqual(merge({ a: 1, b: { c: 1, d: 1 } }, { a: 2, b: { c: 2, d: 1 } }, { a: 1, b: { c: 1, d: 3 }, e: 5 }), {
    a: 2,
    b: { c: 2, d: 3 },
    e: 5,
  })
  t.deepEqual(merge({ a: 1, b: 1 }, { b: 1 }, { a: 1, b: 2 }), { b: 2 }, 'a key deleted by ours stays deleted')
  t.deepEqual(merge(ABSENT, { items: [1] }, { items: [2] }), { items: [2, 1] }, 'a container both created')
})

test('arrays: elements of the base merge by position, appends of both are kept (theirs first)', (t) => {
  t.deepEqual(merge([1], [1, 2], [1, 3]), [1, 3, 2])
  t.deepEqual(merge([{ n: 1 }], [{ n: 2 }], [{ n: 1 }, { n: 3 }]), [{ n: 2 }, { n: 3 }])
  t.deepEqual(merge([1, 2, 3], [2, 3], [1, 2, 3, 4]), [2, 3, 4], 'ours removed, theirs only appended')
  t.deepEqual(merge([1, 2, 3], [1, 2, 3, 4], [3]), [3, 4], 'theirs removed, ours only appended')
  t.deepEqual(merge([1, 2, 3], [3], [2]), [3], 'both removed: ours')
  t.deepEqual(merge({ a: 1 }, [1], [2]), [2, 1], 'a base of another kind counts as empty: both appended')
  t.deepEqual(merge([1], { a: 1 }, [1, 2]), { a: 1 }, 'kinds differ: ours')
})

test('the result never aliases the base', (t) => {
  const base = { list: [1] }
  const out = merge(base, { list: [1, 2] }, { list: [1, 3] }) as { list: number[] }
  out.list.push(9)
  t.deepEqual(base, { list: [1] })
})

test('StoredText: a base read from the whole text on demand, parsed once, never the live data', (t) => {
  let parses = 0
  const parse = (text: string) => (parses++, JSON.parse(text) as unknown)
  const source = new StoredText('{"a":[1,{"c":"x"}],"__proto__":{"d":true}}')
  t.is(parses, 0, 'nothing is parsed until a merge asks')
  t.deepEqual(source.at('a', parse, ABSENT), [1, { c: 'x' }])
  t.deepEqual(source.at('__proto__', parse, ABSENT), { d: true }, 'a key named __proto__ is data')
  t.is(source.at('gone', parse, ABSENT), ABSENT)
  t.is(source.at('toString', parse, ABSENT), ABSENT, 'only own keys')
  t.is(parses, 1)
})

test('copyJson: a base kept as a copy is what a round trip through JSON text gives, sharing nothing', (t) => {
  const value = JSON.parse('{"a":[1,{"b":null,"c":"x"}],"n":-1.5,"__proto__":{"d":true},"e":{}}') as Record<string, unknown>
  const copy = copyJson(value) as Record<string, unknown>
  t.is(JSON.stringify(copy), JSON.stringify(value))
  t.true(Object.hasOwn(copy, '__proto__'), 'a key named __proto__ stays data')
  t.is(Object.getPrototypeOf(copy), Object.prototype)
  t.not(copy.a, value.a)
  t.not((copy.a as unknown[])[1], (value.a as unknown[])[1])
  ;((value.a as unknown[])[1] as Record<string, unknown>).c = 'changed later'
  t.is(((copy.a as unknown[])[1] as Record<string, unknown>).c, 'x', 'a later change of the session does not reach the base')
  t.is(copyJson('s'), 's')
  t.is(copyJson(null), null)
})
