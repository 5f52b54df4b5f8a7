import test from 'ava'
import {
  HEAD,
  decodeSlot,
  encode,
  itemOf,
  newerFirst,
  parseLegacy,
  recordLength,
  slotSizeFor,
  type Item,
} from '../../src/stores/file-format.js'
import { SessionError } from '../../src/errors.js'

const item: Item = { version: '0123456789abcdef', expires: 1_700_000_000_123, value: 'line 1\nline 2 é 😀\n' }

test('file format: a record decodes to the item it encodes: text, bytes, flags, and an expiry of 0', (t) => {
  for (const it of [
    item,
    { version: 'v', expires: 0, value: Buffer.from([0, 255, 10, 13]), flags: 3 },
    { version: '', expires: 0, value: '' },
  ] satisfies Item[]) {
    const record = encode(it, 7)
    t.is(recordLength(record), record.length)
    const found = decodeSlot(record, 1)!
    t.is(found.seq, 7)
    t.is(found.slot, 1)
    t.deepEqual(itemOf(found), it)
  }
  // a slot holds more bytes than its record: what follows is not read
  const slot = Buffer.concat([encode(item, 1), Buffer.alloc(100, 0xff)])
  t.deepEqual(itemOf(decodeSlot(slot, 0)!), item)
})

test('file format: a record cut short or changed by one bit anywhere is not whole, and the other slot is then the current one', (t) => {
  const record = encode(item, 2)
  t.is(decodeSlot(record.subarray(0, record.length - 1), 0), undefined, 'cut short')
  t.is(decodeSlot(record.subarray(0, HEAD - 1), 0), undefined, 'half a head')
  for (let byte = 0; byte < record.length; byte++) {
    const damaged = Buffer.from(record)
    damaged[byte]! ^= 0x10
    t.is(decodeSlot(damaged, 0), undefined, `byte ${byte}`)
  }
  t.is(decodeSlot(Buffer.alloc(64), 0), undefined, 'zeros: a slot never written')
})

test('file format: the slot with the higher sequence number is tried first, wrapping at 2^32', (t) => {
  const head = (seq: number) => encode(item, seq).subarray(0, HEAD)
  t.deepEqual(newerFirst(head(1), head(2)), [1, 0])
  t.deepEqual(newerFirst(head(3), head(2)), [0, 1])
  t.deepEqual(newerFirst(head(2 ** 32 - 1), head(0)), [1, 0], 'seq 0 follows 2^32 - 1')
  t.deepEqual(newerFirst(head(0), head(2 ** 32 - 1)), [0, 1])
  t.deepEqual(newerFirst(head(5), Buffer.alloc(HEAD)), [0, 1], 'slot 1 never written')
  t.deepEqual(newerFirst(Buffer.alloc(HEAD), head(5)), [1, 0])
})

test('file format: slots are whole sectors with a quarter to grow', (t) => {
  t.is(slotSizeFor(100), 512)
  t.is(slotSizeFor(1200), 1536)
  t.is(slotSizeFor(500_000), 625_152)
})

test('file format: the older format (a JSON header line) is still read', (t) => {
  t.deepEqual(parseLegacy('k', '/f', '{"v":"abc","e":5}\nvalue\nmore'), { version: 'abc', expires: 5, value: 'value\nmore' })
  t.deepEqual(parseLegacy('k', '/f', '{"v":"abc","e":0,"b":1,"f":2}\nAP8='), {
    version: 'abc',
    expires: 0,
    value: Buffer.from([0, 255]),
    flags: 2,
  })
  const err = t.throws(() => parseLegacy('k', '/f', 'garbage'), { instanceOf: SessionError })
  t.is(err?.code, 'ERR_CORRUPT')
})
