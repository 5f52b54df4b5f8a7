/**
 * The `local` servers under faults (issue 12): two hosts are two store instances, each with its
 * own local memcached, sharing one principal. Logout is final on every host, a process reads its
 * own writes, and local is a write-through cache.
 */
import anyTest, { type ExecutionContext, type TestFn } from 'ava'
import {
  closeStores,
  destroy,
  destroySessions,
  memcachedStore,
  regenerate,
  tieSession,
  untie,
  type MemcachedStore,
} from '../../src/index.js'
import { useMemcached, type MemcachedServer } from '../helpers/memcached.js'

const test = anyTest as TestFn<unknown>
type Any = Record<string, any>
anyTest.afterEach.always(() => closeStores())

interface Hosts {
  principal: MemcachedServer
  locals: [MemcachedServer, MemcachedServer]
  a: MemcachedStore
  b: MemcachedStore
}

async function twoHosts(t: ExecutionContext, extra: { trustLocal?: boolean; localTtl?: number } = {}): Promise<Hosts> {
  const [principal, la, lb] = await Promise.all([useMemcached(t), useMemcached(t), useMemcached(t)])
  const host = (local: MemcachedServer) => {
    const store = memcachedStore({ servers: principal.address, local: local.address, localTtl: 600, ...extra })
    t.teardown(() => store.close())
    return store
  }
  return { principal, locals: [la, lb], a: host(la), b: host(lb) }
}

const stat = async (server: MemcachedServer, name: string) => Number((await server.stats())[name] ?? 0)

test('logout is final on every host: destroy, destroySessions and regenerate on host A; host B never serves the old session from its local copy', async (t) => {
  const { a, b, locals } = await twoHosts(t)
  const opts = (store: MemcachedStore) => ({ store, principal: 'uid' })
  const ids: string[] = []
  for (let i = 0; i < 3; i++) {
    const s = await tieSession<Any>(undefined, opts(a))
    s.uid = 'dwho'
    s.n = i
    await untie(s)
    ids.push(s._session_id)
  }
  // host B reads each session once: its local server now holds a copy
  for (const id of ids) await untie(await tieSession(id, opts(b)))
  t.true((await locals[1].raw(`get ${ids[0]}\r\n`)).startsWith('VALUE'), 'B has a local copy')

  await destroy(await tieSession(ids[0]!, opts(a)))
  const err = await t.throwsAsync(tieSession(ids[0]!, opts(b)))
  t.is((err as Any).code, 'ERR_SESSION_NOT_FOUND', 'B does not serve a destroyed session')

  const s = await tieSession<Any>(ids[1]!, opts(a))
  const old = s._session_id
  await regenerate(s)
  await untie(s)
  t.is(((await t.throwsAsync(tieSession(old, opts(b)))) as Any).code, 'ERR_SESSION_NOT_FOUND', 'nor the old id of a regenerated one')

  t.is(await destroySessions('dwho', opts(a)), 2)
  for (const id of [ids[2]!, s._session_id]) t.is(((await t.throwsAsync(tieSession(id, opts(b)))) as Any).code, 'ERR_SESSION_NOT_FOUND')
})

test('a copy put back into local after the delete (a delayed write) is never served', async (t) => {
  const { a, b, locals } = await twoHosts(t)
  const s = await tieSession<Any>(undefined, { store: a })
  s.uid = 'dwho'
  await untie(s)
  await untie(await tieSession(s._session_id, { store: b }))
  const copy = await locals[1].raw(`get ${s._session_id}\r\n`) // what B's local holds, flags and all
  await destroy(await tieSession(s._session_id, { store: a }))
  // the late write: B's old copy lands in B's local after the destroy resolved
  const [, flags, size] = /^VALUE \S+ (\d+) (\d+)/.exec(copy)!
  const value = copy.split('\r\n')[1]!
  t.is(await locals[1].raw(`set ${s._session_id} ${flags} 600 ${size}\r\n${value}\r\n`), 'STORED\r\n')
  t.is(((await t.throwsAsync(tieSession(s._session_id, { store: b }))) as Any).code, 'ERR_SESSION_NOT_FOUND')
})

test('a host reads its own writes, and another host sees them at once; a stale copy never wins', async (t) => {
  const { a, b, locals } = await twoHosts(t)
  const s = await tieSession<Any>(undefined, { store: a })
  s.n = 1
  await untie(s)
  await untie(await tieSession(s._session_id, { store: b })) // B copies version 1
  const stale = await locals[1].raw(`get ${s._session_id}\r\n`)
  for (let n = 2; n <= 5; n++) {
    const w = await tieSession<Any>(s._session_id, { store: b })
    w.n = n
    await untie(w)
    t.is((await tieSession<Any>(s._session_id, { store: b })).n, n, 'B reads its own write')
    t.is((await tieSession<Any>(s._session_id, { store: a })).n, n, 'A sees it at once')
  }
  // an old copy put back into B's local (a stall that delivered a late write) is not served
  const [, flags, size] = /^VALUE \S+ (\d+) (\d+)/.exec(stale)!
  await locals[1].raw(`set ${s._session_id} ${flags} 600 ${size}\r\n${stale.split('\r\n')[1]!}\r\n`)
  t.is((await tieSession<Any>(s._session_id, { store: b })).n, 5)
})

test('write-through: after a write, the next request on that host is served by its local copy (one meta get on the principal, no value)', async (t) => {
  const { a, principal, locals } = await twoHosts(t)
  const s = await tieSession<Any>(undefined, { store: a })
  s.n = 1
  s.pad = 'x'.repeat(500)
  await untie(s)
  const hits = await stat(locals[0], 'get_hits')
  // bytes_written counts the stats replies too: measure one, with nothing in between
  const b0 = await stat(principal, 'bytes_written')
  const principalBytes = await stat(principal, 'bytes_written')
  const statsReply = principalBytes - b0
  const r = await tieSession<Any>(s._session_id, { store: a })
  t.is(r.n, 1)
  t.is(await stat(locals[0], 'get_hits'), hits + 1, 'served by local')
  const sent = (await stat(principal, 'bytes_written')) - principalBytes - statsReply
  t.true(sent < 100, `the principal sent ${sent} bytes: a cas and a size, not the 500-byte session`)
  // and the read knew the version: a save needs no second read of the principal
  const gets = await stat(principal, 'cmd_get')
  r.n = 2
  await untie(r)
  t.is(await stat(principal, 'cmd_get'), gets, 'no re-read before the save')
})

test("trustLocal: Memorycached's way, opt-in: copies served unchecked (a destroy elsewhere shows after localTtl), own writes still read back", async (t) => {
  const { a, b } = await twoHosts(t, { trustLocal: true })
  const s = await tieSession<Any>(undefined, { store: a })
  s.n = 1
  await untie(s)
  await untie(await tieSession(s._session_id, { store: b }))
  await destroy(await tieSession(s._session_id, { store: a }))
  t.is((await tieSession<Any>(s._session_id, { store: b })).n, 1, 'documented: B serves its copy until localTtl')
  const own = await tieSession<Any>(undefined, { store: b })
  own.n = 1
  await untie(own)
  const again = await tieSession<Any>(own._session_id, { store: b })
  again.n = 2
  await untie(again)
  t.is((await tieSession<Any>(own._session_id, { store: b })).n, 2, 'B reads its own write')
})
