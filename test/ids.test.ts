import test from 'ava'
import { SessionError } from '../src/errors.js'
import { checkId, newId } from '../src/ids.js'

test('newId is 32 lowercase hex chars and unique', (t) => {
  const ids = new Set(Array.from({ length: 1000 }, newId))
  t.is(ids.size, 1000)
  for (const id of ids) t.regex(id, /^[0-9a-f]{32}$/)
})

test('checkId accepts 1-128 chars of [A-Za-z0-9_-]', (t) => {
  for (const id of ['a', 'A-b_9', 'x'.repeat(128), newId()]) t.is(checkId(id), id)
})

test('checkId rejects malformed ids with ERR_INVALID_ID', (t) => {
  const bad: unknown[] = ['with space', 'a\r\nb', '../etc/passwd', '   ', ' a', 'x'.repeat(129), 'sessión', 'a/b', 'a.b', '', 42, {}]
  for (const id of bad) {
    const err = t.throws(() => checkId(id), { instanceOf: SessionError })
    t.is(err!.code, 'ERR_INVALID_ID')
    t.regex(err!.message, /^tied-session: invalid session id/)
  }
})
