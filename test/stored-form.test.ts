import test from 'ava'
import { gzipSync } from 'node:zlib'
import { SessionError, memoryStore, rich, save, tieSession, untie } from '../src/index.js'
import { readForm } from '../src/stored-form.js'
import { storable } from '../src/storable.js'
import { nfreeze } from '../src/storable-write.js'

type Any = Record<string, any>
const ID = '0123456789abcdef0123456789abcdef'
const data = { _session_id: ID, name: 'José 中文 😀', n: 42 }
const frozen = nfreeze(data)
const jsonText = JSON.stringify(data)

/** Perl's forms, as Cache::Memcached and Apache::Session's serializers store them. */
const FORMS: Array<[name: string, value: string | Buffer, flags: number, serializer: string, gzip: boolean]> = [
  ['JSON, flags 0', jsonText, 0, 'json', false],
  ['JSON in Latin-1 bytes, flags 0', Buffer.from('{"name":"Jos\xe9"}', 'latin1'), 0, 'json', false],
  ['Storable, flags 1', frozen, 1, 'storable', false],
  ['Storable as a flags-0 string', frozen, 0, 'storable', false],
  ['gzip JSON, flags 2', gzipSync(jsonText), 2, 'json', true],
  ['gzip Storable, flags 3', gzipSync(frozen), 3, 'storable', true],
]

for (const [name, value, flags, serializer, gzip] of FORMS) {
  test(`a session stored as ${name} is read, and written back in the same form`, async (t) => {
    const store = memoryStore()
    await store.write(ID, value, { ttl: 60, mode: 'set', flags })
    const { form } = readForm(rich, (await store.get(ID))!)
    t.deepEqual([form.serializer.name, form.flags, form.gzip], [serializer === 'json' ? 'rich' : serializer, flags, gzip])
    const s = await tieSession<Any>(ID, { store })
    t.true(s.name === 'José 中文 😀' || s.name === 'José')
    s.more = 'ü'
    await untie(s)
    const after = (await store.get(ID))!
    t.is(after.flags ?? 0, flags)
    const again = readForm(storable, after)
    t.deepEqual([again.form.flags, again.form.gzip, again.form.serializer.binary ?? false], [flags, gzip, serializer === 'storable'])
    t.like(again.form.serializer.parse(again.text), { more: 'ü' })
  })
}

test('a new session takes the configured serializer: storable is written with flags 1', async (t) => {
  const store = memoryStore()
  const s = await tieSession<Any>(undefined, { store, serializer: storable })
  s.x = 1.25
  t.is(s.x, '1.25', 'the object shows what Storable keeps')
  await save(s)
  const entry = (await store.get(s._session_id))!
  t.is(entry.flags, 1)
  t.true(Buffer.isBuffer(entry.value) && entry.value[0] === 0x05 && entry.value[1] === 0x0b)
  await untie(s)
})

test('a Perl object in a Storable session is ERR_CORRUPT naming its class, and nothing is written', async (t) => {
  const store = memoryStore()
  // { h => My::Hooked object } from test/fixtures/storable/hooked-object.hex
  const hooked = Buffer.from(
    '050b0300000001041302' +
      '0a' +
      Buffer.from('My::Hooked').toString('hex') +
      '04' +
      Buffer.from('v1:k').toString('hex') +
      '00000001' +
      '68',
    'hex',
  )
  await store.write(ID, hooked, { ttl: 60, mode: 'set', flags: 1 })
  const err = await t.throwsAsync(tieSession(ID, { store }), { instanceOf: SessionError })
  t.is(err?.code, 'ERR_CORRUPT')
  t.regex(err!.message, /session 0123456789abcdef0123456789abcdef: .*My::Hooked.*SX_HOOK/)
  t.deepEqual((await store.get(ID))?.value, hooked)
})
