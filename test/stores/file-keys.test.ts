import { promises as fs } from 'node:fs'
import path from 'node:path'
import test from 'ava'
import { SessionError } from '../../src/errors.js'
import { fileName, keyOf, putItem, readItem } from '../../src/stores/file-keys.js'
import { tempDir } from '../helpers/temp-dir.js'

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

test('file keys: putItem writes what readItem reads, mode 0600, and leaves no temp file', async (t) => {
  const dir = await tempDir(t, 'file-keys-test')
  const file = path.join(dir, fileName('k'))
  t.is(readItem('k', file), undefined)
  const item = { version: '0123456789abcdef', expires: 1234, value: 'line 1\nline 2 é 😀\n' }
  putItem(dir, file, item, () => {})
  t.deepEqual(readItem('k', file), item)
  t.deepEqual(await fs.readdir(dir), ['k.session'])
  if (process.platform !== 'win32') t.is((await fs.stat(file)).mode & 0o777, 0o600)
})

test('file keys: a lost write lock leaves the old file whole and no temp file', async (t) => {
  const dir = await tempDir(t, 'file-keys-test')
  const file = path.join(dir, fileName('k'))
  const old = { version: 'v1', expires: 0, value: 'old' }
  putItem(dir, file, old, () => {})
  const lost = () => {
    throw new Error('lost the lock')
  }
  t.throws(() => putItem(dir, file, { version: 'v2', expires: 0, value: 'new' }, lost), { message: 'lost the lock' })
  t.deepEqual(readItem('k', file), old)
  t.deepEqual(await fs.readdir(dir), ['k.session'])
})

test('file keys: a file without our header is ERR_CORRUPT, naming the key and the file', async (t) => {
  const dir = await tempDir(t, 'file-keys-test')
  const file = path.join(dir, fileName('k'))
  for (const text of ['', 'no header', '{"v":1,"e":0}\nx', '{"v":"a"}\nx', 'null\nx']) {
    await fs.writeFile(file, text)
    const err = t.throws(() => readItem('k', file), { instanceOf: SessionError })
    t.is(err?.code, 'ERR_CORRUPT', text)
    t.true(err?.message.includes('"k"') && err.message.includes(file), text)
  }
})
