import test from 'ava'
import { json } from '../src/json.js'
import { childPath } from '../src/serializers.js'
import { rich } from '../src/rich.js'

test('childPath writes paths the way code does', (t) => {
  t.is(childPath('', 'cart'), 'cart')
  t.is(childPath('cart', 'items'), 'cart.items')
  t.is(childPath('cart.items', 2), 'cart.items[2]')
  t.is(childPath('a', 'with space'), 'a["with space"]')
  t.is(childPath('', '0x'), '["0x"]')
})

test('json copy returns a deep copy that shares nothing', (t) => {
  const value = { a: { b: [1, { c: 'x' }] } }
  const copy = json.copy!(value, 'v') as typeof value
  t.deepEqual(copy, value)
  t.not(copy, value)
  t.not(copy.a.b, value.a.b)
  t.not(copy.a.b[1], value.a.b[1])
})

test('json copy refuses what JSON would change, naming the path', (t) => {
  const cases: Array<[unknown, string]> = [
    [{ items: [0, 1, { when: new Date() }] }, 'cart.items[2].when'],
    [{ f: () => 1 }, 'cart.f'],
    [{ n: Number.NaN }, 'cart.n'],
    [{ n: Infinity }, 'cart.n'],
    [{ b: 10n }, 'cart.b'],
    [{ m: new Map() }, 'cart.m'],
    [{ s: new Set() }, 'cart.s'],
    [{ c: new (class Point {})() }, 'cart.c'],
    [{ s: Symbol('x') }, 'cart.s'],
    [[undefined], 'cart[0]'],
  ]
  for (const [value, path] of cases) {
    const err = t.throws(() => json.copy!(value, 'cart'), { instanceOf: TypeError })
    t.true(err!.message.includes(` at ${path} `), `${err!.message} names ${path}`)
  }
})

test('json copy refuses a cycle and drops undefined object properties', (t) => {
  const cyclic: Record<string, unknown> = { a: 1 }
  cyclic.self = cyclic
  t.throws(() => json.copy!(cyclic, 'x'), { instanceOf: TypeError, message: /x\.self.*cycle/ })
  t.deepEqual(json.copy!({ a: 1, b: undefined }, 'x'), { a: 1 })
  t.true(Object.is(json.copy!(-0, 'x'), 0))
})

test('json copy keeps a key named __proto__ as data, never as a prototype', (t) => {
  const value = JSON.parse('{"__proto__": {"polluted": true}}')
  const copy = json.copy!(value, 'x') as Record<string, unknown>
  t.is(Object.getPrototypeOf(copy), Object.prototype)
  t.deepEqual(Object.keys(copy), ['__proto__'])
  t.is(({} as Record<string, unknown>).polluted, undefined)
})

test('rich round-trips Date, Map, Set, BigInt, undefined in arrays, NaN, ±Infinity, -0, nested', (t) => {
  const value = {
    when: new Date('2026-11-21T10:00:00.000Z'),
    invalid: new Date(Number.NaN),
    map: new Map<unknown, unknown>([
      ['a', new Set([1, 2n])],
      [3, { deep: [undefined, Number.NaN, -0] }],
    ]),
    set: new Set([new Date(0), 'x']),
    big: 123456789012345678901234567890n,
    list: [undefined, 1, undefined],
    nums: [Number.NaN, Infinity, -Infinity, -0, 0, 1.5],
    tagLike: { $: 'd', v: 'not a date' },
    nested: { a: [{ b: new Map([['k', [new Date(5)]]]) }] },
  }
  const text = rich.stringify(value)
  t.notThrows(() => JSON.parse(text), 'rich output is valid JSON')
  const back = rich.parse(text) as typeof value
  t.deepEqual(back, value)
  t.true(Object.is(back.nums[3], -0))
  t.true(Number.isNaN(back.nums[0]))
  t.true(back.when instanceof Date)
  t.true(Number.isNaN(back.invalid.getTime()))
  t.is(back.list.length, 3)
  t.true(0 in back.list, 'undefined array slot is kept as a value')
  t.deepEqual(back.tagLike, { $: 'd', v: 'not a date' })
  t.deepEqual(rich.copy!(value, 'v'), value)
})

test('rich refuses functions, class instances and cycles, naming the path', (t) => {
  t.throws(() => rich.copy!({ a: [() => 1] }, 'x'), { instanceOf: TypeError, message: /x\.a\[0\]/ })
  t.throws(() => rich.copy!({ a: new URL('http://127.0.0.1/') }, 'x'), { instanceOf: TypeError, message: /x\.a/ })
  const m = new Map<string, unknown>()
  m.set('self', m)
  t.throws(() => rich.copy!(m, 'x'), { instanceOf: TypeError, message: /cycle/ })
})

test('rich parse rejects an unknown tag', (t) => {
  t.throws(() => rich.parse('{"$":"zz"}'), { instanceOf: SyntaxError })
})

test('json and rich write ASCII only (\\uXXXX, surrogate pairs past U+FFFF) and read both forms', (t) => {
  const value = { name: 'José 中文 😀', clé: ['ü', '\u2028', '\ud800'] }
  const text = json.stringify(value)
  t.is(text, '{"name":"Jos\\u00e9 \\u4e2d\\u6587 \\ud83d\\ude00","cl\\u00e9":["\\u00fc","\\u2028","\\ud800"]}')
  t.deepEqual(json.parse(text), value)
  t.deepEqual(json.parse(JSON.stringify(value)), value, 'raw UTF-8 JSON is read too')
  t.regex(rich.stringify({ d: new Date(0), s: 'é' }), /^[\x20-\x7e]+$/)
  t.deepEqual(rich.parse(rich.stringify(value)), value)
})
