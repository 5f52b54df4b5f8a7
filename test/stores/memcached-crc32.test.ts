// distribution: 'crc32' against real Perl: Cache::Memcached and this store pick the same server for
// every key, with weights, and while a server is down (Cache::Memcached's rehash).
import anyTest, { type ExecutionContext, type TestFn } from 'ava'
import { memcachedStore, tieSession, untie } from '../../src/index.js'
import { newId } from '../../src/ids.js'
import { storable } from '../../src/storable.js'
import { Crc32Buckets, perlHash } from '../../src/stores/memcached-crc32.js'
import type { MemcachedStoreOptions } from '../../src/stores/memcached.js'
import { freePort, useMemcached, type MemcachedServer } from '../helpers/memcached.js'
import { perl, requirePerl } from '../helpers/perl.js'

const test = anyTest as TestFn<unknown>
type Any = Record<string, any>
const COUNT = 50

test.before(() => requirePerl())

function open(t: ExecutionContext, options: MemcachedStoreOptions) {
  const store = memcachedStore({ requestTimeout: 5000, ...options })
  t.teardown(() => store.close())
  return store
}

test("perlHash and the weighted buckets are Cache::Memcached's, key for key", async (t) => {
  const keys = Array.from({ length: 200 }, (_, i) => (i % 2 ? newId() : `${i}key-${i * 7919}`))
  const servers: Array<string | [string, number]> = [['10.0.0.1:11211', 3], '10.0.0.2:11211', ['10.0.0.3:11211', 2]]
  const perlSays = await perl<{ hash: number[]; server: string[] }>(
    `my $a = args(); my $m = Cache::Memcached->new({ servers => $a->{servers} }); $m->init_buckets;
     my @h = map { Cache::Memcached::_hashfunc($_) } @{$a->{keys}};
     out({ hash => \\@h, server => [ map { $m->{buckets}[$_ % $m->{bucketcount}] } @h ] })`,
    { keys, servers },
  )
  t.deepEqual(
    keys.map((k) => perlHash(k)),
    perlSays.hash,
  )
  const buckets = new Crc32Buckets(servers as Array<string | [string, number]>)
  t.deepEqual(
    keys.map((k) => buckets.pick(k, () => false)),
    perlSays.server,
  )
})

/** Perl writes `COUNT` Memorycached sessions on `servers`; returns their ids. */
async function perlWrites(servers: string[]): Promise<string[]> {
  const ids = Array.from({ length: COUNT }, () => newId())
  await perl(
    `my $a = args(); my $m = Cache::Memcached->new({ servers => $a->{servers} });
     for my $id (@{$a->{ids}}) { $m->set($id, { _session_id => $id, by => 'perl' }, 600) or die "set $id" } out(1)`,
    { servers, ids },
  )
  return ids
}

/** How many of `ids` Perl finds as Memorycached sessions (hash references) on `servers`. */
function perlFinds(servers: string[], ids: string[]): Promise<number> {
  return perl<number>(
    `my $a = args(); my $m = Cache::Memcached->new({ servers => $a->{servers} });
     out(scalar grep { ref($m->get($_)) eq 'HASH' } @{$a->{ids}})`,
    { servers, ids },
  )
}

async function nodeFinds(t: ExecutionContext, servers: string[], ids: string[]): Promise<number> {
  const store = open(t, { servers, distribution: 'crc32' })
  const found = await Promise.all(
    ids.map((id) =>
      tieSession<Any>(id, { store }).then(
        (s) => s.by === 'perl',
        () => false,
      ),
    ),
  )
  return found.filter(Boolean).length
}

async function nodeWrites(t: ExecutionContext, servers: string[]): Promise<string[]> {
  const store = open(t, { servers, distribution: 'crc32' })
  const ids: string[] = []
  for (let i = 0; i < COUNT; i++) {
    const s = await tieSession<Any>(undefined, { store, serializer: storable })
    s.by = 'node'
    await untie(s)
    ids.push(s._session_id)
  }
  return ids
}

const itemsOn = async (server: MemcachedServer) => Number((await server.stats()).curr_items)

test(`two servers: Node finds all ${COUNT} Perl sessions and Perl all ${COUNT} Node sessions`, async (t) => {
  const [a, b] = await Promise.all([useMemcached(t), useMemcached(t)])
  const servers = [a.address, b.address]
  const perlIds = await perlWrites(servers)
  t.true((await itemsOn(a)) > 0 && (await itemsOn(b)) > 0, 'the keys spread over both servers')
  t.is(await nodeFinds(t, servers, perlIds), COUNT)
  const nodeIds = await nodeWrites(t, servers)
  t.is(await perlFinds(servers, nodeIds), COUNT)
  t.is((await itemsOn(a)) + (await itemsOn(b)), 2 * COUNT, 'no key written twice')
})

test(`three servers, one down: both sides rehash alike, ${COUNT} sessions each way`, async (t) => {
  const [a, b] = await Promise.all([useMemcached(t), useMemcached(t)])
  const down = `127.0.0.1:${await freePort()}` // nothing listens there
  const servers = [a.address, down, b.address]
  const perlIds = await perlWrites(servers)
  t.is(await nodeFinds(t, servers, perlIds), COUNT)
  const nodeIds = await nodeWrites(t, servers)
  t.is(await perlFinds(servers, nodeIds), COUNT)
  t.is((await itemsOn(a)) + (await itemsOn(b)), 2 * COUNT)
})
