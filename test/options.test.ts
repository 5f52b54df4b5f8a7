import test from 'ava'
import { closeStores, resolveTieOptions, type TieOptions } from '../src/options.js'
import { useMemcached } from './helpers/memcached.js'

test.after.always(() => closeStores())

test('ties with the same option values share one checked config; any change, or closeStores, makes a new one', async (t) => {
  const server = await useMemcached(t)
  const servers = [server.address]
  const first = resolveTieOptions({ servers: [...servers], expires: 60 })
  t.is(resolveTieOptions({ servers: [...servers], expires: 60 }), first, 'a new literal with the same values')
  t.not(resolveTieOptions({ servers: [...servers], expires: 61 }), first)
  const opts = { servers: [...servers], expires: 60 }
  const again = resolveTieOptions(opts)
  opts.servers.push('127.0.0.1:1')
  const changed = resolveTieOptions(opts)
  t.not(changed, again, 'an array changed in place is seen')
  t.not(changed.store, again.store, 'other servers: another store')
  t.throws(() => resolveTieOptions({ servers, expires: -1 }), { instanceOf: TypeError })
  // as many keys, one of them undefined: still other options
  // (JavaScript callers can pass undefined where the types do not let TypeScript ones)
  const loose = (o: Record<string, unknown>) => resolveTieOptions(o as TieOptions)
  const plain = loose({ servers, expires: undefined, namespace: 'a:' })
  t.is(loose({ servers, expires: undefined, namespace: 'a:' }), plain)
  t.is(loose({ servers, namespace: 'b:' }).namespace, 'b:')
  t.is(loose({ servers, expires: undefined }).namespace, '', 'as many keys, the other one undefined: not the same options')
  const kept = resolveTieOptions({ servers, expires: 60 })
  await closeStores()
  const after = resolveTieOptions({ servers, expires: 60 })
  t.not(after, kept, 'closeStores closed its store: a new config with a new store')
  t.not(after.store, kept.store)
})
