import test from 'ava'
import { readFileSync, readdirSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { SessionError } from '../src/errors.js'
import { storable } from '../src/storable.js'
import { thaw } from '../src/storable-read.js'
import { nfreeze, perlNumber } from '../src/storable-write.js'
import { perl } from './helpers/perl.js'

/** Vectors made by Perl 5.36 / Storable 3.26 (test/fixtures/storable/generate.pl regenerates them). */
const DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'storable')
const hex = (name: string) => Buffer.from(readFileSync(path.join(DIR, `${name}.hex`), 'utf8').trim(), 'hex')
const expected = JSON.parse(readFileSync(path.join(DIR, 'expected.json'), 'utf8')) as Record<string, unknown>
const REFUSED = new Set(['blessed', 'hooked-object', 'native-freeze-integers-floats'])

/**
 * expected.json in the shape thaw gives in JS: a JSON::PP boolean is a boolean, a reference to a
 * scalar is the scalar (a session has no scalar references).
 */
function inJs(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(inJs)
  if (typeof v !== 'object' || v === null) return v
  const o = v as Record<string, unknown>
  if (o.$bless === 'JSON::PP::Boolean') return Boolean((o.value as { $ref: number }).$ref)
  if ('$ref' in o && Object.keys(o).length === 1) return inJs(o.$ref)
  return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, inJs(x)]))
}

const cases = readdirSync(DIR)
  .filter((f) => f.endsWith('.hex'))
  .map((f) => f.slice(0, -4))

for (const name of cases.filter((n) => !REFUSED.has(n))) {
  test(`thaw reads ${name} as Perl's thaw does`, (t) => {
    t.deepEqual(thaw(hex(name)), inJs(expected[name]))
  })
}

test('a blessed object and an SX_HOOK object are ERR_CORRUPT naming their class', (t) => {
  const blessed = t.throws(() => thaw(hex('blessed')), { instanceOf: SessionError })
  t.is(blessed?.code, 'ERR_CORRUPT')
  t.regex(blessed!.message, /My::(List|Obj)/)
  const hooked = t.throws(() => thaw(hex('hooked-object')), { instanceOf: SessionError })
  t.is(hooked?.code, 'ERR_CORRUPT')
  t.regex(hooked!.message, /My::Hooked.*SX_HOOK/)
  t.throws(() => thaw(hex('native-freeze-integers-floats')), { instanceOf: SyntaxError, message: /native byte order/ })
  t.throws(() => thaw(hex('hash-scalars').subarray(0, 20)), { instanceOf: SyntaxError, message: /ends too soon/ })
})

test('nfreeze writes the bytes Perl writes (sorted keys, as the vectors were made)', (t) => {
  // every vector whose strings Perl held with the utf8 flag exactly when they are not ASCII
  for (const name of ['hash-scalars', 'empty-hash', 'integers', 'floats', 'number-vs-string', 'nested', 'long-strings', 'booleans']) {
    t.is(nfreeze(thaw(hex(name)) as object).toString('hex'), hex(name).toString('hex'), name)
  }
  // session-like: floats (1.5) and big integers are Perl's strings of them, as Perl writes them
  const session = thaw(hex('session-like')) as Record<string, unknown>
  t.is(session.f, '1.5')
  t.deepEqual(thaw(nfreeze(session)), session)
})

test("numbers: 32-bit integers stay numbers, others become Perl's string (%.15g)", (t) => {
  t.is(perlNumber(0.1 + 0.2), '0.3')
  t.is(perlNumber(1e20), '1e+20')
  t.is(perlNumber(1.5e-10), '1.5e-10')
  t.is(perlNumber(0.00001), '1e-05')
  t.is(perlNumber(2 ** 40), '1099511627776')
  t.is(perlNumber(-2.25), '-2.25')
  t.deepEqual(storable.copy!({ a: 1.5, b: 2 ** 31, c: -(2 ** 31), d: [undefined, 7] }, ''), {
    a: '1.5',
    b: '2147483648',
    c: -(2 ** 31),
    d: [null, 7],
  })
  t.throws(() => storable.copy!({ a: Number.NaN }, ''), { instanceOf: TypeError, message: /at a with the storable serializer/ })
  t.throws(() => storable.copy!({ d: new Date() }, ''), { instanceOf: TypeError })
})

test('storable round trips session data: UTF-8 keys and values, booleans, null, nesting', (t) => {
  const data = {
    prénom: 'José 中文 😀',
    中文: [1, -300, 70000, true, false, null, { deep: { er: ['x'] } }],
    long: 'é'.repeat(300),
    empty: {},
  }
  t.deepEqual(storable.parse(storable.stringify(data)), data)
  // one value (tied-session compares values by their text) freezes as a one-item array
  t.is(typeof storable.stringify('x'), 'string')
})

test("perlNumber is Perl's own string of a number (%.15g), for 300 numbers of every size", async (t) => {
  const numbers = Array.from({ length: 300 }, (_, i) => {
    const x = Math.random() * 10 ** ((i % 40) - 20)
    return i % 3 === 0 ? -x : i % 7 === 0 ? Math.round(x * 100) / 100 : x
  })
  // Perl prints each one from its exact bits (JSON numbers would round-trip the same doubles)
  const perlSays = await perl<string[]>('out([ map { "" . $_ } @{ args() } ])', numbers)
  t.deepEqual(numbers.map(perlNumber), perlSays)
})
