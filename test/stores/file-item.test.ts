import { promises as fs } from 'node:fs'
import path from 'node:path'
import test from 'ava'
import { SessionError } from '../../src/errors.js'
import { encode, type Item } from '../../src/stores/file-format.js'
import { openItem, putItem, readItem, storeItem } from '../../src/stores/file-item.js'
import { fileName } from '../../src/stores/file-keys.js'
import { tempDir } from '../helpers/temp-dir.js'

test('file item: putItem writes what readItem reads, mode 0600, and leaves no temp file', async (t) => {
  const dir = await tempDir(t, 'file-item-test')
  const file = path.join(dir, fileName('k'))
  t.is(readItem('k', file), undefined)
  const item = { version: '0123456789abcdef', expires: 1234, value: 'line 1\nline 2 é 😀\n' }
  putItem(dir, file, item, () => {})
  t.deepEqual(readItem('k', file), item)
  t.deepEqual(await fs.readdir(dir), ['k.session'])
  if (process.platform !== 'win32') t.is((await fs.stat(file)).mode & 0o777, 0o600)
})

test('file item: a lost write lock leaves the old file whole and no temp file', async (t) => {
  const dir = await tempDir(t, 'file-item-test')
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

/** Stores `item` in `file` as a write holding the key's lock does (openItem + storeItem). */
function store(dir: string, file: string, item: Item, held = () => {}) {
  const open = openItem('k', file, false)
  try {
    storeItem(dir, file, open, item, held)
  } finally {
    open?.close()
  }
}

test('file item: a write of a record that fits goes in place, into the other slot; one that outgrows its slot, into a new file', async (t) => {
  const dir = await tempDir(t, 'file-item-test')
  const file = path.join(dir, fileName('k'))
  putItem(dir, file, { version: 'v1', expires: 0, value: 'a'.repeat(1000) }, () => {})
  const { ino, size } = await fs.stat(file)
  for (let i = 2; i < 6; i++) {
    store(dir, file, { version: `v${i}`, expires: i, value: String(i).repeat(1000) })
    t.deepEqual(readItem('k', file), { version: `v${i}`, expires: i, value: String(i).repeat(1000) })
    const now = await fs.stat(file)
    t.true(now.ino === ino && now.size === size, `write ${i} went in place`)
  }
  store(dir, file, { version: 'big', expires: 0, value: 'b'.repeat(5000) })
  t.is(readItem('k', file)?.version, 'big')
  t.not((await fs.stat(file)).ino, ino, 'a record that outgrew its slot went into a new file')
  const bigSize = (await fs.stat(file)).size
  store(dir, file, { version: 'small', expires: 0, value: 'c' })
  t.true((await fs.stat(file)).size < bigSize / 4, 'a record that shrank to a quarter of its slot went into a smaller file')
  t.deepEqual(readItem('k', file), { version: 'small', expires: 0, value: 'c' })
  t.deepEqual(await fs.readdir(dir), ['k.session'])
})

test('file item: a record half written (a writer killed mid-write) leaves the one before it current, and the next write goes over it', async (t) => {
  const dir = await tempDir(t, 'file-item-test')
  const file = path.join(dir, fileName('k'))
  const old: Item = { version: 'v1', expires: 0, value: 'old '.repeat(100) }
  putItem(dir, file, old, () => {}) // slot 0, seq 1
  const slotSize = (await fs.stat(file)).size / 2
  const next = encode({ version: 'v2', expires: 0, value: 'new '.repeat(100) }, 2)
  for (const cut of [4, 31, 40, next.length - 1]) {
    const handle = await fs.open(file, 'r+')
    await handle.write(next, 0, cut, slotSize) // what a killed writer leaves in slot 1
    await handle.close()
    t.deepEqual(readItem('k', file), old, `cut after ${cut} bytes`)
  }
  store(dir, file, { version: 'v3', expires: 0, value: 'newer' })
  t.deepEqual(readItem('k', file), { version: 'v3', expires: 0, value: 'newer' })
  const handle = await fs.open(file, 'r+')
  await handle.write(Buffer.alloc(2 * slotSize, 0xee), 0) // both records damaged: no session can be read
  await handle.close()
  t.is(t.throws(() => readItem('k', file), { instanceOf: SessionError })?.code, 'ERR_CORRUPT')
})

test('file item: a lost write lock leaves an in-place write undone', async (t) => {
  const dir = await tempDir(t, 'file-item-test')
  const file = path.join(dir, fileName('k'))
  const old = { version: 'v1', expires: 0, value: 'old' }
  putItem(dir, file, old, () => {})
  const lost = () => {
    throw new Error('lost the lock')
  }
  t.throws(() => store(dir, file, { version: 'v2', expires: 0, value: 'new' }, lost), { message: 'lost the lock' })
  t.deepEqual(readItem('k', file), old)
})

test('file item: a file of the older format (a JSON header line) is read, and replaced by a new file at its next write', async (t) => {
  const dir = await tempDir(t, 'file-item-test')
  const file = path.join(dir, fileName('k'))
  await fs.writeFile(file, '{"v":"0123456789abcdef","e":0,"f":4}\n{"cart":[]}', { mode: 0o600 })
  t.deepEqual(readItem('k', file), { version: '0123456789abcdef', expires: 0, value: '{"cart":[]}', flags: 4 })
  store(dir, file, { version: 'v2', expires: 0, value: '{"cart":[1]}' })
  t.deepEqual(readItem('k', file), { version: 'v2', expires: 0, value: '{"cart":[1]}' })
  t.deepEqual(await fs.readdir(dir), ['k.session'])
})

test('file item: a file without our header is ERR_CORRUPT, naming the key and the file', async (t) => {
  const dir = await tempDir(t, 'file-item-test')
  const file = path.join(dir, fileName('k'))
  for (const text of ['', 'no header', '{"v":1,"e":0}\nx', '{"v":"a"}\nx', 'null\nx']) {
    await fs.writeFile(file, text)
    const err = t.throws(() => readItem('k', file), { instanceOf: SessionError })
    t.is(err?.code, 'ERR_CORRUPT', text)
    t.true(err?.message.includes('"k"') && err.message.includes(file), text)
  }
})
