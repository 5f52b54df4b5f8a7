import path from 'node:path'
import test from 'ava'
import { SessionError } from '../../src/errors.js'
import { fileName, keyOf } from '../../src/stores/file-keys.js'

test('file keys: every key becomes one plain file name, never a path, and keyOf reads it back', (t) => {
  const keys = ['abc', 'A-b_9', '..', '.', '', '../../etc/passwd', '/etc/passwd', 'a/b', 'a\\b', '~x', 'abc.session', 'sessión', '😀']
  for (const key of keys) {
    const name = fileName(key)
    t.regex(name, /^~?[A-Za-z0-9_-]*\.session$/, key)
    t.is(path.basename(name), name, key)
    t.is(keyOf(name), key, key)
  }
  t.is(fileName('abc'), 'abc.session')
  t.is(fileName('a/b'), '~YS9i.session')
})

test('file keys: keyOf ignores temp files, lock directories, strangers and other spellings of a key', (t) => {
  for (const name of ['.0123456789abcdef.tmp', 'abc.session.lock', 'abc.session-lock', 'README', 'abc.sessions', '.session~']) {
    t.is(keyOf(name), undefined, name)
  }
  t.is(keyOf('~YWJj.session'), undefined) // 'abc' is plain: its one name is abc.session
  t.is(keyOf('~Lw.session'), '/')
  t.is(keyOf('~Lx.session'), undefined) // decodes to '/' too, but fileName() never writes it
})

test('file keys: a key too long for a file name or not well-formed is ERR_INVALID_ID', (t) => {
  t.is(fileName('a'.repeat(232)), 'a'.repeat(232) + '.session') // 240 bytes
  for (const key of ['a'.repeat(233), 'é'.repeat(100), 'lone \uD800 surrogate']) {
    t.is(t.throws(() => fileName(key), { instanceOf: SessionError })?.code, 'ERR_INVALID_ID')
  }
})
